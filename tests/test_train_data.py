"""Training data: corpus shards, exact length plan, length-grouped and resumable order, samples, batches."""

import dataclasses

import numpy as np
import pytest
import torch

from alarm.chat import IGNORE_INDEX
from alarm.corpus.schema import write_jsonl, write_parquet
from alarm.presets import build_model
from alarm.training.data import (
    MODEL_SYSTEM_PROMPT,
    OVER_TOKEN_LIMIT,
    TARGET_LENGTH,
    UNREADABLE_AUDIO,
    ChatFormat,
    Collator,
    Rejection,
    Sample,
    StepPlan,
    TrainingDataset,
    load_corpus,
    make_loader,
    padding_fraction,
    plan_lengths,
    validation_batches,
)
from alarm.training.synthetic import make_tone_corpus

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return build_model("tiny-al-sslam-r")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return str(root), make_tone_corpus(root, 12, num_validation=4, durations=(0.5, 1.0, 2.0))


def test_corpus_from_a_directory_of_jsonl_and_parquet_shards(tmp_path, corpus):
    _, records = corpus
    write_jsonl(records[:6], tmp_path / "a" / "part-0.jsonl")
    write_parquet(records[6:], tmp_path / "b" / "part-1.parquet")
    train = load_corpus(tmp_path, "train")
    assert [r.id for r in train] == [r.id for r in records if r.split == "train"]
    assert len(load_corpus(tmp_path, "validation")) == 4
    write_jsonl(records[:1], tmp_path / "c" / "dup.jsonl")
    with pytest.raises(ValueError, match="more than once"):
        load_corpus(tmp_path, "train")


def test_plan_counts_exact_tokens_and_rejects_over_limit_rows(model, corpus):
    root, records = corpus
    fmt = ChatFormat.from_model(model)
    long_target = dataclasses.replace(records[0], id="tones/long", response="<think>" + "la " * 400 + "</think>ok")
    rows = [*records[:4], long_target]
    plan = plan_lengths(rows, fmt, max_seq_len=600, max_audio_seconds=1.5)
    dataset = TrainingDataset(rows, fmt, audio_root=root, max_seq_len=10_000, max_audio_seconds=60)
    for i in range(4):  # the plan's count is the count of the sample the worker builds
        assert plan.tokens[i] == dataset[i].input_ids.numel()
    reasons = {r.id: r.reason for r in plan.rejections}
    assert reasons == {"tones/long": OVER_TOKEN_LIMIT}
    assert list(plan.kept) == [0, 1, 2, 3]
    strict = plan_lengths(rows, fmt, max_seq_len=600, max_audio_seconds=0.75)
    assert {r.id for r in strict.rejections} >= {records[i].id for i in range(4) if records[i].duration_s > 0.75}


def test_sample_labels_cover_the_target_only(model, corpus):
    root, records = corpus
    fmt = ChatFormat.from_model(model)
    sample = TrainingDataset(records, fmt, audio_root=root, max_seq_len=4096, max_audio_seconds=60)[0]
    target = sample.labels[sample.labels != IGNORE_INDEX]
    text = model.tokenizer.decode(target)
    assert text.startswith("The tone sounds") or text.startswith("<think>")
    # official: no system prompt and no end-of-turn token trained (hf_dataset.py)
    assert text.endswith(records[0].response.split("</think>")[1])
    assert model.tokenizer.eos_token not in text and fmt.system is None
    ours = ChatFormat.from_model(model, MODEL_SYSTEM_PROMPT, eos=True)  # the demo's settings
    sample = TrainingDataset(records, ours, audio_root=root, max_seq_len=4096, max_audio_seconds=60)[0]
    text = model.tokenizer.decode(sample.labels[sample.labels != IGNORE_INDEX])
    assert text.endswith(records[0].response.split("</think>")[1] + model.tokenizer.eos_token)
    assert ours.system == model.config.system_prompt
    # the segment is read from the row's offset for its duration, at every encoder rate
    assert sample.sample_lengths == {16_000: int(records[0].duration_s * 16_000)}
    assert not sample.waves[16_000][:100].abs().lt(1e-6).all()  # starts inside the tone, not in the lead-in


def test_unreadable_audio_and_over_limit_become_counted_rejections(model, corpus, tmp_path):
    root, records = corpus
    fmt = ChatFormat.from_model(model)
    broken = dataclasses.replace(records[1], id="tones/broken", audio_path="audio/missing.wav")
    dataset = TrainingDataset([records[0], broken], fmt, audio_root=root, max_seq_len=4096, max_audio_seconds=60)
    item = dataset[1]
    assert isinstance(item, Rejection) and item.reason == UNREADABLE_AUDIO and "missing.wav" in item.detail
    tight = TrainingDataset([records[0]], fmt, audio_root=root, max_seq_len=20, max_audio_seconds=60)
    assert tight[0].reason == OVER_TOKEN_LIMIT
    batch = Collator(fmt.pad_token_id)([dataset[0], item])
    assert batch.ids == [records[0].id] and [r.id for r in batch.rejections] == ["tones/broken"]
    empty = Collator(fmt.pad_token_id)([item])
    assert empty.size == 0 and empty.num_target_tokens == 0


