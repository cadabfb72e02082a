"""Speech made offline with espeak-ng (a Debian package): known words, known voice, known rate.

The demo's speech clips and the transcription checks of the packaged Whisper models need
speech whose content and speaker facts are known exactly; espeak-ng synthesises it with no
network and no model files. ``voice`` is an espeak-ng voice name (``en``, ``en+f3`` for a
female variant of English, ``de``, ...); ``words_per_minute`` is its speaking rate.
"""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import soundfile as sf
import soxr

ESPEAK = "espeak-ng"
INSTALL_HINT = "install espeak-ng (Debian/Ubuntu: apt-get install espeak-ng)"


class SpeechUnavailable(RuntimeError):
    """espeak-ng is not installed."""


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


def speak(
    text: str, *, voice: str = "en", words_per_minute: int = 175, pitch: int = 50, sample_rate: int = 16_000
) -> np.ndarray:
    """``text`` spoken by espeak-ng (``pitch`` 0-99, its default 50), as float32 mono samples at ``sample_rate``."""
    if not 0 <= pitch <= 99:
        raise ValueError(f"espeak-ng's pitch is 0 to 99, got {pitch}")
    if not espeak_available():
        raise SpeechUnavailable(f"{ESPEAK} not found; {INSTALL_HINT}")
    if not text.strip():
        raise ValueError("nothing to say: empty text")
    done = subprocess.run(
        [ESPEAK, "-v", voice, "-s", str(int(words_per_minute)), "-p", str(int(pitch)), "--stdout", text],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"{ESPEAK} failed for voice {voice!r}: {done.stderr.decode(errors='replace').strip()}")
    wave, rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    if rate != sample_rate:
        wave = soxr.resample(wave, rate, sample_rate).astype(np.float32)
    return wave
