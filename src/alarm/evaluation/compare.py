"""`alarm eval compare RUN_DIR...`: several runs side by side, with paired-bootstrap p-values.

A run is a benchmark run folder (``OUT/<bench>[-<split>]`` with a ``scores.json``) or an
``alarm eval`` output folder holding several of them; runs are matched by benchmark folder name
(``mmau``, ``mmau-test``, ...). The first run given is the baseline: every other run's figures
(overall and each category) are shown next to it with the difference, the paired-bootstrap
p-value of that difference over the items both runs scored (:mod:`alarm.evaluation.uncertainty`)
and whether the two bootstrap intervals overlap. Overlapping intervals are flagged: such a
difference should not be read as a ranking without the p-value (and with many figures, some
p-values fall under 0.05 by chance alone).

Writes ``comparison.md`` (the table), ``comparison.json`` (the same numbers) and
``comparison.png`` (headline figures with their intervals) to the output folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alarm.evaluation.benchmarks.base import BenchmarkError
from alarm.evaluation.report import HEADLINE_GROUPS, fmt_ci, interval_errors, pyplot
from alarm.evaluation.uncertainty import DEFAULT, Bootstrap, overlap, paired_p_value
from alarm.io import write_json, write_text

OVERALL = ("overall", "all")


@dataclass(frozen=True)
class Run:
    """One benchmark run's ``scores.json`` under a label (the folder the user named)."""

    label: str
    bench: str  # the run folder's name: benchmark plus split
    scores: Mapping[str, Any]

    def figures(self) -> dict[tuple[str, str], Mapping[str, Any]]:
        """(group, key) -> tally (``accuracy``, ``ci``, ``total``), overall first."""
        out = {OVERALL: self.scores["overall"]}
        for group, keys in self.scores["groups"].items():
            for key, tally in keys.items():
                out[(group, key)] = tally
        return out

    def outcomes(self, figure: tuple[str, str]) -> dict[str, float] | None:
        """Item id -> outcome (1/0, or a score) of the items behind a figure; None if the
        run's scores.json predates per-item outcomes."""
        per_item = self.scores.get("per_item")
        if per_item is None:
            return None
        group, key = figure
        return {
            ident: float(row.get("value", row["correct"]))
            for ident, row in per_item.items()
            if figure == OVERALL or row.get("groups", {}).get(group) == key
        }


