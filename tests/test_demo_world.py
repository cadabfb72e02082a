"""The demo's world and data files without models: facts, held-out contents, other recordings,
the training corpus expansion and the open-answer scoring."""

import dataclasses
import json
import random

import numpy as np
import pytest

from alarm.corpus.schema import CorpusRecord, write_jsonl
from alarm.demo.data import expand_corpus
from alarm.demo.speech import espeak_available
from alarm.demo.transcripts import score_open_answers, spoken_words
from alarm.demo.world import Clip, render, rerender
from alarm.training.data import load_corpus


def test_open_answers_are_scored_on_what_they_quote():
    assert spoken_words('The speaker says "four two eight".') == "four two eight"
    assert spoken_words("four two eight") == "four two eight"
    rows = [
        {"id": "a", "kind": "digits", "reference": "four two eight"},
        {"id": "b", "kind": "word", "reference": "apple"},
    ]
    scores = score_open_answers(rows, {"a": 'She says "4 2 8".', "b": "The word is pear."})
    assert scores["digits_exact"] == 100.0 and scores["wer_by_kind"]["digits"] == 0.0
    assert scores["wer_by_kind"]["word"] == 400.0  # 4 words for 1: "the word is pear"
    assert scores["wer"] == 100.0  # (0 + 4) edits over 4 reference words


def test_world_facts_and_held_out_contents():
    from alarm.demo.world import Clip, questions_for, sample_clips

    train, test = sample_clips(60, 30, seed=0)
    kinds = {c.kind for c in train}
    assert kinds == {"digits", "word", "sentence", "tone", "noise", "clicks"}
    train_texts = {c.text for c in train if c.kind in ("digits", "sentence")}
    assert not train_texts & {c.text for c in test if c.kind in ("digits", "sentence")}  # unseen contents
    clip = Clip("digits", text="four two eight", sex="female", voice="en+f2", rate="slow")
    assert clip.describe() == 'Speech. A woman says "four two eight", speaking slowly.'
    questions = {q.category: q for q in questions_for(clip, random.Random(0))}
    assert questions["sex"].answer == "a woman" and questions["rate"].answer == "slowly"
    assert questions["digits"].answer in questions["digits"].choices and questions["transcript"].choices == ()


def test_the_training_mix_weights_kinds_and_leaves_the_held_out_clips_alone():
    from alarm.demo.run import DemoConfig
    from alarm.demo.world import EVEN_MIX, sample_clips

    even_train, even_test = sample_clips(48, 24, seed=1)
    train, test = sample_clips(48, 24, seed=1, train_mix=("digits", "digits", "tone"))
    assert test == even_test  # the held-out set does not move with the training mix
    assert [c.kind for c in train[:3]] == ["digits", "digits", "tone"] and sum(c.kind == "digits" for c in train) == 32
    assert [c.kind for c in even_train[:6]] == list(EVEN_MIX)
    assert not {c.text for c in train if c.kind == "digits"} & {c.text for c in test if c.kind == "digits"}
    for bad in ((), ("digits", "song")):
        with pytest.raises(ValueError, match="train_mix"):
            sample_clips(4, 4, train_mix=bad)
        with pytest.raises(ValueError, match="train_mix"):
            DemoConfig(train_mix=bad)
    assert DemoConfig(train_mix=["tone", "digits"]).train_mix == ("tone", "digits")  # as read back from JSON


def test_the_digits_run_is_half_digit_strings_and_not_combined_with_quick(capsys):
    from alarm.cli import main
    from alarm.demo.run import DemoConfig
    from alarm.demo.world import sample_clips

    config = DemoConfig.digits(out="x")
    train, _ = sample_clips(config.num_train, 4, train_mix=config.train_mix)
    assert sum(c.kind == "digits" for c in train) == config.num_train // 2 and config.num_train > DemoConfig().num_train
    assert DemoConfig.digits(train_steps=7).train_steps == 7  # flags still override it
    assert main(["demo", "--quick", "--digits", "--out", "x"]) == 2
    assert "choose one" in capsys.readouterr().err


def test_a_rerendering_keeps_the_facts_and_changes_the_recording():
    clip = Clip("word", text="apple", sex="male", voice="en+m3", rate="fast", seed=7)
    first, second = rerender(clip, 1), rerender(clip, 2)
    assert first.describe() == second.describe() == clip.describe()
    assert {clip.voice, first.voice, second.voice} == {"en+m1", "en+m3", "en+m5"}  # every male voice, no female
    assert len({clip.seed, first.seed, second.seed}) == 3
    assert [rerender(clip, k).pitch for k in range(1, 5)] == [44, 56, 38, 62]  # around espeak-ng's 50
    tone = Clip("tone", variant="low", seed=3)
    assert rerender(tone, 1).describe() == tone.describe()
    assert not np.array_equal(render(tone), render(rerender(tone, 1)))  # another level, length and phase
    with pytest.raises(ValueError, match="at least 1"):
        rerender(clip, 0)


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")
def test_rerendered_speech_is_another_voice_saying_the_same():
    clip = Clip("digits", text="four two", sex="female", voice="en+f1", rate="normal", seed=1)
    a, b = render(clip), render(rerender(clip, 1))
    assert a.size and b.size and not (a.size == b.size and np.allclose(a, b))
    # the pitch alone changes the recording too (voice and seed kept)
    c = render(dataclasses.replace(clip, pitch=62))
    assert c.size and not (a.size == c.size and np.allclose(a, c))


def test_expand_corpus_gives_each_training_target_to_the_other_recordings(tmp_path):
    def record(i, split):
        return CorpusRecord(
            id=f"w/{i}", dataset="w", category="speech", split=split, audio_path=f"audio/{i}.wav", offset_s=0.0,
            duration_s=1.0, metadata=f"clip {i}", prompt="What is said?", response=f"target {i}",
        )  # fmt: skip

    write_jsonl([record(0, "train"), record(1, "train"), record(2, "validation")], tmp_path / "corpus" / "c.jsonl")
    others = [{"id": f"w/{i}", "audio_path": f"audio/{i}-r{k}.wav", "duration_s": 1.5} for i in (0, 2) for k in (1, 2)]
    (tmp_path / "renderings.jsonl").write_text("".join(json.dumps(o) + "\n" for o in others))
    counts = expand_corpus(str(tmp_path / "corpus"), str(tmp_path / "renderings.jsonl"), str(tmp_path / "out"))
    assert counts == {"train": 4, "validation": 1}  # clip 1 has no other recording; validation is not expanded
    rows = {r.id: r for r in load_corpus(str(tmp_path / "out"), "train")}
    assert sorted(rows) == ["w/0", "w/0#r1", "w/0#r2", "w/1"]
    assert rows["w/0#r2"].audio_path == "audio/0-r2.wav" and rows["w/0#r2"].duration_s == 1.5
    assert {rows[i].response for i in ("w/0", "w/0#r1", "w/0#r2")} == {"target 0"}
    assert [r.id for r in load_corpus(str(tmp_path / "out"), "validation")] == ["w/2"]
