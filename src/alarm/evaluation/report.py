"""Reports: a Markdown table and PNG plots per benchmark run, and a summary across runs.

Every table and plot that shows the paper's numbers marks them as "published, not measured"
(hatched, hollow bars in the plots; their own column in the tables).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alarm.evaluation.published import SOURCE
from alarm.io import write_text

PUBLISHED_LABEL = "published (paper), not measured"
MAX_PLOTTED_KEYS = 60


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def fmt_ci(ci: Sequence[float] | None) -> str:
    """``[low, high]`` as ``52.10-61.30`` (empty when there is none, e.g. an old scores.json)."""
    return "" if not ci else f"{ci[0]:.2f}-{ci[1]:.2f}"


def interval_errors(values: Sequence[float], cis: Sequence[Sequence[float] | None]) -> list[list[float]]:
    """matplotlib ``xerr`` (distances below and above each bar) from ``[low, high]`` intervals."""
    # max(0, ...): intervals are rounded to 4 decimals, a degenerate one may sit a hair off the value
    low = [max(0.0, v - ci[0]) if ci else 0.0 for v, ci in zip(values, cis)]
    high = [max(0.0, ci[1] - v) if ci else 0.0 for v, ci in zip(values, cis)]
    return [low, high]


def _level(scores: Mapping[str, Any]) -> str:
    settings = scores.get("intervals") or {}
    return f"{round(100 * settings.get('level', 0.95))}% CI"


def _published_value(published: Mapping[str, Any] | None, group: str | None, key: str | None) -> float | None:
    if not published:
        return None
    if group is None:
        return published.get("overall")
    return published.get(group, {}).get(key)


def markdown(scores: Mapping[str, Any], *, title: str, published: Mapping[str, Any] | None, model: str) -> str:
    """A Markdown table of one run's ``scores.json`` content."""
    pub_head = f" {model}, {PUBLISHED_LABEL} |" if published else ""
    settings = scores.get("intervals") or {}
    lines = [
        f"# {title}",
        "",
        f"Rule: `{scores['rule']}`, extraction: `{scores['extraction']}`. Accuracy in percent; "
        f"{_level(scores)}: {settings.get('method', 'bootstrap')}, {settings.get('resamples', '')} resamples, "
        f"seed {settings.get('seed', '')}.",
        "",
        f"| group | category | accuracy | {_level(scores)} | correct / total |" + pub_head,
        "|---|---|---:|---:|---:|" + ("---:|" if published else ""),
    ]
    rows = [("overall", "all", scores["overall"])]
    rows += [(group, key, tally) for group, keys in scores["groups"].items() for key, tally in keys.items()]
    for group, key, tally in rows:
        value = _published_value(published, None if group == "overall" else group, key)
        pub = f" {_fmt(value)} |" if published else ""
        lines.append(
            f"| {group} | {key} | {_fmt(tally['accuracy'])} | {fmt_ci(tally.get('ci'))} "
            f"| {tally['correct']} / {tally['total']} |{pub}"
        )
    unparsed = scores.get("unparsed", [])
    lines += ["", f"Outputs that chose no option (counted wrong): {len(unparsed)}."]
    if unparsed:
        lines += ["", "| id | status | final answer |", "|---|---|---|"]
        for row in unparsed[:50]:
            final = str(row.get("final", "")).replace("|", "\\|").replace("\n", " ")[:80]
            lines.append(f"| {row['id']} | {row['status']} | {final} |")
        if len(unparsed) > 50:
            lines.append(f"| ... | {len(unparsed) - 50} more in scores.json | |")
    if scores.get("excluded"):
        lines += ["", f"Left out of the counts by the official rule: {len(scores['excluded'])}."]
    if published:
        lines += ["", f"Published numbers: {SOURCE}."]
    return "\n".join(lines) + "\n"


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_categories(
    scores: Mapping[str, Any], path: Path, *, title: str, published: Mapping[str, Any] | None, model: str
) -> Path:
    """Horizontal bars per category, one panel per group; published values as hatched outlines."""
    plt = pyplot()
    panels = [("overall", {"all": scores["overall"]})] + [
        (g, keys) for g, keys in scores["groups"].items() if 0 < len(keys) <= MAX_PLOTTED_KEYS
    ]
    heights = [max(1.2, 0.32 * len(keys) + 0.8) for _, keys in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, sum(heights) + 0.8), squeeze=False)
    fig.suptitle(title)
    shown_pub = False
    for ax, (group, keys) in zip(axes[:, 0], panels):
        names = list(keys)
        ys = range(len(names))
        values = [keys[k]["accuracy"] for k in names]
        cis = [keys[k].get("ci") for k in names]
        ax.barh(
            [y + 0.2 for y in ys],
            values,
            height=0.4,
            color="tab:blue",
            xerr=interval_errors(values, cis),
            error_kw={"elinewidth": 0.8, "capsize": 2},
            label=f"measured ({_level(scores)})",
        )
        pub = [_published_value(published, None if group == "overall" else group, k) for k in names]
        if any(p is not None for p in pub):
            ax.barh(
                [y - 0.2 for y, p in zip(ys, pub) if p is not None],
                [p for p in pub if p is not None],
                height=0.4,
                fill=False,
                hatch="//",
                edgecolor="black",
                label=f"{model}: {PUBLISHED_LABEL}",
            )
            shown_pub = True
        for y, v, ci, k in zip(ys, values, cis, names):
            right = max(v, ci[1]) if ci else v
            ax.text(min(right, 100) + 1, y + 0.2, f"{v:.1f} (n={keys[k]['total']})", va="center", fontsize=7)
        for y, p in zip(ys, pub):
            if p is not None:
                ax.text(p + 1, y - 0.2, f"{p:.1f} published", va="center", fontsize=6, style="italic")
        ax.set_yticks(list(ys), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 115)
        ax.set_title(group, fontsize=9, loc="left")
        ax.set_xlabel("accuracy (%)", fontsize=7)
    if shown_pub:
        axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


