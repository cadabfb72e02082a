"""`alarm serve`: OpenAI chat completions with audio, answers equal to the library's, errors in OpenAI's shape."""

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import soundfile as sf
import torch

pytest.importorskip("fastapi", reason="the server is optional: pip install 'alarm[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from alarm.audio import load_audio  # noqa: E402
from alarm.generation import GenerationConfig, answer  # noqa: E402
from alarm.presets import build_model  # noqa: E402
from alarm.serving import ServedModel, ServerLimits, create_app  # noqa: E402
from tests.conftest import tone  # noqa: E402

torch.set_num_threads(1)

PRESET = "tiny-al-whisper-r"
QUESTION = "What do you hear?"


def _wav(seconds: float = 1.0, rate: int = 16_000, freq: float = 440.0) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds, rate, freq), rate, format="WAV")
    return buffer.getvalue()


def _audio_part(data: bytes) -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": "wav"}}


def _body(data: bytes | None = None, **extra) -> dict:
    content = [_audio_part(data if data is not None else _wav()), {"type": "text", "text": QUESTION}]
    return {"model": PRESET, "messages": [{"role": "user", "content": content}], "max_tokens": 24, **extra}


@pytest.fixture(scope="module")
def model():
    return build_model(PRESET).eval()


@pytest.fixture(scope="module")
def client(model):
    limits = ServerLimits(max_new_tokens=64, thinking_budget=8, max_audio_seconds=5.0)
    return TestClient(create_app(ServedModel(model, PRESET, limits), max_request_bytes=2**20))


def test_answer_equals_the_library_answer(client, model):
    wav = _wav(freq=660.0)
    reply = client.post("/v1/chat/completions", json=_body(wav, thinking_budget=6))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    (expected,) = answer(model, [load_audio(wav)], [QUESTION], GenerationConfig(max_new_tokens=24, thinking_budget=6))
    message = body["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == (expected.reasoning, expected.answer)
    assert body["choices"][0]["finish_reason"] == ("stop" if expected.finished else "length")
    assert body["object"] == "chat.completion" and body["model"] == PRESET
    usage = body["usage"]
    assert usage["completion_tokens"] == len(expected.token_ids)
    assert usage["completion_tokens_details"]["reasoning_tokens"] == expected.num_reasoning_tokens <= 6 + 32
    assert usage["prompt_tokens"] > int(model.audio_token_counts({16_000: torch.tensor([16_000])})[0])


def test_data_url_audio_and_system_and_earlier_turns(client, model):
    wav = _wav(freq=330.0)
    url = "data:audio/wav;base64," + base64.b64encode(wav).decode()
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hello."},
        {"role": "assistant", "content": "Hi."},
        {
            "role": "user",
            "content": [{"type": "text", "text": QUESTION}, {"type": "audio_url", "audio_url": {"url": url}}],
        },
    ]
    reply = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 16})
    assert reply.status_code == 200, reply.text
    context = [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": "Hi."}]
    (expected,) = answer(
        model,
        [load_audio(wav)],
        [QUESTION],
        GenerationConfig(max_new_tokens=16, thinking_budget=8),
        system="Answer briefly.",
        context=context,
    )
    assert reply.json()["choices"][0]["message"]["content"] == expected.answer


def test_streamed_deltas_add_up_to_the_plain_answer(client):
    plain = client.post("/v1/chat/completions", json=_body()).json()["choices"][0]
    with client.stream("POST", "/v1/chat/completions", json=_body(stream=True)) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: ") :] for line in reply.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content", "") for d in deltas)
    assert (reasoning.strip(), content.strip()) == (plain["message"]["reasoning_content"], plain["message"]["content"])
    first_content = next((i for i, d in enumerate(deltas) if d.get("content")), len(deltas))
    assert all("reasoning_content" not in d for d in deltas[first_content:])  # reasoning comes first
    assert chunks[-1]["choices"][0]["finish_reason"] == plain["finish_reason"]


def test_seeded_sampling_repeats(client):
    runs = [
        client.post("/v1/chat/completions", json=_body(temperature=1.0, seed=7)).json()["choices"][0]["message"]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_models_and_health(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == [PRESET]


@pytest.mark.parametrize(
    "change,status,message",
    [
        (lambda b: {**b, "model": "gpt-4o"}, 404, "not served here"),
        (lambda b: {**b, "n": 2}, 400, "n must be"),
        (lambda b: {**b, "messages": []}, 400, "non-empty list"),
        (lambda b: {**b, "max_tokens": 0}, 400, "max_tokens must be an integer"),
        (lambda b: {**b, "temperature": 5}, 400, "temperature must be a number"),
        (lambda b: {**b, "thinking_budget": -2}, 400, "thinking_budget must be an integer"),
        (lambda b: _body(b"not audio at all"), 400, "messages[0].content[0]"),
        (lambda b: _body(b""), 400, "no base64 audio data"),
        (lambda b: _body(_wav(seconds=6.0)), 400, "messages[0].content[0]"),
        (lambda b: {**b, "messages": [{"role": "user", "content": "no audio"}]}, 400, "exactly one audio part"),
        (
            lambda b: {**b, "messages": [{"role": "user", "content": [_audio_part(_wav()), _audio_part(_wav())]}]},
            400,
            "exactly one audio part",
        ),
        (
            lambda b: {
                **b,
                "messages": [
                    {"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "https://x/a.wav"}}]}
                ],
            },
            400,
            "only data: URLs",
        ),
        (lambda b: {**b, "messages": [*b["messages"], {"role": "assistant", "content": "x"}]}, 400, "last user"),
        (
            lambda b: {**b, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            400,
            "the last message must be the user's question",
        ),
        (lambda b: {**b, "messages": [{"role": "tool", "content": "a"}, *b["messages"]]}, 400, "not supported"),
    ],
)
def test_bad_requests_get_openai_errors(client, change, status, message):
    reply = client.post("/v1/chat/completions", json=change(_body()))
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert message in error["message"] and error["code"] == status and error["type"]


def test_malformed_and_oversized_bodies(client):
    reply = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "not JSON" in reply.json()["error"]["message"]
    big = _body(_wav(seconds=40.0))  # ~1.7 MB of base64 > the 1 MiB limit of this app
    reply = client.post("/v1/chat/completions", json=big)
    assert reply.status_code == 413 and reply.json()["error"]["type"] == "request_too_large"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_alarm_serve_answers_over_http_and_stops_on_sigterm():
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "alarm.cli", "serve", "--preset", PRESET, "--port", str(port)]
    server = subprocess.Popen([*command, "--log-level", "info"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.5)
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=_body(), timeout=60)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["role"] == "assistant"
    finally:
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: the exit status is -SIGTERM.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Finished server process" in server.stderr.read()
