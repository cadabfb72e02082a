"""Scoring identical to the official scorers, per category and overall.

Two official rules exist among the four benchmarks (re-implemented here from their released
scripts; docs/evaluation.md says where each comes from):

* :func:`~alarm.evaluation.rules.token_match` - MMAU ``evaluation.py`` (and MMAR's copy of it): the prediction is
  correct when every word of the answer occurs in it and no word of another choice (that
  is not also in the answer) does. Words are ``\\b\\w+\\b`` runs of the lower-cased text.
* :func:`~alarm.evaluation.rules.letter_of` - MMSU ``mmsu_evaluation.py`` and AIR-Bench ``score_foundation.py``:
  the letter is the first character of the response (newlines removed) when it is A-D, else
  its second-to-last character ("The answer is B."), else the response has a wrong format.
  MMSU counts an empty response as wrong but leaves a wrong-format one out of its counts;
  AIR-Bench leaves both out.

:func:`score` has two rules. ``extract`` (default) takes each raw output through
:mod:`alarm.evaluation.answers`, turns the chosen option into the string the official
scorer reads (the option text for MMAU/MMAR, the letter for MMSU/AIR-Bench) and applies the
official rule to it; anything not chosen (empty, unfinished, ambiguous, unparsable, or no
prediction at all) counts as wrong and is listed. ``official`` applies the official rule to
the prediction string exactly as given and leaves out of the counts what the official script
leaves out: the numbers the official script prints for that file. An item without a
prediction follows its benchmark's ``missing_prediction`` policy there: skipped (MMAU, MMAR),
read as ``""`` (MMSU) or an error (AIR-Bench, whose script stops at such an entry).

Every figure carries a bootstrap confidence interval over its own items (``ci``, in percent;
:mod:`alarm.evaluation.uncertainty`), and ``per_item`` keeps each counted item's outcome and
categories so that ``alarm eval compare`` can test differences between runs item by item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alarm.evaluation.answers import Extraction, alarm_extract, extract
from alarm.evaluation.benchmarks.base import BenchmarkError, BenchmarkSpec, Item
from alarm.evaluation.uncertainty import DEFAULT, Bootstrap, interval

RULES = ("extract", "official")
EXTRACTIONS = ("strict", "alarm")


@dataclass
class Tally:
    correct: int = 0
    total: int = 0
    outcomes: list[int] = field(default_factory=list, repr=False)  # 1/0 per counted item, for intervals

    @property
    def accuracy(self) -> float:
        """Percent correct (0 when empty, as the official scripts print)."""
        return 100.0 * self.correct / self.total if self.total else 0.0

    def add(self, correct: bool) -> None:
        self.total += 1
        self.correct += int(correct)
        self.outcomes.append(int(correct))

    def interval(self, settings: Bootstrap = DEFAULT) -> list[float] | None:
        """Bootstrap interval of the accuracy in percent, resampling this figure's items."""
        return interval(self.outcomes, settings)

    def to_dict(self, settings: Bootstrap = DEFAULT) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "correct": self.correct, "total": self.total, "ci": self.interval(settings)}


@dataclass
class Verdict:
    """One item's outcome."""

    id: str
    prediction: str  # the string the official scorer reads
    correct: bool | None  # None: left out of the counts (official rule only)
    extraction: Extraction | None = None


