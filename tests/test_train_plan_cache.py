"""Length-plan cache: a second start tokenizes nothing; a changed row, layout or file is recomputed."""

import dataclasses
import os

import numpy as np
import pytest
import torch

from alarm.corpus.schema import write_jsonl
from alarm.presets import build_model
from alarm.training.config import TrainConfig
from alarm.training.data import MODEL_SYSTEM_PROMPT, ChatFormat, plan_lengths
from alarm.training.plan_cache import LengthCache, row_key
from alarm.training.synthetic import make_tone_corpus
from alarm.training.trainer import PLAN_CACHE, Trainer

torch.set_num_threads(1)

LIMITS = dict(max_seq_len=210, max_audio_seconds=1.5)  # some rows over each limit: rejections come from cache too


@pytest.fixture(scope="module")
def model():
    return build_model("tiny-al-sslam-r")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return str(root), make_tone_corpus(root, 12, num_validation=2, durations=(0.5, 1.0, 2.0))


@pytest.fixture
def tokenized(monkeypatch):
    """Ids of the corpus rows the planner tokenizes (probe rows of the layout key excluded)."""
    calls: list[str] = []
    example = ChatFormat.example

    def counting(self, record, sample_lengths):
        if not record.id.startswith("probe/"):
            calls.append(record.id)
        return example(self, record, sample_lengths)

    monkeypatch.setattr(ChatFormat, "example", counting)
    return calls


def _same_plan(a, b) -> None:
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.kept, b.kept)
    assert a.rejections == b.rejections


def test_second_plan_reads_the_cache_and_changes_are_recomputed(model, corpus, tmp_path, tokenized):
    _, records = corpus
    fmt = ChatFormat.from_model(model, MODEL_SYSTEM_PROMPT, eos=True)  # the rows the limits were set for
    reference = plan_lengths(records, fmt, **LIMITS)
    assert {r.reason for r in reference.rejections} == {
        "audio_too_long",
        "over_token_limit",
    }  # the limits bite, so cached rows must be rejected the same way
    tokenized.clear()

    first = plan_lengths(records, fmt, cache=LengthCache(tmp_path, fmt), **LIMITS)
    assert len(tokenized) == len(records)
    _same_plan(first, reference)
    (cache_file,) = os.listdir(tmp_path)
    tokenized.clear()

    second = plan_lengths(records, fmt, cache=LengthCache(tmp_path, fmt), **LIMITS)  # a new start
    assert tokenized == []
    _same_plan(second, reference)

    # An edited response and a new row: exactly those two are tokenized.
    edited = dataclasses.replace(records[3], response=records[3].response + " Longer now.")
    added = dataclasses.replace(records[0], id="tones/new", prompt="Describe the tone.")
    changed = [*records[:3], edited, *records[4:], added]
    third = plan_lengths(changed, fmt, cache=LengthCache(tmp_path, fmt), **LIMITS)
    assert sorted(tokenized) == sorted([edited.id, added.id])
    _same_plan(third, plan_lengths(changed, fmt, **LIMITS))
    assert third.tokens[3] > reference.tokens[3]
    tokenized.clear()

    # Another layout (here: the system prompt) is another file; nothing of the first is reused.
    other = dataclasses.replace(fmt, system="You are a careful listener.")
    fourth = plan_lengths(records, other, cache=LengthCache(tmp_path, other), **LIMITS)
    assert len(tokenized) == len(records) and len(os.listdir(tmp_path)) == 2
    assert (fourth.tokens != reference.tokens).all()
    # ... and so is another audio length rule with the same tokenizer.
    whisper = ChatFormat.from_model(build_model("tiny-al-whisper-r"))
    assert LengthCache(tmp_path, whisper).path not in {os.path.join(tmp_path, n) for n in os.listdir(tmp_path)}

    # A damaged file is not trusted: counted again and rewritten.
    with open(tmp_path / cache_file, "wb") as f:
        f.write(b"not a zip file")
    tokenized.clear()
    fifth = plan_lengths(records, fmt, cache=LengthCache(tmp_path, fmt), **LIMITS)
    assert len(tokenized) == len(records)
    _same_plan(fifth, reference)
    assert len(LengthCache(tmp_path, fmt)) == len({row_key(r) for r in records})  # keyed by content: 12 distinct


def test_a_restarted_run_plans_from_the_cache(corpus, tmp_path, tokenized):
    root, records = corpus
    write_jsonl(records, tmp_path / "corpus.jsonl")
    config = TrainConfig(
        preset="tiny-al-sslam-r",
        corpus=str(tmp_path / "corpus.jsonl"),
        audio_root=root,
        output=str(tmp_path / "run"),
        effective_batch_size=4,
        micro_batch_size=2,
        num_workers=0,
        progress=False,
        report_to=(),
        target_tokens=None,  # synthetic targets are a sentence, under the official 100-token floor
    )
    first = Trainer(config)
    # The validation rows repeat the content of two training rows: their counts come from the cache already.
    assert tokenized == [r.id for r in records if r.split == "train"]
    assert len(os.listdir(tmp_path / "run" / PLAN_CACHE)) == 1
    tokenized.clear()
    second = Trainer(config)
    assert tokenized == []
    assert np.array_equal(second.plan.epoch(0), first.plan.epoch(0))
    assert second._plan_fingerprint() == first._plan_fingerprint()  # what a resume checks