HEADLINE_GROUPS = {"mmsu": "category", "mmau": "task", "mmar": None, "airbench": None, "mmau-pro": "type"}


def _headline(run: Mapping[str, Any]) -> list[tuple[str, float, float | None, list[float] | None]]:
    """(label, measured, published, interval) bars for a run: overall plus its paper categories."""
    scores, pub = run["scores"], run.get("published")
    name = f"{scores['benchmark']} {scores['split']}"
    overall = scores["overall"]
    bars = [(f"{name}: overall", overall["accuracy"], _published_value(pub, None, None), overall.get("ci"))]
    group = HEADLINE_GROUPS.get(scores["benchmark"])
    for key, tally in scores["groups"].get(group, {}).items() if group else ():
        bars.append((f"{name}: {key}", tally["accuracy"], _published_value(pub, group, key), tally.get("ci")))
    return bars


def plot_summary(runs: Sequence[Mapping[str, Any]], path: Path, *, title: str) -> Path:
    """Measured headline accuracies of several runs side by side with the paper's."""
    plt = pyplot()
    bars = [b for run in runs for b in _headline(run)]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(bars) + 1.5))
    ys = range(len(bars))
    values = [b[1] for b in bars]
    ax.barh(
        [y + 0.2 for y in ys],
        values,
        height=0.4,
        color="tab:blue",
        xerr=interval_errors(values, [b[3] for b in bars]),
        error_kw={"elinewidth": 0.8, "capsize": 2},
        label="measured (95% CI)",
    )
    pub = [(y, b[2]) for y, b in zip(ys, bars) if b[2] is not None]
    if pub:
        models = sorted({run.get("paper_model", "") for run in runs if run.get("published")})
        ax.barh(
            [y - 0.2 for y, _ in pub],
            [p for _, p in pub],
            height=0.4,
            fill=False,
            hatch="//",
            edgecolor="black",
            label=f"{', '.join(models)}: {PUBLISHED_LABEL}",
        )
    for y, b in zip(ys, bars):
        ax.text(b[1] + 1, y + 0.2, f"{b[1]:.1f}", va="center", fontsize=7)
        if b[2] is not None:
            ax.text(b[2] + 1, y - 0.2, f"{b[2]:.1f} published", va="center", fontsize=6, style="italic")
    ax.set_yticks(list(ys), [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summary_markdown(runs: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "# Evaluation summary",
        "",
        f"Measured by this code; the last column is {PUBLISHED_LABEL} ({SOURCE}).",
        "",
        "| run | model | score | measured | 95% CI | published (not measured) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for run in runs:
        for label, measured, pub, ci in _headline(run):
            lines.append(
                f"| {run['name']} | {run.get('model', '')} | {label} | {_fmt(measured)} | {fmt_ci(ci)} | {_fmt(pub)} "
                f"{'(' + run['paper_model'] + ')' if pub is not None else ''} |"
            )
    return "\n".join(lines) + "\n"


def collect_runs(root: Path) -> list[dict[str, Any]]:
    """Every ``<run>/scores.json`` under ``root`` (one level deep), sorted by run name."""
    runs = []
    for path in sorted(root.glob("*/scores.json")):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if "scores" in data:
            runs.append({**data, "name": path.parent.name})
    return runs


def write_summary(root: Path) -> list[Path]:
    """``summary.md`` and ``summary.png`` over all runs under ``root``."""
    runs = [r for r in collect_runs(root) if r["scores"]["overall"]["total"] > 0]
    if not runs:
        return []
    md = root / "summary.md"
    write_text(md, summary_markdown(runs))
    png = plot_summary(runs, root / "summary.png", title="Accuracy by benchmark")
    return [md, png]
