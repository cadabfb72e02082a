"""The demo's report: the aligned model against chance, text only and the metadata bound.

``report.json`` holds the numbers (``accuracy``, ``chance``, ``text_only_accuracy``,
``metadata_accuracy``, ``per_category``, ``speech_wer``, ``models``, ``model_dir``, timings)
and ``significance``: each method's 95% bootstrap interval and the aligned model's paired
bootstrap p-values against text only and against the metadata bound (``alarm eval compare``,
whose tables land in ``comparison/``); ``report.md`` shows them with ``accuracy.png``
(accuracy by method and question type), the training curves, the corpus report and example
answers with their reasoning.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from alarm.io import write_json, write_text

if TYPE_CHECKING:
    from alarm.demo.run import DemoConfig

NUM_EXAMPLES = 6
METHODS = {"text": "text only (no audio)", "metadata": "metadata instead of audio", "audio": "aligned model (audio)"}
COLOURS = {"chance": "#bbbbbb", "text": "#999999", "metadata": "#e0a030", "audio": "#3b7dd8"}


def chance_levels(bench: str) -> dict[str, Any]:
    """Expected accuracy of uniform guessing, overall and per question type (1 / number of options)."""
    from alarm.demo.data import TEST_FILE

    with open(os.path.join(bench, TEST_FILE), encoding="utf-8") as f:
        entries = json.load(f)
    per: dict[str, list[float]] = {}
    for e in entries:
        per.setdefault(e["category"], []).append(100.0 / len(e["choices"]))
    overall = sum(sum(v) for v in per.values()) / sum(len(v) for v in per.values())
    return {"overall": round(overall, 2), "category": {k: round(sum(v) / len(v), 2) for k, v in per.items()}}


def plot_accuracy(results: dict[str, dict[str, Any]], chance: dict[str, Any], png: str) -> None:
    """Accuracy by method (bars) for all questions and each question type, chance marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = sorted(chance["category"])
    labels = ["all", *categories]
    series = {"chance": [chance["overall"], *[chance["category"][c] for c in categories]]}
    for method in METHODS:
        acc = results[method]
        series[method] = [acc["overall"], *[acc.get("category", {}).get(c, 0.0) for c in categories]]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(labels) + 2), 3.8))
    width = 0.8 / len(series)
    for j, (name, values) in enumerate(series.items()):
        offset = (j - (len(series) - 1) / 2) * width
        label = "chance" if name == "chance" else METHODS[name]
        ax.bar([i + offset for i in range(len(labels))], values, width=width, label=label, color=COLOURS[name])
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Held-out questions (MMAU format), frozen SmolLM2-135M")
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def significance(out: str) -> dict[str, Any]:
    """Intervals of the three methods and the aligned model's paired p-values (``alarm eval compare``).

    Writes the full per-category comparison (text only as the baseline) to ``out/comparison``.
    """
    from alarm.evaluation.compare import compare, write_comparison

    runs = {m: os.path.join(out, "eval", m) for m in METHODS}
    against_text, _ = write_comparison(list(runs.values()), os.path.join(out, "comparison"))
    against_metadata = compare([runs["metadata"], runs["audio"]])

    def overall(result: dict[str, Any]) -> dict[str, Any]:
        return next(row for row in result["benchmarks"][0]["rows"] if row["group"] == "overall")

    base, bound = overall(against_text), overall(against_metadata)
    return {
        "ci": {m: base["runs"][m]["ci"] for m in METHODS},
        "audio_vs_text": base["vs_baseline"]["audio"],
        "audio_vs_metadata": bound["vs_baseline"]["audio"],
        "method": against_text["intervals"],
    }


