"""Parsing and checking what the LLMs write: candidate prompts, verdicts, reasoning, rewrites.

Everything here is deterministic text processing, so it is tested exactly:

* :func:`parse_candidates` reads Q's ``<prompts>`` block (or its first numbered list, what a
  small instruct model writes without the tags) into :class:`Candidate` s, each with
  its language tag checked against the configured languages *and* against the script the
  text is written in (a ``[zh]`` tag on Latin text is a wrong tag);
* :func:`exposure_hits` is the lexical text-exposure detector: phrases that give away that
  the "audio" was a written account ("provided metadata", "according to the description").
  It runs before Q judges the candidates and is reported as a metric on R0 and on the
  rephrased targets;
* :func:`parse_verdicts` reads Q's ``<verdicts>`` block (or its bare verdict lines);
* :func:`parse_rewritten_answer` reads an answer-only rephrasing (a non-thinking RLM);
* :func:`grounding_problem` checks that an answer says only what the written account and
  the request support (an optional filter on R0 and the rewrite, for small RLMs that invent),
  and :func:`grounded_sentences` keeps the grounded leading sentences of an answer that runs on;
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


def unfinished_think_text(reasoning: str) -> str:
    """A target cut inside its reasoning: ``<think>`` reasoning, never closed.

    The official corpus keeps R0s cut at their token limit as they are, so a target may stop
    mid-thought; closing it would teach the model to end its reasoning where the limit fell.
    """
    return f"{THINK_OPEN}\n{reasoning.strip()}"


def split_target(text: str) -> tuple[str, str, bool]:
    """(reasoning, answer, finished) of a stored target or R0; an unclosed ``<think>`` is unfinished.

    Unlike :func:`split_think` this never raises on an unterminated reasoning: such a target is
    kept on purpose (:func:`unfinished_think_text`). Stray tags still raise :class:`ParseError`.
    """
    if THINK_END not in text and text.lstrip().startswith(THINK_OPEN):
        reasoning = text.lstrip()[len(THINK_OPEN) :].strip()
        if THINK_OPEN in reasoning:
            raise ParseError("stray think tag", "more than one <think>")
        return reasoning, "", False
    reasoning, answer = split_think(text, expects_thinking=False)
    return reasoning, answer, True


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
        # a small model's self-description in the middle of an answer ("as a model, I don't have
        # the ability to create music"): no model that listened would write it
        r"\bas an? (?:ai|language model|text model|model)\b",
        r"\bi(?:'m| am) (?:just |only )?(?:an? )?(?:ai|language model|text model|model)\b",
        r"\bi (?:can(?:'|no)?t|am unable to|am not able to|do not have the ability to|don'?t have the ability to) "
        r"(?:listen|hear|play|process|access|perceive)\b",
    )
]


def is_refusal(answer: str) -> bool:
    """Whether an answer declines the request (generic refusals, "I cannot listen to audio")."""
    return any(p.search(answer) for p in _REFUSALS)


_MARKUP = ("<audio>", "</audio>", "<original_reasoning>", "<original_answer>", "</original_answer>", "<prompts>")
_MARKUP += ("<verdicts>",)


def echoed_markup(text: str) -> str:
    """The first request tag (``<audio>``, ``<original_answer>``, ...) a reply copied back, or ""."""
    return next((tag for tag in _MARKUP if tag in text), "")


_REWRITING = re.compile(
    r"\brewrit(?:e|es|ten|ing)\b|\brephras(?:e|ed|ing)\b|\bthe original (?:text|answer|reasoning)\b", re.IGNORECASE
)


def rewriting_talk(target: str, source: str) -> str:
    """A phrase of ``target`` that talks about the rewriting itself (not already in ``source``), or ""."""
    return next((m.group(0) for m in _REWRITING.finditer(target) if m.group(0).lower() not in source.lower()), "")


def _words_of(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def copies_account(text: str, metadata: str, min_words: int = 3) -> bool:
    """Whether a candidate is (nearly) a copy of the written account rather than a request.

    A small model sometimes writes out the metadata (``Good morning everyone, speaking
    quietly.``): every word run of ``text`` appears in ``metadata`` in order. Such a "prompt"
    gives the account away and asks nothing.
    """
    words = _words_of(text)
    if len(words) < min_words:
        return False
    return f" {' '.join(words)} " in f" {' '.join(_words_of(metadata))} "


def screen_copies(candidates: Sequence[Candidate], metadata: str) -> list[Candidate]:
    """Drop kept candidates that copy the written account (:func:`copies_account`)."""
    return [
        c.dropped("copies the written account") if c.kept and copies_account(c.text, metadata) else c
        for c in candidates
    ]


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


# -- a plain answer cut at the token limit -------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?。！？][\"'”’)]*(?=\s|$)")


def complete_sentences(text: str) -> str:
    """``text`` up to the end of its last complete sentence ("" when it has none).

    A small model without a thinking mode often answers in a sentence or two and then runs
    on to the token limit; the complete sentences before the cut are an answer, the rest is not.
    """
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else ""


# -- grounding: does an answer say only what the account and the request support? ---------------

# Words an answer may use without support: function words and the words of listening itself (not
# "speech" or "voice": that there is speech is a fact the account must give).
_FREE_WORDS = frozenset(
    """a an the and or but nor so yet of in on at to for from by with without about into over under after before
    as than then there here this that these those it its it's is are was were be been being am do does did done
    has have had having can could will would shall should may might must not no yes i me my we our you your he him
    his she her they them their what which who whom whose when where why how also just only very some any all both
    each one s t
    audio clip recording sound sounds hear hears heard hearing listen listening listened word words""".split()
)
# Irregular forms the crude stem cannot reach: "said" is "say", "spoken" is "speak".
_IRREGULAR = {"said": "say", "spoke": "speak", "spoken": "speak", "told": "tell", "sang": "sing", "sung": "sing"}


def _words(text: str) -> list[str]:
    """``text``'s words, lower-cased (letters and digits; punctuation and underscores split them)."""
    return re.findall(r"[^\W_]+", text.lower())