def test_collated_batch_pads_right_and_counts_targets(model, corpus):
    root, records = corpus
    fmt = ChatFormat.from_model(model)
    dataset = TrainingDataset(records, fmt, audio_root=root, max_seq_len=4096, max_audio_seconds=60)
    items = [dataset[i] for i in (0, 4, 8)]  # 0.5 s, 1 s, 2 s
    batch = next(iter(make_loader(dataset, [[0, 4, 8]], fmt.pad_token_id, num_workers=0)))
    lengths = [s.input_ids.numel() for s in items]
    assert batch.attention_mask.sum(1).tolist() == lengths
    assert batch.audio.lengths[16_000].tolist() == [s.sample_lengths[16_000] for s in items]
    assert batch.num_target_tokens == sum(int((s.labels[1:] != IGNORE_INDEX).sum()) for s in items)
    # the prompt's audio slot matches what the model will produce for this audio
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask, audio=batch.audio)
    assert out.logits.shape[:2] == batch.input_ids.shape


def _plan(tokens, *, micro=2, per_step=4, seed=0, group=True, group_size=4):
    tokens = np.asarray(tokens)
    return StepPlan(tokens, np.zeros(len(tokens)), micro, per_step, seed, group_by_length=group, group_size=group_size)


def test_step_plan_is_a_seeded_permutation_per_epoch():
    plan = _plan(np.arange(50))
    first, again, second = plan.epoch(0), plan.epoch(0), plan.epoch(1)
    assert first.shape == (6, 4, 2)  # 50 // 8 steps, 4 micro-batches of 2
    assert np.array_equal(first, again)
    assert not np.array_equal(first, second)
    assert len(set(first.ravel().tolist())) == 48  # no sample twice in an epoch
    assert not np.array_equal(_plan(np.arange(50), seed=1).epoch(0), first)


def test_ranks_split_each_step_like_accumulation_does():
    plan = _plan(np.arange(64) % 7)
    single = plan.rank_batches(2, 0, rank=0, world_size=1)  # 4 micro-batches per step on one process
    rank0 = plan.rank_batches(2, 0, rank=0, world_size=2)
    rank1 = plan.rank_batches(2, 0, rank=1, world_size=2)
    for step in range(plan.steps_per_epoch):
        assert single[4 * step : 4 * step + 4] == rank0[2 * step : 2 * step + 2] + rank1[2 * step : 2 * step + 2]
    # resuming at step 3 of the epoch gives exactly the rest of the same order
    assert plan.rank_batches(2, 3, rank=0, world_size=1) == single[12:]


def test_length_grouping_cuts_padding():
    rng = np.random.default_rng(0)
    tokens = rng.lognormal(5.5, 0.8, size=2000).astype(int) + 60
    grouped = _plan(tokens, micro=8, per_step=8, group_size=64).epoch(0).reshape(-1, 8)
    shuffled = _plan(tokens, micro=8, per_step=8, group=False).epoch(0).reshape(-1, 8)
    assert padding_fraction(grouped, tokens) < 0.1 * padding_fraction(shuffled, tokens)
    # micro-batches are shuffled across the epoch, not served shortest-first
    maxima = [tokens[b].max() for b in grouped[:20]]
    assert maxima != sorted(maxima)


def test_validation_batches_are_fixed_and_spread_over_lengths():
    tokens = np.arange(100)[::-1]
    everything = validation_batches(tokens, 4, 0, rank=0, world_size=1)
    assert len(everything) == 25 and sorted(i for b in everything for i in b) == list(range(100))
    few = validation_batches(tokens, 4, 5, rank=0, world_size=1)
    assert len(few) == 5 and few[0] == everything[0] and few[-1] == everything[-1]
    halves = validation_batches(tokens, 4, 0, 0, 2) + validation_batches(tokens, 4, 0, 1, 2)
    assert sorted(map(tuple, halves)) == sorted(map(tuple, everything))


def test_sample_type_is_what_the_collator_pads():
    a = Sample("x/1", torch.tensor([1, 2, 3]), torch.tensor([IGNORE_INDEX, 2, 3]), {16_000: 5}, {16_000: torch.ones(5)})
    b = Sample("x/2", torch.tensor([1]), torch.tensor([IGNORE_INDEX]), {16_000: 2}, {16_000: torch.ones(2)})
    batch = Collator(pad_token_id=0)([a, b])
    assert batch.input_ids.tolist() == [[1, 2, 3], [1, 0, 0]]
    assert batch.labels.tolist() == [[IGNORE_INDEX, 2, 3], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch.audio.waves[16_000].tolist() == [[1.0] * 5, [1.0, 1.0, 0, 0, 0]]


def test_target_length_filter_keeps_100_to_612_tokens_and_spares_spoken_queries(model, corpus):
    # official (validate_and_filter_answers.py): answers of 100..612 tokens, metadata datasets only
    _, records = corpus
    fmt = ChatFormat.from_model(model)
    base = records[0]  # the tiny tokenizer is byte-level: one token per byte
    rows = [
        dataclasses.replace(base, id="tones/short", response="<think>\n" + "a" * 99),
        dataclasses.replace(base, id="tones/low", response="<think>\n" + "a" * 100),
        dataclasses.replace(base, id="tones/high", response="a" * 612),
        dataclasses.replace(base, id="tones/long", response="a" * 613),
        dataclasses.replace(base, id="tones/spoken", response="short", provenance={"special_case": "spoken_query"}),
    ]
    plan = plan_lengths(rows, fmt, max_seq_len=4096, max_audio_seconds=60, target_tokens=(100, 612))
    assert [rows[i].id for i in plan.kept] == ["tones/low", "tones/high", "tones/spoken"]
    assert {r.id: r.reason for r in plan.rejections} == {"tones/short": TARGET_LENGTH, "tones/long": TARGET_LENGTH}
    assert len(plan_lengths(rows, fmt, max_seq_len=4096, max_audio_seconds=60).kept) == 5  # None: no filter
