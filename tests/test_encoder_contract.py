"""The frozen-encoder protocol, checked on every encoder with its tiny-preset spec.

Encoder-specific behaviour (features, key mappings, official formulas) lives in
test_encoder_<kind>.py; what every encoder must do is checked here once.
"""

import numpy as np
import pytest
import torch

from alarm.encoders import EncoderSpec, build_encoder
from alarm.presets import load_preset

torch.set_num_threads(1)

TINY = {spec["kind"]: EncoderSpec.from_dict(spec) for spec in load_preset("tiny-alarm-ca")["encoders"]}


def _batch(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in waves])
    out = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.from_numpy(w)
    return out, lengths


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return (0.1 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(TINY))
def encoder(request):
    return build_encoder(TINY[request.param])


def test_every_kind_is_covered():
    assert sorted(TINY) == ["muq", "sslam", "w2vbert", "whisper"]


def test_shapes_and_frame_rate(encoder, rng):
    for seconds in (1.0, 2.5, 7.0):
        wave = _noise(rng, int(seconds * encoder.sample_rate))
        hidden, lengths = encoder.encode(*_batch([wave]))
        assert hidden.shape == (len(encoder.layers), 1, int(lengths[0]), encoder.hidden_size)
        assert abs(int(lengths[0]) - encoder.frame_rate * seconds) <= 1
        assert int(lengths[0]) == encoder.output_length(len(wave))


@pytest.mark.parametrize("n", [1, 80, 600, 1025, 7000, 13337])
def test_length_rule_is_what_encoding_gives(encoder, rng, n):
    hidden, lengths = encoder.encode_windows([torch.from_numpy(_noise(rng, n))])
    assert int(lengths[0]) == encoder.window_output_length(n) == hidden.shape[2] >= 1


def test_padded_batch_matches_alone(encoder, rng):
    # uneven lengths, one very short, so padding reaches every stage that could leak it
    rate = encoder.sample_rate
    waves = [_noise(rng, n) for n in (rate, 7000, int(2.3 * rate), 600)]
    hidden, lengths = encoder.encode(*_batch(waves))
    for i, w in enumerate(waves):
        alone, alone_len = encoder.encode(*_batch([w]))
        assert int(alone_len[0]) == int(lengths[i])
        torch.testing.assert_close(hidden[:, i, : lengths[i]], alone[:, 0], atol=1e-5, rtol=1e-4)
        assert torch.all(hidden[:, i, lengths[i] :] == 0)


def test_long_audio_is_windowed_not_cut(rng):
    """Per-window front ends: each window alone (official W2V-BERT / MuQ: test_encoder_front_end.py)."""
    for kind, spec in TINY.items():
        per_window = {"per_window_front_end": True, "input_rate": None} if kind in ("w2vbert", "muq") else {}
        enc = build_encoder(EncoderSpec(**{**spec.to_dict(), "window_seconds": 2.0, **per_window}))
        rate, win = enc.sample_rate, 2 * enc.sample_rate
        wave = _noise(rng, 5 * rate)
        hidden, lengths = enc.encode(*_batch([wave]))
        expected = 2 * enc.window_output_length(win) + enc.window_output_length(rate)
        assert int(lengths[0]) == expected == enc.output_length(len(wave)), kind
        first, n1 = enc.encode(*_batch([wave[:win]]))
        last, n3 = enc.encode(*_batch([wave[2 * win :]]))
        torch.testing.assert_close(hidden[:, 0, : int(n1[0])], first[:, 0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(hidden[:, 0, expected - int(n3[0]) :], last[:, 0], atol=1e-5, rtol=1e-4)


def test_encoding_leaves_the_global_rng_alone(encoder, rng):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    encoder.encode(*_batch([_noise(rng, encoder.sample_rate)]))
    assert torch.equal(torch.rand(3), expected)


def test_frozen_and_stays_in_eval(encoder):
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training and not any(m.training for m in encoder.modules())


def test_seeded_rebuild_is_identical_and_seed_matters(encoder):
    again = build_encoder(encoder.spec)
    other = build_encoder(EncoderSpec(**{**encoder.spec.to_dict(), "seed": encoder.spec.seed + 1}))
    a, b, c = encoder.state_dict(), again.state_dict(), other.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point() and a[k].numel() > 1)


def test_bad_specs(encoder):
    spec = encoder.spec.to_dict()
    with pytest.raises(ValueError, match="out of range"):
        build_encoder(EncoderSpec(**{**spec, "layers": (encoder.num_hidden_states,)}))
    with pytest.raises(ValueError, match="unknown"):
        build_encoder(EncoderSpec(**{**spec, "config": {**spec["config"], "hidden_sizee": 8}}))


def test_unknown_kind_and_empty_spec():
    with pytest.raises(ValueError, match="unknown encoder kind"):
        build_encoder(EncoderSpec(kind="wav2vec", layers=(1,), config={"a": 1}))
    with pytest.raises(ValueError, match="pretrained"):
        EncoderSpec(kind="whisper", layers=(1,))


def test_whisper_and_w2vbert_load_released_layout_from_a_directory(tmp_path, rng):
    """The real loading path, fed a tiny checkpoint saved in the released layout."""
    from transformers import (
        SeamlessM4TFeatureExtractor,
        Wav2Vec2BertConfig,
        Wav2Vec2BertModel,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    wave = _batch([_noise(rng, 24_000)])
    whisper_cfg = WhisperConfig(**TINY["whisper"].config)
    full = WhisperForConditionalGeneration(whisper_cfg)
    full.save_pretrained(tmp_path / "whisper")
    WhisperFeatureExtractor(feature_size=whisper_cfg.num_mel_bins).save_pretrained(tmp_path / "whisper")
    w2v = Wav2Vec2BertModel(Wav2Vec2BertConfig(**TINY["w2vbert"].config))
    w2v.save_pretrained(tmp_path / "w2vbert")
    SeamlessM4TFeatureExtractor(feature_size=80, stride=2).save_pretrained(tmp_path / "w2vbert")

    for kind, reference in (("whisper", full.model.encoder), ("w2vbert", w2v)):
        spec = EncoderSpec(kind=kind, layers=TINY[kind].layers, pretrained=str(tmp_path / kind))
        loaded = build_encoder(spec)
        for name, tensor in reference.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[name], tensor), (kind, name)
        hidden, lengths = loaded.encode(*wave)
        assert hidden.shape[:2] == (len(spec.layers), 1) and int(lengths[0]) == loaded.output_length(24_000)