def _stem(word: str) -> str:
    """A crude stem: plural and verb endings off, then at most five letters ("speaks" = "speaking")."""
    word = word.lower().removesuffix("'s").removesuffix("\u2019s")
    word = _IRREGULAR.get(word, word)
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    return word[:5]


def ungrounded_words(answer: str, *sources: str) -> tuple[list[str], int]:
    """Words of ``answer`` that no source supports, and how many words needed support.

    A word needs support unless it is a function word or a word of listening (``_FREE_WORDS``);
    it is supported when a word of a source has its stem (:func:`_stem`). Numbers count as
    words, so an invented age or year is always caught. A deterministic check against
    hallucination: what a small RLM adds to an unanswerable request ("The woman's age is 25")
    is exactly what the metadata does not say.
    """
    known = {_stem(w) for source in sources for w in _words(source)}
    content = [w for w in re.findall(r"[^\W_]+(?:'s)?", answer.lower()) if w not in _FREE_WORDS]
    return [w for w in content if _stem(w) not in known], len(content)


# the same word four times or more in a row: a small model stuck in a loop ("No, no, no, no.")
_LOOP = re.compile(r"\b([^\W_]+)(?:[\s,.!?;:-]+\1\b){3,}", re.IGNORECASE)


def grounding_problem(answer: str, sources: Sequence[str], max_share: float) -> str:
    """Why ``answer`` is not grounded in ``sources`` ("" when it is).

    Ungrounded: a number no source has, more than ``max_share`` of the words that need
    support unsupported, or a word repeated in a loop that no source repeats (the words of a
    loop are often free words, which the share does not count).
    """
    for loop in _LOOP.finditer(answer):
        words = " ".join(_words(loop.group(0)))
        if not any(words in " ".join(_words(source)) for source in sources):
            return f"a word repeated in a loop: {loop.group(1)!r}"
    missing, needed = ungrounded_words(answer, *sources)
    numbers = [w for w in missing if w.isdigit()]
    if numbers:
        return f"numbers not in the account: {', '.join(dict.fromkeys(numbers))}"
    if needed and len(missing) / needed > max_share:
        return f"{len(missing)} of {needed} words not in the account: {', '.join(list(dict.fromkeys(missing))[:8])}"
    return ""


def grounded_sentences(answer: str, sources: Sequence[str], max_share: float) -> str:
    """The longest run of ``answer``'s leading sentences that is grounded in ``sources`` ("" when none).

    A small RLM often states the fact asked for and then runs on into a story ("The woman says
    "four zero zero", speaking slowly. The audio clip was edited to remove..."): the grounded
    sentences before the story are a true answer, the story is not.
    """
    ends = [m.end() for m in _SENTENCE_END.finditer(answer)]
    prefixes = [answer[:end].strip() for end in ends]
    return next((p for p in reversed(prefixes) if not grounding_problem(p, sources, max_share)), "")


