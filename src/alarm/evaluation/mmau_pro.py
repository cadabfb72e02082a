"""MMAU-Pro end to end: three kinds of question, each scored by its official rule.

The official ``evaluate_mmau_pro_comprehensive.py`` (sonalkum/MMAUPro at bf12804) scores

* **multiple choice** (every category but two): NV-Embed-v2 embeds the model's answer and each
  choice; the closest choice is the prediction, right when it equals ``answer``. Here the
  answer is extracted deterministically (:mod:`alarm.evaluation.answers`) and written as the
  chosen option's exact text, whose closest choice is itself (cosine 1), so the official rule
  and ours agree on every option chosen. An answer that chooses none counts wrong here; the
  official embedding step would still map it to *some* choice (right by chance now and then).
* **open** questions: an LLM judge (the script loads Qwen2.5-7B-Instruct; here any
  OpenAI-compatible endpoint) rates the answer against the reference for correctness,
  relevance, completeness and clarity from 1 to 5 and gives an overall score. Parse rules kept
  from the script: a criterion it cannot find reads as 3; an overall that is missing or exactly
  3 is replaced by the mean of the four. The question's figure is overall / 5.
* **instruction following**: rules (:mod:`alarm.evaluation.instructions`) on the answer.

Every question's answer is the final answer with the reasoning removed; a question without one
is read as ``""`` (the script's ``fillna("")``). The overall figure is the script's "weighted
performance": each category's figure weighted by its number of questions, which is the mean
of the per-question values (1/0, overall/5, 1/0). Open questions get the question alone as
prompt (no options, no answer format), as the instruction ones do.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alarm.evaluation import prompts
from alarm.evaluation.answers import final_answer
from alarm.evaluation.benchmarks.base import BenchmarkError, Item, load_items
from alarm.evaluation.benchmarks.mmau_pro import MMAU_PRO
from alarm.evaluation.instructions import follows
from alarm.evaluation.judge import Judge, judge_each
from alarm.evaluation.report import markdown, plot_categories, write_summary
from alarm.evaluation.runner import PredictionStore, build_engine, run_inference
from alarm.evaluation.scoring import mean_figure, score
from alarm.evaluation.uncertainty import DEFAULT, Bootstrap
from alarm.io import write_json, write_text

if TYPE_CHECKING:
    from alarm.generation import GenerationConfig

JUDGE_SYSTEM = "You evaluate answers fairly and objectively."
JUDGE_PROMPT = (
    "You judge answers to open questions about audio recordings.\n\n"
    "Question: {question}\n\nReference answer: {reference}\n\nModel answer: {response}\n\n"
    "Score the model answer from 1 (worst) to 5 (best) on each criterion:\n"
    "1. Correctness: is it factually right, measured against the reference?\n"
    "2. Relevance: does it answer the question that was asked?\n"
    "3. Completeness: does it cover what the reference covers?\n"
    "4. Clarity: is it clear and well organised?\n\n"
    "Reply in exactly this format, each score followed by a one-sentence reason:\n"
    "CORRECTNESS: [score] - [reason]\nRELEVANCE: [score] - [reason]\n"
    "COMPLETENESS: [score] - [reason]\nCLARITY: [score] - [reason]\n"
    "OVERALL: [mean score] - [overall assessment]"
)
CRITERIA = ("correctness", "relevance", "completeness", "clarity")
_PATTERNS = {name: re.compile(rf"{name.upper()}:\s*(\d+)", re.IGNORECASE) for name in CRITERIA}
_PATTERNS["overall"] = re.compile(r"OVERALL:\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
NEUTRAL = 3.0  # the script's score for a criterion it cannot read


def parse_open_scores(reply: str) -> dict[str, float]:
    """The official parse of a judge reply: each criterion's first number (3 when absent);
    an overall that is absent or exactly 3 becomes the mean of the four criteria."""
    scores = {}
    for name, pattern in _PATTERNS.items():
        match = pattern.search(reply)
        scores[name] = float(match.group(1)) if match else NEUTRAL
    if scores["overall"] == NEUTRAL:
        scores["overall"] = sum(scores[c] for c in CRITERIA) / len(CRITERIA)
    return scores


def judge_open(judge: Judge, item: Item, response: str) -> dict[str, Any]:
    """One open question's judgement: the judge's reply and the scores read from it."""
    prompt = JUDGE_PROMPT.format(question=item.question, reference=item.answer, response=response)
    reply = judge.ask(prompt, system=JUDGE_SYSTEM)
    return {"id": item.id, "reply": reply, "scores": parse_open_scores(reply)}


def open_metrics(judged: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The script's open-question metrics: mean of each criterion and overall, the share of
    overall >= 4 (good) and <= 2 (poor)."""
    if not judged:
        return {}
    out = {f"avg_{name}": sum(s[name] for s in judged) / len(judged) for name in (*CRITERIA, "overall")}
    out["good_response_rate"] = sum(s["overall"] >= 4.0 for s in judged) / len(judged)
    out["poor_response_rate"] = sum(s["overall"] <= 2.0 for s in judged) / len(judged)
    return out


