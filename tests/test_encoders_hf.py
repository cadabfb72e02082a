"""Whisper and W2V-BERT encoders on tiny random configs."""

import numpy as np
import pytest
import torch

from alarm.encoders import EncoderSpec, build_encoder

torch.set_num_threads(1)

TINY = {
    "whisper": EncoderSpec(
        kind="whisper",
        layers=(1, 2),
        config=dict(num_mel_bins=128, d_model=16, encoder_layers=2, encoder_attention_heads=2,
                    encoder_ffn_dim=32, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32,
                    vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1),
    ),
    "w2vbert": EncoderSpec(
        kind="w2vbert",
        layers=(1, 2),
        config=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                    output_hidden_size=16, conv_depthwise_kernel_size=5),
    ),
}


def _batch(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in waves])
    out = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.from_numpy(w)
    return out, lengths


@pytest.fixture(scope="module", params=sorted(TINY))
def encoder(request):
    return build_encoder(TINY[request.param])


def test_shapes_and_50hz(encoder, rng):
    for seconds in (1.0, 2.5, 7.0):
        wave = rng.standard_normal(int(seconds * 16000)).astype(np.float32) * 0.1
        hidden, lengths = encoder.encode(*_batch([wave]))
        assert hidden.shape == (len(encoder.layers), 1, int(lengths[0]), encoder.hidden_size)
        assert abs(int(lengths[0]) - 50 * seconds) <= 1
        assert int(lengths[0]) == encoder.output_length(len(wave))


def test_padded_batch_matches_alone(encoder, rng):
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 9000, 23456)]
    hidden, lengths = encoder.encode(*_batch(waves))
    for i, w in enumerate(waves):
        alone, alone_len = encoder.encode(*_batch([w]))
        assert int(alone_len[0]) == int(lengths[i])
        torch.testing.assert_close(hidden[:, i, : lengths[i]], alone[:, 0], atol=1e-5, rtol=1e-4)
        assert torch.all(hidden[:, i, lengths[i]:] == 0)


def test_long_audio_is_windowed_not_cut(rng):
    spec = EncoderSpec(**{**TINY["whisper"].to_dict(), "window_seconds": 2.0})
    enc = build_encoder(spec)
    wave = rng.standard_normal(5 * 16000).astype(np.float32) * 0.1
    hidden, lengths = enc.encode(*_batch([wave]))
    assert int(lengths[0]) == 2 * enc.window_output_length(32000) + enc.window_output_length(16000) == 250
    first, _ = enc.encode(*_batch([wave[:32000]]))
    torch.testing.assert_close(hidden[:, 0, :100], first[:, 0], atol=1e-5, rtol=1e-4)


def test_very_short_audio_yields_a_frame(encoder):
    hidden, lengths = encoder.encode(*_batch([np.zeros(200, np.float32)]))
    assert int(lengths[0]) >= 1 and hidden.shape[2] == int(lengths[0])


def test_frozen_and_seeded(encoder):
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training and not any(m.training for m in encoder.modules())
    again = build_encoder(encoder.spec)
    for (k, a), (_, b) in zip(encoder.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


def test_bad_layers_and_config():
    with pytest.raises(ValueError, match="out of range"):
        build_encoder(EncoderSpec(**{**TINY["w2vbert"].to_dict(), "layers": (5,)}))
    with pytest.raises(ValueError, match="unknown config keys"):
        build_encoder(EncoderSpec(kind="whisper", layers=(1,), config={"d_modell": 8}))
    with pytest.raises(ValueError, match="unknown encoder kind"):
        build_encoder(EncoderSpec(kind="wav2vec", layers=(1,), config={"a": 1}))