def _examples(run_dir: str, bench: str, n: int) -> list[dict[str, str]]:
    """Answered test questions of the aligned model, with reasoning, answer and the truth."""
    from alarm.demo.data import TEST_FILE
    from alarm.generation import split_reasoning

    with open(os.path.join(bench, TEST_FILE), encoding="utf-8") as f:
        truth = {e["id"]: e for e in json.load(f)}
    rows = []
    with open(os.path.join(run_dir, "mmau", "predictions.jsonl"), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            reasoning, answer = split_reasoning(row["output"]) if "</think>" in row["output"] else ("", row["output"])
            entry = truth[row["id"]]
            rows.append(
                {
                    "id": row["id"],
                    "question": entry["question"],
                    "choices": " / ".join(entry["choices"]),
                    "truth": entry["answer"],
                    "heard": entry["metadata"],
                    "reasoning": reasoning.strip(),
                    "answer": answer.strip(),
                }
            )
    rows.sort(key=lambda r: r["id"])
    # one example per question type first, so the table shows the whole range
    seen, picked = set(), []
    for row in rows:
        kind = row["id"].rsplit("-", 1)[-1]
        if kind not in seen:
            seen.add(kind)
            picked.append(row)
    return picked[:n]


def _open_examples(path: str, questions: str, n: int) -> list[dict[str, str]]:
    with open(questions, encoding="utf-8") as f:
        refs = {r["id"]: r for r in map(json.loads, f)}
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{"id": r["id"], "said": refs[r["id"]]["reference"], "answer": r["answer"].strip()} for r in rows[:n]]


def _significance_line(sig: dict[str, Any]) -> str:
    def ci(method: str) -> str:
        low, high = sig["ci"][method]
        return f"[{low:.1f}-{high:.1f}]"

    def versus(key: str, name: str) -> str:
        row = sig[key]
        apart = "intervals overlap" if row["intervals_overlap"] else "intervals apart"
        return f"{row['difference']:+.1f} points vs {name} (paired bootstrap p = {row['p_value']:.3f}, {apart})"

    return (
        f"95% intervals: text only {ci('text')}, metadata {ci('metadata')}, aligned {ci('audio')}. "
        f"The aligned model: {versus('audio_vs_text', 'text only')}; "
        f"{versus('audio_vs_metadata', 'the metadata bound')}. "
        "Per question type: [comparison/comparison.md](comparison/comparison.md)."
    )