def score_mmau_pro(
    items: Sequence[Item],
    outputs: Mapping[str, str],
    judgements: Mapping[str, Mapping[str, Any]],
    *,
    schemes: Mapping[str, str] | str = "letter",
    extraction: str = "strict",
    settings: Bootstrap = DEFAULT,
) -> dict[str, Any]:
    """Scores in the shape of ``scores.json`` (figures per category and per question kind,
    overall = the official weighted performance), plus the open-question metrics."""
    choice = [item for item in items if item.kind == "choice"]
    closed = score(MMAU_PRO, choice, outputs, extraction=extraction, scheme=schemes) if choice else None
    values: dict[str, float] = {}
    per_item: dict[str, dict[str, Any]] = {}
    unparsed = closed.failures() if closed is not None else []
    judged = []
    for item in items:
        if item.kind == "choice":
            correct = closed.per_item[item.id]["correct"]
            value = float(correct)
        elif item.kind == "instruction":
            reply = final_answer(outputs.get(item.id, ""))[0]
            task = str(item.record.get("task_identifier") or "")
            correct = follows(reply, task, _kwargs(item), item.question)
            value = float(correct)
        else:
            row = judgements.get(item.id)
            if row is None:
                raise BenchmarkError(f"MMAU-Pro: open question {item.id!r} has no judgement")
            judged.append(row["scores"])
            value, correct = row["scores"]["overall"] / 5.0, None
        values[item.id] = value
        per_item[item.id] = {"correct": correct, "value": value, "groups": {**item.groups, "type": item.kind}}
    groups: dict[str, dict[str, Any]] = {}
    for name in ("category", "type"):
        keys: dict[str, list[float]] = {}
        for ident, row in per_item.items():
            keys.setdefault(row["groups"][name], []).append(values[ident])
        groups[name] = {key: mean_figure(v, settings) for key, v in keys.items()}
    return {
        "benchmark": MMAU_PRO.name,
        "split": "test",
        "rule": "official (weighted performance)",
        "extraction": extraction,
        "overall": mean_figure(list(values.values()), settings),
        "groups": groups,
        "open": open_metrics(judged),
        "unparsed": unparsed,
        "excluded": [],
        "intervals": settings.to_dict(),
        "per_item": per_item,
    }


def _kwargs(item: Item) -> Mapping[str, Any]:
    """An instruction question's arguments: a struct in the Parquet release, maybe JSON text."""
    value = item.record.get("kwargs")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise BenchmarkError(f"MMAU-Pro: question {item.id!r}: 'kwargs' is not a JSON object") from None
    return value if isinstance(value, Mapping) else {}


