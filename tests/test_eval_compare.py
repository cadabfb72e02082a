"""Bootstrap intervals on every figure, and `alarm eval compare` over two scored runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from alarm.cli import main
from alarm.evaluation.benchmarks import get_benchmark, load_items
from alarm.evaluation.compare import compare, write_comparison
from alarm.evaluation.evaluate import finish
from alarm.evaluation.uncertainty import Bootstrap, interval, overlap, paired_p_value
from tests.test_eval_scoring import MMAU_PREDICTIONS
from tests.test_eval_support import build_mmau


def binomial_quantile(q: float, n: int, p: float) -> int:
    """The smallest k with P(X <= k) >= q for X ~ Binomial(n, p)."""
    total = 0.0
    for k in range(n + 1):
        total += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if total >= q:
            return k
    return n


def test_interval_of_a_proportion_matches_the_binomial_it_resamples():
    # resampling n 0/1 items with replacement draws the count from Binomial(n, p): the
    # percentile interval must sit on that distribution's quantiles
    outcomes = [1] * 60 + [0] * 40
    low, high = interval(outcomes, Bootstrap(resamples=4000, seed=3))
    exact = [binomial_quantile(q, 100, 0.6) for q in (0.025, 0.975)]  # counts out of 100 = percent
    assert abs(low - exact[0]) <= 1.5 and abs(high - exact[1]) <= 1.5
    assert interval(outcomes) == interval(outcomes)  # seeded
    assert interval([1, 1, 1]) == [100.0, 100.0] and interval([]) is None
    assert interval([4.0, 6.0], scale=1.0)[0] >= 4.0  # a mean score, not a percentage


def test_paired_p_value():
    a = [1] * 50 + [0] * 50
    assert paired_p_value(a, a) == 1.0
    much_better = [1] * 90 + [0] * 10
    assert paired_p_value(much_better, a) < 0.01
    one_item_better = a[:50] + [1] + a[51:]
    assert paired_p_value(one_item_better, a) > 0.5
    with pytest.raises(ValueError, match="same items"):
        paired_p_value([1], [1, 0])
    assert overlap([1, 3], [2, 4]) and not overlap([1, 2], [3, 4]) and overlap(None, [1, 2]) is None


def _run(tmp_path, name, outputs):
    spec = get_benchmark("mmau")
    items = load_items(spec, tmp_path / "data")
    schemes = {i.id: "letter" for i in items}
    finish(spec, items, outputs, schemes, tmp_path / name / "mmau", "test-mini", {"model": name})
    return tmp_path / name


def test_scores_and_reports_carry_intervals(tmp_path):
    build_mmau(tmp_path / "data")
    run = _run(tmp_path, "a", MMAU_PREDICTIONS)
    data = json.loads((run / "mmau" / "scores.json").read_text())
    scores = data["scores"]
    method = "percentile bootstrap over items"
    assert scores["intervals"] == {"method": method, "resamples": 1000, "level": 0.95, "seed": 0}
    low, high = scores["overall"]["ci"]
    assert low <= scores["overall"]["accuracy"] <= high
    assert all(t["ci"] is not None for keys in scores["groups"].values() for t in keys.values())
    assert scores["groups"]["difficulty"]["medium"]["ci"] == [0.0, 0.0]  # 0 of 2
    assert data["accuracies"]["ci"]["overall"] == scores["overall"]["ci"]
    assert scores["per_item"]["m1"] == {
        "correct": True,
        "groups": {
            "task": "sound",
            "difficulty": "easy",
            "category": "Reasoning",
            "sub-category": "Acoustic Source Inference",
        },
    }
    table = (run / "mmau" / "scores.md").read_text()
    assert "| 95% CI |" in table and f"{low:.2f}-{high:.2f}" in table
    assert "95% CI" in (run / "summary.md").read_text()


def test_compare_two_runs(tmp_path, capsys):
    build_mmau(tmp_path / "data")
    a = _run(tmp_path, "a", MMAU_PREDICTIONS)  # 4 of 9
    better = dict(MMAU_PREDICTIONS, m2="Bird chirping", m4="Minor", m5="Angry")  # 7 of 9
    b = _run(tmp_path, "b", better)
    result = compare([a, b])
    (bench,) = result["benchmarks"]
    overall = bench["rows"][0]
    assert bench["benchmark"] == "mmau" and overall["group"] == "overall"
    assert overall["runs"]["a"]["value"] == pytest.approx(400 / 9)
    assert overall["runs"]["b"]["value"] == pytest.approx(700 / 9)
    diff = overall["vs_baseline"]["b"]
    assert diff["difference"] == pytest.approx(300 / 9) and diff["paired_items"] == 9
    assert diff["intervals_overlap"] is True and 0 < diff["p_value"] < 0.5  # 9 items: intervals still overlap
    twice = compare([a, a])
    assert len(set(twice["runs"])) == 2  # one folder named twice still gets two labels
    same = twice["benchmarks"][0]["rows"][0]["vs_baseline"][twice["runs"][1]]
    assert same["difference"] == 0 and same["p_value"] == 1.0
    # the CLI writes table, JSON and plot; a benchmark folder works as well as the output folder
    out = tmp_path / "cmp"
    assert main(["eval", "compare", str(a), str(b / "mmau"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| overall |" in printed and "**overlap**" in printed and "+33.33" in printed
    assert json.loads((out / "comparison.json").read_text())["baseline"] == "a"
    assert (out / "comparison.png").stat().st_size > 1000


def test_compare_errors_and_old_scores(tmp_path, capsys):
    build_mmau(tmp_path / "data")
    a = _run(tmp_path, "a", MMAU_PREDICTIONS)
    assert main(["eval", "compare", str(a)]) == 2 and "at least two" in capsys.readouterr().err
    assert main(["eval", "compare", str(a), str(tmp_path / "data")]) == 2
    assert "no scores.json" in capsys.readouterr().err
    # a scores.json written before per-item outcomes: intervals compared, no p-value
    old = tmp_path / "old" / "mmau"
    old.mkdir(parents=True)
    data = json.loads((a / "mmau" / "scores.json").read_text())
    del data["scores"]["per_item"]
    (old / "scores.json").write_text(json.dumps(data))
    _, paths = write_comparison([a, old.parent], tmp_path / "cmp", Bootstrap(resamples=200))
    diff = json.loads(paths[1].read_text())["benchmarks"][0]["rows"][0]["vs_baseline"]["old"]
    assert diff["p_value"] is None and diff["intervals_overlap"] is True
    assert np.isclose(diff["difference"], 0.0)