# -- candidates ------------------------------------------------------------------------------------

# DOTALL: an item of a numbered run may hold its wrapped lines (numbered_run joins them with "\n")
_ITEM = re.compile(r"^\s*(\d{1,3})\s*[.)]\s*(?:\[([A-Za-z]{2,3}(?:-[A-Za-z]{2,4})?)\])?\s*(.*?)\s*$", re.DOTALL)


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


_QUOTES = {'"': '"', "\u201c": "\u201d", "'": "'"}


def _unquote(text: str) -> str:
    """``text`` without one pair of quotes around all of it (small models quote each item)."""
    text = text.strip()
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1] and text[0] not in text[1:-1]:
        return text[1:-1].strip()
    return text


def numbered_run(text: str) -> tuple[list[tuple[int, str]], bool]:
    """(items, runs_to_end) of the first list numbered 1, 2, 3, ... in ``text``.

    What a small model writes when it leaves out the ``<prompts>`` tags: a list, often followed
    by chatter or by the same list again ("Here are the answers: 1. ..."). The run starts at
    the first item numbered 1 and ends at an item that does not continue the numbering, or at
    a non-item line after a blank line (a line right below an item continues it: wrapped text,
    multiple-choice options). ``runs_to_end`` says nothing came after the list (a completion
    cut at ``max_tokens`` may have cut its last item).
    """
    items: list[tuple[int, str]] = []
    blank = False
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match:
            number = int(match.group(1))
            if not items and number != 1:
                continue
            if items and number != items[-1][0] + 1:
                return items, False
            tag = f"[{match.group(2)}] " if match.group(2) else ""
            items.append((number, tag + match.group(3)))
            blank = False
        elif not line.strip():
            blank = bool(items)
        elif items:
            if blank:
                return items, False
            items[-1] = (items[-1][0], items[-1][1] + "\n" + line.strip())
    return items, True


def parse_candidates(
    text: str, languages: Sequence[str], max_chars: int, *, default_language: str = "", truncated: bool = False
) -> list[Candidate]:
    """Candidates from Q's answer; malformed ones are kept in the list, marked dropped.

    The answer should hold a ``<prompts>`` block of numbered ``[tag] text`` lines. A small
    instruct model often leaves out the tags: then the first numbered list of the answer
    (:func:`numbered_run`) is taken, and so is the text after an unclosed ``<prompts>``.
    An item without a language tag gets ``default_language`` (the pipeline passes "en" when
    every candidate was asked for in English), else it is dropped as "missing language tag".
    Quotes around a whole item are removed. With ``truncated`` (the completion hit
    ``max_tokens``) the last item is dropped ("cut off at max_tokens") unless the list was
    closed before the cut.

    Raises :class:`ParseError` with reason "no candidate list" (no block and no numbered
    list), "empty candidate list" (a block without items) or "no usable candidate" (every item
    is dropped by the checks: language tag, length, duplicates, cut off).
    """
    block = extract_block(text, "prompts")
    runs_to_end = False
    items: list[list[str]] = []  # [tag, text]
    if block is not None:
        for line in block.splitlines():
            match = _ITEM.match(line)
            if match:
                items.append([(match.group(2) or "").lower(), match.group(3)])
            elif line.strip() and items:  # a wrapped line (e.g. multiple-choice options) continues the item
                items[-1][1] += "\n" + line.strip()
        if not items:
            raise ParseError("empty candidate list", "the <prompts> block has no numbered items")
    else:
        opened = text.rfind("<prompts>")
        run, runs_to_end = numbered_run(text[opened + len("<prompts>") :] if opened >= 0 else text)
        if not run:
            raise ParseError("no candidate list", "no <prompts>...</prompts> block and no list numbered from 1")
        for _, body in run:
            match = _ITEM.match(f"1. {body}")
            assert match is not None  # every item line matches
            items.append([(match.group(2) or "").lower(), match.group(3)])
    candidates: list[Candidate] = []
    seen: dict[str, int] = {}
    for k, (tag, body) in enumerate(items):
        tag = tag or default_language
        cand = Candidate(_unquote(body), tag)
        key = " ".join(cand.text.lower().split())
        if truncated and runs_to_end and k == len(items) - 1:
            cand = cand.dropped("cut off at max_tokens")
        elif not cand.text:
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

