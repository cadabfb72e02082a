"""Bootstrap confidence intervals and paired-bootstrap tests over benchmark items.

Benchmarks report one accuracy per figure; whether a difference of one or two points between
two runs means anything depends on how many items the figure rests on. Both tools here resample
*items* with replacement (the benchmark is the sample; the model's outputs are fixed):

* :func:`interval` - percentile bootstrap of a figure's mean (accuracy, or a mean judge score)
  over its items: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled
  means.
* :func:`paired_p_value` - two runs' outcomes on the same items; the items are resampled
  together and the p-value is the share of resampled differences at least as far from the
  observed difference as the observed difference is from 0 (the centred, two-sided form of
  the paired bootstrap, Koehn 2004 / Berg-Kirkpatrick et al. 2012), with the usual +1 in
  numerator and denominator so it is never exactly 0.

Everything is seeded (:class:`Bootstrap`), so a rerun of a report or a comparison prints the
same intervals and p-values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_CHUNK = 200  # resamples drawn at a time: bounds memory at 200 x n indices, not results


@dataclass(frozen=True)
class Bootstrap:
    """How intervals and p-values are computed; recorded next to the figures they qualify."""

    resamples: int = 1000
    level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise ValueError("resamples must be positive")
        if not 0 < self.level < 1:
            raise ValueError("level is a probability between 0 and 1")

    def to_dict(self) -> dict[str, Any]:
        return {"method": "percentile bootstrap over items", **asdict(self)}


DEFAULT = Bootstrap()


def _resampled_means(values: np.ndarray, settings: Bootstrap) -> np.ndarray:
    """Means of ``settings.resamples`` resamples of the rows of ``values`` (rows = items).

    ``values`` is (n,) or (n, k): with several columns the same items are drawn for each
    column (paired resampling), and the result is (resamples, k).
    """
    rng = np.random.default_rng(settings.seed)
    n = values.shape[0]
    out = []
    for start in range(0, settings.resamples, _CHUNK):
        size = min(_CHUNK, settings.resamples - start)
        index = rng.integers(0, n, size=(size, n))
        out.append(values[index].mean(axis=1))
    return np.concatenate(out)


def interval(values: Sequence[float], settings: Bootstrap = DEFAULT, scale: float = 100.0) -> list[float] | None:
    """``[low, high]`` bootstrap interval of the mean of ``values`` times ``scale`` (percent for
    0/1 outcomes); None for no values. A figure on one item has the degenerate interval."""
    if len(values) == 0:
        return None
    data = np.asarray(values, dtype=np.float64)
    means = _resampled_means(data, settings) * scale
    tail = (1.0 - settings.level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return [round(float(low), 4), round(float(high), 4)]


def paired_p_value(a: Sequence[float], b: Sequence[float], settings: Bootstrap = DEFAULT) -> float | None:
    """Two-sided paired-bootstrap p-value of ``mean(a) - mean(b)`` (same items, same order);
    None for no items. Identical outcomes give 1."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need the same items: {len(a)} vs {len(b)}")
    if len(a) == 0:
        return None
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    observed = float(diff.mean())
    if not np.any(diff):
        return 1.0
    deltas = _resampled_means(diff, settings)
    extreme = int(np.sum(np.abs(deltas - observed) >= abs(observed) - 1e-12))
    return (extreme + 1) / (settings.resamples + 1)


def overlap(first: Sequence[float] | None, second: Sequence[float] | None) -> bool | None:
    """Whether two ``[low, high]`` intervals share a point (None if either is missing)."""
    if first is None or second is None:
        return None
    return bool(first[0] <= second[1] and second[0] <= first[1])
