"""DataLoader workers need nothing from the parent's memory: spawn workers give the batches of the main process."""

import dataclasses
import pickle

import pytest
import torch

from alarm.presets import build_model
from alarm.training.cache import FeatureCache, extract_features
from alarm.training.data import (
    NOT_IN_CACHE,
    UNREADABLE_AUDIO,
    ChatFormat,
    StepPlan,
    TrainBatch,
    TrainingDataset,
    make_loader,
)
from alarm.training.synthetic import make_tone_corpus

torch.set_num_threads(1)

PRESET = "tiny-alarm-ca"  # all four encoders and two sample rates in the length rule


@pytest.fixture(scope="module")
def model():
    return build_model(PRESET)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    records = make_tone_corpus(root, 11, durations=(0.5, 1.0, 1.5))
    broken = dataclasses.replace(records[0], id="tones/broken", audio_path="audio/missing.wav")
    return str(root), [*records, broken]


@pytest.mark.parametrize("preset", [PRESET, "tiny-alarm-p"])
def test_length_rule_is_small_picklable_and_the_models_own(preset):
    model = build_model(preset)
    blob = pickle.dumps(model.length_rule())
    assert len(blob) < 1_000_000  # the feature extractors' filterbanks (~200 KB each), no weights
    rule = pickle.loads(blob)
    shells = [*rule.encoders.values(), *rule.branches.values(), rule.fusion]
    assert sum(t.numel() for m in shells for t in m.state_dict().values()) == 0
    rates = sorted({e.sample_rate for e in model.encoders.values()})
    seconds = [0.01, 0.3, 1.0, 10.24, 10.3, 29.99, 30.0, 31.7, 75.0]
    lengths = {rate: torch.tensor([max(1, round(s * rate)) for s in seconds]) for rate in rates}
    expected = model.audio_lengths(lengths)
    assert torch.equal(rule(lengths), expected)
    # ... the same rule as the encoders' own, and after the encoders are released
    kind, enc = next(iter(model.encoders.items()))
    assert [rule.encoders[kind].output_length(int(n)) for n in lengths[enc.sample_rate]] == [
        enc.output_length(int(n)) for n in lengths[enc.sample_rate]
    ]
    assert torch.equal(model.release_encoders().audio_lengths(lengths), expected)


def _same(a: TrainBatch, b: TrainBatch) -> None:
    assert a.ids == b.ids and a.rejections == b.rejections
    for name in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    if a.audio is None:
        assert b.audio is None
        return
    for rate in a.audio.lengths:
        assert torch.equal(a.audio.lengths[rate], b.audio.lengths[rate])
    assert a.audio.waves.keys() == b.audio.waves.keys()
    for rate, wave in a.audio.waves.items():
        assert torch.equal(wave, b.audio.waves[rate])
    assert a.audio.encoder_states.keys() == b.audio.encoder_states.keys()
    for kind, (hidden, frames) in a.audio.encoder_states.items():
        assert torch.equal(hidden, b.audio.encoder_states[kind][0]) and torch.equal(
            frames, b.audio.encoder_states[kind][1]
        )


def test_an_epoch_with_two_spawn_workers_equals_the_main_process(model, corpus, tmp_path):
    root, records = corpus
    extract_features(model, records, audio_root=root, out=tmp_path, num_workers=0, progress=False)
    fmt = ChatFormat.from_model(model)
    limits = dict(max_seq_len=4096, max_audio_seconds=60)
    online = TrainingDataset(records, fmt, audio_root=root, **limits)
    cached = TrainingDataset(records, fmt, audio_root=None, features=FeatureCache(tmp_path, model), **limits)
    tokens = torch.arange(len(records)).numpy()  # any sizes: the order is what the workers must follow
    plan = StepPlan(tokens, tokens.astype(float), 2, 2, seed=3, group_size=2)
    batches = plan.rank_batches(0, 0, rank=0, world_size=1)  # 3 steps of 2 micro-batches of 2
    assert len(batches) == 6
    for dataset, reason in ((online, UNREADABLE_AUDIO), (cached, NOT_IN_CACHE)):
        main = list(make_loader(dataset, batches, fmt.pad_token_id, num_workers=0))
        spawned = list(make_loader(dataset, batches, fmt.pad_token_id, num_workers=2, start_method="spawn"))
        assert len(spawned) == len(main) == len(batches)
        for a, b in zip(main, spawned):
            _same(a, b)
        # every row once; the broken one travels as a rejection (the cache never had it either)
        assert sum(len(b.ids) for b in main) == 11
        assert [r.reason for b in main for r in b.rejections] == [reason]
        assert all(bool(b.audio.encoder_states) == (dataset is cached) for b in main if b.audio is not None)
