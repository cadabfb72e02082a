"""`alarm serve`: OpenAI chat completions with audio, answers equal to the library's, errors in OpenAI's shape."""

import base64
import io
import json
import threading
import time

import pytest
import soundfile as sf
import torch

pytest.importorskip("fastapi", reason="the server is optional: pip install 'alarm[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from alarm.audio import load_audio  # noqa: E402
from alarm.generation import GenerationConfig, answer, answer_chat  # noqa: E402
from alarm.presets import build_model  # noqa: E402
from alarm.serving import EngineConfig, ServedModel, ServerLimits, create_app  # noqa: E402
from alarm.serving.protocol import ChatQuery  # noqa: E402
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


def _query() -> ChatQuery:
    return ChatQuery([{"role": "user", "content": [load_audio(_wav()), QUESTION]}], GenerationConfig(max_new_tokens=8))


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


def test_several_clips_and_audio_in_earlier_turns_are_spliced_where_they_stand(client, model):
    clips = [_wav(freq=f) for f in (300.0, 500.0, 700.0)]
    text = lambda t: {"type": "text", "text": t}  # noqa: E731
    messages = [
        {"role": "user", "content": [text("Remember this one."), _audio_part(clips[0])]},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": [text("First:"), _audio_part(clips[1]), text("Second:"), _audio_part(clips[2]),
                                     text("Which is higher?")]},
    ]  # fmt: skip
    reply = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 16})
    assert reply.status_code == 200, reply.text
    w = [load_audio(c) for c in clips]
    decoded = [
        {"role": "user", "content": ["Remember this one.", w[0]]},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": ["First:", w[1], "Second:", w[2], "Which is higher?"]},
    ]
    (expected,) = answer_chat(model, [decoded], GenerationConfig(max_new_tokens=16, thinking_budget=8))
    message = reply.json()["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == (expected.reasoning, expected.answer)
    assert reply.json()["usage"]["completion_tokens"] == len(expected.token_ids)


def test_a_full_queue_answers_429_with_retry_after(model):
    app = create_app(ServedModel(model, PRESET, ServerLimits(max_new_tokens=8)), engine=EngineConfig(max_queue=1))
    engine, release = app.state.engine, threading.Event()
    engine.submit(_query(), lambda event: release.wait(60))  # holds the model thread at its first token
    while engine.queue_depth:
        time.sleep(0.01)
    engine.submit(_query(), lambda event: None)  # the one place in the queue
    try:
        reply = TestClient(app).post("/v1/chat/completions", json=_body())
        assert reply.status_code == 429 and reply.headers["retry-after"] == "1"
        assert reply.json()["error"]["type"] == "rate_limit_error"
    finally:
        release.set()
        engine.stop(timeout=60)


def test_metrics_count_requests_batches_and_first_tokens(client):
    client.post("/v1/chat/completions", json=_body())
    text = client.get("/metrics").text
    assert 'alarm_requests_total{status="200"}' in text
    for name in ("alarm_queue_depth", "alarm_batch_size_count", "alarm_time_to_first_token_seconds_count",
                 "alarm_request_tokens_per_second_count", "alarm_completion_tokens_total"):  # fmt: skip
        assert f"\n{name}" in text, name


def test_playground_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/chat/completions" in page.text


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


def _content(*parts) -> dict:
    return {"messages": [{"role": "user", "content": list(parts)}]}


@pytest.mark.parametrize(
    "change,status,message",
    [
        (lambda b: {**b, "model": "gpt-4o"}, 404, "not served here"),
        (lambda b: {**b, "n": 2}, 400, "n: Input should be 1"),
        (lambda b: {**b, "messages": []}, 400, "messages: List should have at least 1 item"),
        (lambda b: {**b, "max_tokens": 0}, 400, "max_tokens: Input should be greater than or equal to 1"),
        (lambda b: {**b, "temperature": 5}, 400, "temperature: Input should be less than or equal to 2"),
        (lambda b: {**b, "thinking_budget": -2}, 400, "thinking_budget: Input should be greater than or equal to -1"),
        (lambda b: _body(b"not audio at all"), 400, "messages[0].content[0]"),
        (lambda b: {**b, **_content({"type": "input_audio", "input_audio": "UklGRg=="})}, 400,
         "messages[0].content[0].input_audio: Input should be a valid dictionary"),
        (lambda b: {**b, **_content({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "xyz"}})},
         400, "messages[0].content[0].input_audio.format: Value error, unknown audio format 'xyz'"),
        (lambda b: {**b, **_content({"type": "input_audio", "input_audio": {**_audio_part(_wav())["input_audio"],
                                                                           "format": "flac"}})},
         400, "format is 'flac' but the data is WAV"),
        (lambda b: _body(_wav(seconds=6.0)), 400, "messages[0].content[0]"),
        (lambda b: {**b, **_content(_audio_part(_wav(seconds=3.0)), _audio_part(_wav(seconds=3.0)))}, 400,
         "6.0 s of audio in all, over the limit of 5 s"),
        (lambda b: {**b, **_content({"type": "audio_url", "audio_url": {"url": "https://x/a.wav"}})}, 400,
         "messages[0].content[0].audio_url.url: Value error, only data: URLs"),
        (lambda b: {**b, "messages": [*b["messages"], {"role": "assistant", "content": "x"}]}, 400, "last message"),
        (lambda b: {**b, "messages": [{"role": "assistant", "content": [_audio_part(_wav())]}, *b["messages"]]}, 400,
         "messages[0].content"),
        (lambda b: {**b, "messages": [{"role": "tool", "content": "a"}, *b["messages"]]}, 400,
         "messages[0]: Input tag 'tool' found using 'role' does not match"),
    ],
)  # fmt: skip
def test_bad_requests_get_openai_errors(client, change, status, message):
    reply = client.post("/v1/chat/completions", json=change(_body()))
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert message in error["message"] and error["code"] == status and error["type"], error


def test_malformed_and_oversized_bodies(client):
    reply = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "not JSON" in reply.json()["error"]["message"], reply.text
    big = _body(_wav(seconds=40.0))  # ~1.7 MB of base64 > the 1 MiB limit of this app
    reply = client.post("/v1/chat/completions", json=big)
    assert reply.status_code == 413 and reply.json()["error"]["type"] == "request_too_large"
