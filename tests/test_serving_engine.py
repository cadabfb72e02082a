"""The batched serving engine: greedy answers equal alone and in any batch, streamed rows, cancel, queue limits."""

import queue
import threading

import pytest
import torch

from alarm.audio import Waveform
from alarm.generation import GenerationConfig, answer_chat, as_conversation
from alarm.presets import build_model
from alarm.serving.engine import BatchEngine, Done, EngineConfig, EngineStopped, QueueFull, Tokens
from alarm.serving.protocol import ChatQuery
from tests.conftest import tone

torch.set_num_threads(1)

CONFIG = GenerationConfig(max_new_tokens=24, thinking_budget=8)


@pytest.fixture(scope="module")
def lively():
    """A tiny model whose greedy outputs vary and end at different steps.

    The preset's random RLM repeats one token; larger random weights make each prompt take
    its own path, and an end-of-turn token the model often writes (``K``) ends rows at
    different steps: some inside the budget's first pass, others after the closing sentence.
    """
    torch.manual_seed(0)  # the trainable audio path starts random
    model = build_model("tiny-al-whisper-r").eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.language_model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    model.tokenizer.eos_token = "K"
    return model


def _queries(n: int = 6) -> list[ChatQuery]:
    out = []
    for i in range(n):
        wave = Waveform(tone(0.4 + 0.25 * i, 16_000, 200 + 130 * i), 16_000)
        context = [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": "Hi."}] if i % 3 == 2 else []
        system = "Answer briefly." if i % 2 else None
        clips = [wave] if i != 3 else [wave, Waveform(tone(0.3, 16_000, 900), 16_000)]  # two clips in one turn
        messages = as_conversation(clips, f"Q{i}: what is it?" + " more" * i, system=system, context=context)
        out.append(ChatQuery(messages, CONFIG))
    return out


def _alone(model, q: ChatQuery):
    (out,) = answer_chat(model, [q.messages], q.config)
    return out


class _Collector:
    """A job's events, collected from the model thread."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.done: queue.Queue[Done] = queue.Queue()

    def __call__(self, event) -> None:
        if isinstance(event, Tokens):
            self.tokens += event.ids
        elif isinstance(event, Done):
            self.done.put(event)
        else:
            raise AssertionError(f"unexpected event {event!r}")


def _run(model, queries, config: EngineConfig) -> tuple[list[_Collector], list[int]]:
    sizes: list[int] = []
    engine = BatchEngine(model, config, on_batch=sizes.append)
    sinks = [_Collector() for _ in queries]
    for q, sink in zip(queries, sinks):
        engine.submit(q, sink)  # all queued before the scheduler starts: batches are deterministic
    engine.start()
    for sink in sinks:
        sink.result = sink.done.get(timeout=120)
    engine.stop(timeout=10)
    return sinks, sizes


@pytest.mark.parametrize("max_batch_size,expected_batches", [(6, [6]), (4, [4, 2]), (1, [1] * 6)])
def test_greedy_answers_equal_alone_and_in_any_batch(lively, max_batch_size, expected_batches):
    queries = _queries()
    alone = [_alone(lively, q) for q in queries]
    # the case this test is about: rows end at different steps, in the first pass and after the closing
    assert len({len(o.token_ids) for o in alone}) > 2
    assert any(o.finished and not o.budget_reached for o in alone) and any(o.budget_reached for o in alone)
    sinks, sizes = _run(lively, queries, EngineConfig(max_batch_size=max_batch_size, max_wait_s=0.0))
    assert sizes == expected_batches
    for i, (q, sink, expected) in enumerate(zip(queries, sinks, alone)):
        assert sink.result.output == expected, q.prompt
        assert sink.tokens == expected.token_ids  # each row streamed, the closing sentence included
        assert sink.result.batch_size == expected_batches[i // max_batch_size]


def test_requests_with_other_settings_go_to_other_batches(lively):
    queries = _queries(4)
    queries[1].config = GenerationConfig(max_new_tokens=10, thinking_budget=-1)
    queries[2].config = queries[3].config = GenerationConfig(max_new_tokens=12, thinking_budget=0)  # closing first
    sinks, sizes = _run(lively, queries, EngineConfig(max_batch_size=8, max_wait_s=0.0))
    assert sorted(sizes) == [1, 1, 2]
    for q, sink in zip(queries, sinks):
        assert sink.result.output == _alone(lively, q) and sink.tokens == sink.result.output.token_ids


def test_a_cancelled_row_stops_and_the_others_are_unchanged(lively):
    queries = _queries(3)
    alone = [_alone(lively, q) for q in queries]
    engine = BatchEngine(lively, EngineConfig(max_batch_size=3, max_wait_s=0.0))
    sinks = [_Collector() for _ in queries]
    jobs = [engine.submit(q, sink) for q, sink in zip(queries, sinks)]

    def cancel_after_first(event, sink=sinks[1]):  # the client of row 1 goes away after one token
        sink(event)
        jobs[1].cancel()

    jobs[1].deliver = cancel_after_first
    engine.start()
    results = [sink.done.get(timeout=120) for sink in sinks]
    engine.stop(timeout=10)
    assert len(sinks[1].tokens) == 1 and len(results[1].output.token_ids) < len(alone[1].token_ids)
    assert [results[0].output, results[2].output] == [alone[0], alone[2]]


def test_cancelled_before_its_turn_is_dropped(lively):
    engine = BatchEngine(lively, EngineConfig(max_wait_s=0.0))
    sinks = [_Collector(), _Collector()]
    first = engine.submit(_queries(1)[0], sinks[0])
    engine.submit(_queries(1)[0], sinks[1])
    first.cancel()
    engine.start()
    sinks[1].done.get(timeout=120)
    engine.stop(timeout=10)
    assert sinks[0].done.empty() and not sinks[0].tokens


def test_the_queue_is_bounded_and_a_stopped_engine_refuses(lively):
    engine = BatchEngine(lively, EngineConfig(max_queue=2))
    engine.submit(_queries(1)[0], lambda e: None)
    engine.submit(_queries(1)[0], lambda e: None)
    with pytest.raises(QueueFull):
        engine.submit(_queries(1)[0], lambda e: None)
    assert engine.queue_depth == 2
    engine.start()
    engine.stop(timeout=60)  # the queued requests are answered first
    assert engine.queue_depth == 0
    with pytest.raises(EngineStopped):
        engine.submit(_queries(1)[0], lambda e: None)


def test_a_failing_request_fails_alone(lively):
    bad = _queries(2)
    bad[0].messages = [{"role": "user", "content": [None]}]  # its inputs cannot be prepared
    events: list = []
    done = threading.Event()
    engine = BatchEngine(lively, EngineConfig(max_wait_s=0.0)).start()
    engine.submit(bad[0], lambda e: (events.append(e), done.set()))
    ok = _Collector()
    engine.submit(bad[1], ok)
    assert done.wait(60) and type(events[0]).__name__ == "Failed"
    assert ok.done.get(timeout=120).output == _alone(lively, bad[1])
    engine.stop(timeout=10)
