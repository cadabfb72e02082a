"""Audio loading: decode with soundfile (libsndfile), mix to mono, resample with soxr.

torchaudio and torchcodec do not load on the machines this project runs on, and
``datasets.Audio`` decoding needs torchcodec, so every waveform the encoders see comes
through :func:`load_audio`. The encoders want mono float32 at 16 kHz (Whisper, W2V-BERT,
SSLAM) or 24 kHz (MuQ); ``load_audio(x, target_rate=...)`` gives exactly that.

Inputs: a path, encoded bytes (any container libsndfile reads: WAV, FLAC, OGG/Vorbis, MP3
where the linked libsndfile has it, AIFF, ...), a NumPy array with its ``sample_rate``, or a
:class:`Waveform`. Bad input raises :class:`AudioError` whose message names the input and
the problem. What is detected, and how:

* missing file / not a regular file / unreadable (permissions): checked with the OS before
  libsndfile sees the path ("does not exist", "is not a file", "cannot be opened");
* zero bytes, or a valid header with zero frames, or an empty array: "empty";
* not audio (random bytes, a text file): libsndfile refuses to open it ("not a readable
  audio file", with libsndfile's own reason);
* sample rate <= 0, not an integer, or outside [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]: "sample rate";
* NaN / Inf samples (float files or arrays): "NaN or Inf";
* offset at or past the end: "beyond the end"; negative offset / non-positive duration: refused;
* audio to decode longer than ``max_seconds``: "longer than". For files this is decided from
  the header (frame count and rate) before a single frame is decoded, so a huge file is
  refused without reading it. The limit applies to what would be decoded, i.e. the
  ``[offset_s, offset_s + duration_s)`` segment when one is asked for.
* truncated files: "truncated". libsndfile does not agree with itself here, so there are
  three checks:
    - WAV (RIFF/RIFX) and AIFF (FORM): libsndfile *silently* shrinks the frame count to the
      bytes present when the data chunk was cut. We parse the chunk headers ourselves and
      compare the declared size of the ``data`` / ``SSND`` chunk with the bytes actually
      present after it.
    - FLAC, MP3: the header (STREAMINFO / Xing) keeps the full length; decoding then either
      fails ("lost sync", reported as "unreadable or truncated") or returns fewer frames
      than the header promised, which we compare after decoding. (An MP3 without a
      Xing/Info header only has an estimated length; should libsndfile overshoot it, that
      file is reported truncated too. Not seen with the files in the tests.)
    - OGG/Vorbis: the length comes from the last page, so a cut file reports 0 frames or
      fails to open; it is reported as "empty" or "not a readable audio file".
  What cannot be detected: a WAV/AIFF whose header was rewritten to match the cut data,
  streaming WAVs whose data size is a placeholder (0 or >= 0x7FFFF000, skipped on purpose),
  RF64/W64 and other containers we do not parse, formats with no length in the header, and
  damage inside the data that still decodes (bit flips in PCM are just other samples).

Segments (``offset_s``/``duration_s``) are read with ``SoundFile.seek`` + ``read(frames)``,
never by decoding the whole file and slicing - except for MP3. libsndfile's MP3 seek is not
sample-accurate (mpg123 "fuzzy" seeking), and soundfile calls seek around *every* read, so
only one read from frame 0 gives the right samples: for an MP3 segment we read
``[0, offset + duration)`` in one call and drop the prefix (time and memory grow with the
offset; ``max_seconds`` still counts the segment only).
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Union

import numpy as np
import soundfile as sf
import soxr

if TYPE_CHECKING:  # torch is only needed by Waveform.to_tensor; keep `import alarm.audio` light
    import torch

__all__ = [
    "AudioError",
    "Waveform",
    "encoded_suffix",
    "load_audio",
    "resample",
    "validate",
    "DEFAULT_MAX_SECONDS",
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "MAX_CHANNELS",
]

DEFAULT_MAX_SECONDS: float = 3600.0
"""Longest audio :func:`load_audio` decodes unless told otherwise (one hour)."""

MIN_SAMPLE_RATE: int = 1_000
"""Below this a rate is almost surely a unit mistake (kHz given as Hz)."""

MAX_SAMPLE_RATE: int = 768_000
"""The highest rate real converters use; above it the value is garbage."""

MAX_CHANNELS: int = 8
"""Most channels an array may have; also how (S, C) is told from (C, S)."""

RESAMPLE_QUALITY = "HQ"
"""soxr quality: HQ is transparent for 16/24 kHz encoders and ~2x faster than VHQ."""

# WAV writers that cannot seek back (pipes) leave these in the data size; not a truncation.
_PLACEHOLDER_SIZE = 0x7FFFF000

AudioSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, "Waveform"]


class AudioError(ValueError):
    """Audio that cannot be used: the message names the input and what is wrong with it."""


def _fail(source: str, problem: str) -> AudioError:
    return AudioError(f"{source}: {problem}")


@dataclass(frozen=True)
class Waveform:
    """Mono audio ready for an encoder.

    Attributes:
        samples: float32, mono, shape ``(S,)``.
        sample_rate: samples per second.
        source: the path, ``"<bytes>"`` or ``"<array>"``; used in error messages.
    """

    samples: np.ndarray
    sample_rate: int
    source: str = "<array>"

    def __post_init__(self) -> None:
        # Structural invariants only (cheap); content checks (empty, NaN, length) are validate()'s.
        if not isinstance(self.samples, np.ndarray) or self.samples.ndim != 1:
            raise _fail(self.source, "Waveform.samples must be a 1-D numpy array")
        if self.samples.dtype != np.float32:
            raise _fail(self.source, f"Waveform.samples must be float32, got {self.samples.dtype}")
        object.__setattr__(self, "sample_rate", _check_rate(self.sample_rate, self.source))

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return len(self.samples) / self.sample_rate

    def resample(self, rate: int) -> Waveform:
        """The same audio at ``rate`` (soxr, HQ); ``self`` when the rate already matches."""
        rate = _check_rate(rate, self.source)
        if rate == self.sample_rate:
            return self
        return Waveform(resample(self.samples, self.sample_rate, rate), rate, self.source)

    def to_tensor(self) -> torch.Tensor:
        """The samples as a float32 1-D tensor (a copy: in-place edits never reach ``self``)."""
        import torch

        return torch.tensor(self.samples, dtype=torch.float32)


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample 1-D (or ``(S, C)``) float audio from ``orig_rate`` to ``target_rate`` with soxr HQ.

    Output length is about ``S * target_rate / orig_rate`` (soxr rounds; within one sample);
    the input is returned unchanged (no copy) when the rates are equal. Integer input is
    refused: it would need PCM scaling, which :func:`load_audio` does.
    """
    orig_rate = _check_rate(orig_rate, "<array>")
    target_rate = _check_rate(target_rate, "<array>")
    if orig_rate == target_rate:
        return samples
    samples = np.asarray(samples)
    if samples.dtype.kind != "f":  # ints would need PCM scaling first; see load_audio
        raise AudioError(f"<array>: resample needs float samples, got dtype {samples.dtype}")
    if samples.shape[0] == 0:
        return samples.copy()
    return soxr.resample(samples, orig_rate, target_rate, quality=RESAMPLE_QUALITY)


