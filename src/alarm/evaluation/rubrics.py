"""MMAR-Rubrics: the quality of the model's *reasoning*, judged instance by instance.

The protocol of the official ``code/evaluation_rubrics.py`` (ddlBoJack/MMAR at a355584,
February 2026; README "MMAR-Rubrics for CoT Quality Evaluation"), re-implemented:

* Each ``MMAR-meta.jsonl`` entry carries ``thinking`` (the ideal reasoning), ``cue`` and
  ``rubric``: a list of criteria ``{name, scoring_point, note, choices}``, ``choices`` the
  allowed points (e.g. ``[0, 1]``).
* A prediction is ``thinking_prediction`` (here: the reasoning of our thinking output, the
  text before ``</think>``) and ``answer_prediction`` (the chosen option's text). A wrong
  answer by MMAR's official matching rule scores 0 without asking the judge.
* A right answer is judged ``raters`` times (5) with the same prompt: question, correct
  answer, ideal reasoning, every criterion's name, scoring rule and allowed points, and the
  submission "<reasoning> The answer is <answer>."; the judge replies with a JSON list of
  ``{name, score, justification}``, one per criterion in order. A reply is valid when its
  ``[...]`` part parses, has one entry per criterion, each with ``name`` and a numeric ``score``
  among the allowed points (a different name only warns); an invalid reply is asked again, up
  to the judge's ``retries``. One rater's score = sum of points / sum of the criteria's
  maxima; the instance's score = the mean of the raters' scores without the highest and the
  lowest (with 3 or more raters).
* An instance whose judging fails (no valid reply) is *not evaluated*: left out of every
  figure, counted, and asked again on the next run (the official script does the same).
* Figures: overall, per modality, category and sub-category, the mean instance score and
  the accuracy, both in percent over the evaluated instances.

The official judge is gpt-4o-2024-11-20 at temperature 0, seed 42; here any
OpenAI-compatible endpoint (temperature ``--judge-temperature``, seed 42). The prompt's
wording is ours (:data:`JUDGE_SYSTEM`, :func:`rubric_prompt`), its content and reply format
the official ones. Besides the official figures, ``criteria`` averages the points of every
judged criterion by the kind its name starts with ("Cue Identification: Throat Singing" ->
"Cue Identification"): our addition, not an official figure.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alarm.evaluation import prompts
from alarm.evaluation.answers import reasoning_content
from alarm.evaluation.benchmarks.base import BenchmarkError, Item, items_from_entries, load_items, read_entries
from alarm.evaluation.benchmarks.mmar import MMAR
from alarm.evaluation.judge import Judge, judge_each
from alarm.evaluation.report import markdown, plot_categories, write_summary
from alarm.evaluation.runner import PredictionStore, build_engine, run_inference
from alarm.evaluation.scoring import choose, mean_figure, score
from alarm.evaluation.uncertainty import DEFAULT, Bootstrap
from alarm.io import write_json, write_jsonl, write_text

if TYPE_CHECKING:
    from alarm.generation import GenerationConfig

log = logging.getLogger(__name__)

NAME = "mmar-rubrics"
RATERS = 5
SEED = 42
LENGTH_LIMIT = 10_000  # the script warns about longer predictions (and judges them anyway)
RUBRIC_FIELDS = ("thinking", "cue", "rubric")
GROUPS = ("modality", "category", "sub-category")

JUDGE_SYSTEM = (
    "You are an impartial, careful evaluator. You assess a model's reasoning and final answer to a question, "
    "strictly against the given ground truth and the scoring rubric."
)


@dataclass(frozen=True)
class Criterion:
    """One rubric criterion of one instance."""

    name: str
    rule: str  # the release's ``scoring_point``
    choices: tuple[float, ...]  # the allowed points

    @property
    def maximum(self) -> float:
        return max(self.choices)


def criteria_of(entry: Mapping[str, Any], label: str) -> list[Criterion]:
    """The rubric of an entry; an error naming the entry when it is malformed."""
    rubric = entry.get("rubric")
    if not isinstance(rubric, list) or not rubric:
        raise BenchmarkError(f"{label}: 'rubric' is {type(rubric).__name__}, not a non-empty list of criteria")
    out = []
    for i, criterion in enumerate(rubric):
        where = f"{label}: rubric criterion {i}"
        if not isinstance(criterion, dict):
            raise BenchmarkError(f"{where} is a {type(criterion).__name__}, not an object")
        for key in ("name", "scoring_point", "choices"):
            if key not in criterion:
                raise BenchmarkError(f"{where} has no {key!r}")
        choices = criterion["choices"]
        if not isinstance(choices, list) or not choices or not all(_number(c) for c in choices):
            raise BenchmarkError(f"{where}: 'choices' is {choices!r}, not a list of allowed points")
        out.append(Criterion(str(criterion["name"]), str(criterion["scoring_point"]), tuple(choices)))
    return out


def _number(value: Any) -> bool:
    """A score the script accepts: ``isinstance(score, (int, float))`` (so booleans too)."""
    return isinstance(value, int | float)


def check_release(path: Path) -> None:
    """Every entry of the metadata file has the rubric fields, well formed (errors name the entry)."""
    for place, entry in read_entries(path):
        ident = entry.get("id")
        label = f"{path}: {place}" + (f" (id {ident!r})" if ident not in (None, "") else "")
        for key in RUBRIC_FIELDS:
            if key not in entry:
                raise BenchmarkError(f"{label}: no {key!r} field (MMAR-Rubrics needs the MMAR-meta.jsonl of Feb 2026)")
        if not isinstance(entry["thinking"], str):
            raise BenchmarkError(f"{label}: 'thinking' is not text")
        if not isinstance(entry["cue"], list):
            raise BenchmarkError(f"{label}: 'cue' is not a list")
        criteria_of(entry, label)


def rubric_prompt(item: Item, criteria: Sequence[Criterion], reasoning: str, answer: str) -> str:
    """The judge's user message: ground truth, rubric, reply format, then the submission."""
    sections = "\n\n".join(
        f"### Criterion: {c.name}\n- Scoring rule: {c.rule}\n- Allowed scores: {list(c.choices)}\n"
        "- Check: read the model's reasoning and decide whether it meets this criterion."
        for c in criteria
    )
    entries = ",\n".join(
        f'{{\n"name": "{c.name}",\n"score": <one of {list(c.choices)}>,\n'
        '"justification": "<why, citing the model\'s reasoning, under 50 words>"\n}'
        for c in criteria
    )
    return (
        "## Ground truth and problem\n\n"
        f"- Question: {item.question}\n- Correct answer: {item.answer}\n"
        f"- Ideal reasoning (reference): {item.record.get('thinking', '')}\n\n"
        "## Rubric\n\nScore each criterion and justify the score briefly.\n\n"
        f"{sections}\n\n"
        "## Reply format\n\nReply with one valid JSON list and nothing before or after it:\n\n"
        f"[\n{entries}\n]\n\n"
        "## Model submission to evaluate\n\n"
        f"- Model's reasoning:\n{reasoning} The answer is {answer}."
    )


