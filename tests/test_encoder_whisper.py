"""Whisper specifics: the unrolled forward is Hugging Face's, and trimmed windows (``trim_to_audio``)."""

import numpy as np
import pytest
import torch

from alarm.encoders import EncoderSpec, build_encoder
from alarm.presets import load_preset

torch.set_num_threads(1)

SPEC = next(EncoderSpec.from_dict(s) for s in load_preset("tiny-alarm-ca")["encoders"] if s["kind"] == "whisper")


def _wave(rng: np.random.Generator, seconds: float) -> torch.Tensor:
    return torch.from_numpy((0.1 * rng.standard_normal(int(seconds * 16_000))).astype(np.float32))


def _spec(**changes) -> EncoderSpec:
    return EncoderSpec(**{**SPEC.to_dict(), **changes})


def test_unrolled_forward_gives_the_hugging_face_hidden_states(rng):
    every = tuple(range(SPEC.config["encoder_layers"] + 1))  # the last one is the final layer norm's
    encoder = build_encoder(_spec(layers=every))
    waves = [_wave(rng, 1.3), _wave(rng, 0.4)]
    hidden, lengths = encoder.encode_windows(waves)
    features = encoder.feature_extractor([w.numpy() for w in waves], sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        reference = encoder.model(features.input_features, output_hidden_states=True).hidden_states
    for layer in every:
        for n, length in enumerate(lengths.tolist()):
            torch.testing.assert_close(hidden[layer, n, :length], reference[layer][n, :length])


def test_only_the_blocks_up_to_the_deepest_selected_layer_run(rng):
    encoder = build_encoder(_spec(layers=(1,)))
    ran = []
    for block in encoder.model.layers:
        block.register_forward_hook(lambda *_: ran.append(1))
    encoder.encode_windows([_wave(rng, 0.5)])
    assert len(ran) == 1


def test_trimmed_windows_are_padded_to_whole_seconds_whatever_the_batch(rng):
    full, trimmed = build_encoder(SPEC), build_encoder(_spec(trim_to_audio=True))
    assert [trimmed.mel_frames(n) for n in (1, 16_000, 16_001, 40 * 16_000)] == [100, 100, 200, 3000]
    assert full.mel_frames(16_000) == 3000
    waves = [_wave(rng, 2.2), _wave(rng, 0.3), _wave(rng, 2.9)]
    hidden, lengths = trimmed.encode_windows(waves)
    for n, wave in enumerate(waves):
        alone, alone_lengths = trimmed.encode_windows([wave])
        assert int(alone_lengths[0]) == int(lengths[n]) == full.window_output_length(wave.numel())
        torch.testing.assert_close(hidden[:, n, : int(lengths[n])], alone[:, 0])
        assert not hidden[:, n, int(lengths[n]) :].any()  # zeros past the clip, as padded batches expect
    # A network that saw 30 s gives other states than one that saw 3 s: the setting is real.
    padded, _ = full.encode_windows([waves[2]])
    assert not torch.allclose(padded[:, 0], hidden[:, 2, : int(lengths[2])], atol=1e-3)


def test_trimming_is_a_whisper_setting_and_part_of_the_spec():
    assert EncoderSpec.from_dict(_spec(trim_to_audio=True).to_dict()).trim_to_audio
    assert "trim_to_audio" in SPEC.to_dict()  # the feature cache's manifest tells the two apart
    with pytest.raises(ValueError, match="Whisper setting"):
        EncoderSpec(kind="w2vbert", layers=(1,), config={"a": 1}, trim_to_audio=True)
