"""`--rule official` against the official scripts' own figures on files in each benchmark's format.

Each expected value below is what the official script printed for the same file, run once
outside this project (its output is quoted verbatim in the comment above the numbers):

* MMSU ``mmsu_evaluation.py`` (dingdongwang/MMSU at 217d1d3);
* MMAU ``evaluation.py`` at 7468292 (reads ``model_output``) and at 6097b91 (``model_prediction``);
* MMAR ``code/evaluation.py`` at a355584 (``answer_prediction``) and at 6249700 (``model_prediction``);
* AIR-Bench ``score_foundation.py`` (OFA-Sys/AIR-Bench at 9832476).

The official scripts print rounded numbers; ours are compared at the printed precision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from alarm.cli import main
from alarm.evaluation.benchmarks import BenchmarkError, get_benchmark
from alarm.evaluation.evaluate import score_file
from tests.test_eval_support import AIR_ENTRIES, MMAR_ENTRIES, MMAU_ENTRIES, MMSU_ENTRIES


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def cli_score(capsys, *args: str) -> dict[str, Any]:
    assert main(["eval", "score", *args]) == 0
    return json.loads(capsys.readouterr().out)


def as_printed(acc: dict[str, Any], groups: tuple[str, ...], scale: float, decimals: int) -> dict[str, Any]:
    """Our figures in the official script's units and rounding: per group, overall, count."""
    out: dict[str, Any] = {g: {k: round(v * scale, decimals) for k, v in acc[g].items()} for g in groups}
    out["overall"] = round(acc["overall"] * scale, decimals)
    out["total"] = acc["total"]
    return out


# ---------------------------------------------------------------- MMSU: no `response`, no `audio_path`


def mmsu_rows(responses: dict[str, Any]) -> list[dict]:
    """MMSU entries with ``response`` where given; the audio reference empty, null or absent."""
    rows = [{**e, "response": responses[e["id"]]} if e["id"] in responses else dict(e) for e in MMSU_ENTRIES]
    rows[0]["audio_path"] = ""  # as `alarm eval` writes it for the Parquet release
    rows[1]["audio_path"] = None
    del rows[2]["audio_path"]
    return rows


# s1 'B' right; s2 and s6 have no `response`: read as '' and counted wrong; s3 `null`: the
# script's `None.strip()` fails and it skips the entry ("Error prediction!"); s4 'female' is a
# wrong format (skipped); s5 'C' right.
MMSU_MIXED = {"s1": "B", "s3": None, "s4": "female", "s5": "C"}
# mmsu_evaluation.py printed:
#   Error prediction!
#   Wrong format response: female
#   Category: Perception, Sub-category: Paralinguistics, Accuracy: 1.0000
#   Category: Perception, Sub-category: Linguistics, Accuracy: 0.0000
#   Category: Reasoning, Sub-category: Linguistics, Accuracy: 1.0000
#   Category: Perception, Average Accuracy: 0.3333
#   Category: Reasoning, Average Accuracy: 1.0000
#   Overall Accuracy: 0.5000
#   Total count: 4
MMSU_MIXED_OFFICIAL = {
    "sub-category": {
        "Perception / Paralinguistics": 1.0,
        "Perception / Linguistics": 0.0,
        "Reasoning / Linguistics": 1.0,
    },
    "category": {"Perception": 0.3333, "Reasoning": 1.0},
    "overall": 0.5,
    "total": 4,
}
# No entry has `response` (the release file itself): every entry counts, wrong.
# mmsu_evaluation.py printed:
#   Category: Perception, Sub-category: Paralinguistics, Accuracy: 0.0000
#   Category: Perception, Sub-category: Linguistics, Accuracy: 0.0000
#   Category: Reasoning, Sub-category: Linguistics, Accuracy: 0.0000
#   Category: Reasoning, Sub-category: Paralinguistics, Accuracy: 0.0000
#   Category: Perception, Average Accuracy: 0.0000
#   Category: Reasoning, Average Accuracy: 0.0000
#   Overall Accuracy: 0.0000
#   Total count: 6
MMSU_NONE_OFFICIAL = {
    "sub-category": {
        "Perception / Paralinguistics": 0.0,
        "Perception / Linguistics": 0.0,
        "Reasoning / Linguistics": 0.0,
        "Reasoning / Paralinguistics": 0.0,
    },
    "category": {"Perception": 0.0, "Reasoning": 0.0},
    "overall": 0.0,
    "total": 6,
}