class ReplyError(ValueError):
    """A judge reply that does not follow the rubric's reply format."""


_LIST = re.compile(r"\[\s*\{.*\}\s*\]", re.S)


def parse_ratings(reply: str, criteria: Sequence[Criterion]) -> list[float]:
    """The points a reply gives each criterion, checked as the official script checks them."""
    match = _LIST.search(reply)
    try:
        ratings = json.loads(match.group(0) if match else reply)
    except json.JSONDecodeError as err:
        raise ReplyError(f"not valid JSON: {err}") from None
    if not isinstance(ratings, list):
        raise ReplyError("not a JSON list")
    if len(ratings) != len(criteria):
        raise ReplyError(f"{len(ratings)} ratings for {len(criteria)} criteria")
    points = []
    for i, (rating, criterion) in enumerate(zip(ratings, criteria)):
        if not isinstance(rating, dict) or "name" not in rating or "score" not in rating:
            raise ReplyError(f"rating {i} lacks 'name' or 'score'")
        if rating["name"] != criterion.name:
            log.warning("rating %d is named %r, the criterion %r", i, rating["name"], criterion.name)
        value = rating["score"]
        if not _number(value):
            raise ReplyError(f"the score of {criterion.name!r} is a {type(value).__name__}, not a number")
        if value not in criterion.choices:
            raise ReplyError(f"the score of {criterion.name!r} is {value}, not one of {list(criterion.choices)}")
        points.append(float(value))
    return points


