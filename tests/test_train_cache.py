"""Feature cache: extraction is resumable and exact enough that cached training matches online training."""

import dataclasses
import json
import os

import pytest
import torch

from alarm.presets import build_model
from alarm.training.cache import FeatureCache, extract_features
from alarm.training.config import TrainConfig
from alarm.training.data import NOT_IN_CACHE, ChatFormat, TrainingDataset
from alarm.training.synthetic import make_tone_corpus
from alarm.training.trainer import Trainer

torch.set_num_threads(1)

PRESET = "tiny-alarm-ca"  # all four encoders, two sample rates, BatchNorm and dropout in the audio path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return str(root), make_tone_corpus(root, 8, num_validation=2, durations=(0.5, 1.0))


@pytest.fixture(scope="module")
def model():
    return build_model(PRESET)


def test_extraction_stores_every_encoder_and_resumes(corpus, model, tmp_path):
    root, records = corpus
    out = tmp_path / "cache"
    first = extract_features(
        model, records[:5], audio_root=root, out=out, num_workers=0, shard_megabytes=0, progress=False
    )
    assert (first.written, first.already_cached) == (5, 0)
    shards = sorted(os.listdir(out / "shards"))
    # A killed run leaves a shard without its sidecar: it does not count and is written again.
    (out / "shards" / "part-000-00005.safetensors").write_bytes(b"partial")
    again = extract_features(model, records, audio_root=root, out=out, num_workers=0, progress=False)
    assert (again.written, again.already_cached) == (5, 5)
    cache = FeatureCache(out, model)
    assert len(cache) == len(records)
    assert len(shards) == 10  # shard_megabytes=0: one sample per shard, tensors + sidecar
    assert len(os.listdir(out / "shards")) == 12  # the partial shard was replaced by a complete one
    samples, states = cache.load(records[0].id)
    assert set(states) == {"whisper", "w2vbert", "muq", "sslam"}
    assert samples == {16_000: 8000, 24_000: 12000}
    assert states["whisper"].dtype == torch.float16 and states["whisper"].shape[0] == 4  # 4 selected layers
    assert json.loads((out / "manifest.json").read_text())["encoders"]["muq"]["layers"] == [1, 2, 3]


def test_cached_states_equal_the_encoders_output(corpus, model, tmp_path):
    root, records = corpus
    extract_features(model, records[:2], audio_root=root, out=tmp_path, dtype="float32", num_workers=0, progress=False)
    cache = FeatureCache(tmp_path, model)
    fmt = ChatFormat.from_model(model)
    online = TrainingDataset(records[:2], fmt, audio_root=root, max_seq_len=4096, max_audio_seconds=60)[1]
    _, states = cache.load(records[1].id)
    for kind, enc in model.encoders.items():
        wave = online.waves[enc.sample_rate]
        hidden, frames = enc.encode(wave[None], torch.tensor([wave.numel()]))
        torch.testing.assert_close(states[kind], hidden[:, 0, : int(frames[0])], rtol=1e-5, atol=1e-5)


def test_stale_or_foreign_caches_are_refused(corpus, model, tmp_path):
    root, records = corpus
    extract_features(model, records[:2], audio_root=root, out=tmp_path, num_workers=0, progress=False)
    cache = FeatureCache(tmp_path, model)
    moved = dataclasses.replace(records[0], offset_s=0.0)
    assert cache.has(records[0]) and not cache.has(moved)
    fmt = ChatFormat.from_model(model)
    dataset = TrainingDataset([moved], fmt, audio_root=None, max_seq_len=4096, max_audio_seconds=60, features=cache)
    assert dataset[0].reason == NOT_IN_CACHE
    with pytest.raises(ValueError, match=r"holds encoders \['w2vbert', 'muq', 'sslam'\] that the model does not have"):
        FeatureCache(tmp_path, build_model("tiny-al-whisper-r"))


def _one_step(root: str) -> dict:
    """Settings of a one-step run on the tone corpus (no validation, no checkpoints)."""
    return dict(
        preset=PRESET,
        corpus=os.path.join(root, "corpus.jsonl"),
        audio_root=root,
        max_steps=1,
        effective_batch_size=4,
        micro_batch_size=2,
        num_workers=0,
        val_split="",
        save_every=0,
        progress=False,
        report_to=(),
        target_tokens=None,  # synthetic targets are a sentence, under the official 100-token floor
    )


def _first_step(config: TrainConfig) -> tuple[tuple[float, float], Trainer]:
    records = []
    trainer = Trainer(config, callbacks=[records.append])
    trainer.run()
    return (records[0].loss, records[0].grad_norm), trainer


