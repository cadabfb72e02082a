"""Thinking-budget generation: scripted RLM for exact control, and the tiny real model."""

import pytest
import torch
from torch import nn

from alarm.chat import build_example, collate
from alarm.generation import (
    GenerationConfig,
    answer,
    answer_chat,
    build_inputs,
    embed,
    generate,
    prepare_inputs,
    split_reasoning,
    stream,
    stream_chat,
)
from alarm.modeling.inputs import AudioBatch
from alarm.modeling.model import splice_audio
from alarm.modeling.tokenizer import load_tokenizer, token_id
from alarm.presets import build_model
from tests.helpers import chirp_wave, noise_wave

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


# -- several clips per request, audio in earlier turns ------------------------------------------

_MODELS: dict[str, object] = {}


def _model(name: str):
    if name not in _MODELS:
        _MODELS[name] = build_model(name).eval()
    return _MODELS[name]


def _runs(ids: torch.Tensor, audio_id: int) -> list[tuple[int, int]]:
    """(start, length) of each run of audio placeholders in one row of ids."""
    runs, start = [], None
    for i, is_audio in enumerate((ids == audio_id).tolist() + [False]):
        if is_audio and start is None:
            start = i
        elif not is_audio and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def _alone(model, wave) -> torch.Tensor:
    """One clip's audio positions (boundaries included) computed on its own."""
    with torch.no_grad():
        audio, valid = model.audio_embeddings(AudioBatch.from_waveforms([wave], model.sample_rates))
    return audio[valid]


@pytest.mark.parametrize("name", ["tiny-al-whisper-r", "tiny-alarm-e"])
def test_single_clip_prompt_is_unchanged(name):
    """The old path (model.user_parts + build_example) gives the very same ids and embeddings."""
    model = _model(name)
    waves, prompts = [chirp_wave(1.0), noise_wave(2.3)], ["What is this?", "Describe it."]
    context = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    audio = AudioBatch.from_waveforms(waves, model.sample_rates)
    examples = [
        build_example(model.tokenizer, model.user_parts(p, slots), system="Be brief.", context=context)
        for p, slots in zip(prompts, model.audio_slots(audio.lengths))
    ]
    old = collate(examples, int(model.tokenizer.pad_token_id), padding_side="left")
    with torch.no_grad():
        old_embeds = model.embed_inputs(old.input_ids, audio)
    conversations = [
        [{"role": "system", "content": "Be brief."}, *context, {"role": "user", "content": [w, p]}]
        for w, p in zip(waves, prompts)
    ]
    new = build_inputs(model, conversations)
    assert torch.equal(new.input_ids, old.input_ids) and torch.equal(new.attention_mask, old.attention_mask)
    assert new.clips_per_prompt == [1, 1]
    embeds, mask = prepare_inputs(model, waves, prompts, system="Be brief.", context=context)
    assert torch.equal(embeds, old_embeds) and torch.equal(mask, old.attention_mask)


def test_two_clips_in_one_message_are_spliced_where_they_stand():
    model = _model("tiny-al-whisper-r")
    a, b, c = chirp_wave(1.0), noise_wave(2.0, seed=1), noise_wave(0.6, seed=2)
    b_part = {"type": "input_audio", "input_audio": b}
    two = [{"role": "user", "content": [{"type": "text", "text": "Compare"}, a, "with", b_part, "Which is", "louder?"]}]
    one = [{"role": "user", "content": [c, "And this?"]}]
    inputs = build_inputs(model, [two, one])
    assert inputs.clips_per_prompt == [2, 1] and inputs.audio.batch_size == 3
    embeds, _ = embed(model, inputs)
    for row, waves in ((0, [a, b]), (1, [c])):
        runs = _runs(inputs.input_ids[row], model.audio_token_id)
        assert len(runs) == len(waves)
        for (start, size), wave in zip(runs, waves):
            assert torch.allclose(embeds[row, start : start + size], _alone(model, wave), atol=1e-5)
    text = model.tokenizer.decode(inputs.input_ids[0][inputs.attention_mask[0].bool()])
    assert "Compare<|audio|>" in text and "<|audio|>with<|audio|>" in text and "<|audio|>Which is\nlouder?" in text
    assert text.count("<|audio|>") == sum(size for _, size in _runs(inputs.input_ids[0], model.audio_token_id))


