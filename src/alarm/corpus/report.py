"""``alarm corpus report DIR``: what a corpus build produced, as JSON, Markdown and a PNG.

Works on a build directory (``corpus/``, ``stages/``, ``rejects/``) and on a merged one
(``data/``, ``rejects.jsonl``). Sections:

* stages: records passed and rejected per stage, rejects by reason;
* table1: instances, hours and unique prompts per category (the shape of the paper's Table 1),
  and per split;
* languages: of the chosen prompts and of all candidates;
* candidates: how many per record, how many kept, why the others were dropped;
* exposure: share of responses whose text gives away a written account (the lexical
  detector of :mod:`alarm.corpus.prompts`), R0 vs the rephrased target, on the records
  that went through rephrasing; the paper's claim is that rephrasing removes it;
* formats: how the LLM outputs of the kept records were read (Q's candidates from a
  ``<prompts>`` block or a bare numbered list, verdicts from a ``<verdicts>`` block or bare
  lines, rewrites from tagged blocks or plain text): how much the lenient parsing a small
  instruct model needs was used;
* lengths: words of prompts, R0 and target reasoning/answers, rephrasing reasoning;
* retries: LLM-output retries and transport (HTTP) retries per stage, thinking budgets hit.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from alarm.corpus.prompts import ParseError, exposure_hits, split_target
from alarm.corpus.schema import CorpusRecord, read_records
from alarm.corpus.shards import ShardFiles, corpus_files, reject_rows
from alarm.corpus.stages import STAGES

LENGTH_FIELDS = ("prompt", "r0_reasoning", "r0_answer", "target_reasoning", "target_answer", "rephrase_reasoning")


def _words(text: str) -> int:
    return len(text.split())


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def pct(q: float) -> float:
        return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])

    return {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 2),
        "p50": pct(0.5),
        "p90": pct(0.9),
        "max": float(ordered[-1]),
    }


def _rows_in(paths: Sequence[str]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def stage_counts(directory: str, n_corpus: int, rejects: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """``{stage: {passed, rejected}}``; counted from stage files in a build directory, else derived."""
    rejected = Counter(r["stage"] for r in rejects)
    files = ShardFiles(directory, 1, 0)  # only for the directory layout
    counts: dict[str, dict[str, int]] = {}
    if os.path.isdir(os.path.join(directory, "stages")) or os.path.isdir(os.path.join(directory, "corpus")):
        for stage in STAGES:
            passed = _rows_in(glob.glob(os.path.join(files.stage_dir(stage), "*.parquet")))
            counts[stage] = {"passed": passed, "rejected": rejected.get(stage, 0)}
        return counts
    passed = n_corpus
    for stage in reversed(STAGES):  # a merged corpus is finished: what passed a stage, the next one saw
        counts[stage] = {"passed": passed, "rejected": rejected.get(stage, 0)}
        passed += rejected.get(stage, 0)
    return dict(reversed(list(counts.items())))


def _table1(records: Sequence[CorpusRecord]) -> dict[str, Any]:
    def row(rs: Sequence[CorpusRecord]) -> dict[str, Any]:
        return {
            "instances": len(rs),
            "hours": round(sum(r.duration_s for r in rs) / 3600, 6),
            "unique_prompts": len({r.prompt for r in rs}),
        }

    by_cat: dict[str, list[CorpusRecord]] = defaultdict(list)
    for r in records:
        by_cat[r.category].append(r)
    table = {cat: row(rs) for cat, rs in sorted(by_cat.items())}
    table["total"] = row(records)
    splits = {s: row([r for r in records if r.split == s]) for s in ("train", "validation")}
    datasets: dict[str, dict[str, int]] = defaultdict(lambda: {"train": 0, "validation": 0})
    for r in records:
        datasets[r.dataset][r.split] += 1
    return {"by_category": table, "by_split": splits, "by_dataset": dict(sorted(datasets.items()))}


def _candidates(records: Sequence[CorpusRecord], rejects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    per_record = [len(r.prompt_candidates) for r in records if r.prompt_candidates]
    all_cands = [c for r in records for c in r.prompt_candidates]
    reasons = Counter()
    for c in all_cands:
        if not c["kept"]:
            reason = str(c["reason"])
            if reason.startswith("duplicate of candidate"):
                reason = "duplicate"
            reasons[reason.split(":")[0] if reason.startswith(("judge", "exposes")) else reason.split(" (")[0]] += 1
    lexical = sum(1 for c in all_cands if str(c["reason"]).startswith("exposes the text"))
    return {
        "records_with_candidates": len(per_record),
        "per_record": _stats(per_record),
        "candidates": len(all_cands),
        "kept": sum(1 for c in all_cands if c["kept"]),
        "lexical_exposure_rate": round(lexical / len(all_cands), 4) if all_cands else None,
        "dropped_by_reason": dict(reasons.most_common()),
        "records_rejected_with_no_prompt_kept": sum(1 for r in rejects if r["reason"] == "no prompt kept"),
    }


def _languages(records: Sequence[CorpusRecord]) -> dict[str, Any]:
    chosen = Counter(
        r.provenance.get("prompt_language") or ("transcript" if r.provenance.get("special_case") else "?")
        for r in records
    )
    candidates = Counter(lang for r in records for lang in r.provenance.get("candidate_languages", []))
    return {"chosen_prompts": dict(chosen.most_common()), "candidates": dict(candidates.most_common())}


def _exposure(records: Sequence[CorpusRecord]) -> dict[str, Any]:
    rephrased = [r for r in records if not r.provenance.get("special_case")]
    r0_hits = [exposure_hits(r.response_raw) for r in rephrased]
    tgt_hits = [exposure_hits(r.response) for r in rephrased]
    prompt_hits = [exposure_hits(r.prompt) for r in rephrased]
    n = len(rephrased)

    def rate(hits: list[list[str]]) -> float | None:
        return round(sum(1 for h in hits if h) / n, 4) if n else None

    return {
        "records": n,
        "r0_rate": rate(r0_hits),
        "target_rate": rate(tgt_hits),
        "prompt_rate": rate(prompt_hits),
        "r0_top_phrases": dict(Counter(p for h in r0_hits for p in h).most_common(10)),
        "target_top_phrases": dict(Counter(p for h in tgt_hits for p in h).most_common(10)),
    }


FORMAT_KEYS = {"candidates": "candidate_format", "verdicts": "verdict_format", "rewrites": "rewrite_format"}


def _formats(records: Sequence[CorpusRecord]) -> dict[str, dict[str, int]]:
    """``{candidates|verdicts|rewrites: {form: records}}`` over the records whose stage recorded one."""
    out: dict[str, dict[str, int]] = {}
    for name, key in FORMAT_KEYS.items():
        counts = Counter(r.provenance[key] for r in records if r.provenance.get(key))
        out[name] = dict(counts.most_common())
    return out


def _parts(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a stored target (one kept unfinished is all reasoning); a malformed one is all answer."""
    try:
        return split_target(text)[:2]
    except ParseError:
        return "", text