def rater_score(points: Sequence[float], criteria: Sequence[Criterion]) -> float:
    """Points over the maximum points (0 when every maximum is 0, as the script returns)."""
    best = sum(c.maximum for c in criteria)
    return sum(points) / best if best else 0.0


def trimmed_mean(values: Sequence[float]) -> float:
    """The mean without the highest and the lowest value (with 3 or more values)."""
    ordered = sorted(values)
    kept = ordered[1:-1] if len(ordered) >= 3 else ordered
    return sum(kept) / len(kept)


@dataclass(frozen=True)
class Submission:
    """What is judged of one instance: the reasoning and the answer string (an option's text)."""

    reasoning: str
    answer: str


def judge_instance(judge: Judge, item: Item, submission: Submission, raters: int = RATERS) -> dict[str, Any] | None:
    """One instance's judgement: 0 without asking when the answer is wrong, else ``raters``
    judged scores and their trimmed mean; None when a rater gets no valid reply."""
    correct = bool(MMAR.official_rule(item, submission.answer))
    row: dict[str, Any] = {"id": item.id, "correct": correct, "score": 0.0, "raters": []}
    if not correct:
        return row
    for field_name, text in (("reasoning", submission.reasoning), ("answer", submission.answer)):
        if len(text) >= LENGTH_LIMIT:
            log.warning("%s: the %s is %d characters long (over %d)", item.id, field_name, len(text), LENGTH_LIMIT)
    criteria = criteria_of(item.record, f"item {item.id!r}")
    prompt = rubric_prompt(item, criteria, submission.reasoning, submission.answer)
    for rater in range(raters):
        failure = "no attempt"
        for _ in range(max(1, judge.config.retries)):
            try:
                reply = judge.ask(prompt, system=JUDGE_SYSTEM)
                points = parse_ratings(reply, criteria)
            except (ReplyError, RuntimeError) as err:
                failure = str(err)
                continue
            row["raters"].append({"reply": reply, "points": points, "score": rater_score(points, criteria)})
            break
        else:
            log.warning("%s: rater %d got no valid reply (%s); not evaluated, asked next run", item.id, rater, failure)
            return None
    row["score"] = trimmed_mean([r["score"] for r in row["raters"]])
    return row


def criterion_kind(name: str) -> str:
    """The kind a criterion's name starts with ("Cue Identification: X" -> "Cue Identification")."""
    return name.split(":", 1)[0].strip()


