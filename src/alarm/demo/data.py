"""The demo's files: training clips with their source records, held-out clips with their questions.

Layout under the demo directory::

    audio/train-NNNN.wav                 training clips (demo/world.py renders them)
    audio/train-NNNN-rK.wav              other recordings of the same facts (``renderings`` > 1)
    sources.jsonl                        their source records (metadata = what is audible)
    renderings.jsonl                     the other recordings of each source: id, audio_path, duration_s
    bench/mmau-test-mini.json            held-out multiple-choice questions in MMAU test-mini's
                                         release format (plus each clip's `metadata`, for the
                                         metadata baseline), read by the real MMAU loader
    bench/test-mini-audios/NNNN.wav      the held-out clips
    bench/open_questions.jsonl           "What does the speaker say?" with the words spoken
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import soundfile as sf
from tqdm.auto import tqdm

from alarm.corpus.schema import SourceRecord, write_jsonl
from alarm.demo.world import EVEN_MIX, SAMPLE_RATE, Clip, questions_for, render, rerender, sample_clips
from alarm.io import write_jsonl as write_rows
from alarm.io import write_text

TEST_FILE = "mmau-test-mini.json"  # the MMAU release's name, so `alarm eval mmau --data` reads it too
OPEN_FILE = "open_questions.jsonl"
RENDERINGS_FILE = "renderings.jsonl"
DATASET = "demo_world"


def _write_clip(clip: Clip, path: str) -> float:
    wave = render(clip)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, wave, SAMPLE_RATE)
    return round(len(wave) / SAMPLE_RATE, 6)


def write_world(
    root: str,
    num_train: int,
    num_test: int,
    seed: int = 0,
    progress: bool = True,
    renderings: int = 1,
    train_mix: Sequence[str] = EVEN_MIX,
) -> dict[str, Any]:
    """Render the clips, write the sources, the MMAU-format test and the open questions under ``root``.

    ``renderings`` > 1 also records each training clip's facts ``renderings - 1`` more times
    (:func:`world.rerender`: another voice of the same sex, another level and noise), listed
    in ``renderings.jsonl``; the corpus is written once per source and :func:`expand_corpus`
    gives its targets to the other recordings.
    """
    if renderings < 1:
        raise ValueError(f"renderings must be at least 1, got {renderings}")
    train, test = sample_clips(num_train, num_test, seed=seed, train_mix=train_mix)
    sources, others = [], []
    for i, clip in enumerate(tqdm(train, desc="training clips", disable=not progress)):
        rel = f"audio/train-{i:04d}.wav"
        seconds = _write_clip(clip, os.path.join(root, rel))
        for k in range(1, renderings):
            other = f"audio/train-{i:04d}-r{k}.wav"
            duration = _write_clip(rerender(clip, k), os.path.join(root, other))
            others.append({"id": f"{DATASET}/{i:04d}", "audio_path": other, "duration_s": duration})
        sources.append(
            SourceRecord(
                id=f"{DATASET}/{i:04d}",
                dataset=DATASET,
                category=clip.category,
                split="train",
                audio_path=rel,
                offset_s=0.0,
                duration_s=seconds,
                metadata=clip.describe(),
            )
        )
    write_jsonl(sources, os.path.join(root, "sources.jsonl"))
    write_rows(os.path.join(root, RENDERINGS_FILE), others)

    bench = os.path.join(root, "bench")
    rng = random.Random(seed + 1)
    entries, open_rows = [], []
    for i, clip in enumerate(tqdm(test, desc="held-out clips", disable=not progress)):
        clip_id = f"demo-{i:04d}"
        _write_clip(clip, os.path.join(bench, "test-mini-audios", f"{clip_id}.wav"))
        for question in questions_for(clip, rng):
            base = {"audio_id": f"./test-mini-audios/{clip_id}.wav", "metadata": clip.describe(), "kind": clip.kind}
            if not question.choices:
                open_rows.append({"id": f"{clip_id}-{question.category}", **base, "question": question.question,
                                  "reference": question.answer})  # fmt: skip
                continue
            entries.append(
                {
                    "id": f"{clip_id}-{question.category}",
                    **base,
                    "question": question.question,
                    "choices": list(question.choices),
                    "answer": question.answer,
                    "task": clip.category,
                    "difficulty": "easy",
                    "category": question.category,  # the scorer's per-group table: per question type
                    "sub-category": clip.kind,
                }
            )
    write_text(os.path.join(bench, TEST_FILE), json.dumps(entries, indent=1) + "\n")
    write_rows(os.path.join(bench, OPEN_FILE), open_rows)
    return {
        "train_clips": len(train),
        "test_clips": len(test),
        "mc_questions": len(entries),
        "open_questions": len(open_rows),
        "train_seconds": round(sum(s.duration_s for s in sources), 1),
        "other_renderings": len(others),
    }


def expand_corpus(corpus_dir: str, renderings_path: str, out: str) -> dict[str, int]:
    """The corpus for training: every training record once more for each other recording of its clip.

    The other recordings carry the same facts (:func:`write_world`), so the self-generated
    prompt and target hold for them unchanged; the LLM work is paid once per clip. Written as
    ``out/{train,validation}.jsonl`` (the validation split is not expanded). Returns the rows.
    """
    from alarm.corpus.shards import read_jsonl
    from alarm.training.data import load_corpus

    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in read_jsonl(renderings_path):
        by_id.setdefault(row["id"], []).append(row)
    counts = {}
    for split in ("train", "validation"):
        rows = []
        for record in load_corpus(corpus_dir, split):
            rows.append(record)
            for k, other in enumerate(by_id.get(record.id, []) if split == "train" else [], 1):
                rows.append(replace(record, id=f"{record.id}#r{k}", audio_path=other["audio_path"],
                                    duration_s=other["duration_s"]))  # fmt: skip
        write_jsonl(rows, os.path.join(out, f"{split}.jsonl"))
        counts[split] = len(rows)
    return counts