def validate(
    samples: np.ndarray,
    sample_rate: int,
    source: str,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> None:
    """Raise :class:`AudioError` unless ``samples`` is usable mono audio.

    Checks: a 1-D float array, a plausible sample rate, at least one sample, no NaN/Inf, and
    no longer than ``max_seconds`` (``None`` disables the limit).
    """
    rate = _check_rate(sample_rate, source)
    if not isinstance(samples, np.ndarray) or samples.ndim != 1:
        raise _fail(source, f"expected 1-D mono samples, got {_describe(samples)}")
    if samples.dtype.kind != "f":
        raise _fail(source, f"expected float samples, got dtype {samples.dtype}")
    if samples.size == 0:
        raise _fail(source, "audio is empty (0 samples)")
    _check_length(len(samples), rate, source, max_seconds)
    # A float64 sum is NaN/Inf iff some sample is (finite float32 values cannot overflow it),
    # and it needs no S-sized temporary; only locate the culprit when there is one.
    if not math.isfinite(float(np.sum(samples, dtype=np.float64))):
        bad = np.flatnonzero(~np.isfinite(samples))
        raise _fail(
            source,
            f"contains NaN or Inf samples ({bad.size} of {samples.size}, first at sample {bad[0]})",
        )


def load_audio(
    source: AudioSource,
    *,
    sample_rate: int | None = None,
    target_rate: int | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> Waveform:
    """Decode, mix to mono, validate and optionally resample audio.

    Args:
        source: a path; encoded bytes (any format libsndfile reads); a NumPy array (needs
            ``sample_rate``); or a :class:`Waveform` (returned as is when nothing is asked of it).
            Arrays may be ``(S,)``, ``(S, C)`` or ``(C, S)``: the *shorter* axis is the channel
            axis and must have at most ``MAX_CHANNELS`` (8) entries; when both axes are equal,
            ``(S, C)`` (soundfile's layout) wins. Integer arrays are PCM and scaled to [-1, 1]
            (signed: divided by ``2**(bits-1)``; uint8: centred on 128); float arrays are kept.
        sample_rate: the rate of an array (required). For files, bytes and Waveforms it is an
            expectation: a different rate in the header raises.
        target_rate: resample to this rate (soxr HQ) when given.
        max_seconds: refuse audio longer than this (checked from the header, before decoding);
            ``None`` disables the limit. Applies to the segment that is decoded.
        offset_s: start of the segment to read, in seconds (rounded to the nearest sample).
        duration_s: length of the segment in seconds (rounded); ``None`` reads to the end. A
            segment running past the end is cut at the end.

    Raises:
        AudioError: for any input that is not usable audio (see the module docstring).
    """
    if max_seconds is not None and not (max_seconds > 0):
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds!r}")
    if isinstance(source, Waveform):
        wave = _from_waveform(source, sample_rate, max_seconds, offset_s, duration_s)
    elif isinstance(source, np.ndarray):
        wave = _from_array(source, sample_rate, max_seconds, offset_s, duration_s)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        wave = _from_file(io.BytesIO(data), "<bytes>", len(data), sample_rate, max_seconds, offset_s, duration_s)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        wave = _from_file(path, path, _file_size(path), sample_rate, max_seconds, offset_s, duration_s)
    else:
        raise AudioError(f"<{type(source).__name__}>: unsupported audio source type")
    if target_rate is not None:
        wave = wave.resample(target_rate)
    return wave


# Leading bytes of the containers libsndfile reads, to name extracted audio that came without
# a file name (MP3 frames start with a sync word; ID3 is the tag block before them).
_MAGIC = ((b"RIFF", ".wav"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"), (b"\xff\xfb", ".mp3"))


def encoded_suffix(data: bytes, name: str | None = None) -> str:
    """The file suffix for encoded audio ``data`` (e.g. a Hugging Face ``Audio`` cell).

    The suffix of ``name`` (the cell's original file name) when it has one, else one guessed
    from the leading bytes, else ``.wav``. libsndfile detects the format from the content, so
    a wrong guess only misnames the file; it never changes what is decoded.
    """
    suffix = os.path.splitext(name or "")[1].lower()
    if suffix:
        return suffix
    return next((ext for magic, ext in _MAGIC if data.startswith(magic)), ".wav")


# ---------------------------------------------------------------------------------------------
# Sources


def _from_waveform(
    wave: Waveform,
    sample_rate: int | None,
    max_seconds: float | None,
    offset_s: float,
    duration_s: float | None,
) -> Waveform:
    _check_expected_rate(wave.sample_rate, sample_rate, wave.source)
    if len(wave.samples) == 0:
        raise _fail(wave.source, "audio is empty (0 samples)")
    start, frames = _segment(len(wave.samples), wave.sample_rate, offset_s, duration_s, wave.source)
    if frames != len(wave.samples):
        wave = Waveform(wave.samples[start : start + frames], wave.sample_rate, wave.source)
    validate(wave.samples, wave.sample_rate, wave.source, max_seconds)
    return wave


def _from_array(
    array: np.ndarray,
    sample_rate: int | None,
    max_seconds: float | None,
    offset_s: float,
    duration_s: float | None,
) -> Waveform:
    source = "<array>"
    if sample_rate is None:
        raise _fail(source, "sample_rate is required for an array")
    rate = _check_rate(sample_rate, source)
    if array.ndim not in (1, 2):
        raise _fail(source, f"expected (S,), (S, C) or (C, S), got shape {array.shape}")
    if array.size == 0:
        raise _fail(source, f"audio is empty (shape {array.shape})")
    # Bring to (S, C) first so the segment is sliced before any conversion work.
    if array.ndim == 1:
        frames_first = array[:, None]
    else:
        channels = min(array.shape)
        if channels > MAX_CHANNELS:
            raise _fail(
                source,
                f"cannot tell channels from samples in shape {array.shape}: "
                f"the shorter axis must have at most {MAX_CHANNELS} channels",
            )
        # Shorter axis = channels; a tie keeps soundfile's (S, C).
        frames_first = array if array.shape[1] <= array.shape[0] else array.T
    start, frames = _segment(frames_first.shape[0], rate, offset_s, duration_s, source)
    _check_length(frames, rate, source, max_seconds)
    mono = _mix_to_mono(_to_float32(frames_first[start : start + frames], source))
    if np.may_share_memory(mono, array):  # a frozen Waveform must not alias the caller's array
        mono = mono.copy()
    validate(mono, rate, source, max_seconds)
    return Waveform(mono, rate, source)


def _from_file(
    file: str | BinaryIO,
    source: str,
    size: int,
    sample_rate: int | None,
    max_seconds: float | None,
    offset_s: float,
    duration_s: float | None,
) -> Waveform:
    if size == 0:
        raise _fail(source, "file is empty (0 bytes)")
    # Before libsndfile opens it: libsndfile would quietly shorten a cut WAV/AIFF.
    _check_chunk_truncation(file, source)
    try:
        handle = sf.SoundFile(file)
    except (sf.SoundFileError, RuntimeError) as err:
        raise _fail(source, f"not a readable audio file (libsndfile: {_sf_reason(err)})") from err
    with handle:
        rate = _check_rate(handle.samplerate, source)
        _check_expected_rate(rate, sample_rate, source)
        total = handle.frames
        if total <= 0:
            raise _fail(
                source,
                f"audio is empty: the {handle.format} header declares 0 frames "
                "(an empty file, or one truncated so its length cannot be read)",
            )
        start, frames = _segment(total, rate, offset_s, duration_s, source)
        # Before decoding: a huge file is refused from its header alone.
        _check_length(frames, rate, source, max_seconds)
        try:
            data = _read_frames(handle, start, frames)
        except (sf.SoundFileError, RuntimeError) as err:
            raise _fail(source, f"unreadable or truncated: decoding failed (libsndfile: {_sf_reason(err)})") from err
    if data.shape[0] < frames:
        raise _fail(
            source,
            f"truncated: the header promises {frames} frames from frame {start} "
            f"but only {data.shape[0]} could be decoded",
        )
    mono = _mix_to_mono(data)
    validate(mono, rate, source, max_seconds)
    return Waveform(mono, rate, source)


# ---------------------------------------------------------------------------------------------
# Helpers


def _check_rate(rate: object, source: str) -> int:
    """The rate as an int, or AudioError when it is not a plausible audio sample rate."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer, float, np.floating)):
        raise _fail(source, f"sample rate must be an integer, got {rate!r}")
    if isinstance(rate, (float, np.floating)):
        if not math.isfinite(rate) or rate != int(rate):
            raise _fail(source, f"sample rate must be an integer, got {rate!r}")
    value = int(rate)
    if value <= 0:
        raise _fail(source, f"sample rate must be positive, got {value}")
    if not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
        raise _fail(
            source,
            f"sample rate {value} Hz is outside the plausible range [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz",
        )
    return value


def _check_expected_rate(actual: int, expected: int | None, source: str) -> None:
    if expected is not None and _check_rate(expected, source) != actual:
        raise _fail(source, f"sample rate is {actual} Hz, expected {expected} Hz")


def _check_length(frames: int, rate: int, source: str, max_seconds: float | None) -> None:
    if max_seconds is not None and frames > max_seconds * rate:
        raise _fail(
            source,
            f"{frames / rate:.1f} s of audio is longer than the limit of {max_seconds:g} s "
            "(raise max_seconds, pass None, or read a segment)",
        )


def _segment(total: int, rate: int, offset_s: float, duration_s: float | None, source: str) -> tuple[int, int]:
    """(first frame, frame count) of ``[offset_s, offset_s + duration_s)``, cut at the end."""
    if not (math.isfinite(offset_s) and offset_s >= 0):
        raise _fail(source, f"offset_s must be finite and >= 0, got {offset_s!r}")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise _fail(source, f"duration_s must be finite and > 0, got {duration_s!r}")
    start = round(offset_s * rate)
    if start >= total:
        raise _fail(source, f"offset {offset_s:g} s is beyond the end of the audio ({total / rate:.3f} s)")
    frames = total - start if duration_s is None else min(round(duration_s * rate), total - start)
    if frames <= 0:
        raise _fail(source, f"segment is empty: duration {duration_s:g} s is under one sample")
    return start, frames


def _read_frames(handle: sf.SoundFile, start: int, frames: int) -> np.ndarray:
    """Frames ``[start, start + frames)`` as (n, C) float32; n < frames when the data runs out."""
    if start > 0 and handle.format == "MP3":  # libsndfile calls MPEG audio "MP3"
        # soundfile seeks before and after every read and libsndfile's MP3 seeks are fuzzy,
        # so a second read (or any seek) returns shifted audio: decode the prefix in one read.
        data = handle.read(start + frames, dtype="float32", always_2d=True)
        return data[start:].copy()  # copy: do not keep the prefix alive
    if start > 0:
        handle.seek(start)
    return handle.read(frames, dtype="float32", always_2d=True)


def _to_float32(array: np.ndarray, source: str) -> np.ndarray:
    """Float arrays as float32; integer PCM scaled to [-1, 1]."""
    kind = array.dtype.kind
    if kind == "f":
        return array.astype(np.float32, copy=False)
    if kind == "i":
        scale = 1.0 / float(2 ** (8 * array.dtype.itemsize - 1))
        return array.astype(np.float32) * np.float32(scale)
    if array.dtype == np.uint8:  # 8-bit PCM (as in WAV) is unsigned, centred on 128
        return (array.astype(np.float32) - np.float32(128.0)) * np.float32(1.0 / 128.0)
    raise _fail(source, f"unsupported sample dtype {array.dtype} (use float, signed int or uint8)")


def _mix_to_mono(frames_first: np.ndarray) -> np.ndarray:
    """(S, C) float32 -> contiguous (S,) float32, the mean over channels."""
    if frames_first.shape[1] == 1:
        return np.ascontiguousarray(frames_first[:, 0])
    return frames_first.mean(axis=1, dtype=np.float32)


def _check_chunk_truncation(file: str | BinaryIO, source: str) -> None:
    """AudioError when a WAV/AIFF data chunk declares more bytes than the file holds.

    libsndfile quietly shortens such files to the bytes present, so this is the only place
    a cut WAV or AIFF is noticed. Other containers are left alone (see the module docstring).
    """
    if isinstance(file, str):
        with open(file, "rb") as stream:
            found = _declared_vs_present(stream)
    else:
        position = file.tell()
        file.seek(0)
        try:
            found = _declared_vs_present(file)
        finally:
            file.seek(position)
    if found is not None:
        declared, present = found
        raise _fail(
            source,
            f"truncated: the header declares {declared} bytes of audio data but only {present} are present",
        )


def _declared_vs_present(stream: BinaryIO) -> tuple[int, int] | None:
    """(declared, present) data bytes when a RIFF/RIFX WAVE or FORM AIFF/AIFC is cut short."""
    head = stream.read(12)
    if len(head) < 12:
        return None
    magic, kind = head[:4], head[8:12]
    if magic == b"RIFF" and kind == b"WAVE":
        endian, data_id = "<", b"data"
    elif magic == b"RIFX" and kind == b"WAVE":
        endian, data_id = ">", b"data"
    elif magic == b"FORM" and kind in (b"AIFF", b"AIFC"):
        endian, data_id = ">", b"SSND"
    else:
        return None
    stream.seek(0, io.SEEK_END)
    file_size = stream.tell()
    position = 12
    for _ in range(1024):  # real files have a handful of chunks; stop on garbage
        stream.seek(position)
        chunk = stream.read(8)
        if len(chunk) < 8:
            return None
        chunk_id, (size,) = chunk[:4], struct.unpack(endian + "I", chunk[4:])
        if chunk_id == data_id:
            if size == 0 or size >= _PLACEHOLDER_SIZE:
                return None  # streaming writer never filled the size in
            present = file_size - (position + 8)
            return (size, present) if present < size else None
        position += 8 + size + (size & 1)  # chunks are padded to even sizes
    return None


def _file_size(path: str) -> int:
    """Size in bytes; AudioError for a missing, non-regular or unopenable path."""
    if not os.path.exists(path):
        raise _fail(path, "file does not exist")
    if not os.path.isfile(path):
        raise _fail(path, "is not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise _fail(path, f"cannot be opened ({err.strerror or err})") from err
    return os.path.getsize(path)


def _sf_reason(err: BaseException) -> str:
    """libsndfile's own reason, without soundfile's "Error opening <path>:" prefix."""
    reason = getattr(err, "error_string", None)  # LibsndfileError carries it bare
    return str(reason) if reason else str(err)


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}"
    return type(value).__name__
