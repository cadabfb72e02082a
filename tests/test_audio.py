"""alarm.audio: decoding, mono mixing, segments, resampling and every refused input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from alarm.audio import (
    DEFAULT_MAX_SECONDS,
    AudioError,
    Waveform,
    load_audio,
    resample,
    validate,
)

torch.set_num_threads(1)

FORMATS = sf.available_formats()


def sine(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    """Frequency of the largest FFT bin (Hann window to keep leakage off the peak)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1.0 / rate)[np.argmax(spectrum)])


def write(path: Path, data: np.ndarray, rate: int, **kwargs) -> Path:
    sf.write(path, data, rate, **kwargs)
    return path


def needs(fmt: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(fmt not in FORMATS, reason=f"this libsndfile cannot write/read {fmt}")


def raises(match: str):
    return pytest.raises(AudioError, match=match)


# ---------------------------------------------------------------------------------------------
# Round trips


def test_wav_pcm16_round_trip(tmp_path):
    x = sine(1.0, 16000)
    w = load_audio(write(tmp_path / "a.wav", x, 16000, subtype="PCM_16"))
    assert w.sample_rate == 16000 and w.samples.dtype == np.float32 and w.samples.shape == x.shape
    np.testing.assert_allclose(w.samples, x, atol=1.0 / 32768)
    assert w.seconds == pytest.approx(1.0)
    assert w.source == str(tmp_path / "a.wav")


def test_wav_float_round_trip_is_exact(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, 8000).astype(np.float32)
    w = load_audio(write(tmp_path / "a.wav", x, 8000, subtype="FLOAT"))
    np.testing.assert_array_equal(w.samples, x)


@needs("FLAC")
def test_flac_round_trip(tmp_path):
    x = sine(1.0, 44100)
    w = load_audio(str(write(tmp_path / "a.flac", x, 44100)))  # str path as well as Path
    assert w.sample_rate == 44100
    np.testing.assert_allclose(w.samples, x, atol=1.0 / 32768)


@pytest.mark.parametrize(
    "fmt,ext", [pytest.param("OGG", "ogg", marks=needs("OGG")), pytest.param("MP3", "mp3", marks=needs("MP3"))]
)
def test_lossy_round_trip_keeps_length_and_pitch(tmp_path, fmt, ext):
    x = sine(2.0, 16000)
    w = load_audio(write(tmp_path / f"a.{ext}", x, 16000, format=fmt))
    assert w.sample_rate == 16000
    assert abs(len(w.samples) - len(x)) <= 1152  # at most one codec frame of padding
    assert peak_hz(w.samples, 16000) == pytest.approx(440.0, abs=1.0)


def test_stereo_file_is_mixed_to_mono_mean(tmp_path):
    left, right = sine(0.5, 16000, 440), sine(0.5, 16000, 1000, amp=0.2)
    stereo = np.stack([left, right], axis=1)
    w = load_audio(write(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT"))
    assert w.samples.shape == left.shape
    np.testing.assert_allclose(w.samples, (left + right) / 2, atol=1e-7)


def test_bytes_input(tmp_path):
    x = sine(0.5, 16000)
    buffer = io.BytesIO()
    sf.write(buffer, x, 16000, format="WAV", subtype="FLOAT")
    w = load_audio(buffer.getvalue())
    assert w.source == "<bytes>" and w.sample_rate == 16000
    np.testing.assert_array_equal(w.samples, x)
    seg = load_audio(bytearray(buffer.getvalue()), offset_s=0.25, duration_s=0.1)
    np.testing.assert_array_equal(seg.samples, x[4000:5600])


# ---------------------------------------------------------------------------------------------
# Arrays


def test_array_channel_layouts_agree():
    mono = sine(0.5, 16000)
    stereo_sc = np.stack([mono, -0.5 * mono], axis=1)  # (S, C)
    a = load_audio(stereo_sc, sample_rate=16000)
    b = load_audio(np.ascontiguousarray(stereo_sc.T), sample_rate=16000)  # (C, S)
    np.testing.assert_allclose(a.samples, 0.25 * mono, atol=1e-7)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.source == "<array>"
    # (S,) is mono as is; 8 channels is still fine.
    np.testing.assert_array_equal(load_audio(mono, sample_rate=16000).samples, mono)
    eight = np.tile(mono[:, None], (1, 8))
    np.testing.assert_allclose(load_audio(eight.T, sample_rate=16000).samples, mono, atol=1e-7)


def test_array_layout_errors():
    with raises("channels"):
        load_audio(np.zeros((100, 100), np.float32), sample_rate=16000)
    with raises("shape"):
        load_audio(np.zeros((2, 3, 100), np.float32), sample_rate=16000)
    with raises("sample_rate is required"):
        load_audio(np.zeros(100, np.float32))
    with raises("dtype"):
        load_audio(np.zeros(100, np.complex64), sample_rate=16000)


def test_int_pcm_is_scaled():
    i16 = np.array([-32768, 0, 16384, 32767], dtype=np.int16)
    w = load_audio(i16, sample_rate=16000)
    assert w.samples.dtype == np.float32
    np.testing.assert_allclose(w.samples, [-1.0, 0.0, 0.5, 32767 / 32768])
    i32 = np.array([-(2**31), 2**30], dtype=np.int32)
    np.testing.assert_allclose(load_audio(i32, sample_rate=16000).samples, [-1.0, 0.5])
    u8 = np.array([0, 128, 192], dtype=np.uint8)
    np.testing.assert_allclose(load_audio(u8, sample_rate=16000).samples, [-1.0, 0.0, 0.5])
    f64 = np.array([0.25, -0.5])
    w = load_audio(f64, sample_rate=16000)
    assert w.samples.dtype == np.float32
    np.testing.assert_array_equal(w.samples, [0.25, -0.5])


def test_array_result_does_not_alias_input():
    x = sine(0.1, 16000)
    w = load_audio(x, sample_rate=16000)
    x[:] = 0
    assert np.abs(w.samples).max() > 0.1


# ---------------------------------------------------------------------------------------------
# Waveform


def test_waveform_passthrough_and_options():
    w = Waveform(sine(1.0, 16000), 16000, "<array>")
    assert load_audio(w) is w
    assert load_audio(w, sample_rate=16000) is w
    assert w.resample(16000) is w
    up = load_audio(w, target_rate=24000)
    assert up.sample_rate == 24000 and abs(len(up.samples) - 24000) <= 1
    seg = load_audio(w, offset_s=0.5, duration_s=0.25)
    np.testing.assert_array_equal(seg.samples, w.samples[8000:12000])
    with raises("expected 24000 Hz"):
        load_audio(w, sample_rate=24000)
    with raises("longer than"):
        load_audio(w, max_seconds=0.5)


def test_waveform_to_tensor_is_a_float32_copy():
    w = Waveform(sine(0.1, 16000), 16000, "<array>")
    t = w.to_tensor()
    assert t.dtype == torch.float32 and t.shape == (1600,)
    t.zero_()
    assert np.abs(w.samples).max() > 0.1


def test_waveform_checks_structure():
    with raises("float32"):
        Waveform(np.zeros(10), 16000, "<array>")
    with raises("1-D"):
        Waveform(np.zeros((2, 10), np.float32), 16000, "<array>")
    with raises("sample rate"):
        Waveform(np.zeros(10, np.float32), 0, "<array>")


# ---------------------------------------------------------------------------------------------
# Resampling


@pytest.mark.parametrize("orig,target", [(44100, 16000), (16000, 24000), (48000, 24000)])
def test_resample_keeps_pitch_and_length(orig, target):
    x = sine(1.0, orig)
    y = resample(x, orig, target)
    assert y.dtype == np.float32
    assert abs(len(y) - len(x) * target / orig) <= 1
    assert peak_hz(y, target) == pytest.approx(440.0, abs=1.0)  # 1 s -> 1 Hz bins


def test_load_with_target_rate(tmp_path):
    path = write(tmp_path / "a.wav", np.stack([sine(2.0, 44100)] * 2, axis=1), 44100)
    w = load_audio(path, target_rate=16000)
    assert w.sample_rate == 16000 and abs(len(w.samples) - 32000) <= 1
    assert peak_hz(w.samples, 16000) == pytest.approx(440.0, abs=0.5)


def test_resample_identity_and_refusals():
    x = sine(0.1, 16000)
    assert resample(x, 16000, 16000) is x
    with raises("float"):
        resample(np.zeros(10, np.int16), 16000, 24000)
    with raises("sample rate"):
        resample(x, 16000, 0)


# ---------------------------------------------------------------------------------------------
# Segments


@pytest.mark.parametrize(
    "ext,subtype", [("wav", "FLOAT"), ("wav", "PCM_16"), pytest.param("flac", "PCM_16", marks=needs("FLAC"))]
)
def test_segment_reads_exact_samples(tmp_path, ext, subtype):
    rate = 16000
    x = np.random.default_rng(1).uniform(-0.9, 0.9, (3 * rate, 2)).astype(np.float32)
    path = write(tmp_path / f"a.{ext}", x, rate, subtype=subtype)
    full = load_audio(path).samples
    seg = load_audio(path, offset_s=1.25, duration_s=0.5)
    np.testing.assert_array_equal(seg.samples, full[20000:28000])
    # Cut at the end when the segment runs past it; no duration = to the end.
    np.testing.assert_array_equal(load_audio(path, offset_s=2.5, duration_s=5.0).samples, full[40000:])
    np.testing.assert_array_equal(load_audio(path, offset_s=2.0).samples, full[32000:])


@needs("MP3")
def test_mp3_segment_matches_full_decode(tmp_path):
    # libsndfile's MP3 seek is fuzzy; load_audio must still return the right samples.
    path = write(tmp_path / "a.mp3", sine(3.0, 16000), 16000, format="MP3")
    full = load_audio(path).samples
    seg = load_audio(path, offset_s=1.0, duration_s=0.5)
    np.testing.assert_allclose(seg.samples, full[16000:24000], atol=1e-6)


def test_segment_seeks_instead_of_decoding_everything(tmp_path, monkeypatch):
    path = write(tmp_path / "a.wav", sine(5.0, 16000), 16000)
    asked: list[int] = []
    real_read = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        asked.append(frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    load_audio(path, offset_s=4.0, duration_s=0.5)
    assert asked == [8000]


def test_array_segment():
    x = np.arange(16000, dtype=np.int16)
    w = load_audio(x, sample_rate=16000, offset_s=0.5, duration_s=0.001)
    np.testing.assert_allclose(w.samples, np.arange(8000, 8016) / 32768)


# ---------------------------------------------------------------------------------------------
# Refused inputs: each raises AudioError naming the input and the problem


def test_missing_file(tmp_path):
    with raises("does not exist") as info:
        load_audio(tmp_path / "nope.wav")
    assert "nope.wav" in str(info.value)


def test_directory(tmp_path):
    with raises("is not a file"):
        load_audio(tmp_path)


def test_zero_byte_file_and_bytes(tmp_path):
    (tmp_path / "z.wav").write_bytes(b"")
    with raises("empty"):
        load_audio(tmp_path / "z.wav")
    with raises("<bytes>: file is empty"):
        load_audio(b"")


def test_valid_header_without_frames(tmp_path):
    path = write(tmp_path / "z.wav", np.zeros(0, np.float32), 16000)
    with raises("empty"):
        load_audio(path)


def test_empty_array():
    with raises("empty"):
        load_audio(np.zeros(0, np.float32), sample_rate=16000)
    with raises("empty"):
        load_audio(np.zeros((0, 2), np.float32), sample_rate=16000)


def test_random_bytes_and_text_are_not_audio(tmp_path):
    junk = np.random.default_rng(0).bytes(4096)
    (tmp_path / "junk.wav").write_bytes(junk)
    (tmp_path / "notes.txt").write_text("hello world\n" * 100)
    with raises("not a readable audio file") as info:
        load_audio(tmp_path / "junk.wav")
    assert "junk.wav" in str(info.value)
    with raises("not a readable audio file"):
        load_audio(tmp_path / "notes.txt")
    with raises("<bytes>: not a readable audio file"):
        load_audio(junk)


def test_nan_and_inf(tmp_path):
    x = sine(0.1, 16000)
    x[7] = np.nan
    with raises("NaN"):
        load_audio(write(tmp_path / "n.wav", x, 16000, subtype="FLOAT"))
    with raises("NaN"):
        load_audio(x, sample_rate=16000)
    y = sine(0.1, 16000)
    y[3] = -np.inf
    with raises("Inf.*first at sample 3"):
        load_audio(y, sample_rate=16000)


def test_truncated_wav(tmp_path):
    whole = write(tmp_path / "a.wav", sine(1.0, 16000), 16000, subtype="PCM_16").read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[: len(whole) // 2])
    with raises("truncated"):
        load_audio(tmp_path / "cut.wav")
    with raises("<bytes>: truncated"):
        load_audio(whole[: len(whole) // 2])
    # Header only: the data chunk promises 32000 bytes and has none.
    with raises("truncated"):
        load_audio(whole[:44])


def test_truncated_aiff(tmp_path):
    whole = write(tmp_path / "a.aiff", sine(1.0, 16000), 16000).read_bytes()
    with raises("truncated"):
        load_audio(whole[: int(len(whole) * 0.8)])


@needs("FLAC")
def test_truncated_flac(tmp_path):
    whole = write(tmp_path / "a.flac", sine(2.0, 16000), 16000).read_bytes()
    with raises("truncated"):
        load_audio(whole[: len(whole) // 2])


@needs("MP3")
def test_truncated_mp3(tmp_path):
    whole = write(tmp_path / "a.mp3", sine(3.0, 16000), 16000, format="MP3").read_bytes()
    with raises("truncated"):
        load_audio(whole[: int(len(whole) * 0.9)])


@pytest.mark.parametrize("rate", [0, -16000, 10, 10_000_000, 16000.5])
def test_bad_array_sample_rate(rate):
    with raises("sample rate"):
        load_audio(np.zeros(100, np.float32), sample_rate=rate)


def test_absurd_file_sample_rate(tmp_path):
    path = write(tmp_path / "slow.wav", np.zeros(100, np.float32), 100)
    with raises("sample rate 100 Hz"):
        load_audio(path)


def test_file_rate_differs_from_expected(tmp_path):
    path = write(tmp_path / "a.wav", sine(0.1, 16000), 16000)
    with raises("expected 24000 Hz"):
        load_audio(path, sample_rate=24000)


def test_offset_beyond_end_and_bad_segments(tmp_path):
    path = write(tmp_path / "a.wav", sine(1.0, 16000), 16000)
    with raises("beyond the end"):
        load_audio(path, offset_s=1.0)
    with raises("beyond the end"):
        load_audio(np.zeros(100, np.float32), sample_rate=16000, offset_s=5.0)
    with raises("offset_s"):
        load_audio(path, offset_s=-0.1)
    with raises("duration_s"):
        load_audio(path, duration_s=0.0)
    with raises("under one sample"):
        load_audio(path, duration_s=1e-6)


def test_too_long_is_refused_from_the_header(tmp_path, monkeypatch):
    path = write(tmp_path / "long.wav", np.zeros(8000 * 120, np.int16), 8000)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the header already says it is too long")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with raises("longer than the limit of 60 s"):
        load_audio(path, max_seconds=60)
    monkeypatch.undo()
    # The limit counts the segment that is decoded; None disables it.
    assert load_audio(path, max_seconds=60, offset_s=30, duration_s=10).seconds == pytest.approx(10)
    assert load_audio(path, max_seconds=None).seconds == pytest.approx(120)
    with raises("longer than"):
        load_audio(np.zeros(16000 * 3, np.float32), sample_rate=16000, max_seconds=2)
    assert DEFAULT_MAX_SECONDS == 3600


def test_unsupported_source_type():
    with raises("unsupported"):
        load_audio([0.0, 0.1])  # type: ignore[arg-type]


def test_validate_directly():
    validate(sine(0.1, 16000), 16000, "<array>", None)
    with raises("empty"):
        validate(np.zeros(0, np.float32), 16000, "<array>", None)
    with raises("1-D"):
        validate(np.zeros((2, 2), np.float32), 16000, "<array>", None)
    with raises("longer than"):
        validate(np.zeros(20, np.float32), 1000, "x.wav", 0.01)