def _encoder_weights(model) -> int:
    return sum(t.numel() for t in model.encoders.state_dict().values())


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-5), ("float16", 1e-3)])
def test_first_step_loss_is_the_same_with_and_without_the_cache(corpus, model, tmp_path, dtype, tolerance):
    """Loss and gradient norm of the first step; fp32 cache: 1e-5 relative, fp16 cache: 1e-3 relative.

    The gradient norm is the sensitive check: a random tiny RLM's loss barely depends on the
    audio, but the gradients of the adapters are linear in the encoder states.
    """
    root, records = corpus
    extract_features(
        model, records, audio_root=root, out=tmp_path / "cache", dtype=dtype, num_workers=0, progress=False
    )
    common = _one_step(root)
    online, with_encoders = _first_step(TrainConfig(**common, output=str(tmp_path / "online")))
    cached, from_cache = _first_step(
        TrainConfig(**common, output=str(tmp_path / "cached"), features=str(tmp_path / "cache"))
    )
    assert cached == pytest.approx(online, rel=tolerance)
    assert online[0] > 1.0 and online[1] > 0  # a real loss and gradient, not an empty batch
    # Training from the cache never held the encoders' networks: shells with specs and length rules only.
    assert _encoder_weights(with_encoders.unwrapped) > 0
    assert _encoder_weights(from_cache.unwrapped) == 0
    assert all(e.released for e in from_cache.unwrapped.encoders.values())


def test_samples_are_generated_from_the_cache_without_encoders(corpus, model, tmp_path):
    """Validation answers from cached states (fp32 cache) are the answers generated from the audio."""
    root, records = corpus
    extract_features(
        model, records, audio_root=root, out=tmp_path / "cache", dtype="float32", num_workers=0, progress=False
    )
    common = dict(
        preset=PRESET,
        corpus=os.path.join(root, "corpus.jsonl"),
        max_steps=1,
        effective_batch_size=4,
        micro_batch_size=4,
        num_workers=0,
        eval_every=1,
        num_samples=2,
        sample_max_new_tokens=12,
        sample_thinking_budget=6,
        save_every=0,
        progress=False,
        report_to=(),
        target_tokens=None,  # synthetic targets are a sentence, under the official 100-token floor
    )
    Trainer(TrainConfig(**common, audio_root=root, output=str(tmp_path / "online"))).run()
    cached = Trainer(TrainConfig(**common, features=str(tmp_path / "cache"), output=str(tmp_path / "cached")))
    assert _encoder_weights(cached.unwrapped) == 0
    cached.run()  # no audio_root at all: the samples cannot have come from the audio files

    def outputs(run: str) -> list[tuple[str, str]]:
        return [(json.loads(line)["id"], json.loads(line)["output"]) for line in open(tmp_path / run / "samples.jsonl")]

    assert outputs("cached") == outputs("online")
    assert len(outputs("online")) == 2 and all(text for _, text in outputs("online"))


def test_partial_cache_runs_the_other_encoders_online(corpus, model, tmp_path):
    """Whisper and MuQ cached (fp32), W2V-BERT and SSLAM online: the first step equals online training (1e-5)."""
    root, records = corpus
    cache_dir = tmp_path / "cache"
    extract_features(
        model,
        records,
        audio_root=root,
        out=cache_dir,
        dtype="float32",
        num_workers=0,
        progress=False,
        encoders=["whisper", "muq"],
    )
    cache = FeatureCache(cache_dir, model)
    assert cache.kinds == ["whisper", "muq"]
    assert set(cache.load(records[0].id)[1]) == {"whisper", "muq"}
    fmt = ChatFormat.from_model(model)
    with pytest.raises(ValueError, match="audio root is needed for the encoders the feature cache lacks"):
        TrainingDataset(
            records, fmt, audio_root=None, max_seq_len=4096, max_audio_seconds=60, features=cache, online_rates=[16_000]
        )
    with pytest.raises(ValueError, match="not among the model's"):
        extract_features(model, records, audio_root=root, out=tmp_path / "x", encoders=["clap"], progress=False)

    common = _one_step(root)
    online, _ = _first_step(TrainConfig(**common, output=str(tmp_path / "online")))
    partial, trainer = _first_step(TrainConfig(**common, output=str(tmp_path / "partial"), features=str(cache_dir)))
    assert partial == pytest.approx(online, rel=1e-5)
    encoders = trainer.unwrapped.encoders
    assert [k for k, e in encoders.items() if e.released] == ["whisper", "muq"]
    assert all(sum(t.numel() for t in encoders[k].state_dict().values()) > 0 for k in ("w2vbert", "sslam"))
