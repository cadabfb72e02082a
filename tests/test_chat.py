"""Chat layout: placeholders, context turns, label masking, padding."""

import pytest
import torch

from alarm.chat import IGNORE_INDEX, AudioSlot, build_example, collate, render_prompt
from alarm.modeling.tokenizer import AUDIO_TOKEN, load_tokenizer, token_id

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny")


def test_audio_goes_inside_the_last_user_turn_before_the_text(tok):
    context = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>x</think>\n\nHello"}]
    text, slots = render_prompt(tok, [AudioSlot(3), "Question?"], system="S", context=context)
    assert text == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
        f"<|im_start|>user\n{AUDIO_TOKEN}Question?<|im_end|>\n<|im_start|>assistant\n<think>\n"
    )
    example = build_example(tok, [AudioSlot(3), "Question?"], system="S", context=context)
    audio_id = token_id(tok, AUDIO_TOKEN)
    ids = example.input_ids
    first = ids.index(audio_id)
    assert ids[first : first + 3] == [audio_id] * 3 and ids.count(audio_id) == 3
    assert tok.decode(ids[first + 3 :]).startswith("Question?<|im_end|>")


def test_labels_cover_the_target_only_and_no_eos_by_default(tok):
    # official (hf_dataset.py): the target is the answer as stored, no end-of-turn token trained
    example = build_example(tok, [AudioSlot(2), "Q"], target="<think>\nr</think>\n\nA")
    target = [t for t in example.labels if t != IGNORE_INDEX]
    assert tok.decode(target) == "r</think>\n\nA"
    n = len(target)
    assert example.input_ids[-n:] == target and all(t == IGNORE_INDEX for t in example.labels[:-n])


def test_eos_setting_trains_end_of_turn_after_finished_targets_only(tok):
    finished = build_example(tok, [AudioSlot(2), "Q"], target="<think>\nr</think>\n\nA", eos=True)
    assert tok.decode([t for t in finished.labels if t != IGNORE_INDEX]) == "r</think>\n\nA<|im_end|>"
    # cut inside its reasoning: stopping there must not be taught
    cut = build_example(tok, [AudioSlot(2), "Q"], target="<think>\nhalf a thou", eos=True)
    assert tok.decode([t for t in cut.labels if t != IGNORE_INDEX]) == "half a thou"


def test_collate_pads_and_derives_masks_from_lengths(tok):
    a = build_example(tok, [AudioSlot(1), "short"], target="x")
    b = build_example(tok, [AudioSlot(4), "a longer question"], target="yy")
    for side in ("right", "left"):
        batch = collate([a, b], tok.pad_token_id, padding_side=side)
        assert batch.attention_mask.sum(1).tolist() == [len(a.input_ids), len(b.input_ids)]
        row = batch.input_ids[0][batch.attention_mask[0].bool()].tolist()
        assert row == a.input_ids
        assert (batch.labels[batch.attention_mask == 0] == IGNORE_INDEX).all()
    assert collate([build_example(tok, ["q"])], tok.pad_token_id).labels is None


def test_bad_chat_input(tok):
    with pytest.raises(ValueError, match="placeholder"):
        build_example(tok, [f"sneaky {AUDIO_TOKEN}"])
    with pytest.raises(ValueError, match="context turns"):
        build_example(tok, ["q"], context=[{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match="at least one"):
        AudioSlot(0)


def test_several_clips_where_they_stand_and_audio_in_an_earlier_turn(tok):
    context = [
        {"role": "user", "content": [AudioSlot(2), "Remember this one."]},
        {"role": "assistant", "content": "Done."},
    ]
    user = ["Compare ", AudioSlot(3), " with ", AudioSlot(1), "."]
    text, slots = render_prompt(tok, user, context=context)
    assert [s.size for s in slots] == [2, 3, 1]  # earlier turn first, then left to right
    assert f"<|im_start|>user\n{AUDIO_TOKEN}Remember this one.<|im_end|>" in text
    assert f"<|im_start|>user\nCompare {AUDIO_TOKEN} with {AUDIO_TOKEN}.<|im_end|>" in text
    ids = build_example(tok, user, context=context).input_ids
    audio_id = token_id(tok, AUDIO_TOKEN)
    is_audio = [t == audio_id for t in ids]
    runs = [len(r) for r in "".join("a" if a else " " for a in is_audio).split()]
    assert runs == [2, 3, 1]
    with pytest.raises(ValueError, match="only user turns"):
        render_prompt(tok, ["q"], context=[{"role": "assistant", "content": [AudioSlot(1)]}])
    with pytest.raises(ValueError, match="placeholder"):
        render_prompt(tok, ["q"], context=[{"role": "user", "content": f"old {AUDIO_TOKEN}"}])