def test_audio_in_an_earlier_turn_and_ensemble_layout():
    model = _model("tiny-alarm-e")
    first, second = chirp_wave(1.2), noise_wave(0.8)
    conversation = [
        {"role": "user", "content": [first, "What is this?"]},
        {"role": "assistant", "content": "A rising tone."},
        {"role": "user", "content": ["And now this one:", second]},
    ]
    inputs = build_inputs(model, [conversation])
    embeds, _ = embed(model, inputs)
    runs = _runs(inputs.input_ids[0], model.audio_token_id)
    assert len(runs) == 4  # two members per clip (ALARM-E), earlier turn first
    with torch.no_grad():
        for wave, member_runs in ((first, runs[:2]), (second, runs[2:])):
            audio = AudioBatch.from_waveforms([wave], model.sample_rates)
            for member, (start, size) in zip(model.members, member_runs):
                emb, valid = member.audio_embeddings(audio)
                assert torch.allclose(embeds[0, start : start + size], emb[valid], atol=1e-5)
    text = model.tokenizer.decode(inputs.input_ids[0])
    assert text.count(model.instructions.headers[0]) == 2
    assert text.index("What is this?") < text.index("A rising tone.") < text.index("And now this one:")


def test_clip_counts_that_disagree_are_loud():
    model = _model("tiny-al-whisper-r")
    inputs = build_inputs(model, [[{"role": "user", "content": [chirp_wave(1.0), "q", noise_wave(1.0), "q"]}]])
    fewer = AudioBatch.from_waveforms([chirp_wave(1.0)], model.sample_rates)
    with pytest.raises(ValueError, match="disagree"):
        model.embed_inputs(inputs.input_ids, fewer)
    # Equal totals but split across prompts the wrong way: a clip would spill into the next prompt.
    h = 4
    ids = torch.tensor([[9, 1, 1, 1, 1, 1], [9, 9, 9, 1, 1, 1]])  # 5 then 3 placeholders
    audio, valid = torch.randn(2, 5, h), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()  # clips of 3, 5
    with pytest.raises(ValueError, match=r"\[5, 3\] positions.*\[3, 5\]"):
        splice_audio(torch.zeros(2, 6, h), ids, 1, audio, valid)
    swapped = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()
    assert splice_audio(torch.zeros(2, 6, h), ids, 1, audio, swapped).shape == (2, 6, h)


def test_bad_messages_name_the_problem():
    model = _model("tiny-al-whisper-r")
    wave = chirp_wave(0.5)
    cases = [
        ([], "non-empty"),
        ([{"role": "assistant", "content": "hi"}], "last message"),
        ([{"role": "assistant", "content": [wave]}, {"role": "user", "content": "q"}], "only user messages"),
        ([{"role": "user", "content": [wave, 3]}], r"content\[1\]"),
        ([{"role": "robot", "content": "q"}], "role"),
    ]
    for messages, reason in cases:
        with pytest.raises(ValueError, match=reason):
            build_inputs(model, [messages])


def test_answer_takes_several_clips_per_question():
    model = _model("tiny-al-whisper-r")
    config = GenerationConfig(max_new_tokens=6, thinking_budget=2)
    a, b, c = chirp_wave(0.8), noise_wave(1.1), noise_wave(0.5, seed=3)
    outs = answer(model, [[a, b], c], ["Compare them.", "What is it?"], config)
    chat = answer_chat(
        model,
        [[{"role": "user", "content": [a, b, "Compare them."]}], [{"role": "user", "content": [c, "What is it?"]}]],
        config,
    )
    assert [o.token_ids for o in outs] == [o.token_ids for o in chat]
    streamed = "".join(stream_chat(model, [{"role": "user", "content": [a, b, "Compare them."]}], config))
    assert streamed == "".join(stream(model, [a, b], "Compare them.", config)) == outs[0].text
