"""MMAR (ddlBoJack/MMAR): 1,000 questions over speech, sound, music and their mixes.

Release layout: ``MMAR-meta.json`` (JSON list; the 2025 release and the Hugging Face copy
BoJack/MMAR) or ``MMAR-meta.jsonl`` (the GitHub repository since February 2026) next to the
extracted ``audio/`` folder; entries name audio as ``audio_path: "./audio/<id>.wav"``.
Entries: ``id``, ``audio_path``, ``question``, ``choices``, ``answer`` (option text),
``modality`` (sound, music, speech, mix-sound-music, mix-sound-speech, mix-music-speech,
mix-sound-music-speech), ``category`` (Signal/Perception/Semantic/Cultural Layer),
``sub-category``, ``language``. The official ``code/evaluation.py`` is MMAU's matching rule;
it reads one key and skips entries without it: ``answer_prediction`` (a355584, February 2026),
``model_prediction`` in the 2025 version (6249700). We write both; an entry holding both is
read ``answer_prediction`` first, as the current script does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from alarm.evaluation.benchmarks.base import (
    BenchmarkSpec,
    Item,
    list_choices,
    relative_audio,
)
from alarm.evaluation.rules import token_match
from alarm.io import write_json, write_jsonl

MODALITIES = (
    "sound",
    "music",
    "speech",
    "mix-sound-music",
    "mix-sound-speech",
    "mix-music-speech",
    "mix-sound-music-speech",
)
CATEGORIES = ("Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer")


def official_rule(item: Item, prediction: object) -> bool:
    return token_match(str(item.answer), str(prediction), [str(c) for c in item.record["choices"]])


def write_official(items: Sequence[Item], predictions: Mapping[str, str], out: Path, split: str) -> list[Path]:
    """``mmar_predictions.jsonl`` (current script) and ``.json`` (2025 script, ALARM's copy)."""
    rows = [
        {
            **item.record,
            "answer_prediction": predictions.get(item.id, ""),
            "model_prediction": predictions.get(item.id, ""),
        }
        for item in items
    ]
    lines, listed = out / "mmar_predictions.jsonl", out / "mmar_predictions.json"
    write_jsonl(lines, rows)
    write_json(listed, rows)
    return [lines, listed]


MMAR = BenchmarkSpec(
    name="mmar",
    title="MMAR",
    splits={"test": ("MMAR-meta.json", "MMAR-meta.jsonl")},
    default_split="test",
    id_field="id",
    question_field="question",
    answer_field="answer",
    required=("id", "audio_path", "question", "choices", "answer", "modality", "category"),
    choices=list_choices,
    audio=relative_audio("audio_path"),
    audio_fields=("audio_path",),
    groups=(
        ("modality", lambda e: e.get("modality")),
        ("category", lambda e: e.get("category")),
        ("sub-category", lambda e: e.get("sub-category")),
    ),
    official_rule=official_rule,
    prediction_kind="text",
    prediction_keys=("answer_prediction", "model_prediction"),
    write_official=write_official,
    group_order={"modality": MODALITIES, "category": CATEGORIES},
)
