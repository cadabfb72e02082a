"""Word error rate for open answers ("What does the speaker say?") and transcription checks.

Both sides are normalised the same way before alignment: lower case, punctuation dropped,
and digits spelled out one by one ("7, 3" and "seven three" and "73" all read "seven
three"), so a model is not charged for writing numbers the other way. The rate is
corpus-level (total edits / total reference words), as ASR toolkits report it.
:func:`edit_distance` is shared with the corpus's Whisper check (``alarm.corpus.whisper_check``),
which normalises the official way instead; this module sits in the base layer for both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def normalize_words(text: str) -> list[str]:
    """Lower-cased words with punctuation removed and every digit as its own word."""
    text = re.sub(r"\d", lambda m: f" {DIGIT_WORDS[int(m.group())]} ", text.lower())
    return re.sub(r"[^\w']+", " ", text).replace("_", " ").split()


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance over words (substitutions, insertions, deletions all cost 1)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i]
        for j, h in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER of hypotheses against references (normalised with :func:`normalize_words`)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    edits = words = 0
    for ref, hyp in zip(references, hypotheses):
        r = normalize_words(ref)
        edits += edit_distance(r, normalize_words(hyp))
        words += len(r)
    if words == 0:
        raise ValueError("the references hold no words")
    return edits / words
