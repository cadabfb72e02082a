"""Small builders shared by tests (tiny models, synthetic audio)."""

from __future__ import annotations

import numpy as np

from alarm.audio import Waveform, load_audio


def noise_wave(seconds: float, rate: int = 16_000, seed: int = 0) -> Waveform:
    samples = np.random.default_rng(seed).standard_normal(int(round(seconds * rate))).astype(np.float32) * 0.1
    return load_audio(samples, sample_rate=rate)


def chirp_wave(seconds: float, rate: int = 44_100) -> Waveform:
    t = np.arange(int(round(seconds * rate))) / rate
    return load_audio((0.3 * np.sin(2 * np.pi * (200 * t + 600 * t**2))).astype(np.float32), sample_rate=rate)
