"""MMSU (dingdongwang/MMSU; data ddwang2000/MMSU): 5,000 spoken-language questions, 47 tasks.

Two release layouts of the Hugging Face dataset, told apart by what lies under ``--data``:

* JSON lines (the revisions the ALARM scripts pin): ``question/mmsu.jsonl`` and
  ``audio/<task>_<uuid>.wav``; each line names its audio as ``audio_path:
  "/audio/<file>.wav"``, relative to the dataset root despite the leading slash.
* Parquet (the current release; dataset card: one ``train`` split of 5,000 rows in
  ``data/train-*``): the same fields without ``audio_path``, plus ``audio``, a Hugging Face
  ``Audio`` column (16 kHz) holding each clip's bytes. Clips are written once to
  ``<data>/_alarm_audio/<id>.<ext>``.

Fields: ``id``, ``task_name``, ``question``, ``choice_a`` ... ``choice_d`` (two-option
questions leave C/D empty), ``answer_gt`` (option text), ``category`` (Perception /
Reasoning), ``sub-category`` (Linguistics / Paralinguistics), ``sub-sub-category`` (e.g.
Semantics, Phonology), ``linguistics_sub_discipline``.
The official ``mmsu_evaluation.py`` reads a JSONL with the same fields plus ``response``
(a letter) and reports accuracy per category, per category x sub-category, and overall. It
never reads ``audio_path``, and reads an entry without ``response`` as ``""`` (counted wrong).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alarm.evaluation.benchmarks.base import (
    BenchmarkSpec,
    Item,
    ParquetLayout,
    letter_choices,
)
from alarm.evaluation.rules import letter_of
from alarm.io import write_json, write_jsonl

OFFICIAL_FIELDS = (
    "id",
    "audio_path",
    "question",
    "choice_a",
    "choice_b",
    "choice_c",
    "choice_d",
    "answer_gt",
    "response",
    "task_name",
    "category",
    "sub-category",
    "sub-sub-category",
    "linguistics_sub_discipline",
)


def audio(entry: Mapping[str, Any], meta: Path) -> Path:
    root = meta.parent.parent if meta.parent.name == "question" else meta.parent
    return root / str(entry["audio_path"]).lstrip("/")


def official_rule(item: Item, response: object) -> bool | None:
    """``mmsu_evaluation.py``: letter rule; empty counts wrong, a wrong format is skipped."""
    if not isinstance(response, str):
        return None
    letter = letter_of(response)
    if letter is None:
        return None
    if letter == "":
        return False
    return item.record.get(f"choice_{letter.lower()}", "") == item.record.get("answer_gt", "")


def _pair(entry: Mapping[str, Any], a: str, b: str) -> str | None:
    if entry.get(a) is None:
        return None
    return f"{entry.get(a)} / {entry.get(b)}" if entry.get(b) is not None else str(entry.get(a))


def write_official(items: Sequence[Item], predictions: Mapping[str, str], out: Path, split: str) -> list[Path]:
    """``mmsu_predictions.jsonl`` for the official script (``response`` = letter) and
    ``mmsu_predictions_alarm.json`` for ALARM's copy (``model_prediction`` = option text),
    every entry, "" where no option was chosen."""
    official, alarm = [], []
    for item in items:
        letter = predictions.get(item.id, "")
        row = {name: item.record.get(name, "") for name in OFFICIAL_FIELDS if name != "response"}
        official.append({**row, "response": letter})
        text = item.choices[item.letters.index(letter)] if letter in item.letters else ""
        alarm.append({**item.record, "choices": list(item.choices), "model_prediction": text})
    paths = [out / "mmsu_predictions.jsonl", out / "mmsu_predictions_alarm.json"]
    write_jsonl(paths[0], official)
    write_json(paths[1], alarm)
    return paths


MMSU = BenchmarkSpec(
    name="mmsu",
    title="MMSU",
    splits={"test": ("question/mmsu.jsonl", "mmsu.jsonl")},
    default_split="test",
    id_field="id",
    question_field="question",
    answer_field="answer_gt",
    required=("id", "audio_path", "question", "choice_a", "choice_b", "answer_gt", "category"),
    choices=letter_choices,
    audio=audio,
    audio_fields=("audio_path",),
    groups=(
        ("category", lambda e: e.get("category")),
        ("sub-category", lambda e: _pair(e, "category", "sub-category")),
        ("sub-sub-category", lambda e: _pair(e, "category", "sub-sub-category")),
        ("task", lambda e: e.get("task_name")),
    ),
    official_rule=official_rule,
    prediction_kind="letter",
    prediction_keys=("response", "model_prediction"),
    write_official=write_official,
    group_order={"category": ("Perception", "Reasoning")},
    # The dataset card's data_files; "train-*" alone when --data is the data/ folder itself.
    parquet=ParquetLayout(files={"test": ("data/train-*.parquet", "train-*.parquet")}),
    missing_prediction="empty",  # `record.get('response', '')`: counted, wrong
)
