"""Thinking-budget generation: scripted RLM for exact control, and the tiny real model."""

import pytest
import torch
from torch import nn

from alarm.generation import GenerationConfig, answer, generate, split_reasoning, stream
from alarm.modeling.tokenizer import load_tokenizer, token_id
from alarm.presets import build_model
from tests.helpers import chirp_wave

torch.set_num_threads(1)


class ScriptedLM(nn.Module):
    """Answers each generate() call with the next scripted texts; records what it was given."""

    def __init__(self, tokenizer, passes: list[list[str]]) -> None:
        super().__init__()
        self.tokenizer, self.passes, self.calls = tokenizer, list(passes), []
        self.embed = nn.Embedding(len(tokenizer) + 8, 4)

    def get_input_embeddings(self):
        return self.embed

    def generate(self, inputs_embeds, attention_mask, max_new_tokens, pad_token_id, streamer=None, **_):
        self.calls.append({"embeds": inputs_embeds, "mask": attention_mask, "max_new_tokens": max_new_tokens})
        rows = [self.tokenizer(t, add_special_tokens=False).input_ids[:max_new_tokens] for t in self.passes.pop(0)]
        width = max(len(r) for r in rows)
        out = torch.tensor([r + [pad_token_id] * (width - len(r)) for r in rows])
        if streamer is not None:
            streamer.put(torch.empty(1, 0, dtype=torch.long))
            for col in out.T:
                streamer.put(col)
        return out


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny")


def test_budget_closes_reasoning_and_continues(tok):
    eos = tok.eos_token
    lm = ScriptedLM(
        tok,
        [
            ["ok</think>\n\nA" + eos, "thinking and thinking"],  # pass 1: sample 0 done, sample 1 hits B
            ["The answer is B." + eos],  # pass 2: only sample 1 continues
        ],
    )
    embeds, mask = torch.randn(2, 5, 4), torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    budget = len(tok("thinking and thinking", add_special_tokens=False).input_ids)
    out = generate(lm, tok, embeds, mask, GenerationConfig(max_new_tokens=200, thinking_budget=budget))
    assert out[0].answer == "A" and out[0].finished and not out[0].budget_reached
    assert out[1].budget_reached and out[1].finished
    assert out[1].num_reasoning_tokens == budget
    assert "</think>" in out[1].text and out[1].answer == "The answer is B."
    assert out[1].reasoning.startswith("thinking and thinking") and "Time is up" in out[1].reasoning
    # pass 2 saw only sample 1: its 5 prompt positions + what it wrote + the closing sentence
    closing = tok(GenerationConfig().closing_text + "</think>", add_special_tokens=False).input_ids
    assert lm.calls[1]["embeds"].shape[:2] == (1, 5 + budget + len(closing))
    assert lm.calls[1]["max_new_tokens"] == 200 - budget


def test_answer_after_think_in_first_pass_is_continued_not_closed(tok):
    lm = ScriptedLM(tok, [["ab</think>\n\nstart"], ["ed" + tok.eos_token]])
    out = generate(
        lm,
        tok,
        torch.randn(1, 3, 4),
        torch.ones(1, 3, dtype=torch.long),
        GenerationConfig(
            max_new_tokens=50, thinking_budget=len(tok("ab</think>\n\nstart", add_special_tokens=False).input_ids)
        ),
    )
    assert not out[0].budget_reached and out[0].answer == "started" and out[0].num_reasoning_tokens == 2


def test_unlimited_budget_is_one_pass(tok):
    lm = ScriptedLM(tok, [["long reasoning</think>\n\nX" + tok.eos_token]])
    out = generate(
        lm, tok, torch.randn(1, 3, 4), torch.ones(1, 3, dtype=torch.long), GenerationConfig(thinking_budget=-1)
    )
    assert len(lm.calls) == 1 and out[0].answer == "X"


def test_split_reasoning():
    assert split_reasoning("<think>\nhmm</think>\n\nYes") == ("hmm", "Yes")
    assert split_reasoning("unfinished thoughts") == ("unfinished thoughts", "")


def _stubborn(model):
    """Zero the final norm: all logits tie, greedy picks token 0 forever (never </think>)."""
    with torch.no_grad():
        model.language_model.model.norm.weight.zero_()
    return model


@pytest.mark.parametrize("budget", [0, 7])
def test_budget_on_tiny_model(budget):
    model = _stubborn(build_model("tiny-al-whisper-instruct-r"))
    outs = answer(
        model,
        [chirp_wave(1.0), chirp_wave(2.5)],
        ["What is this?", "Describe."],
        GenerationConfig(max_new_tokens=40, thinking_budget=budget),
    )
    think_end = token_id(model.tokenizer, "</think>")
    for out in outs:
        assert out.num_reasoning_tokens <= budget and out.budget_reached
        assert "</think>" in out.text and out.answer != ""
        assert out.token_ids.count(think_end) == 1


def test_stream_yields_the_same_text_as_batch_generation():
    model = build_model("tiny-alarm-e")
    config = GenerationConfig(max_new_tokens=24, thinking_budget=6)
    wave = chirp_wave(1.5)
    streamed = "".join(stream(model, wave, "What do you hear?", config))
    (batched,) = answer(model, [wave], ["What do you hear?"], config)
    assert streamed == batched.text


def test_non_thinking_model_without_budget_answers_plainly():
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    plain = Qwen2Tokenizer(
        vocab={s: i for i, s in enumerate(sorted(ByteLevel.alphabet()))},
        merges=[],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    lm = ScriptedLM(plain, [["A plain answer." + plain.eos_token]])
    (out,) = generate(lm, plain, torch.randn(1, 3, 4), torch.ones(1, 3, dtype=torch.long), GenerationConfig())
    assert out.answer == "A plain answer." and out.reasoning == "" and out.num_reasoning_tokens == 0
    # With a budget: nothing to cut (no thinking mode), so one pass of the whole max_new_tokens,
    # no closing sentence, no </think>, and no reasoning tokens counted.
    lm = ScriptedLM(plain, [["A much longer plain answer than eight tokens." + plain.eos_token]])
    config = GenerationConfig(thinking_budget=8, max_new_tokens=100)
    (out,) = generate(lm, plain, torch.randn(1, 3, 4), torch.ones(1, 3, dtype=torch.long), config)
    assert [c["max_new_tokens"] for c in lm.calls] == [100]
    assert out.answer == "A much longer plain answer than eight tokens." and out.finished
    assert out.num_reasoning_tokens == 0 and not out.budget_reached and "</think>" not in out.text
