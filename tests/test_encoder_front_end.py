"""The official W2V-BERT and MuQ front ends (the paper presets' default) and MuQ's 16 kHz input."""

import numpy as np
import pytest
import torch
from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import Wav2Vec2ConformerEncoder

from alarm.audio import resample
from alarm.encoders import EncoderSpec, build_encoder
from alarm.presets import load_preset, preset_config

torch.set_num_threads(1)

TINY = {spec["kind"]: spec for spec in load_preset("tiny-alarm-ca")["encoders"]}


def _spec(kind: str, **changes) -> EncoderSpec:
    return EncoderSpec.from_dict({**TINY[kind], **changes})


def _wave(n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy((0.1 * rng.standard_normal(n)).astype(np.float32))


def _encode(enc, wave: torch.Tensor):
    return enc.encode(wave[None], torch.tensor([wave.numel()]))


@pytest.mark.parametrize("name", ["alarm-ca", "alarm-p", "al-muq-r", "al-w2vbert2-r"])
def test_paper_presets_use_the_official_front_ends(name):
    specs = {s.kind: s for s in preset_config(name).encoder_specs()}
    for kind in ("w2vbert", "muq"):
        if kind in specs:
            assert not specs[kind].per_window_front_end
    if "muq" in specs:
        assert specs["muq"].input_rate == 16000


def test_w2vbert_pads_160_samples_at_each_edge_and_normalises_over_the_whole_clip():
    enc = build_encoder(_spec("w2vbert", window_seconds=1.0))  # windows of 50 stacked frames
    wave = _wave(40_000)  # 2.5 s: three windows
    hidden, lengths = _encode(enc, wave)
    assert int(lengths[0]) == (1 + (40_000 - 80) // 160) // 2 == enc.output_length(40_000) == 125
    # the features of the whole edge-padded clip, cut into windows of 50 frames
    padded = np.pad(wave.numpy(), (160, 160))
    features = enc.feature_extractor([padded], sampling_rate=16_000, return_tensors="pt").input_features
    for start in (0, 50, 100):
        piece = features[:, start : start + 50]
        with torch.no_grad():
            expected = enc.model(piece, output_hidden_states=True).hidden_states
        for i, layer in enumerate(enc.layers):
            torch.testing.assert_close(
                hidden[i, 0, start : start + piece.shape[1]], expected[layer][0], atol=1e-5, rtol=1e-4
            )
    # ours normalises each window alone, without edge padding: other states, one frame fewer
    ours, ours_lengths = _encode(build_encoder(_spec("w2vbert", window_seconds=1.0, per_window_front_end=True)), wave)
    assert int(ours_lengths[0]) == 2 * 49 + 24 and not torch.allclose(ours[:, 0, :50], hidden[:, 0, :50], atol=1e-3)


def test_muq_pads_to_whole_30_s_windows_and_masks_only_the_conformer():
    enc = build_encoder(_spec("muq", input_rate=None))
    n = 24_000 + 500
    hidden, lengths = _encode(enc, _wave(n))
    assert int(lengths[0]) == n // 960 == enc.output_length(n) == 25
    # reference: the zero-padded 30 s window, the front end unmasked, transformers' conformer
    # given the sample mask taken every 960 samples (what MuQ's attention_mask handling does)
    window = torch.nn.functional.pad(_wave(n), (0, 720_000 - n))
    with torch.no_grad():
        mel = enc.log_mel(window)[None]
        x, _ = enc.conv(mel, torch.ones(1, mel.shape[-1], dtype=torch.bool))
        mask = (torch.ones(720_000, dtype=torch.bool) & (torch.arange(720_000) < n))[::960][: x.shape[1]]
        conformer: Wav2Vec2ConformerEncoder = enc.conformer
        last = conformer(x, attention_mask=mask[None]).last_hidden_state  # after the final LayerNorm
    assert enc.layers[-1] == enc.num_hidden_states - 1
    torch.testing.assert_close(hidden[-1, 0], last[0, :25], atol=1e-4, rtol=1e-4)
    # ours: the clip alone, ceil(n / 960) frames and other states
    ours, ours_lengths = _encode(build_encoder(_spec("muq", input_rate=None, per_window_front_end=True)), _wave(n))
    assert int(ours_lengths[0]) == 26 and not torch.allclose(ours[-1, 0, :25], hidden[-1, 0], atol=1e-3)


def test_muq_hears_the_clip_through_16_khz():
    """``input_rate`` 16000: a 24 kHz wave is band-limited as the official 16 kHz corpus was."""
    t = torch.arange(24_000) / 24_000
    high = torch.sin(2 * torch.pi * 10_000 * t)  # above 8 kHz: gone at 16 kHz
    low = torch.sin(2 * torch.pi * 440 * t)
    enc = build_encoder(_spec("muq", input_rate=16000))
    through = enc._through_rate((low + high)[None], torch.tensor([24_000]), 16000)[0]
    assert through.shape == (24_000,)
    torch.testing.assert_close(through[2000:-2000], low[2000:-2000], atol=2e-2, rtol=0)
    direct = resample(resample((low + high).numpy(), 24_000, 16_000), 16_000, 24_000)[:24_000]
    np.testing.assert_allclose(through.numpy(), direct, atol=1e-6)
    # and the encoder hears exactly that band-limited wave
    plain_encoder = build_encoder(_spec("muq", input_rate=None))
    heard, _ = _encode(enc, low + high)
    torch.testing.assert_close(heard, _encode(plain_encoder, through)[0], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(heard, _encode(plain_encoder, low + high)[0], atol=1e-3)


def test_front_end_settings_are_checked():
    with pytest.raises(ValueError, match="W2V-BERT / MuQ setting"):
        _spec("whisper", per_window_front_end=True)
    with pytest.raises(ValueError, match="positive rate"):
        _spec("muq", input_rate=0)
    assert EncoderSpec.from_dict(_spec("muq").to_dict()) == _spec("muq")