@pytest.mark.parametrize(
    ("responses", "official"), [(MMSU_MIXED, MMSU_MIXED_OFFICIAL), ({}, MMSU_NONE_OFFICIAL)], ids=["mixed", "none"]
)
def test_mmsu_entry_without_response_counts_wrong_and_audio_path_is_not_read(tmp_path, capsys, responses, official):
    path = write_jsonl(tmp_path / "model_pred.jsonl", mmsu_rows(responses))
    acc = cli_score(capsys, "mmsu", "--predictions", str(path), "--rule", "official")
    assert as_printed(acc, ("sub-category", "category"), 0.01, 4) == official
    assert list(acc["sub-category"]) == list(official["sub-category"])  # the script's order too
    # the entries without `response` are listed as missing; null and wrong format are left out
    scores = score_file(get_benchmark("mmsu"), path, rule="official")
    assert scores.missing == [i for i in ("s1", "s2", "s3", "s4", "s5", "s6") if i not in responses]
    assert scores.excluded() == [i for i in ("s3", "s4") if i in responses]


def test_mmsu_file_without_audio_path_scores_under_the_extract_rule_too(tmp_path):
    path = write_jsonl(tmp_path / "model_pred.jsonl", mmsu_rows(MMSU_MIXED))
    acc = score_file(get_benchmark("mmsu"), path).accuracies()
    # s1 B right, s4 'female' (option text) right, s5 C right; s2/s6 missing, s3 null: wrong
    assert (acc["correct"], acc["total"]) == (3, 6)
    none = write_jsonl(tmp_path / "none.jsonl", mmsu_rows({}))
    assert score_file(get_benchmark("mmsu"), none).accuracies()["total"] == 6  # 0 of 6, not refused


# ---------------------------------------------------------------- MMAU / MMAR: two prediction keys

# (current script's key, older script's key) per entry; m9 / r6 have neither (skipped by both)
MMAU_BOTH = {
    "m1": ("Man", "Woman"),
    "m2": ("Dog barking", "Bird chirping"),
    "m3": ("violin", "violin"),
    "m4": ("", ""),
    "m5": ("Angry", ""),
    "m6": ("Three speakers", "Three speakers"),
    "m7": ("No", "Yes"),
    "m8": ("Rain", "Thunder"),
}
# evaluation.py at 7468292 (model_output) printed:
#   sound : 33.33% over 3 samples / music : 50.00% over 2 samples / speech : 100.00% over 3 samples
#   easy : 100.00% over 3 samples / hard : 33.33% over 3 samples / medium : 50.00% over 2 samples
#   Acoustic Source Inference : 33.33% over 3 samples / Instrumentation : 100.00% over 1 samples /
#   Harmony : 0.00% over 1 samples / Emotion : 100.00% over 1 samples /
#   Speaker Counting : 100.00% over 1 samples / Phonemic : 100.00% over 1 samples
#   Total Accuracy: 62.50% over 8 samples
MMAU_HEAD_OFFICIAL = {
    "task": {"sound": 33.33, "music": 50.0, "speech": 100.0},
    "difficulty": {"easy": 100.0, "hard": 33.33, "medium": 50.0},
    "sub-category": {
        "Acoustic Source Inference": 33.33,
        "Instrumentation": 100.0,
        "Harmony": 0.0,
        "Emotion": 100.0,
        "Speaker Counting": 100.0,
        "Phonemic": 100.0,
    },
    "overall": 62.5,
    "total": 8,
}
# evaluation.py at 6097b91 (model_prediction; prints no sub-categories) printed:
#   sound : 66.66666666666666 over 3 samples / music : 50.0 over 2 samples /
#   speech : 33.33333333333333 over 3 samples
#   easy : 33.33333333333333 / hard : 66.66666666666666 / medium : 50.0
#   Total acc: 50.0 over 8 samples
MMAU_2024_OFFICIAL = {
    "task": {"sound": 66.67, "music": 50.0, "speech": 33.33},
    "difficulty": {"easy": 33.33, "hard": 66.67, "medium": 50.0},
    "overall": 50.0,
    "total": 8,
}
MMAR_BOTH = {
    "r1": ("Too little", "Too much"),
    "r2": ("Dense Forest", "Open Grassland"),
    "r3": ("街道", "街道"),
    "r4": ("Parrot", ""),
    "r5": ("Yes", "Yes"),
}
# code/evaluation.py at a355584 (answer_prediction) printed (modalities "over 0 samples" left out):
#   sound : 100.00% over 1 / music : 0.00% over 1 / speech : 100.00% over 2 / mix-sound-speech : 100.00% over 1
#   Signal Layer : 100.00% over 1 / Perception Layer : 100.00% over 1 / Semantic Layer : 100.00% over 2 /
#   Cultural Layer : 0.00% over 1;  Content Analysis : 80.00% over 5;  Total Accuracy: 80.00% over 5 samples
MMAR_HEAD_OFFICIAL = {
    "modality": {"sound": 100.0, "music": 0.0, "speech": 100.0, "mix-sound-speech": 100.0},
    "category": {"Signal Layer": 100.0, "Perception Layer": 100.0, "Semantic Layer": 100.0, "Cultural Layer": 0.0},
    "sub-category": {"Content Analysis": 80.0},
    "overall": 80.0,
    "total": 5,
}
# code/evaluation.py at 6249700 (model_prediction) printed:
#   sound : 0.00% over 1 / music : 100.00% over 1 / speech : 50.00% over 2 / mix-sound-speech : 100.00% over 1
#   Signal Layer : 0.00% over 1 / Perception Layer : 100.00% over 1 / Semantic Layer : 50.00% over 2 /
#   Cultural Layer : 100.00% over 1;  Content Analysis : 60.00% over 5;  Total Accuracy: 60.00% over 5 samples
MMAR_2025_OFFICIAL = {
    "modality": {"sound": 0.0, "music": 100.0, "speech": 50.0, "mix-sound-speech": 100.0},
    "category": {"Signal Layer": 0.0, "Perception Layer": 100.0, "Semantic Layer": 50.0, "Cultural Layer": 100.0},
    "sub-category": {"Content Analysis": 60.0},
    "overall": 60.0,
    "total": 5,
}