def rubric_scores(
    items: Sequence[Item], judgements: Mapping[str, Mapping[str, Any]], settings: Bootstrap = DEFAULT
) -> dict[str, Any]:
    """The official figures over the evaluated instances: ``score`` (mean instance score) and
    ``accuracy``, each overall and per modality, category and sub-category, in the shape of
    ``scores.json`` figures with bootstrap intervals; the instances not evaluated; and the mean
    points per criterion kind."""
    evaluated = [item for item in items if item.id in judgements]
    values = {item.id: float(judgements[item.id]["score"]) for item in evaluated}
    correct = {item.id: float(bool(judgements[item.id]["correct"])) for item in evaluated}

    def figures(per: Mapping[str, float]) -> dict[str, Any]:
        groups: dict[str, dict[str, Any]] = {}
        for name in GROUPS:
            keys: dict[str, list[float]] = {}
            for item in evaluated:
                if name in item.groups:
                    keys.setdefault(item.groups[name], []).append(per[item.id])
            if keys:
                groups[name] = {key: mean_figure(v, settings) for key, v in keys.items()}
        return {"overall": mean_figure(list(per.values()), settings), "groups": groups}

    kinds: dict[str, list[float]] = {}
    for item in evaluated:
        raters = judgements[item.id].get("raters") or []
        if not raters:
            continue
        criteria = criteria_of(item.record, f"item {item.id!r}")
        for i, criterion in enumerate(criteria):
            share = [r["points"][i] / criterion.maximum if criterion.maximum else 0.0 for r in raters]
            kinds.setdefault(criterion_kind(criterion.name), []).append(sum(share) / len(share))
    score_figures = figures(values)
    return {
        "benchmark": NAME,
        "split": "test",
        "rule": "official rubric protocol (reasoning score)",
        "extraction": "strict",
        **score_figures,
        "accuracy": figures(correct),
        "not_evaluated": [item.id for item in items if item.id not in judgements],
        "criteria": {kind: 100.0 * sum(v) / len(v) for kind, v in sorted(kinds.items())},
        "unparsed": [],
        "excluded": [item.id for item in items if item.id not in judgements],
        "intervals": settings.to_dict(),
        "per_item": {
            item.id: {"correct": bool(correct[item.id]), "value": values[item.id], "groups": dict(item.groups)}
            for item in evaluated
        },
    }


def submissions(
    items: Sequence[Item], outputs: Mapping[str, str], schemes: Mapping[str, str], extraction: str = "strict"
) -> dict[str, Submission]:
    """Each answered item's submission: the reasoning of its raw output and the text of the
    option extraction chose ("" when none, which the official rule counts wrong)."""
    out = {}
    for item in items:
        if item.id in outputs:
            chosen = choose(item, outputs[item.id], extraction, schemes.get(item.id, "letter"))
            answer = MMAR.canonical_prediction(item, chosen.index)
            out[item.id] = Submission(reasoning_content(outputs[item.id]), answer)
    return out


def write_official(items: Sequence[Item], subs: Mapping[str, Submission], path: Path) -> Path:
    """The official script's input: the MMAR-meta entries with ``thinking_prediction`` and
    ``answer_prediction`` (every entry; "" where there is none)."""
    rows = []
    for item in items:
        sub = subs.get(item.id, Submission("", ""))
        rows.append({**item.record, "thinking_prediction": sub.reasoning, "answer_prediction": sub.answer})
    write_jsonl(path, rows)
    return path


