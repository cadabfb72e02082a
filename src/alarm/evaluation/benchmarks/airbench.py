"""AIR-Bench foundation (OFA-Sys/AIR-Bench; data qyang1021/AIR-Bench-Dataset).

Release layout: ``Foundation/Foundation_meta.json`` (a JSON list) and one folder per task and
source dataset, ``Foundation/<task_name>_<dataset_name>/<path>``; for the ``Audio_Grounding``
task the file is the same name with ``flac`` as its last three characters (the official
``Inference_Foundation.py`` does exactly this). Entries: ``uniq_id``, ``path``,
``task_name``, ``dataset_name``, ``question``, ``choice_a`` ... ``choice_d`` (C/D may be
absent), ``answer_gt`` (option text). The official ``score_foundation.py`` reads a JSONL of
the inference output (these fields plus ``response``), reads a letter with the same rule as
MMSU, leaves empty and wrong-format responses out of its counts (``fail_num``) and prints
accuracy per ``<task_name>_<dataset_name>``; an entry without ``response`` stops it (KeyError).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alarm.evaluation.benchmarks.base import (
    BenchmarkError,
    BenchmarkSpec,
    Item,
    letter_choices,
)
from alarm.evaluation.rules import letter_of
from alarm.io import write_json, write_jsonl


def audio(entry: Mapping[str, Any], meta: Path) -> Path:
    task, dataset, name = str(entry["task_name"]), str(entry["dataset_name"]), str(entry["path"])
    if task == "Audio_Grounding":
        name = name[:-3] + "flac"
    return meta.parent / f"{task}_{dataset}" / name


def reference_letter(item: Item) -> str:
    """The letter whose choice equals ``answer_gt`` (official: first of a, b, c, d)."""
    for letter in "abcd":
        if item.record.get(f"choice_{letter}") == item.record.get("answer_gt"):
            return letter.upper()
    raise BenchmarkError(f"AIR-Bench: entry {item.id!r}: answer_gt {item.answer!r} is none of the choices")


def official_rule(item: Item, response: object) -> bool | None:
    """``score_foundation.py``: letter rule; empty and wrong-format responses are left out."""
    if response is None:
        return None
    letter = letter_of(response)
    if not letter:
        return None
    return letter == reference_letter(item)


def write_official(items: Sequence[Item], predictions: Mapping[str, str], out: Path, split: str) -> list[Path]:
    """``Foundation_result_alarm.jsonl`` (official inference output: ``response`` = letter) and
    ``airbench_predictions_alarm.json`` for ALARM's copy (``model_prediction`` = option text),
    every entry, "" where no option was chosen."""
    official, alarm = [], []
    for item in items:
        letter = predictions.get(item.id, "")
        r = item.record
        official.append(
            {
                "path": r.get("path"),
                "question": r.get("question"),
                "choice_a": r.get("choice_a"),
                "choice_b": r.get("choice_b"),
                "choice_c": r.get("choice_c"),
                "choice_d": r.get("choice_d"),
                "answer_gt": r.get("answer_gt"),
                "task_name": r.get("task_name"),
                "dataset_name": r.get("dataset_name"),
                "response": letter,
                "uniq_id": r.get("uniq_id"),
            }
        )
        text = item.choices[item.letters.index(letter)] if letter in item.letters else ""
        alarm.append({**r, "model_prediction": text})
    paths = [out / "Foundation_result_alarm.jsonl", out / "airbench_predictions_alarm.json"]
    write_jsonl(paths[0], official)
    write_json(paths[1], alarm)
    return paths


AIRBENCH = BenchmarkSpec(
    name="airbench",
    title="AIR-Bench foundation",
    splits={"foundation": ("Foundation/Foundation_meta.json", "Foundation_meta.json")},
    default_split="foundation",
    id_field="uniq_id",
    question_field="question",
    answer_field="answer_gt",
    required=("uniq_id", "path", "task_name", "dataset_name", "question", "choice_a", "choice_b", "answer_gt"),
    choices=letter_choices,
    audio=audio,
    audio_fields=("path",),
    groups=(
        ("task", lambda e: e.get("task_name")),
        ("task_dataset", lambda e: f"{e.get('task_name')}_{e.get('dataset_name')}"),
    ),
    official_rule=official_rule,
    prediction_kind="letter",
    prediction_keys=("response", "model_prediction"),
    write_official=write_official,
    missing_prediction="error",  # `line['response']`: no figure is printed for such a file
)