_WORDS = {"keep": True, "kept": True, "yes": True, "drop": False, "dropped": False, "no": False}
# keep/drop may run on into a reason ("2. drop cannot be answered"); yes/no must stand alone or be
# followed by punctuation, so that an answer such as "1. No one speaks" is not read as a verdict;
# "1. keep or drop" is the format echoed back, not a verdict
_VERDICT_WORD = (
    r"(?:(keep|kept|drop|dropped)\b(?!\s*(?:or|/)\s*(?:keep|drop))|(yes|no)(?=\s*$|\s*[.,:;!\-\u2013\u2014]))"
    r"[.!]?\s*[:,;\-\u2013\u2014]?\s*(.*?)\s*$"
)
_VERDICT = re.compile(
    r"^\s*(?:[-*]\s*)?\**(?:(?:request|question|candidate|prompt)\s*)?(\d{1,3})\s*[.):\-]?\**\s*" + _VERDICT_WORD,
    re.IGNORECASE,
)
_BARE_VERDICT = re.compile(r"^\s*(?:[-*]\s*)?\**" + _VERDICT_WORD, re.IGNORECASE)


def parse_verdicts(text: str, count: int | None = None) -> dict[int, tuple[bool, str]]:
    """``{1-based number: (kept, reason)}`` from Q's verdicts.

    Read from the ``<verdicts>`` block, or from the whole answer when the judge left out the
    tags (a small instruct model does). A verdict line is a number and a verdict word:
    ``keep``/``yes`` keeps, ``drop``/``no`` drops, with an optional reason after it
    (``1. keep``, ``1: Keep``, ``Question 2: no, it is not said``, ``3) drop - vague``). Only
    when no line is numbered are bare verdict lines (``Keep``, ``No.``) taken in order, at
    most ``count`` of them. The first verdict for a number counts.

    Raises :class:`ParseError` "no verdict list" (no block and no verdict line: e.g. the judge
    answered the requests instead of judging them) or "empty verdict list" (a block without
    verdict lines).
    """
    block = extract_block(text, "verdicts")
    lines = (block if block is not None else text).splitlines()
    verdicts: dict[int, tuple[bool, str]] = {}
    for line in lines:
        match = _VERDICT.match(line)
        if match and int(match.group(1)) not in verdicts:
            word, why = (match.group(2) or match.group(3)).lower(), match.group(4)
            verdicts[int(match.group(1))] = (_WORDS[word], "" if _WORDS[word] else (why or "dropped by the judge"))
    if not verdicts:
        for line in lines:
            match = _BARE_VERDICT.match(line)
            if match and (count is None or len(verdicts) < count):
                word, why = (match.group(1) or match.group(2)).lower(), match.group(3)
                verdicts[len(verdicts) + 1] = (_WORDS[word], "" if _WORDS[word] else (why or "dropped by the judge"))
    if not verdicts:
        if block is None:
            raise ParseError("no verdict list", "no <verdicts>...</verdicts> block and no numbered keep/drop lines")
        raise ParseError("empty verdict list", "the <verdicts> block has no numbered keep/drop lines")
    return verdicts


_REWRITE_LABEL = re.compile(
    r"^\s*(?:here(?:'s| is) (?:the|my) )?(?:rewritten|rephrased|new) answer\s*(?:is)?\s*[:\-]\s*", re.IGNORECASE
)


def parse_rewritten_answer(text: str) -> str:
    """The rewritten answer of an answer-only rephrasing (a non-thinking RLM has no reasoning).

    The ``<rewritten_answer>`` block when there is one, else the text after an unclosed
    ``<rewritten_answer>``, else the whole reply without a leading label ("Rewritten answer:").
    Raises :class:`ParseError` "empty rewrite" when nothing is left and "echoed the request"
    when the reply copies the request's own markup back instead of rewriting.
    """
    block = extract_block(text, "rewritten_answer")
    if block is None:
        opened = text.rfind("<rewritten_answer>")
        block = text[opened + len("<rewritten_answer>") :] if opened >= 0 else _REWRITE_LABEL.sub("", text, count=1)
    block = block.strip()
    if "<original_answer>" in block or "</original_answer>" in block or block.lower().startswith("answer to rewrite"):
        raise ParseError("echoed the request", block[:200])
    if not block:
        raise ParseError("empty rewrite", "the rewritten answer is empty")
    return block


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