def _records(counts: dict[str, int]) -> str:
    return " + ".join(f"{n} {split}" for split, n in counts.items())


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_demo_report(config: DemoConfig, stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write report.md, report.json and accuracy.png; return the report's summary."""
    from alarm.presets import load_preset

    out = os.path.abspath(config.out)
    bench = os.path.join(out, "bench")
    results = {m: stages["evaluate"][m] for m in METHODS}
    transcripts = {m: stages["transcripts"][m] for m in METHODS}
    chance = chance_levels(bench)
    plot_accuracy(results, chance, os.path.join(out, "accuracy.png"))
    tests = significance(out)
    preset = load_preset(config.preset)
    categories = sorted(chance["category"])
    summary = {
        "accuracy": results["audio"]["overall"],
        "chance": chance["overall"],
        "text_only_accuracy": results["text"]["overall"],
        "metadata_accuracy": results["metadata"]["overall"],
        "significance": tests,
        "per_category": {
            c: {
                "chance": chance["category"][c],
                **{m: results[m].get("category", {}).get(c) for m in METHODS},
            }
            for c in categories
        },
        "speech_wer": transcripts["audio"].get("wer"),
        "speech_wer_text_only": transcripts["text"].get("wer"),
        "speech_wer_metadata": transcripts["metadata"].get("wer"),
        "digits_exact": {m: transcripts[m].get("digits_exact") for m in METHODS},
        "transcripts": transcripts,
        "test_questions": results["audio"]["total"],
        "models": {
            "preset": config.preset,
            "rlm": preset.get("text_model"),
            "encoders": [e.get("pretrained") for e in preset.get("encoders", [])],
        },
        "model_dir": os.path.join(out, "train", "final"),
        "corpus": {k: stages["corpus"].get(k) for k in ("records", "rejects", "training_rows")},
        "training": {k: stages["train"].get(k) for k in ("steps", "last_loss", "final_step")},
        "timings_s": {stage: info.get("seconds") for stage, info in stages.items()},
    }
    summary["timings_s"]["total"] = round(sum(v or 0 for v in summary["timings_s"].values()), 1)
    write_json(os.path.join(out, "report.json"), summary)
    write_text(os.path.join(out, "report.md"), _markdown(config, summary, out, bench))
    return summary


def _markdown(config: DemoConfig, s: dict[str, Any], out: str, bench: str) -> str:
    lines = [
        "# alarm demo: a real LLM learns to hear",
        "",
        f"Frozen RLM `{s['models']['rlm']}`, frozen encoder `{', '.join(s['models']['encoders'])}` "
        f"(preset `{config.preset}`); only the audio path trained ({s['training']['steps']} steps, "
        f"last loss {s['training']['last_loss']:.3f}) on a corpus the same RLM wrote about the training clips "
        f"({_records(s['corpus']['records'])} records, {s['corpus']['rejects']} clips rejected with their reasons; "
        f"each training record trained on with the {config.renderings} recordings of its clip: "
        f"{(s['corpus'].get('training_rows') or {}).get('train', '?')} training rows).",
        "",
        "## Held-out questions (MMAU format, real loader and scorer)",
        "",
        "![accuracy](accuracy.png)",
        "",
        "| question type | chance | text only | metadata instead of audio | aligned model (audio) |",
        "|---|---:|---:|---:|---:|",
        f"| **all ({s['test_questions']})** | {s['chance']:.1f} | {s['text_only_accuracy']:.1f} | "
        f"{s['metadata_accuracy']:.1f} | **{s['accuracy']:.1f}** |",
    ]
    for c, row in s["per_category"].items():
        cells = " | ".join("-" if row[m] is None else f"{row[m]:.1f}" for m in METHODS)
        lines.append(f"| {c} | {row['chance']:.1f} | {cells} |")
    sig = s["significance"]
    lines += ["", _significance_line(sig), ""]
    t = s["transcripts"]
    lines += [
        "",
        '## "What does the speaker say?" (word error rate, lower is better)',
        "",
        "| | text only | metadata instead of audio | aligned model (audio) |",
        "|---|---:|---:|---:|",
        f"| WER, all speech (%) | {t['text'].get('wer')} | {t['metadata'].get('wer')} | **{t['audio'].get('wer')}** |",
        f"| digit strings said exactly (%) | {t['text'].get('digits_exact')} | {t['metadata'].get('digits_exact')} | "
        f"**{t['audio'].get('digits_exact')}** |",
        "",
        "| said | aligned model's answer |",
        "|---|---|",
    ]
    for ex in _open_examples(
        os.path.join(out, "transcripts", "audio.jsonl"), os.path.join(bench, "open_questions.jsonl"), NUM_EXAMPLES
    ):
        lines.append(f"| {_cell(ex['said'])} | {_cell(ex['answer'])} |")
    lines += [
        "",
        "## Example answers of the aligned model",
        "",
        "| question | options | truth | answer |",
        "|---|---|---|---|",
    ]
    for ex in _examples(os.path.join(out, "eval", "audio"), bench, NUM_EXAMPLES):
        reasoning = f" (reasoning: {_cell(ex['reasoning'], 120)})" if ex["reasoning"] else ""
        lines.append(
            f"| {_cell(ex['question'])} | {_cell(ex['choices'])} | {ex['truth']} | {_cell(ex['answer'])}{reasoning} |"
        )
    lines += [
        "",
        "SmolLM2-135M-Instruct has no thinking mode, so its answers carry no reasoning block and the thinking "
        f"budget ({config.thinking_budget} tokens) has nothing to cut; with a thinking RLM the same code shows it.",
        "",
        "## Training and corpus",
        "",
        "![training curves](train/curves.png)",
        "",
        "Corpus report (prompts, filter verdicts, rejects by stage and reason, exposure): "
        "[corpus/report.md](corpus/report.md).",
        "",
        f'The trained model: `{s["model_dir"]}` (`alarm ask --preset {s["model_dir"]} CLIP.wav "What does the '
        'speaker say?"`).',
        "",
        "## Timings (s)",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in s["timings_s"].items()],
        "",
    ]
    return "\n".join(lines)