def judge_all(
    judge: Judge,
    items: Sequence[Item],
    subs: Mapping[str, Submission],
    store: PredictionStore,
    raters: int = RATERS,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Judge every submitted item not yet in ``store`` (resumable); judgements by id."""
    submitted = [item for item in items if item.id in subs]
    return judge_each(
        submitted, lambda item: judge_instance(judge, item, subs[item.id], raters), store, progress=progress
    )


def _report(run_dir: Path, result: Mapping[str, Any], title: str) -> None:
    """scores.md (accuracy, then the reasoning score) and the two category plots."""
    accuracy, rubric = result["scores"], result["rubric"]
    text = markdown(accuracy, title=f"{title}: accuracy (all questions)", published=None, model="")
    text += "\n" + markdown(rubric, title=f"{title}: reasoning score (rubrics)", published=None, model="")
    text += (
        f"\nReasoning score: mean instance score in percent over {rubric['overall']['total']} evaluated instances "
        f"(accuracy over them: {rubric['accuracy']['overall']['accuracy']:.2f}); "
        f"not evaluated (no valid judge reply): {len(rubric['not_evaluated'])}.\n"
    )
    if rubric["criteria"]:
        text += "\n| criterion kind | mean points (%) |\n|---|---:|\n"
        text += "".join(f"| {kind} | {value:.2f} |\n" for kind, value in rubric["criteria"].items())
    write_text(run_dir / "scores.md", text)
    plot_categories(accuracy, run_dir / "categories.png", title=f"{title}: accuracy", published=None, model="")
    plot_categories(rubric, run_dir / "reasoning.png", title=f"{title}: reasoning score", published=None, model="")


def evaluate_rubrics(
    data: str | os.PathLike[str],
    model_ref: str,
    out: str | os.PathLike[str],
    judge: Judge,
    *,
    config: GenerationConfig | None = None,
    style: str = "alarm",
    system: str | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    extraction: str = "strict",
    raters: int = RATERS,
    progress: bool = True,
    model: Any = None,
    engine: str = "transformers",
    vllm: Any = None,
) -> dict[str, Any]:
    """Answer MMAR (resumable), judge the reasoning of every right answer with the rubrics
    (resumable), and write accuracy and reasoning scores, reports and the official input file."""
    from alarm.evaluation.evaluate import PINNED, open_run, paper_config, run_settings

    config = config or paper_config()
    meta = MMAR.release_files(data, "test")[0]
    check_release(meta)
    items = load_items(MMAR, data, "test")
    items = items[:limit] if limit is not None else items
    run_dir = Path(out) / NAME
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = run_settings(
        NAME,
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
        judge_model=judge.config.model,
        judge_temperature=judge.config.temperature,
        raters=raters,
    )
    pinned = (*PINNED, "judge_model", "judge_temperature", "raters")
    model, store = open_run(run_dir, settings, model, pinned=pinned)
    run_inference(
        model,
        items,
        store,
        config,
        style=style,
        system=system,
        batch_size=batch_size,
        rejects=PredictionStore(run_dir / "rejects.jsonl"),
        progress=progress,
        engine=functools.partial(build_engine, engine, model, vllm),
    )
    records = store.load()
    outputs = {i: r["output"] for i, r in records.items()}
    schemes = {i: prompts.scheme(r.get("style", style)) for i, r in records.items()}
    subs = submissions(items, outputs, schemes, extraction)
    official = write_official(items, subs, run_dir / "mmar-rubrics_predictions.jsonl")
    judgements = judge_all(judge, items, subs, PredictionStore(run_dir / "judgements.jsonl"), raters, progress)
    accuracy = score(MMAR, items, outputs, extraction=extraction, scheme=schemes)
    result = {
        "settings": settings,
        "official_files": [official.name],
        "model": model_ref,
        "scores": {**accuracy.to_dict(), "benchmark": NAME},
        "accuracies": accuracy.accuracies(),
        "rubric": rubric_scores(items, judgements),
    }
    # the reasoning score is a second set of figures `alarm eval compare` can put side by side
    result["extra_scores"] = {"reasoning": result["rubric"]}
    write_json(run_dir / "scores.json", result)
    _report(run_dir, result, f"MMAR-Rubrics - {model_ref}")
    write_summary(run_dir.parent)
    return result


def score_rubrics_file(
    path: str | os.PathLike[str],
    judge: Judge,
    *,
    judgements: str | os.PathLike[str] | None = None,
    raters: int = RATERS,
    progress: bool = False,
) -> dict[str, Any]:
    """Judge a file in the official script's input format (MMAR-meta entries with
    ``thinking_prediction`` and ``answer_prediction``); judgements go next to it (resumable).
    Entries without both predictions are left out, as the script leaves them out."""
    path = Path(path)
    check_release(path)
    items = items_from_entries(MMAR, read_entries(path), path, "test", check_audio=False)
    subs = {
        item.id: Submission(str(item.record["thinking_prediction"]), str(item.record["answer_prediction"]))
        for item in items
        if "thinking_prediction" in item.record and "answer_prediction" in item.record
    }
    if not subs:
        raise BenchmarkError(f"{path}: no entry has both 'thinking_prediction' and 'answer_prediction'")
    submitted = [item for item in items if item.id in subs]
    store = PredictionStore(judgements or path.with_name(path.stem + ".judgements.jsonl"))
    return rubric_scores(submitted, judge_all(judge, submitted, subs, store, raters, progress))