BOTH_KEYS = {
    "mmau": (MMAU_ENTRIES, MMAU_BOTH, ("model_output", "model_prediction")),
    "mmar": (MMAR_ENTRIES, MMAR_BOTH, ("answer_prediction", "model_prediction")),
}


@pytest.mark.parametrize(
    ("bench", "key", "groups", "official", "extracted"),
    [
        # extract rule, model_output: m1 m3 m5 m6 m7 right of 9 (m9 missing counts)
        ("mmau", None, ("task", "difficulty", "sub-category"), MMAU_HEAD_OFFICIAL, (5, 9)),
        ("mmau", "model_output", ("task", "difficulty", "sub-category"), MMAU_HEAD_OFFICIAL, (5, 9)),
        # model_prediction: m2 m3 m6 m8 right of 9
        ("mmau", "model_prediction", ("task", "difficulty"), MMAU_2024_OFFICIAL, (4, 9)),
        # answer_prediction: r1 r3 r4 r5 of 6; model_prediction: r2 r3 r5 of 6
        ("mmar", None, ("modality", "category", "sub-category"), MMAR_HEAD_OFFICIAL, (4, 6)),
        ("mmar", "model_prediction", ("modality", "category", "sub-category"), MMAR_2025_OFFICIAL, (3, 6)),
    ],
)
def test_both_prediction_keys_are_read_as_each_script_version_reads_them(
    tmp_path, capsys, caplog, bench, key, groups, official, extracted
):
    entries, both, (current, older) = BOTH_KEYS[bench]
    rows = [{**e, current: both[e["id"]][0], older: both[e["id"]][1]} if e["id"] in both else e for e in entries]
    path = tmp_path / f"{bench}.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    args = ["--prediction-key", key] if key else []
    acc = cli_score(capsys, bench, "--predictions", str(path), "--rule", "official", *args)
    assert as_printed(acc, groups, 1.0, 2) == official
    if key is None:  # the default order is the current script's; the disagreement is reported
        assert f"read {current!r}" in caplog.text
    # the extract rule reads the same key (the predictions here are option texts)
    scores = score_file(get_benchmark(bench), path, prediction_key=key)
    assert (scores.overall.correct, scores.overall.total) == extracted


# ---------------------------------------------------------------- AIR-Bench: no `response` stops the script


def test_airbench_entry_without_response_has_no_official_figure(tmp_path, capsys):
    # score_foundation.py on this file: `predict = line['response'].strip()...` -> KeyError: 'response'
    responses = {1: "B", 2: "A", 4: "B", 5: "D.", 6: "C"}
    rows = [{**e, "response": responses[e["uniq_id"]]} if e["uniq_id"] in responses else e for e in AIR_ENTRIES]
    path = write_jsonl(tmp_path / "Foundation_result_modelx.jsonl", rows)
    spec = get_benchmark("airbench")
    with pytest.raises(BenchmarkError, match=r"item '3' has no prediction \('response'\); the official script stops"):
        score_file(spec, path, rule="official")
    assert main(["eval", "score", "airbench", "--predictions", str(path), "--rule", "official"]) == 2
    assert str(path) in capsys.readouterr().err
    # the extract rule counts it wrong: 5 of 6 (all five answers are right)
    assert score_file(spec, path).accuracies()["correct"] == 5
