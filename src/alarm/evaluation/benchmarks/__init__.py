"""The benchmark registry: one spec per benchmark, all run by the engine in ``base``."""

from __future__ import annotations

from alarm.evaluation.benchmarks.airbench import AIRBENCH
from alarm.evaluation.benchmarks.base import BenchmarkError, BenchmarkSpec, Item, load_items
from alarm.evaluation.benchmarks.mmar import MMAR
from alarm.evaluation.benchmarks.mmau import MMAU
from alarm.evaluation.benchmarks.mmsu import MMSU

BENCHMARKS: dict[str, BenchmarkSpec] = {spec.name: spec for spec in (MMSU, MMAU, MMAR, AIRBENCH)}


def get_benchmark(name: str) -> BenchmarkSpec:
    try:
        return BENCHMARKS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


__all__ = ["BENCHMARKS", "BenchmarkError", "BenchmarkSpec", "Item", "get_benchmark", "load_items"]