def official_outputs(
    items: Sequence[Item], outputs: Mapping[str, str], schemes: Mapping[str, str], extraction: str
) -> dict[str, str]:
    """``model_output`` per question: the chosen option's text (multiple choice; "" if none),
    else the final answer with the reasoning removed."""
    from alarm.evaluation.scoring import choose

    out = {}
    for item in items:
        if item.id not in outputs:
            continue
        if item.kind == "choice":
            out[item.id] = MMAU_PRO.canonical_prediction(
                item, choose(item, outputs[item.id], extraction, schemes.get(item.id, "letter")).index
            )
        else:
            out[item.id] = final_answer(outputs[item.id])[0]
    return out


def free_prompt(item: Item) -> str:
    """Open and instruction questions are asked as they are (the question alone)."""
    return item.question


def evaluate_mmau_pro(
    data: str | os.PathLike[str],
    model_ref: str,
    out: str | os.PathLike[str],
    judge: Judge | None,
    *,
    config: GenerationConfig | None = None,
    style: str = "alarm",
    system: str | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    extraction: str = "strict",
    progress: bool = True,
    model: Any = None,
    engine: str = "transformers",
    vllm: Any = None,
) -> dict[str, Any]:
    """Answer every MMAU-Pro question (resumable; several clips per question where the release
    has them), judge the open ones (resumable), score, and write the reports and official files.

    ``judge`` is needed when open questions are among those asked (else an error says so).
    """
    from alarm.evaluation.evaluate import PINNED, open_run, paper_config, run_settings

    config = config or paper_config()
    items = load_items(MMAU_PRO, data, "test")
    items = items[:limit] if limit is not None else items
    if judge is None and any(item.kind == "open" for item in items):
        raise BenchmarkError("MMAU-Pro has open questions: give a judge (--judge-url and --judge-model)")
    run_dir = Path(out) / MMAU_PRO.name
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = run_settings(
        MMAU_PRO.name,
        "test",
        data,
        model_ref,
        config,
        style=style,
        system=system,
        limit=limit,
        engine=engine,
        vllm=vllm,
        extraction=extraction,
        judge_model=judge.config.model if judge is not None else None,
        judge_temperature=judge.config.temperature if judge is not None else None,
    )
    model, store = open_run(run_dir, settings, model, pinned=(*PINNED, "judge_model", "judge_temperature"))
    common = {
        "batch_size": batch_size,
        "rejects": PredictionStore(run_dir / "rejects.jsonl"),
        "progress": progress,
        "engine": functools.partial(build_engine, engine, model, vllm),
    }
    # multiple choice with the chosen prompt style; open and instruction questions as asked
    run_inference(model, [i for i in items if i.kind == "choice"], store, config, style=style, system=system, **common)
    free = [i for i in items if i.kind != "choice"]
    run_inference(model, free, store, config, style="chat", system=system, prompt=free_prompt, **common)
    records = store.load()
    outputs = {i: r["output"] for i, r in records.items()}
    schemes = {i: prompts.scheme(r.get("style", style)) for i, r in records.items() if r.get("style") != "chat"}
    opened = [item for item in items if item.kind == "open"]
    judgements = {}
    if opened:
        answers = {item.id: final_answer(outputs.get(item.id, ""))[0] for item in opened}
        judgements = judge_each(
            opened,
            lambda item: judge_open(judge, item, answers[item.id]),
            PredictionStore(run_dir / "judgements.jsonl"),
            progress=progress,
        )
    scores = score_mmau_pro(items, outputs, judgements, schemes=schemes, extraction=extraction)
    official = MMAU_PRO.write_official(items, official_outputs(items, outputs, schemes, extraction), run_dir, "test")
    result = {"settings": settings, "official_files": [p.name for p in official], "model": model_ref, "scores": scores}
    write_json(run_dir / "scores.json", result)
    title = f"MMAU-Pro test - {model_ref}"
    write_text(run_dir / "scores.md", markdown(scores, title=title, published=None, model=""))
    plot_categories(scores, run_dir / "categories.png", title=title, published=None, model="")
    write_summary(run_dir.parent)
    return result
