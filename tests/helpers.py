"""Small builders shared by tests (tiny models, synthetic audio)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from alarm.audio import Waveform, load_audio


def noise_wave(seconds: float, rate: int = 16_000, seed: int = 0) -> Waveform:
    samples = np.random.default_rng(seed).standard_normal(int(round(seconds * rate))).astype(np.float32) * 0.1
    return load_audio(samples, sample_rate=rate)


def chirp_wave(seconds: float, rate: int = 44_100) -> Waveform:
    t = np.arange(int(round(seconds * rate))) / rate
    return load_audio((0.3 * np.sin(2 * np.pi * (200 * t + 600 * t**2))).astype(np.float32), sample_rate=rate)


def train_flags(settings: dict[str, Any]) -> list[str]:
    """``alarm train`` command-line flags for TrainConfig-style keyword settings."""
    flags: list[str] = []
    for key, value in settings.items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif isinstance(value, tuple):
            flags += [flag, *value]
        else:
            flags += [flag, str(value)]
    return flags


def launch_env() -> dict[str, str]:
    """Environment for multi-process CPU launches in tests: one thread each, offline."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def two_process_settings(root: str) -> dict[str, Any]:
    """A tone-corpus run whose micro-batch gives the same numbers on any rank.

    tiny-al-sslam-r: LayerNorm adapter and no dropout. One process accumulates 2 micro-batches
    of 2; two processes take 1 each: the same effective batch of 4.
    """
    return dict(
        preset="tiny-al-sslam-r",
        corpus=os.path.join(root, "corpus.jsonl"),
        audio_root=str(root),
        effective_batch_size=4,
        micro_batch_size=2,
        warmup_steps=1,
        learning_rate=1e-2,
        num_workers=0,
        log_every=1,
        val_batches=0,
        num_samples=0,
        progress=False,
        report_to=(),
        target_tokens=None,  # synthetic targets are a sentence, under the official 100-token floor
    )
