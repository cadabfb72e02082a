"""Parsing and checking what the LLMs write: candidate prompts, verdicts, reasoning, rewrites.

Everything here is deterministic text processing, so it is tested exactly:

* :func:`parse_candidates` reads Q's ``<prompts>`` block into :class:`Candidate` s, each with
  its language tag checked against the configured languages *and* against the script the
  text is written in (a ``[zh]`` tag on Latin text is a wrong tag);
* :func:`exposure_hits` is the lexical text-exposure detector: phrases that give away that
  the "audio" was a written account ("provided metadata", "according to the description").
  It runs before Q judges the candidates and is reported as a metric on R0 and on the
  rephrased targets;
* :func:`parse_verdicts` reads Q's ``<verdicts>`` block;
* :func:`choose` picks one kept candidate uniformly, seeded by (seed, record id), so the
  choice does not depend on batching, sharding or the order records are processed in;
* :func:`split_think`, :func:`extract_block`, :func:`is_refusal` take model output apart.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

THINK_OPEN, THINK_END = "<think>", "</think>"

# Languages whose text is written in one script, by the Unicode name prefix of its letters.
# Tags missing here are accepted without a script check.
SCRIPTS: dict[str, frozenset[str]] = {
    **{
        lang: frozenset({"LATIN"})
        for lang in "en de fr es it pt nl pl sv da no fi cs sk tr vi id ro hu ca hr sl et lv lt".split()
    },
    **{lang: frozenset({"CYRILLIC"}) for lang in "ru uk bg sr mk be kk".split()},
    "zh": frozenset({"CJK"}),
    "ja": frozenset({"HIRAGANA", "KATAKANA", "CJK"}),
    "ko": frozenset({"HANGUL"}),
    "ar": frozenset({"ARABIC"}),
    "fa": frozenset({"ARABIC"}),
    "hi": frozenset({"DEVANAGARI"}),
    "el": frozenset({"GREEK"}),
    "he": frozenset({"HEBREW"}),
    "th": frozenset({"THAI"}),
}
_SCRIPT_NAMES = ("LATIN", "CYRILLIC", "CJK", "HIRAGANA", "KATAKANA", "HANGUL", "ARABIC", "DEVANAGARI", "GREEK")
_SCRIPT_NAMES += ("HEBREW", "THAI")


class ParseError(ValueError):
    """Output that cannot be used; ``reason`` is a short category, the message has details."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Candidate:
    """One candidate prompt: its text, language tag and (so far) verdict."""

    text: str
    language: str
    kept: bool = True
    reason: str = ""

    def as_record(self) -> dict[str, object]:
        """The ``{text, kept, reason}`` dict of the corpus record."""
        return {"text": self.text, "kept": self.kept, "reason": self.reason}

    def dropped(self, reason: str) -> Candidate:
        return Candidate(self.text, self.language, False, reason)


# -- model output -----------------------------------------------------------------------------


def split_think(text: str, expects_thinking: bool) -> tuple[str, str]:
    """(reasoning, answer) of a completion.

    Thinking models (the RLM) get ``<think>`` from the chat template, so their completion is
    ``reasoning </think> answer``; an instruct model (Q) writes only an answer. Raises
    :class:`ParseError` ("unterminated <think>") when reasoning was opened and never closed,
    and ("stray think tag") when the tags appear more than once.
    """
    head, sep, tail = text.partition(THINK_END)
    if sep:
        reasoning, answer = head.strip().removeprefix(THINK_OPEN).strip(), tail.strip()
        if THINK_OPEN in reasoning or THINK_OPEN in answer or THINK_END in answer:
            raise ParseError("stray think tag", "more than one <think> or </think>")
        return reasoning, answer
    if expects_thinking or THINK_OPEN in text:
        raise ParseError("unterminated <think>", f"{len(text)} characters and no {THINK_END}")
    return "", text.strip()


_SPECIAL = re.compile(r"<\|[^|<>\s]{1,40}\|>")


