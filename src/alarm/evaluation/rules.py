"""The official scoring rules of the benchmarks, re-implemented (see :mod:`alarm.evaluation.scoring`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_WORD = re.compile(r"\b\w+\b")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def token_match(answer: str, prediction: str, choices: Iterable[str]) -> bool:
    """The MMAU/MMAR official matching rule (see the module doc)."""
    predicted = _words(prediction)
    if not predicted:
        return False
    wanted = _words(answer)
    others: set[str] = set()
    for choice in choices:
        words = _words(choice)
        if words != wanted:
            others |= words - wanted
    return wanted <= predicted and predicted.isdisjoint(others)


def letter_of(response: Any) -> str | None:
    """The official MMSU/AIR-Bench letter rule: 'A'-'D', '' (no response), or None (wrong format)."""
    predict = str(response).strip().replace("\n", "")
    if predict == "None" or not predict:
        return ""
    if predict[0] in "ABCD":
        return predict[0]
    if len(predict) > 1 and predict[-2] in "ABCD":
        return predict[-2]
    return None
