"""A synthetic corpus of pure tones whose targets name the pitch, for tests, benchmarks and demos.

Each row is a real :class:`~alarm.corpus.schema.CorpusRecord` pointing at a WAV file written
under the audio root, so the whole training path (audio loading, segments, chat, labels)
runs. The answer depends on the audio only (the prompt is the same for every row), so a
model that learns it has learned to listen; overfitting it is a meaningful test.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import soundfile as sf

from alarm.corpus.schema import CorpusRecord, write_jsonl

PITCHES: dict[str, float] = {"low": 220.0, "middle": 440.0, "high": 880.0, "very high": 1760.0}
PROMPT = "What is the pitch of this tone?"
LEAD_IN_S = 0.25  # silence before the tone in each file; rows read from this offset


def tone_target(name: str) -> str:
    return f"<think>The tone sounds {name}.</think>It is a {name} tone."


def make_tone_corpus(
    directory: str | os.PathLike[str],
    num_train: int,
    *,
    num_validation: int = 0,
    durations: Sequence[float] = (0.5, 1.0, 1.5),
    sample_rate: int = 16_000,
    seed: int = 0,
) -> list[CorpusRecord]:
    """Write ``audio/*.wav`` and ``corpus.jsonl`` under ``directory``; return the records.

    Pitches cycle through :data:`PITCHES`, durations through ``durations``. Every file
    starts with :data:`LEAD_IN_S` of silence that the rows skip with ``offset_s``, so
    segment reads are exercised too.
    """
    rng = np.random.default_rng(seed)
    root = os.path.join(directory, "audio")
    os.makedirs(root, exist_ok=True)
    names = list(PITCHES)
    records = []
    for i in range(num_train + num_validation):
        name = names[i % len(names)]
        seconds = float(durations[(i // len(names)) % len(durations)])
        t = np.arange(int(round(seconds * sample_rate))) / sample_rate
        tone = 0.3 * np.sin(2 * np.pi * PITCHES[name] * t + rng.uniform(0, 2 * np.pi))
        signal = np.concatenate([np.zeros(int(LEAD_IN_S * sample_rate)), tone]).astype(np.float32)
        rel = f"audio/tone-{i:05d}.wav"
        sf.write(os.path.join(directory, rel), signal, sample_rate)
        records.append(
            CorpusRecord(
                id=f"tones/{i:05d}",
                dataset="tones",
                category="sound",
                split="train" if i < num_train else "validation",
                audio_path=rel,
                offset_s=LEAD_IN_S,
                duration_s=seconds,
                metadata=f"a pure {name} tone at {PITCHES[name]:.0f} Hz",
                prompt=PROMPT,
                response=tone_target(name),
                response_raw=tone_target(name),
            )
        )
    write_jsonl(records, os.path.join(directory, "corpus.jsonl"))
    return records