def text_problem(text: str) -> tuple[str, str]:
    """(reason, detail) why generated text is unfit for training; ("", "") when it is fine.

    Chat special tokens (``<|im_start|>``, ``<|audio|>``, ...) would corrupt the chat layout
    or the audio splicing of every training example they end up in; U+FFFD means the model
    produced bytes that are not UTF-8.
    """
    if match := _SPECIAL.search(text):
        return "special token", match.group(0)
    if "\ufffd" in text:
        return "undecodable bytes", f"U+FFFD at character {text.index(chr(0xFFFD))}"
    return "", ""


def think_text(reasoning: str, answer: str) -> str:
    """A target in the RLM's own shape: ``<think>`` reasoning ``</think>`` answer."""
    return f"{THINK_OPEN}\n{reasoning.strip()}\n{THINK_END}\n\n{answer.strip()}"


def extract_block(text: str, tag: str) -> str | None:
    """Content of the last complete ``<tag>...</tag>`` block, or None."""
    start = text.rfind(f"<{tag}>")
    if start < 0:
        return None
    end = text.find(f"</{tag}>", start)
    if end < 0:
        return None
    return text[start + len(tag) + 2 : end]


_REFUSALS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^\W*(?:i'?m sorry|i am sorry|sorry,|unfortunately,? i)\b",
        r"^\W*i (?:can(?:'|no)?t|am unable to|am not able to|won'?t|will not) "
        r"(?:help|assist|answer|comply|provide|do that|fulfil)",
        r"\bas an ai\b",
        r"\bi (?:can(?:'|no)?t|am unable to|am not able to|do not have the ability to|don'?t have the ability to) "
        r"(?:listen|hear|play|process|access|perceive)\b",
    )
]


def is_refusal(answer: str) -> bool:
    """Whether an answer declines the request (generic refusals, "I cannot listen to audio")."""
    return any(p.search(answer) for p in _REFUSALS)


# -- the lexical exposure detector --------------------------------------------------------------

_WRITTEN = r"(?:description|caption|captions|annotations?|transcripts?|transcriptions?|labels?|tags?|text|account)"
_EXPOSURE = re.compile(
    "|".join(
        f"(?:{p})"
        for p in (
            r"\bmeta-?dat(?:a|en|os|i)\b|métadonnées|метаданн|元数据|メタデータ",
            r"\b(?:provided|given|supplied|attached|above|following|written|textual) "
            rf"(?:{_WRITTEN}|information|info|details|data|meta-?data|fields?)\b",
            rf"\b{_WRITTEN} (?:provided|given|supplied|says|said|states|stated|mentions|shows|lists|reads|notes|"
            r"indicates|specifies)\b",
            rf"\baccording to the {_WRITTEN}\b",
            rf"\b(?:in|from) the {_WRITTEN}\b",
        )
    ),
    re.IGNORECASE,
)


def exposure_hits(text: str) -> list[str]:
    """Phrases in ``text`` that reveal a written account behind the audio (lower-cased)."""
    return [m.group(0).lower() for m in _EXPOSURE.finditer(text)]


# -- candidates ------------------------------------------------------------------------------------

_ITEM = re.compile(r"^\s*(\d{1,3})\s*[.)]\s*(?:\[([A-Za-z]{2,3}(?:-[A-Za-z]{2,4})?)\])?\s*(.*?)\s*$")


@functools.lru_cache(maxsize=4096)
def _script(ch: str) -> str | None:
    if ch.isascii():
        return "LATIN" if ch.isalpha() else None
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    return next((s for s in _SCRIPT_NAMES if name.startswith(s)), None)


def dominant_script(text: str) -> str | None:
    """The script most letters of ``text`` are written in (``LATIN``, ``CJK``, ...), if any."""
    counts = Counter(s for s in map(_script, text) if s)
    return counts.most_common(1)[0][0] if counts else None


def check_language(tag: str, text: str, languages: Sequence[str]) -> str:
    """Why the tag is wrong for this text ("" when it is fine)."""
    if not tag:
        return "missing language tag"
    if tag not in languages:
        return f"language tag [{tag}] is not one of {', '.join(languages)}"
    expected = SCRIPTS.get(tag.split("-")[0])
    script = dominant_script(text)
    if expected and script and script not in expected:
        return f"language tag [{tag}] does not match the text ({script.lower()} script)"
    return ""