def _score_sets(path: Path) -> dict[str, Mapping[str, Any]]:
    """The figure sets of one ``scores.json``: ``scores`` under the run folder's name, and each
    of ``extra_scores`` (MMAR-Rubrics: ``reasoning``) as ``<name>:<set>``; none for a run
    without figures (a withheld split, AIR-Bench chat)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("scores"), dict):
        return {}
    name = path.parent.name
    sets = {name: data["scores"]}
    sets.update({f"{name}:{label}": extra for label, extra in (data.get("extra_scores") or {}).items()})
    return sets


def find_runs(folder: str | Path) -> dict[str, Mapping[str, Any]]:
    """Benchmark run name -> scores of a run folder, or of every run inside an output folder."""
    folder = Path(folder)
    if (folder / "scores.json").is_file():
        found = _score_sets(folder / "scores.json")
        if not found:
            raise BenchmarkError(f"{folder / 'scores.json'}: not the scores.json of a scored `alarm eval` run")
        return found
    found = {}
    for path in sorted(folder.glob("*/scores.json")):
        found.update(_score_sets(path))
    if not found:
        raise BenchmarkError(f"{folder}: no scores.json here or in its sub-folders (an `alarm eval` run folder?)")
    return found


def _labels(folders: Sequence[str | Path]) -> list[str]:
    """Short unique names for the folders: the folder name, with its parent where names repeat."""
    paths = [Path(f).resolve() for f in folders]
    names = [p.name for p in paths]
    labels: list[str] = []
    for path in paths:
        label = f"{path.parent.name}/{path.name}" if names.count(path.name) > 1 else path.name
        labels.append(label if label not in labels else f"{label} ({len(labels) + 1})")  # a folder named twice
    return labels


def compare(folders: Sequence[str | Path], settings: Bootstrap = DEFAULT) -> dict[str, Any]:
    """The comparison of the runs in ``folders`` (the first is the baseline), as JSON-ready data."""
    if len(folders) < 2:
        raise BenchmarkError("alarm eval compare needs at least two run folders")
    labels = _labels(folders)
    found = [find_runs(f) for f in folders]
    shared = [name for name in found[0] if all(name in runs for runs in found[1:])]
    if not shared:
        names = "; ".join(f"{label}: {', '.join(runs)}" for label, runs in zip(labels, found))
        raise BenchmarkError(f"the runs share no benchmark ({names})")
    benchmarks = []
    for name in shared:
        runs = [Run(label, name, runs[name]) for label, runs in zip(labels, found)]
        benchmarks.append({"benchmark": name, "rows": _rows(runs, settings)})
    return {"runs": labels, "baseline": labels[0], "intervals": settings.to_dict(), "benchmarks": benchmarks}


def _rows(runs: Sequence[Run], settings: Bootstrap) -> list[dict[str, Any]]:
    base = runs[0]
    rows = []
    for figure, tally in base.figures().items():
        row: dict[str, Any] = {"group": figure[0], "key": figure[1], "runs": {}, "vs_baseline": {}}
        row["runs"][base.label] = _cell(tally)
        for other in runs[1:]:
            theirs = other.figures().get(figure)
            if theirs is None:
                continue
            row["runs"][other.label] = _cell(theirs)
            row["vs_baseline"][other.label] = _difference(base, other, figure, tally, theirs, settings)
        rows.append(row)
    return rows


def _cell(tally: Mapping[str, Any]) -> dict[str, Any]:
    return {"value": tally["accuracy"], "ci": tally.get("ci"), "n": tally["total"]}


def _difference(
    base: Run,
    other: Run,
    figure: tuple[str, str],
    mine: Mapping[str, Any],
    theirs: Mapping[str, Any],
    settings: Bootstrap,
) -> dict[str, Any]:
    """Difference (other - baseline), its paired p-value over shared items, interval overlap."""
    a, b = base.outcomes(figure), other.outcomes(figure)
    p_value, paired = None, 0
    if a is not None and b is not None:
        common = sorted(set(a) & set(b))
        paired = len(common)
        p_value = paired_p_value([b[i] for i in common], [a[i] for i in common], settings)
    return {
        "difference": theirs["accuracy"] - mine["accuracy"],
        "p_value": p_value,
        "paired_items": paired,
        "intervals_overlap": overlap(mine.get("ci"), theirs.get("ci")),
    }


def markdown(result: Mapping[str, Any]) -> str:
    """The comparison as Markdown tables, one per benchmark."""
    runs, base = result["runs"], result["baseline"]
    others = [r for r in runs if r != base]
    level = f"{round(100 * result['intervals']['level'])}% CI"
    lines = [
        "# Run comparison",
        "",
        f"Baseline: `{base}`. Figures in percent with their {level} ({result['intervals']['method']}, "
        f"{result['intervals']['resamples']} resamples, seed {result['intervals']['seed']}). "
        "Δ = run - baseline; p = two-sided paired bootstrap over the items both runs scored; "
        "**overlap** marks figures whose intervals overlap (the difference is not clear from the intervals).",
    ]
    for bench in result["benchmarks"]:
        columns = ["figure", *runs, *[c for r in others for c in (f"Δ {r}", "p", "intervals")]]
        lines += ["", f"## {bench['benchmark']}", "", "| " + " | ".join(columns) + " |"]
        lines.append("|---|" + "---:|" * (len(columns) - 1))
        for row in bench["rows"]:
            cells = []
            for r in runs:
                cell = row["runs"].get(r)
                cells.append("" if cell is None else f"{cell['value']:.2f} [{fmt_ci(cell['ci'])}] (n={cell['n']})")
            for r in others:
                diff = row["vs_baseline"].get(r)
                if diff is None:
                    cells += ["", "", ""]
                    continue
                p = "" if diff["p_value"] is None else f"{diff['p_value']:.3f}"
                flag = {True: "**overlap**", False: "apart", None: ""}[diff["intervals_overlap"]]
                cells += [f"{diff['difference']:+.2f}", p, flag]
            figure = "overall" if row["group"] == "overall" else f"{row['group']}: {row['key']}"
            lines.append(f"| {figure} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: Mapping[str, Any], path: Path) -> Path:
    """Headline figures (overall and the paper's categories) of every run, with intervals."""
    plt = pyplot()
    runs = result["runs"]
    panels = []
    for bench in result["benchmarks"]:
        name = bench["benchmark"].split(":")[0]  # "mmar-rubrics:reasoning" has mmar-rubrics' groups
        headline = HEADLINE_GROUPS.get(name, HEADLINE_GROUPS.get(name.split("-")[0]))
        rows = [r for r in bench["rows"] if r["group"] in ("overall", headline)]
        panels.append((bench["benchmark"], rows))
    height = sum(0.25 * len(rows) * len(runs) + 0.8 for _, rows in panels) + 0.8
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, height), squeeze=False)
    fig.suptitle(f"Run comparison (error bars: {round(100 * result['intervals']['level'])}% bootstrap intervals)")
    width = 0.8 / len(runs)
    for ax, (name, rows) in zip(axes[:, 0], panels):
        for j, label in enumerate(runs):
            ys = [i + j * width for i in range(len(rows))]
            cells = [row["runs"].get(label) or {"value": 0.0, "ci": None} for row in rows]
            values = [c["value"] for c in cells]
            ax.barh(
                ys,
                values,
                height=width,
                xerr=interval_errors(values, [c["ci"] for c in cells]),
                error_kw={"elinewidth": 0.8, "capsize": 2},
                label=label,
            )
        ax.set_yticks(
            [i + width * (len(runs) - 1) / 2 for i in range(len(rows))],
            ["overall" if r["group"] == "overall" else r["key"] for r in rows],
            fontsize=7,
        )
        ax.invert_yaxis()
        ax.set_xlim(0, 105)
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_xlabel("accuracy (%)", fontsize=7)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_comparison(
    folders: Sequence[str | Path], out: str | Path, settings: Bootstrap = DEFAULT
) -> tuple[dict[str, Any], list[Path]]:
    """Compare the runs and write ``comparison.md``, ``comparison.json`` and ``comparison.png``."""
    result = compare(folders, settings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "comparison.md", out / "comparison.json", out / "comparison.png"]
    write_text(paths[0], markdown(result))
    write_json(paths[1], result)
    plot(result, paths[2])
    return result, paths
