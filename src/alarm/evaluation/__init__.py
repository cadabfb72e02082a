"""Evaluation on MMSU, MMAU, MMAR, AIR-Bench, MMAU-Pro and MMAR-Rubrics with the official
formats and scoring.

``benchmarks/`` reads each release as it lies on disk (one spec per benchmark, one engine),
``prompts`` formats questions, ``runner`` answers them resumably, ``answers`` extracts the
chosen option deterministically, ``rules`` + ``scoring`` score exactly as the official
scripts do, ``judge`` (AIR-Bench chat), ``mmau_pro`` (+ ``instructions``) and ``rubrics``
(MMAR-Rubrics) add the judged and rule-checked parts, ``uncertainty`` puts bootstrap
intervals on every figure and ``compare`` sets runs side by side, ``report`` writes tables
and plots, ``evaluate`` ties a run together and ``cli`` is ``alarm eval``. See
docs/evaluation.md.
"""

from alarm.evaluation.answers import Extraction, extract
from alarm.evaluation.benchmarks import BENCHMARKS, BenchmarkError, Item, get_benchmark, load_items
from alarm.evaluation.scoring import Scores, score

__all__ = [
    "BENCHMARKS",
    "BenchmarkError",
    "Extraction",
    "Item",
    "Scores",
    "extract",
    "get_benchmark",
    "load_items",
    "score",
]
