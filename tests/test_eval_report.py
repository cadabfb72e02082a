"""Scores, tables, plots and the official prediction files written after a run.

The official files must make the official scripts print our scores: scoring each written
file with the official rule gives the same counts as our extract-mode scores.json.
"""

from __future__ import annotations

import json

import pytest

from alarm.evaluation.benchmarks import get_benchmark, load_items
from alarm.evaluation.evaluate import finish, score_file
from alarm.evaluation.published import paper_model
from tests.test_eval_scoring import AIR_RESPONSES, MMAR_PREDICTIONS, MMAU_PREDICTIONS, MMSU_OUTPUTS
from tests.test_eval_support import build_airbench, build_mmar, build_mmau, build_mmsu

CASES = {
    # benchmark: (builder, outputs by id, label scheme, official file, expected correct of total)
    "mmau": (build_mmau, MMAU_PREDICTIONS, "letter", "mmau-test-mini_predictions.json", (4, 9)),
    "mmar": (build_mmar, MMAR_PREDICTIONS, "letter", "mmar_predictions.jsonl", (3, 6)),
    "mmsu": (build_mmsu, MMSU_OUTPUTS, "option_id", "mmsu_predictions.jsonl", (4, 6)),
    "airbench": (build_airbench, AIR_RESPONSES, "letter", "Foundation_result_alarm.jsonl", (5, 6)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_official_files_reproduce_our_scores(tmp_path, name):
    build, outputs, scheme, official_name, (correct, total) = CASES[name]
    spec = get_benchmark(name)
    build(tmp_path / "data")
    items = load_items(spec, tmp_path / "data")
    run_dir = tmp_path / "out" / name
    settings = {"benchmark": name, "model": "tiny-alarm-e"}
    result = finish(spec, items, outputs, {i.id: scheme for i in items}, run_dir, spec.default_split, settings)
    ours = result["scores"]["overall"]
    assert (ours["correct"], ours["total"]) == (correct, total)
    assert result["official_files"][0] == official_name
    for name_ in result["official_files"]:
        assert (run_dir / name_).is_file()
    official = score_file(spec, run_dir / official_name, rule="official")
    # every entry is written, "" where no option was chosen: the official rules count it wrong,
    # except score_foundation.py, which leaves such entries out of its counts
    left_out = len(result["scores"]["unparsed"]) if name == "airbench" else 0
    assert (official.overall.correct, official.overall.total) == (correct, total - left_out)
    # and the written file scores the same under extraction (the canonical strings are clean)
    assert score_file(spec, run_dir / official_name).overall.correct == correct
    # reports
    written = json.loads((run_dir / "scores.json").read_text())
    assert written["settings"] == settings and written["paper_model"] == "ALARM-E"
    assert (run_dir / "categories.png").stat().st_size > 1000
    table = (run_dir / "scores.md").read_text()
    assert "| overall | all |" in table and f"{correct} / {total}" in table
    assert (tmp_path / "out" / "summary.png").is_file() and (tmp_path / "out" / "summary.md").is_file()


def test_published_rows_are_labelled_and_matched_to_the_preset(tmp_path):
    spec = get_benchmark("mmau")
    build_mmau(tmp_path / "data")
    items = load_items(spec, tmp_path / "data")
    run_dir = tmp_path / "out" / "mmau"
    finish(
        spec, items, MMAU_PREDICTIONS, {i.id: "letter" for i in items}, run_dir, "test-mini", {"model": "tiny-alarm-p"}
    )
    table = (run_dir / "scores.md").read_text()
    assert "ALARM-P, published (paper), not measured" in table
    assert "| task | speech |" in table and "68.80" in table  # ALARM-P test-mini speech, Table 5
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "not measured" in summary and "65.30" not in summary and "60.00 (ALARM-P)" in summary
    assert paper_model("runs/my-checkpoint") == "ALARM-E" and paper_model("al-muq-r") == "AL-MuQ-R"


def test_withheld_split_writes_the_submission_file_only(tmp_path):
    spec = get_benchmark("mmau")
    root = tmp_path / "data"
    build_mmau(root)
    entries = json.loads((root / "mmau-test-mini.json").read_text())
    for e in entries:
        e["answer"], e["split"] = "", "test"
    (root / "mmau-test.json").write_text(json.dumps(entries))
    items = load_items(spec, root, "test")
    run_dir = tmp_path / "out" / "mmau-test"
    result = finish(spec, items, MMAU_PREDICTIONS, {i.id: "letter" for i in items}, run_dir, "test", {"model": "x"})
    assert result["scores"] is None and "withheld" in result["note"]
    submitted = json.loads((run_dir / "mmau-test_predictions.json").read_text())
    by_id = {row["id"]: row["model_prediction"] for row in submitted}
    assert by_id["m1"] == "Man" and by_id["m6"] == "Three speakers" and by_id["m4"] == "" and by_id["m9"] == ""
