"""MMAU (Sakshi113/MMAU): test-mini with answers, test with answers withheld.

Release layout: ``mmau-test-mini.json`` / ``mmau-test.json`` (JSON lists) next to the
extracted ``test-mini-audios/`` / ``test-audios/`` folders; each entry names its audio as
``audio_id: "./test-mini-audios/<id>.wav"``. Entries: ``id``, ``audio_id``, ``question``,
``choices`` (list), ``answer`` (option text; empty in test), ``task`` (sound/music/speech),
``difficulty``, ``category`` (a string, or a one-element list in 13 test-mini entries),
``sub-category``. The official scorer (``evaluation.py``) reads one key and skips entries
without it: ``model_output`` at HEAD (7468292, since January 2025; also the first version),
``model_prediction`` in the October 2024 versions and the README. We write both; an entry
holding both is read ``model_output`` first, as the current script does.
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
from alarm.io import write_json


def official_rule(item: Item, prediction: object) -> bool:
    return token_match(str(item.answer), str(prediction), [str(c) for c in item.record["choices"]])


def write_official(items: Sequence[Item], predictions: Mapping[str, str], out: Path, split: str) -> list[Path]:
    """The release's JSON with ``model_prediction`` (and ``model_output``) added to every entry
    ("" where there is no answer, which the official rule counts wrong).

    For test-mini this is the input of the official ``evaluation.py``; for test it is the
    file to submit (answers withheld).
    """
    rows = []
    for item in items:
        prediction = predictions.get(item.id, "")
        rows.append({**item.record, "model_prediction": prediction, "model_output": prediction})
    path = out / f"mmau-{split}_predictions.json"
    write_json(path, rows)
    return [path]


MMAU = BenchmarkSpec(
    name="mmau",
    title="MMAU",
    splits={"test-mini": ("mmau-test-mini.json",), "test": ("mmau-test.json",)},
    default_split="test-mini",
    id_field="id",
    question_field="question",
    answer_field="answer",
    required=("id", "audio_id", "question", "choices", "answer", "task"),
    choices=list_choices,
    audio=relative_audio("audio_id"),
    audio_fields=("audio_id",),
    groups=(
        ("task", lambda e: e.get("task")),
        ("difficulty", lambda e: e.get("difficulty")),
        ("category", lambda e: e.get("category")),
        ("sub-category", lambda e: e.get("sub-category")),
    ),
    official_rule=official_rule,
    prediction_kind="text",
    prediction_keys=("model_output", "model_prediction"),
    write_official=write_official,
    answers_withheld=frozenset({"test"}),
    group_order={"task": ("sound", "music", "speech"), "difficulty": ("easy", "hard", "medium")},
)
