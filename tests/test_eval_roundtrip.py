"""Round trip: every file `alarm eval` writes is scored by `alarm eval score` to the run's own
`scores.json` figures, for every benchmark and release layout.

The model is replaced by a scripted engine that answers each question with a fixed raw output
(right, wrong, empty, unfinished, ambiguous), so the figures are not trivially all zero; the
rest of `alarm eval` (loading, Parquet extraction, prompts, resumable predictions, scoring,
official files, reports) runs as it does for a real model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import alarm.evaluation.evaluate as evaluate_module
import alarm.presets
from alarm.cli import main
from alarm.generation import GenerationOutput
from tests.test_eval_parquet import parquet_rows, write_shards
from tests.test_eval_support import AIR_ENTRIES, build_airbench, build_mmar, build_mmau, build_mmsu

# Raw outputs under the ALARM prompt (option IDs from 0), by question text.
OUTPUTS = {
    "mmau": {
        "m1": "<think>a deep voice</think><answer>0</answer>",  # Man: right
        "m2": "<think>birds</think>\n<answer>2</answer>",  # Bird chirping: right
        "m3": "<answer>1</answer>",  # Guitar: wrong
        "m4": "<think>major or minor, hard to",  # unfinished
        "m5": "<answer>0 or 2</answer>",  # ambiguous
        "m6": "<answer>Three speakers</answer>",  # option text: right
        "m7": "",  # empty
        "m8": "<answer>1</answer>",  # Thunder: right
        "m9": "<answer>1</answer>",  # Sheep: right
    },
    "mmar": {
        "r1": "<answer>0</answer>",  # Too little: right
        "r2": "<answer>3</answer>",  # City Streets: wrong
        "r3": "<think>街道的声音</think><answer>1</answer>",  # 街道: right
        "r4": "<think>an owl or a",  # unfinished
        "r5": "<answer>0</answer>",  # Yes: right
        "r6": "<answer>0, 1</answer>",  # ambiguous
    },
    "mmsu": {
        "s1": "<answer>1</answer>",  # Sad: right
        "s2": "<answer>0</answer>",  # rising: wrong
        "s3": "",  # empty
        "s4": "<answer>1</answer>",  # female: right
        "s5": "<answer>2 or 3</answer>",  # ambiguous
        "s6": "<answer>2</answer>",  # '3': right
    },
    "airbench": {
        "1": "<answer>1</answer>",  # Female: right
        "2": "<answer>1</answer>",  # Female, answer Male: wrong
        "3": "",  # empty
        "4": "<answer>1</answer>",  # [1.0, 3.5]: right
        "5": "<answer>3</answer>",  # [0.0, 1.0]: right
        "6": "<think>the second span",  # unfinished
    },
}
QUESTIONS = {"r3": "说话人在哪里？"}  # the fixtures' other questions are "Question <id>?"


class ScriptedEngine:
    """Answers each prompt with the scripted output of the question it holds."""

    name = "scripted"

    def __init__(self, outputs: dict[str, str]) -> None:
        self.by_question = {QUESTIONS.get(i, f"Question {i}?"): text for i, text in outputs.items()}

    def answer(self, waveforms: Sequence[Any], prompts: Sequence[str], config: Any, **chat: Any) -> list:
        return [self._one(prompt) for prompt in prompts]

    def _one(self, prompt: str) -> GenerationOutput:
        (text,) = [t for q, t in self.by_question.items() if f"<question>\n{q}\n</question>" in prompt]
        return GenerationOutput(text, "", text, [], 0, False, True)


def _mmsu_parquet(root: Path) -> None:
    build_mmsu(root / "clips")
    write_shards(root, parquet_rows(root / "clips"))


LAYOUTS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "mmau-json": ("mmau", build_mmau),
    "mmar-jsonl": ("mmar", build_mmar),
    "mmar-json": ("mmar", lambda root: build_mmar(root, jsonl=False)),
    "mmsu-jsonl": ("mmsu", build_mmsu),
    "mmsu-parquet": ("mmsu", _mmsu_parquet),
    "airbench-json": ("airbench", build_airbench),
}
# Files the official scripts read (the others are ALARM's own answer files); AIR-Bench's
# script leaves unparsed answers out, so only its parsed ones are compared under its rule.
OFFICIAL_READS = {"mmau-test-mini_predictions.json", "mmar_predictions.jsonl", "mmsu_predictions.jsonl"}


def cli_json(capsys, args: list[str]) -> dict[str, Any]:
    assert main(args) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def figures(acc: dict[str, Any]) -> dict[str, Any]:
    """The numbers of an accuracies dict, without the labels of how they were made."""
    return {k: v for k, v in acc.items() if k not in ("rule", "unparsed", "excluded")}


def run_scripted(tmp_path: Path, capsys, monkeypatch, bench: str, build: Callable[[Path], Any]) -> dict[str, Any]:
    """`alarm eval BENCH` on a fixture release with the scripted engine; what it printed."""
    build(tmp_path / "data")
    monkeypatch.setattr(alarm.presets, "build_model", lambda ref: object())  # the engine needs no model
    monkeypatch.setattr(evaluate_module, "build_engine", lambda *_: ScriptedEngine(OUTPUTS[bench]))
    args = ["eval", bench, "--data", str(tmp_path / "data"), "--preset", "scripted", "--out", str(tmp_path / "out")]
    return cli_json(capsys, [*args, "--no-progress"])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_written_file_scores_to_the_runs_own_figures(tmp_path, capsys, monkeypatch, layout):
    bench, build = LAYOUTS[layout]
    data, out = tmp_path / "data", tmp_path / "out"
    run = run_scripted(tmp_path, capsys, monkeypatch, bench, build)
    scores = json.loads((out / bench / "scores.json").read_text(encoding="utf-8"))
    expected = scores["accuracies"]
    assert {k: run[k] for k in expected} == expected
    assert 0 < expected["correct"] < expected["total"] and expected["unparsed"] >= 2  # not a trivial file
    score = ["eval", "score", bench, "--predictions"]
    assert cli_json(capsys, [*score, str(out / bench / "predictions.jsonl"), "--data", str(data)]) == expected
    written = scores["official_files"]
    assert written
    for name in written:
        path = str(out / bench / name)
        assert cli_json(capsys, [*score, path]) == expected, name
        if name in OFFICIAL_READS:
            assert figures(cli_json(capsys, [*score, path, "--rule", "official"])) == figures(expected), name


def test_airbench_official_rule_on_the_written_file_leaves_out_what_the_script_does(tmp_path, capsys, monkeypatch):
    run_scripted(tmp_path, capsys, monkeypatch, "airbench", build_airbench)
    path = tmp_path / "out" / "airbench" / "Foundation_result_alarm.jsonl"
    acc = cli_json(capsys, ["eval", "score", "airbench", "--predictions", str(path), "--rule", "official"])
    # score_foundation.py on this file: 3 and 6 have response "" ("2.Response is None.", fail_num 2);
    # Speaker_Gender_Recognition_VoxCeleb1: Sum=2, correct=1; Audio_Grounding_AudioGrounding: Sum=2, correct=2
    assert (acc["correct"], acc["total"], acc["excluded"]) == (3, 4, 2)
    assert acc["task_dataset"] == {
        "Speaker_Gender_Recognition_VoxCeleb1": 50.0,
        "Audio_Grounding_AudioGrounding": 100.0,
    }
    assert len(AIR_ENTRIES) == acc["total"] + acc["excluded"]
