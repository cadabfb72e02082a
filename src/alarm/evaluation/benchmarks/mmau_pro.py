"""MMAU-Pro (sonalkum/MMAUPro; data gamma-lab-umd/MMAU-Pro): 5,305 questions, some about
several clips, some open-ended, some testing instruction following.

Release layout: ``test.parquet`` (one row per question; the audio is *not* inside) next to the
extracted ``data.zip``, whose ``data/<uuid>.wav`` files the rows name in ``audio_path``, a
*list* of paths relative to the release folder (456 questions name more than one clip). A JSON
or JSON-lines export of the same rows (``test.jsonl``, ``test.json``) is read the same way.
Columns: ``id``, ``audio_path``, ``question``, ``choices`` (empty for open questions),
``answer`` (null for instruction-following ones), ``category``, ``sub-cat``,
``length_type``, ``perceptual_skills``, ``reasoning_skills``, ``transcription``,
``task_classification``, ``task_identifier`` and ``kwargs`` (instruction following).

The official ``evaluate_mmau_pro_comprehensive.py`` reads that Parquet file with the model's
answer added as ``model_output`` and splits it by ``category``: ``open`` (an LLM judge scores
the answer 1-5), ``instruction following`` (rules: :mod:`alarm.evaluation.instructions`), and
every other category multiple choice, where rows with fewer than two choices are dropped and
the answer is matched to the closest choice by NV-Embed-v2 embeddings (see
:mod:`alarm.evaluation.mmau_pro` for how that is reproduced).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alarm.evaluation.benchmarks.base import BenchmarkError, BenchmarkSpec, Item, list_choices
from alarm.io import write_jsonl

OPEN, INSTRUCTION = "open", "instruction following"  # the two categories that are not multiple choice


def question_type(entry: Mapping[str, Any]) -> str | None:
    """``open``, ``instruction`` or ``choice`` by category; None for a multiple-choice row with
    fewer than two choices, which the official script drops (``len(choices) > 1``)."""
    category = entry.get("category")
    if category == OPEN:
        return "open"
    if category == INSTRUCTION:
        return "instruction"
    choices = entry.get("choices")
    return "choice" if isinstance(choices, list) and len(choices) > 1 else None


def audio(entry: Mapping[str, Any], meta: Path) -> list[Path]:
    """Every clip of the row: ``audio_path`` is a list (a lone string is taken as one clip)."""
    paths = entry["audio_path"]
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise BenchmarkError(f"'audio_path' is {paths!r}, not a list of file names")
    return [meta.parent / p for p in paths]


def choices(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The options of a multiple-choice row; none for open and instruction rows."""
    return list_choices(entry) if question_type(entry) == "choice" else []


def official_rule(item: Item, prediction: object) -> bool:
    """The closed-question rule as it acts on a prediction that is one option's text: the
    choice NV-Embed-v2 finds closest is that option, right when it equals the answer."""
    return str(prediction) == item.answer


def write_official(items: Sequence[Item], predictions: Mapping[str, str], out: Path, split: str) -> list[Path]:
    """``mmau-pro_predictions.parquet`` (the official script's input: the release rows with
    ``model_output``) and the same rows as JSON lines; every row, "" where nothing was given."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**item.record, "model_output": predictions.get(item.id, "")} for item in items]
    table, lines = out / "mmau-pro_predictions.parquet", out / "mmau-pro_predictions.jsonl"
    tmp = table.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(table)
    write_jsonl(lines, rows)
    return [table, lines]


MMAU_PRO = BenchmarkSpec(
    name="mmau-pro",
    title="MMAU-Pro",
    splits={"test": ("test.parquet", "test.jsonl", "test.json")},
    default_split="test",
    id_field="id",
    question_field="question",
    answer_field="answer",
    required=("id", "audio_path", "question", "answer", "category"),
    choices=choices,
    audio=audio,
    audio_fields=("audio_path",),
    groups=(("category", lambda e: e.get("category")),),
    official_rule=official_rule,
    prediction_kind="text",
    prediction_keys=("model_output",),
    write_official=write_official,
    question_type=question_type,
)
