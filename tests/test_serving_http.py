"""`alarm serve` as a process on 127.0.0.1: the official openai client, 30+ kinds of bad request, drain on SIGTERM."""

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the server is optional: pip install 'alarm[serve]'")
openai = pytest.importorskip("openai", reason="the openai client is in the dev extra: pip install -e '.[dev]'")

from tests.conftest import tone  # noqa: E402

PRESET = "tiny-al-whisper-r"
QUESTION = "What do you hear?"


def _wav(seconds: float = 1.0, rate: int = 16_000, freq: float = 440.0, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds, rate, freq), rate, format=fmt)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _audio(data: bytes | None = None, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": _b64(data or _wav()), "format": fmt}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``alarm serve`` in a subprocess, ready when ``/health`` answers."""

    def __init__(self, *flags: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "-m", "alarm.cli", "serve", "--preset", PRESET, "--port", str(self.port), *flags]
        self.process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.process.stderr.read()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)

    def stop(self) -> str:
        """SIGTERM; uvicorn re-raises the signal after its graceful exit: the status is -SIGTERM."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) in (0, -signal.SIGTERM)
        return self.process.stderr.read()


@pytest.fixture(scope="module")
def server():
    srv = Server("--thinking-budget", "6", "--max-new-tokens", "2048", "--max-seconds", "5", "--max-request-mb", "1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_openai_client_plain(client):
    reply = client.chat.completions.create(
        model=PRESET,
        messages=[{"role": "user", "content": [_audio(), {"type": "text", "text": QUESTION}]}],
        max_tokens=16,
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.message.reasoning_content is not None  # reasoning comes as vLLM's extra field
    assert choice.finish_reason in ("stop", "length") and reply.usage.completion_tokens > 0


def test_openai_client_streamed_equals_plain_and_multi_turn(client):
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hello."},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": [_audio(_wav(freq=330.0)), {"type": "text", "text": QUESTION}]},
    ]
    settings = {"model": PRESET, "messages": messages, "max_tokens": 20, "extra_body": {"thinking_budget": 4}}
    plain = client.chat.completions.create(**settings)
    chunks = list(client.chat.completions.create(**settings, stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    message = plain.choices[0].message
    assert (reasoning.strip(), content.strip()) == (message.reasoning_content, message.content)
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_openai_client_multi_clip(client):
    content = [_audio(_wav(freq=300.0)), {"type": "text", "text": "and"}, _audio(_wav(freq=600.0)),
               {"type": "text", "text": "Which is higher?"}]  # fmt: skip
    ask = client.chat.completions.create
    reply = ask(model=PRESET, messages=[{"role": "user", "content": content}], max_tokens=8)
    assert reply.choices[0].message.content is not None
    single = ask(model=PRESET, messages=[{"role": "user", "content": content[:2]}], max_tokens=8)
    assert reply.usage.prompt_tokens > single.usage.prompt_tokens  # the second clip is in the prompt


def test_a_client_that_disconnects_mid_stream_frees_its_row(server):
    body = {"messages": [{"role": "user", "content": [_audio(), {"type": "text", "text": QUESTION}]}],
            "max_tokens": 2000, "stream": True}  # fmt: skip
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as reply:
        lines = reply.iter_lines()
        assert [next(lines) for _ in range(3)]  # the first events arrived; now the client goes away
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{server.url}/metrics").text
        if 'alarm_requests_total{status="499"} 1' in metrics and "alarm_requests_in_flight 0" in metrics:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the disconnected request is still in flight:\n{metrics}")
    assert httpx.post(f"{server.url}/v1/chat/completions", json=_good(), timeout=60).status_code == 200


def _user(*parts) -> dict:
    return {"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": QUESTION}]}]}


def _good() -> dict:
    return {"model": PRESET, **_user(_audio()), "max_tokens": 8}


def _with(**fields) -> dict:
    return {**_good(), **fields}


def _turns(*messages) -> dict:
    """The good request with ``messages`` before its question."""
    return _with(messages=[*messages, *_good()["messages"]])


def _audio_fields(**fields) -> dict:
    return _user({"type": "input_audio", "input_audio": fields})


def _url(url: str) -> dict:
    return _user({"type": "audio_url", "audio_url": {"url": url}})


NAN_BODY = b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}'


# (name, method, path, body: dict -> json, bytes -> raw, headers)
BAD_REQUESTS = [
    ("messages not a list", "POST", None, _with(messages="hello"), None),
    ("messages empty", "POST", None, _with(messages=[]), None),
    ("message not an object", "POST", None, _with(messages=[42]), None),
    ("unknown role", "POST", None, _turns({"role": "tool", "content": "x"}), None),
    ("role missing", "POST", None, _with(messages=[{"content": "x"}]), None),
    ("content a number", "POST", None, _with(messages=[{"role": "user", "content": 5}]), None),
    ("part type unknown", "POST", None, _user({"type": "image_url", "image_url": {"url": "data:,"}}), None),
    ("input_audio a string", "POST", None, _user({"type": "input_audio", "input_audio": "UklGRg=="}), None),
    ("audio data a number", "POST", None, _audio_fields(data=5, format="wav"), None),
    ("audio data empty", "POST", None, _audio_fields(data="", format="wav"), None),
    ("bad base64", "POST", None, _audio_fields(data="%%%not base64", format="wav"), None),
    ("non-audio bytes", "POST", None, _user(_audio(b"this is plain text, not a sound file at all")), None),
    ("unknown format", "POST", None, _user(_audio(fmt="xyz")), None),
    ("format mismatch", "POST", None, _user(_audio(_wav(fmt="FLAC"), fmt="wav")), None),
    ("format missing", "POST", None, _audio_fields(data=_b64(_wav())), None),
    ("file:// url", "POST", None, _url("file:///etc/passwd"), None),
    ("http:// url", "POST", None, _url("http://127.0.0.1/a.wav"), None),
    ("relative path url", "POST", None, _url("../clips/a.wav"), None),
    ("audio in an assistant turn", "POST", None, _turns({"role": "assistant", "content": [_audio()]}), None),
    ("clips too long in all", "POST", None, _user(*[_audio(_wav(seconds=2.0))] * 3), None),
    ("audio too long", "POST", None, _user(_audio(_wav(seconds=6.0))), None),
    ("last message not the user's", "POST", None, _with(messages=[*_good()["messages"], {"role": "assistant"}]), None),
    ("null byte in text", "POST", None, _user(_audio(), {"type": "text", "text": "a\x00b"}), None),
    ("max_tokens a string", "POST", None, _with(max_tokens="8"), None),
    ("max_tokens huge", "POST", None, _with(max_tokens=10**30), None),
    ("max_tokens negative", "POST", None, _with(max_tokens=-1), None),
    ("temperature NaN", "POST", None, NAN_BODY, None),
    ("temperature Infinity", "POST", None, NAN_BODY.replace(b"NaN", b"Infinity"), None),
    ("temperature too high", "POST", None, _with(temperature=9.5), None),
    ("top_p a bool", "POST", None, _with(top_p=True), None),
    ("seed a float", "POST", None, _with(seed=1.5), None),
    ("thinking_budget below -1", "POST", None, _with(thinking_budget=-7), None),
    ("n = 2", "POST", None, _with(n=2), None),
    ("stream a string", "POST", None, _with(stream="yes"), None),
    ("unknown field", "POST", None, _with(frobnicate=True), None),
    ("wrong model", "POST", None, _with(model="gpt-4o"), None),
    ("body not JSON", "POST", None, b"{not json", None),
    ("body a JSON list", "POST", None, b"[1, 2, 3]", None),
    ("body not UTF-8", "POST", None, b'{"messages": "\xff\xfe"}', None),
    ("body too large", "POST", None, b'{"messages": "' + b"a" * (2 * 2**20) + b'"}', None),
    ("wrong content type", "POST", None, json.dumps(_good()).encode(), {"content-type": "text/plain"}),
    ("wrong method", "GET", None, None, None),
    ("unknown path", "POST", "/v1/completions", _good(), None),
]  # fmt: skip


def test_bad_requests_get_4xx_and_the_server_still_answers(server):
    assert len(BAD_REQUESTS) >= 30
    answers = {}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for name, method, path, body, headers in BAD_REQUESTS:
            kwargs = {"json": body} if isinstance(body, (dict, list)) else {"content": body}
            if isinstance(body, bytes) and headers is None:
                headers = {"content-type": "application/json"}
            reply = http.request(method, path or "/v1/chat/completions", headers=headers, **kwargs)
            error = reply.json().get("error", {}) if reply.headers.get("content-type") == "application/json" else {}
            answers[name] = (reply.status_code, error.get("message"))
        good = http.post("/v1/chat/completions", json=_good())
    wrong = {name: got for name, got in answers.items() if not 400 <= got[0] < 500 or not got[1]}
    assert not wrong, wrong  # every one a 4xx with an OpenAI-shaped error message
    assert good.status_code == 200, good.text
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'alarm_requests_total{status="400"}' in metrics and "alarm_batch_size_count" in metrics


def test_drain_on_sigterm_finishes_in_flight_and_refuses_new():
    server = Server("--thinking-budget", "4", "--max-new-tokens", "2048")
    events: list[str] = []

    def long_stream() -> None:
        body = {**_good(), "max_tokens": 1500, "stream": True}
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as reply:
            for line in reply.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])

    worker = threading.Thread(target=long_stream)
    worker.start()
    deadline = time.monotonic() + 60
    while len(events) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = httpx.post(f"{server.url}/v1/chat/completions", json=_good(), timeout=30)
    worker.join(timeout=120)
    log = server.stop()
    assert refused.status_code == 503 and refused.headers["retry-after"], refused.text
    assert events[-1] == "[DONE]" and json.loads(events[-2])["choices"][0]["finish_reason"] in ("stop", "length")
    assert "draining" in log and "Finished server process" in log
    access = [json.loads(line.split("alarm.serving.access: ", 1)[1]) for line in log.splitlines()
              if "alarm.serving.access: " in line]  # fmt: skip
    assert sorted(a["status"] for a in access) == [200, 503]  # one structured line per request
    answered = next(a for a in access if a["status"] == 200)
    assert answered["completion_tokens"] > 0 and answered["ttft_s"] <= answered["latency_s"]


def _chromium() -> tuple[str, str]:
    import shutil

    pytest.importorskip("selenium", reason="the playground test drives Chromium with selenium (dev extra)")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("headless Chromium is needed: apt-get install -y chromium chromium-driver")
    return browser, driver


def playground_session(url: str, clip_path: str, budget: int = 0, question: str | None = None, timeout: float = 120.0):
    """Open the playground in headless Chromium, upload ``clip_path``, ask, and wait for the end of the stream.

    Returns the browser (the caller quits it) and the texts of the reasoning, answer and status boxes.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,900"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        chrome.get(url)
        chrome.find_element(By.ID, "file").send_keys(clip_path)
        WebDriverWait(chrome, 30).until(lambda c: "KiB" in c.find_element(By.ID, "clip-info").text)
        for box, value in (("budget", str(budget)), ("question", question)):
            if value is not None:
                chrome.find_element(By.ID, box).clear()
                chrome.find_element(By.ID, box).send_keys(value)
        chrome.find_element(By.ID, "ask").click()
        WebDriverWait(chrome, timeout).until(lambda c: c.find_element(By.ID, "answer").get_attribute("data-done"))
        texts = {box: chrome.find_element(By.ID, box).text for box in ("reasoning", "answer", "status")}
    except BaseException:
        chrome.quit()
        raise
    return chrome, texts


def test_playground_streams_an_answer_in_headless_chromium(server, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(_wav())
    chrome, texts = playground_session(server.url, str(clip))
    chrome.quit()
    # budget 0: the reasoning is the budget's closing sentence; the tiny random RLM then writes the answer
    assert texts["reasoning"].startswith("Time is up for thinking")
    assert texts["answer"] and texts["status"] == "done", texts