def _lengths(records: Sequence[CorpusRecord]) -> dict[str, list[int]]:
    values: dict[str, list[int]] = {k: [] for k in LENGTH_FIELDS}
    for r in records:
        values["prompt"].append(_words(r.prompt))
        r0_reasoning, r0_answer = _parts(r.response_raw)
        values["r0_reasoning"].append(_words(r0_reasoning))
        values["r0_answer"].append(_words(r0_answer))
        if not r.provenance.get("special_case"):
            reasoning, answer = _parts(r.response)
            values["target_reasoning"].append(_words(reasoning))
            values["target_answer"].append(_words(answer))
            values["rephrase_reasoning"].append(_words(r.rephrase_reasoning))
    return values


def _retries(records: Sequence[CorpusRecord], rejects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    per_stage: dict[str, dict[str, int]] = {s: {"llm_retries": 0, "transport_retries": 0} for s in STAGES}
    for r in records:
        for stage, entry in r.provenance.get("stages", {}).items():
            per_stage[stage]["llm_retries"] += max(0, int(entry.get("attempts", 0)) - 1)
            per_stage[stage]["transport_retries"] += int(entry.get("transport_retries", 0))
    for rej in rejects:
        per_stage[rej["stage"]]["llm_retries"] += max(0, int(rej.get("attempts", 0)) - 1)
        per_stage[rej["stage"]]["transport_retries"] += int(rej.get("transport_retries", 0))
    return {
        "per_stage": per_stage,
        "llm_retries": sum(v["llm_retries"] for v in per_stage.values()),
        "transport_retries": sum(v["transport_retries"] for v in per_stage.values()),
        "respond_budget_reached": sum(1 for r in records if r.provenance.get("respond_budget_reached")),
        "rephrase_budget_reached": sum(1 for r in records if r.provenance.get("rephrase_budget_reached")),
        # R0 answers kept in part: cut at the token limit after a sentence, or after their grounded lead
        "respond_cut_at_sentence": sum(1 for r in records if r.provenance.get("respond_cut_at_sentence")),
        "respond_trimmed_to_grounded": sum(1 for r in records if r.provenance.get("respond_trimmed_to_grounded")),
    }


def build_report(directory: str) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """The report dict and the raw length lists (for plots) of a build or merged directory."""
    records: list[CorpusRecord] = [r for p in corpus_files(directory) for r in read_records(p)]  # type: ignore[misc]
    rejects = reject_rows(directory)
    by_reason: dict[str, dict[str, int]] = defaultdict(dict)
    for (stage, reason), n in Counter((r["stage"], r["reason"]) for r in rejects).most_common():
        by_reason[stage][reason] = n
    lengths = _lengths(records)
    report = {
        "directory": os.path.abspath(directory),
        "records": len(records),
        "rejected": len(rejects),
        "stages": stage_counts(directory, len(records), rejects),
        "rejects_by_reason": {s: by_reason[s] for s in STAGES if s in by_reason},
        "table1": _table1(records),
        "languages": _languages(records),
        "candidates": _candidates(records, rejects),
        "exposure": _exposure(records),
        "formats": _formats(records),
        "lengths_words": {k: _stats(v) for k, v in lengths.items()},
        "retries": _retries(records, rejects),
    }
    return report, lengths


def to_markdown(report: dict[str, Any]) -> str:
    """A readable version of the report."""
    out = [f"# Corpus report\n\n`{report['directory']}`: {report['records']} records, {report['rejected']} rejected.\n"]
    out.append("## Stages\n\n| stage | passed | rejected | reasons |\n|---|---:|---:|---|")
    for stage, c in report["stages"].items():
        reasons = ", ".join(f"{r} ({n})" for r, n in report["rejects_by_reason"].get(stage, {}).items())
        out.append(f"| {stage} | {c['passed']} | {c['rejected']} | {reasons} |")
    out.append("\n## Table 1 shape\n\n| category | instances | hours | unique prompts |\n|---|---:|---:|---:|")
    for cat, row in report["table1"]["by_category"].items():
        out.append(f"| {cat} | {row['instances']} | {row['hours']:.4f} | {row['unique_prompts']} |")
    out.append("\n| split | instances | hours | unique prompts |\n|---|---:|---:|---:|")
    for split, row in report["table1"]["by_split"].items():
        out.append(f"| {split} | {row['instances']} | {row['hours']:.4f} | {row['unique_prompts']} |")
    out.append("\n| dataset | train | validation |\n|---|---:|---:|")
    for dataset, row in report["table1"]["by_dataset"].items():
        out.append(f"| {dataset} | {row['train']} | {row['validation']} |")
    ex = report["exposure"]
    out.append("\n## Text exposure (lexical detector)\n")
    out.append(
        f"Share of the {ex['records']} rephrased records whose text gives away a written account: "
        f"R0 {_pct(ex['r0_rate'])}, rephrased target {_pct(ex['target_rate'])}, "
        f"chosen prompt {_pct(ex['prompt_rate'])}.\n"
    )
    if ex["r0_top_phrases"]:
        out.append("R0 phrases: " + ", ".join(f"`{p}` ({n})" for p, n in ex["r0_top_phrases"].items()) + "\n")
    if ex["target_top_phrases"]:
        out.append("Target phrases: " + ", ".join(f"`{p}` ({n})" for p, n in ex["target_top_phrases"].items()) + "\n")
    formats = {k: v for k, v in report.get("formats", {}).items() if v}
    if formats:
        out.append("\n## Output forms (how the kept records' LLM outputs were read)\n")
        out.append("| output | forms (records) |\n|---|---|")
        out.extend(f"| {k} | {', '.join(f'{f} ({n})' for f, n in v.items())} |" for k, v in formats.items())
    cand = report["candidates"]
    out.append("\n## Candidates\n")
    out.append(
        f"{cand['candidates']} candidates over {cand['records_with_candidates']} records, {cand['kept']} kept; "
        f"lexical exposure rate {_pct(cand['lexical_exposure_rate'])}.\n"
    )
    if cand["dropped_by_reason"]:
        out.append("\n| dropped because | candidates |\n|---|---:|")
        out.extend(f"| {r} | {n} |" for r, n in cand["dropped_by_reason"].items())
    lang = report["languages"]
    out.append("\n## Languages\n\n| language | chosen prompts | candidates |\n|---|---:|---:|")
    for code in sorted(set(lang["chosen_prompts"]) | set(lang["candidates"])):
        out.append(f"| {code} | {lang['chosen_prompts'].get(code, 0)} | {lang['candidates'].get(code, 0)} |")
    out.append("\n## Lengths (words)\n\n| text | count | mean | p50 | p90 | max |\n|---|---:|---:|---:|---:|---:|")
    for name, s in report["lengths_words"].items():
        if s["count"]:
            out.append(f"| {name} | {s['count']} | {s['mean']} | {s['p50']:g} | {s['p90']:g} | {s['max']:g} |")
    ret = report["retries"]
    out.append("\n## Retries\n\n| stage | LLM-output retries | transport retries |\n|---|---:|---:|")
    for stage, r in ret["per_stage"].items():
        out.append(f"| {stage} | {r['llm_retries']} | {r['transport_retries']} |")
    out.append(
        f"\nThinking budget reached: respond {ret['respond_budget_reached']}, "
        f"rephrase {ret['rephrase_budget_reached']} records. R0 answers kept in part: "
        f"{ret['respond_cut_at_sentence']} cut at the token limit after a complete sentence, "
        f"{ret['respond_trimmed_to_grounded']} trimmed to their grounded leading sentences.\n"
    )
    return "\n".join(out) + "\n"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def plot(report: dict[str, Any], lengths: dict[str, list[int]], path: str) -> None:
    """Six panels: stage funnel, rejects by reason, exposure, lengths, languages, hours per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    ax = axes[0][0]
    stages = list(report["stages"])
    passed = [report["stages"][s]["passed"] for s in stages]
    ax.bar(stages, passed, label="passed")
    ax.bar(stages, [report["stages"][s]["rejected"] for s in stages], bottom=passed, label="rejected")
    ax.set_title("records per stage")
    ax.legend()
    ax = axes[0][1]
    reasons = [(f"{s}: {r}", n) for s, rs in report["rejects_by_reason"].items() for r, n in rs.items()]
    if reasons:
        ax.barh([r for r, _ in reasons], [n for _, n in reasons])
        ax.invert_yaxis()
    ax.set_title("rejects by stage and reason")
    ax = axes[0][2]
    ex = report["exposure"]
    ax.bar(["R0", "rephrased", "prompt"], [100 * (ex[k] or 0) for k in ("r0_rate", "target_rate", "prompt_rate")])
    ax.set_ylabel("% of records")
    ax.set_title(f"text exposure ({ex['records']} rephrased records)")
    ax = axes[1][0]
    for name in ("prompt", "r0_reasoning", "target_reasoning", "rephrase_reasoning"):
        if lengths.get(name):
            ax.hist(lengths[name], bins=30, alpha=0.5, label=name)
    ax.set_xlabel("words")
    ax.set_title("length distributions")
    if any(lengths.get(n) for n in lengths):
        ax.legend()
    ax = axes[1][1]
    chosen = report["languages"]["chosen_prompts"]
    ax.bar(list(chosen), list(chosen.values()))
    ax.set_title("language of the chosen prompt")
    ax = axes[1][2]
    table = {k: v for k, v in report["table1"]["by_category"].items() if k != "total"}
    ax.bar(list(table), [v["hours"] for v in table.values()])
    ax.set_ylabel("hours")
    ax.set_title("hours per category")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(directory: str, out_dir: str | None = None) -> dict[str, Any]:
    """Compute the report and write ``report.json``, ``report.md`` and ``report.png``."""
    from alarm.io import write_text

    out_dir = out_dir or directory
    report, lengths = build_report(directory)
    write_text(os.path.join(out_dir, "report.json"), json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_text(os.path.join(out_dir, "report.md"), to_markdown(report))
    plot(report, lengths, os.path.join(out_dir, "report.png"))
    return report