def parse_candidates(text: str, languages: Sequence[str], max_chars: int) -> list[Candidate]:
    """Candidates from Q's answer; malformed ones are kept in the list, marked dropped.

    Raises :class:`ParseError` with reason "no candidate list" (no ``<prompts>`` block),
    "empty candidate list" (a block without items) or "no usable candidate" (every item is
    dropped by the checks: language tag, length, duplicates).
    """
    block = extract_block(text, "prompts")
    if block is None:
        raise ParseError("no candidate list", "no <prompts>...</prompts> block")
    items: list[list[str]] = []  # [tag, text]
    for line in block.splitlines():
        match = _ITEM.match(line)
        if match:
            items.append([(match.group(2) or "").lower(), match.group(3)])
        elif line.strip() and items:  # a wrapped line (e.g. multiple-choice options) continues the item
            items[-1][1] += "\n" + line.strip()
    if not items:
        raise ParseError("empty candidate list", "the <prompts> block has no numbered items")
    candidates: list[Candidate] = []
    seen: dict[str, int] = {}
    for tag, body in items:
        cand = Candidate(body.strip(), tag)
        key = " ".join(cand.text.lower().split())
        if not cand.text:
            cand = cand.dropped("empty")
        elif len(cand.text) > max_chars:
            cand = cand.dropped(f"too long ({len(cand.text)} > {max_chars} characters)")
        elif problem := check_language(tag, cand.text, languages):
            cand = cand.dropped(problem)
        elif key in seen:
            cand = cand.dropped(f"duplicate of candidate {seen[key] + 1}")
        else:
            seen[key] = len(candidates)
        candidates.append(cand)
    if not any(c.kept for c in candidates):
        reasons = Counter(c.reason.split(" (")[0] for c in candidates)
        raise ParseError("no usable candidate", "; ".join(f"{n}x {r}" for r, n in reasons.most_common()))
    return candidates


def screen_exposure(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Drop kept candidates that the lexical detector flags (before Q judges the rest)."""
    out = []
    for cand in candidates:
        hits = exposure_hits(cand.text) if cand.kept else []
        out.append(cand.dropped(f"exposes the text: {max(hits, key=len)!r}") if hits else cand)  # the most telling
    return out


# -- verdicts --------------------------------------------------------------------------------------

_VERDICT = re.compile(r"^\s*(\d{1,3})\s*[.)]\s*(keep|drop)\b\s*:?\s*(.*?)\s*$", re.IGNORECASE)


def parse_verdicts(text: str) -> dict[int, tuple[bool, str]]:
    """``{1-based number: (kept, reason)}`` from Q's ``<verdicts>`` block."""
    block = extract_block(text, "verdicts")
    if block is None:
        raise ParseError("no verdict list", "no <verdicts>...</verdicts> block")
    verdicts: dict[int, tuple[bool, str]] = {}
    for line in block.splitlines():
        match = _VERDICT.match(line)
        if match and int(match.group(1)) not in verdicts:
            kept = match.group(2).lower() == "keep"
            verdicts[int(match.group(1))] = (kept, "" if kept else (match.group(3) or "dropped by the judge"))
    if not verdicts:
        raise ParseError("empty verdict list", "the <verdicts> block has no numbered keep/drop lines")
    return verdicts


def numbered(texts: Sequence[str]) -> str:
    """``1. text`` lines, the way candidates are shown to the judge."""
    return "\n".join(f"{i}. {t}" for i, t in enumerate(texts, 1))


# -- seeded choice ---------------------------------------------------------------------------------


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from the parts (the same on every machine and Python run)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def choose(kept: Sequence[str], seed: int, record_id: str) -> int:
    """Index of the prompt picked uniformly from the kept ones, seeded by (seed, record id)."""
    if not kept:
        raise ValueError("no kept candidate to choose from")
    return random.Random(stable_seed(seed, "choose", record_id)).randrange(len(kept))