@dataclass
class Scores:
    benchmark: str
    split: str
    rule: str
    extraction: str
    overall: Tally = field(default_factory=Tally)
    groups: dict[str, dict[str, Tally]] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    # every counted item: its outcome and categories, so that runs can be compared item by item
    per_item: dict[str, dict[str, Any]] = field(default_factory=dict)
    bootstrap: Bootstrap = DEFAULT

    def failures(self) -> list[dict[str, Any]]:
        """Outputs that chose no option (counted wrong), with the reason."""
        out = [{"id": i, "status": "missing", "final": ""} for i in self.missing]
        for v in self.verdicts:
            e = v.extraction
            if e is not None and not e.ok:
                row = {"id": v.id, "status": e.status, "final": e.final}
                if e.mentioned:
                    row["mentioned"] = list(e.mentioned)
                out.append(row)
        return out

    def excluded(self) -> list[str]:
        return [v.id for v in self.verdicts if v.correct is None]

    def accuracies(self) -> dict[str, Any]:
        """``overall`` and per-category accuracies in percent (what ``alarm eval score`` prints)."""
        return {
            "benchmark": self.benchmark,
            "split": self.split,
            "rule": self.rule,
            "overall": self.overall.accuracy,
            "correct": self.overall.correct,
            "total": self.overall.total,
            **{group: {k: t.accuracy for k, t in keys.items()} for group, keys in self.groups.items()},
            "unparsed": len(self.failures()),
            "excluded": len(self.excluded()),
            "ci": self.intervals(),
        }

    def intervals(self) -> dict[str, Any]:
        """``overall`` and per-category bootstrap intervals (percent), as ``[low, high]``."""
        return {
            "overall": self.overall.interval(self.bootstrap),
            **{g: {k: t.interval(self.bootstrap) for k, t in keys.items()} for g, keys in self.groups.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "split": self.split,
            "rule": self.rule,
            "extraction": self.extraction,
            "overall": self.overall.to_dict(self.bootstrap),
            "groups": {g: {k: t.to_dict(self.bootstrap) for k, t in keys.items()} for g, keys in self.groups.items()},
            "unparsed": self.failures(),
            "excluded": self.excluded(),
            "intervals": self.bootstrap.to_dict(),
            "per_item": self.per_item,
        }


def mean_figure(values: Sequence[float], settings: Bootstrap = DEFAULT) -> dict[str, Any]:
    """A figure over per-item values in [0, 1] (a judged score, or 1/0) in the shape of a
    tally: ``accuracy`` = mean in percent, ``correct`` = the sum, ``total``, ``ci``."""
    total = len(values)
    mean = 100.0 * sum(values) / total if total else 0.0
    return {"accuracy": mean, "correct": round(sum(values), 6), "total": total, "ci": interval(values, settings)}


def choose(
    item: Item, output: str, extraction: str = "strict", scheme: str = "letter", none_is_first: bool = False
) -> Extraction:
    """The option an output chooses for ``item`` under an extraction rule.

    ``none_is_first`` (official protocol, AIR-Bench): an option whose text is "None" counts as
    the first option, as ALARM's AIR-Bench scorer reads a "None" prediction as ``choice_a``.
    """
    if extraction == "alarm":
        chosen = alarm_extract(output, item.choices)
        if none_is_first and chosen.ok and item.choices[chosen.index].strip() == "None":
            return Extraction(0, "ok", "alarm-none", chosen.final)
        return chosen
    if extraction != "strict":
        raise ValueError(f"extraction is one of {EXTRACTIONS}, got {extraction!r}")
    return extract(output, item.choices, item.letters, scheme)


def official_missing(spec: BenchmarkSpec, item: Item) -> bool | None:
    """The official verdict on an item whose entry has no prediction key: None (skipped),
    the official rule applied to ``""``, or an error where the official script stops."""
    if spec.missing_prediction == "skip":
        return None
    if spec.missing_prediction == "error":
        raise BenchmarkError(
            f"{spec.title}: item {item.id!r} has no prediction ({spec.prediction_keys[0]!r}); "
            "the official script stops at such an entry, so --rule official has no figure for this file "
            "(--rule extract counts it wrong)"
        )
    return spec.official_rule(item, "")


def _ordered(spec: BenchmarkSpec, group: str, keys: dict[str, Tally]) -> dict[str, Tally]:
    order = spec.group_order.get(group, ())
    known = [k for k in order if k in keys]
    return {k: keys[k] for k in known + [k for k in keys if k not in order]}


def score(
    spec: BenchmarkSpec,
    items: Sequence[Item],
    predictions: Mapping[str, str],
    *,
    rule: str = "extract",
    extraction: str = "strict",
    scheme: str | Mapping[str, str] = "letter",
    split: str | None = None,
    none_is_first: bool = False,
) -> Scores:
    """Score ``predictions`` (item id -> raw output, or the official prediction string).

    ``scheme`` is the label scheme the prompt asked for, one for all or per item id;
    ``none_is_first``: see :func:`choose`. Items
    without a prediction count as wrong (``extract``) and are listed as missing; under the
    ``official`` rule they are what the official script makes of an entry without one
    (:func:`official_missing`).
    """
    if rule not in RULES:
        raise ValueError(f"rule is one of {RULES}, got {rule!r}")
    scores = Scores(spec.name, split or spec.default_split, rule, extraction if rule == "extract" else "none")
    tallies: dict[str, dict[str, Tally]] = {group: {} for group, _ in spec.groups}
    for item in items:
        if item.answer is None:
            raise BenchmarkError(f"{spec.title}: item {item.id!r} has no reference answer (withheld split?)")
        if item.id not in predictions:
            correct: bool | None = official_missing(spec, item) if rule == "official" else False
            if correct is None:
                continue
            scores.missing.append(item.id)
        elif rule == "official":
            raw = predictions[item.id]
            correct = spec.official_rule(item, raw)
            scores.verdicts.append(Verdict(item.id, raw if isinstance(raw, str) else str(raw), correct))
        else:
            item_scheme = scheme if isinstance(scheme, str) else scheme.get(item.id, "letter")
            chosen = choose(item, predictions[item.id], extraction, item_scheme, none_is_first)
            prediction = spec.canonical_prediction(item, chosen.index)
            correct = chosen.ok and bool(spec.official_rule(item, prediction))
            scores.verdicts.append(Verdict(item.id, prediction, correct, chosen))
        if correct is None:
            continue
        scores.overall.add(correct)
        scores.per_item[item.id] = {"correct": bool(correct), "groups": dict(item.groups)}
        for group, key in item.groups.items():
            tallies.setdefault(group, {}).setdefault(key, Tally()).add(correct)
    scores.groups = {g: _ordered(spec, g, keys) for g, keys in tallies.items() if keys}
    return scores
