"""The demo's world: labelled synthetic clips, their source records, a held-out MMAU-format test.

Every clip is a one-second tone of one of four pitch classes
(``alarm.training.synthetic.PITCHES``) with its own phase, level and noise, so no two files
are the same and the held-out clips are new sounds. The metadata (the textual surrogate A_text) says what is
audible. The test set is written in MMAU test-mini's release format (a JSON list next to
``test-mini-audios/``), so the real loader and scorer read it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from alarm.corpus import instructions
from alarm.corpus.backends import ChatRequest, RulesResponder
from alarm.corpus.prompts import THINK_END
from alarm.corpus.schema import SourceRecord, write_jsonl
from alarm.io import write_text
from alarm.training.synthetic import PITCHES

SAMPLE_RATE = 16_000
CLIP_SECONDS = 1.0
QUESTIONS = (
    "What is the pitch of this tone?",
    "How high does this sound?",
    "Which register is the tone in?",
)
TEST_FILE = "mmau-test-mini.json"  # the MMAU release's name, so `alarm eval mmau --data` reads it too


@dataclass(frozen=True)
class ClipSet:
    """Where the demo's data went."""

    sources: str  # JSONL of the training clips' source records
    benchmark: str  # directory holding the MMAU-format test
    num_train: int
    num_test: int


def metadata(name: str) -> str:
    # The pitch comes last: the scripted prompter quotes a clip's first words in its requests,
    # and a request that names the pitch would let the model answer without listening.
    return f"one steady tone, {name} in pitch"


def _tone(name: str, rng: np.random.Generator) -> np.ndarray:
    # One length for all: with lengths that differ, a tiny model learns each training clip's
    # length (its number of audio tokens) instead of listening, and fails on new clips.
    t = np.arange(int(CLIP_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    level = float(rng.uniform(0.15, 0.4))
    tone = level * np.sin(2 * np.pi * PITCHES[name] * t + rng.uniform(0, 2 * np.pi))
    return (tone + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def make_clips(root: str, num_train: int, num_test: int, seed: int = 0) -> ClipSet:
    """Write the clips under ``root`` (``audio/``, ``bench/test-mini-audios/``), the sources and the test."""
    rng = np.random.default_rng(seed)
    names = list(PITCHES)
    os.makedirs(os.path.join(root, "audio"), exist_ok=True)
    sources = []
    for i in range(num_train):
        name = names[i % len(names)]
        rel = f"audio/train-{i:04d}.wav"
        wave = _tone(name, rng)
        sf.write(os.path.join(root, rel), wave, SAMPLE_RATE)
        sources.append(
            SourceRecord(
                id=f"demo_tones/{i:04d}",
                dataset="demo_tones",
                category="sound",
                split="train",
                audio_path=rel,
                offset_s=0.0,
                duration_s=round(len(wave) / SAMPLE_RATE, 6),
                metadata=metadata(name),
            )
        )
    sources_path = os.path.join(root, "sources.jsonl")
    write_jsonl(sources, sources_path)

    bench = os.path.join(root, "bench")
    os.makedirs(os.path.join(bench, "test-mini-audios"), exist_ok=True)
    entries = []
    for i in range(num_test):
        name = names[i % len(names)]
        clip_id = f"demo-{i:04d}"
        sf.write(os.path.join(bench, "test-mini-audios", f"{clip_id}.wav"), _tone(name, rng), SAMPLE_RATE)
        entries.append(
            {
                "id": clip_id,
                "audio_id": f"./test-mini-audios/{clip_id}.wav",
                "question": QUESTIONS[i % len(QUESTIONS)],
                "choices": names,
                "answer": name,
                "task": "sound",
                "difficulty": "easy",
                "category": "pitch",
                "sub-category": name,  # so the scorer's per-group table is per pitch class
            }
        )
    write_text(os.path.join(bench, TEST_FILE), json.dumps(entries, indent=1) + "\n")
    return ClipSet(sources_path, bench, num_train, num_test)


class DemoResponder(RulesResponder):
    """The scripted stand-in for the instruction LLM and the RLM, with concise responses.

    Prompts, the filter and the rephrasing are :class:`RulesResponder`'s; R0 answers from the
    metadata without repeating the request, so the target the audio path learns is what the
    clip sounds like (the tiny RLM of the demo cannot copy long requests).
    """

    def __call__(self, request: ChatRequest, call_index: int) -> str:
        system, user = request.messages[0]["content"], request.messages[-1]["content"]
        if system == instructions.get("respond").system:
            described = user.partition("</audio>")[0].replace("<audio>", "", 1).strip()
            return f"The description says: {described}.{THINK_END}\n\nFrom the description: {described}."
        return super().__call__(request, call_index)
