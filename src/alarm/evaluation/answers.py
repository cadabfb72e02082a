"""Deterministic answer extraction for multiple-choice questions. No LLM judge.

From a model's raw output to the chosen option (or none), in this order:

1. **Strip the reasoning.** The final answer is the text after the last ``</think>``. An
   output with ``<think>`` but no ``</think>`` never finished reasoning: its answer is empty
   (status ``unfinished``), whatever the reasoning said. Text without think tags is all
   answer (outputs of non-reasoning models).
2. **Answer tags.** If the answer holds ``<answer>...</answer>`` (the format the ALARM prompt
   asks for), the content of the last pair is the answer; a lone ``<answer>`` takes what
   follows it.
3. **The whole answer is one option**: its label in the prompt's scheme (``B``, ``(B)``, ``B.``
   for letters; ``2``, ``Option_2`` for ALARM's 0-based option IDs), else its exact text
   (case, spaces, quotes, markdown emphasis and end punctuation ignored), else a label of the
   other scheme. An answer that starts with a label (``B. Woman``, ``(Option_1) Woman``)
   takes that label unless the rest is exactly another option's text (then ``ambiguous``).
4. **Labels inside a sentence**: ``(B)``, ``[B]``, ``Option_2``, a capital letter after an
   answer word in several languages (``answer is B``, ``答案是B``, ``la réponse est B``,
   ``Antwort: B``), and label lists (``A or B``, ``B, C``). One distinct option: chosen;
   several: ``ambiguous``.
5. **Option texts inside a sentence** (word-bounded, CJK without word boundaries), a text
   that only occurs inside a longer matched option not counting. One: chosen; several:
   ``ambiguous``; none: ``unparsable``.

Everything that is not chosen counts as wrong and is listed by the scorer with its status.
:func:`alarm_extract` reproduces instead the official ALARM code's rule (the text after the
last ``<answer>``, read as a 0-based option ID, the first option when it is not a number).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_END = "</think>"
SCHEMES = ("letter", "option_id")

_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_OPEN_TAG = re.compile(r"<answer>", re.I)
_EMPHASIS = re.compile(r"[*`]+")
_END_PUNCT = " \t\n.。!！,，:：;；"
_QUOTES = "\"'“”‘’「」『』"
_KEYWORDS = (
    r"answers?|options?|choices?|答案|选项|選項|选择|答|réponse|respuesta|resposta|antwort|risposta|ответ|回答|正解"
)
_COPULA = r"is|would be|should be|will be|must be|est|es|ist|è|é|sería|ist also"
# A capital label must not run into a word: end, punctuation / non-ASCII, or a break before
# something that is not a lowercase word (so "A dog barks" is not label A), or a connective.
_FOLLOW = r"(?=$|[^A-Za-z0-9\s]|\s+(?:$|[^a-z\s]|(?:or|and|because|since|as|which)\b))"
_KEYWORD_LABEL = re.compile(
    rf"(?i:{_KEYWORDS})[^A-Za-z0-9\n]{{0,8}}(?:(?i:{_COPULA})\b[^A-Za-z0-9\n]{{0,6}})?([A-Z]){_FOLLOW}"
)
_BRACKET_LABEL = re.compile(r"[(\[（【]\s*([A-Z])\s*[)\]）】]")
_LIST_LABEL = re.compile(r"(?<![A-Za-z0-9])([A-Z])\s*(?:,|/|&|、|\bor\b|\band\b|或者|或|和)\s*([A-Z])(?![A-Za-z0-9])")
_OPTION_ID = re.compile(r"(?i:option)[\s_]*(\d+)")
_WHOLE_LETTER = re.compile(r"[(\[（【]?\s*(?:(?i:option|choice)\s*)?([A-Za-z])\s*[)\]）】]?")
_WHOLE_ID = re.compile(r"[(\[（【]?\s*(?:(?i:option)[\s_]*)?(\d+)\s*[)\]）】]?")
_LEAD_LETTER = re.compile(r"[(\[（【]?\s*([A-Z])\s*(?:[)\]）】.:：]|\s-)\s*(.*)", re.S)
_LEAD_ID = re.compile(r"[(\[（【]?\s*(?i:option)[\s_]*(\d+)\s*[)\]）】.:：]?\s*(.*)", re.S)


@dataclass(frozen=True)
class Extraction:
    """The option chosen by an output (``index`` into the item's choices) or why none was.

    ``status``: ``ok``, ``empty`` (no final answer), ``unfinished`` (reasoning never closed),
    ``ambiguous`` (several options named) or ``unparsable`` (none recognised). ``how`` tells
    which rule decided (``label``, ``text``, ``alarm``), ``final`` is the answer text the
    decision was made from, ``mentioned`` the options named when ambiguous.
    """

    index: int | None
    status: str
    how: str = ""
    final: str = ""
    mentioned: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.index is not None


def final_answer(text: str) -> tuple[str, str]:
    """(final answer, status) of a raw output: reasoning and answer tags removed."""
    if THINK_END in text:
        answer = text.rsplit(THINK_END, 1)[1]
    elif THINK_OPEN in text:
        return "", "unfinished"
    else:
        answer = text
    tags = _TAG.findall(answer)
    if tags:
        answer = tags[-1]
    else:
        opened = list(_OPEN_TAG.finditer(answer))
        if opened:
            answer = answer[opened[-1].end() :]
    answer = answer.strip()
    return answer, ("ok" if answer else "empty")


def reasoning_content(text: str) -> str:
    """The reasoning of a raw output: what comes before the last ``</think>`` (all of it when
    thinking never ended), without the ``<think>`` tag; "" for an output without reasoning."""
    if THINK_END in text:
        head = text.rsplit(THINK_END, 1)[0]
    elif THINK_OPEN in text:
        head = text
    else:
        return ""
    return head.replace(THINK_OPEN, "", 1).strip()


def normalize(text: str) -> str:
    """Text for comparison: NFKC, casefolded, no emphasis/quotes, single spaces, no end punctuation."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _EMPHASIS.sub("", text)
    text = " ".join(text.split())
    previous = None
    while previous != text:
        previous = text
        text = text.strip(_END_PUNCT).strip(_QUOTES)
    return text


def _bare(text: str) -> str:
    """Whole-answer form: NFKC, no emphasis, stripped of end punctuation and quotes (case kept)."""
    text = _EMPHASIS.sub("", unicodedata.normalize("NFKC", text))
    text = " ".join(text.split())
    previous = None
    while previous != text:
        previous = text
        text = text.strip(_END_PUNCT).strip(_QUOTES)
    return text


def _is_cjk(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL"))


def _text_index(answer: str, choices: Sequence[str]) -> int | None:
    wanted = normalize(answer)
    if not wanted:
        return None
    for i, choice in enumerate(choices):
        if normalize(choice) == wanted:
            return i
    return None


def _letter_index(letter: str, letters: Sequence[str]) -> int | None:
    letter = letter.upper()
    return letters.index(letter) if letter in letters else None


def _id_index(number: str, n: int) -> int | None:
    k = int(number)
    return k if 0 <= k < n else None


def _whole(answer: str, choices: Sequence[str], letters: Sequence[str], scheme: str) -> tuple[int | None, str]:
    bare = _bare(answer)
    letter = _WHOLE_LETTER.fullmatch(bare)
    number = _WHOLE_ID.fullmatch(bare)
    by_letter = _letter_index(letter.group(1), letters) if letter else None
    by_id = _id_index(number.group(1), len(choices)) if number else None
    if number and not re.search(r"(?i)option", bare) and scheme != "option_id":
        by_id = None  # a bare number is an option ID only when the prompt asked for IDs
    first, second = (by_id, by_letter) if scheme == "option_id" else (by_letter, by_id)
    if first is not None:
        return first, "label"
    by_text = _text_index(answer, choices)
    if by_text is not None:
        return by_text, "text"
    if second is not None:
        return second, "label"
    return None, ""


def _leading(answer: str, choices: Sequence[str], letters: Sequence[str]) -> Extraction | None:
    bare = _EMPHASIS.sub("", unicodedata.normalize("NFKC", answer)).strip()
    for pattern, to_index in (
        (_LEAD_ID, lambda g: _id_index(g, len(choices))),
        (_LEAD_LETTER, lambda g: _letter_index(g, letters)),
    ):
        match = pattern.fullmatch(bare)
        if not match:
            continue
        index = to_index(match.group(1))
        if index is None:
            continue
        rest = _text_index(match.group(2), choices)
        if rest is not None and rest != index:
            return Extraction(None, "ambiguous", final=answer, mentioned=tuple(sorted({index, rest})))
        return Extraction(index, "ok", "label", answer)
    return None


def _labels(answer: str, choices: Sequence[str], letters: Sequence[str]) -> set[int]:
    text = unicodedata.normalize("NFKC", _EMPHASIS.sub("", answer))
    found: set[int] = set()
    for pattern in (_KEYWORD_LABEL, _BRACKET_LABEL):
        for match in pattern.finditer(text):
            index = _letter_index(match.group(1), letters)
            if index is not None:
                found.add(index)
    for match in _LIST_LABEL.finditer(text):
        pair = [_letter_index(g, letters) for g in match.groups()]
        if None not in pair:
            found.update(pair)  # type: ignore[arg-type]
    for match in _OPTION_ID.finditer(text):
        index = _id_index(match.group(1), len(choices))
        if index is not None:
            found.add(index)
    return found


def _mentions(answer: str, choices: Sequence[str]) -> set[int]:
    text = normalize(answer)
    spans: dict[int, list[tuple[int, int]]] = {}
    for i, choice in enumerate(choices):
        needle = normalize(choice)
        if not needle:
            continue
        left = r"(?<!\w)" if not _is_cjk(needle[0]) else ""
        right = r"(?!\w)" if not _is_cjk(needle[-1]) else ""
        hits = [m.span() for m in re.finditer(left + re.escape(needle) + right, text)]
        if hits:
            spans[i] = hits
    kept = set()
    for i, hits in spans.items():
        inside_longer = all(
            any(j != i and s <= a and b <= e and (e - s) > (b - a) for j, other in spans.items() for s, e in other)
            for a, b in hits
        )
        if not inside_longer:
            kept.add(i)
    return kept


def extract(
    output: str, choices: Sequence[str], letters: Sequence[str] | None = None, scheme: str = "letter"
) -> Extraction:
    """The option a raw model output chooses among ``choices`` (see the module doc for the rules).

    ``letters`` are the options' labels (default A, B, C, ...); ``scheme`` is what the prompt
    asked for: ``letter`` or ``option_id`` (ALARM's 0-based ``Option_k``).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme is one of {SCHEMES}, got {scheme!r}")
    letters = tuple(letters) if letters is not None else tuple(chr(ord("A") + i) for i in range(len(choices)))
    answer, status = final_answer(output if isinstance(output, str) else "")
    if status != "ok":
        return Extraction(None, status)
    index, how = _whole(answer, choices, letters, scheme)
    if index is not None:
        return Extraction(index, "ok", how, answer)
    leading = _leading(answer, choices, letters)
    if leading is not None:
        return leading
    labels = _labels(answer, choices, letters)
    if len(labels) == 1:
        return Extraction(labels.pop(), "ok", "label", answer)
    if len(labels) > 1:
        return Extraction(None, "ambiguous", final=answer, mentioned=tuple(sorted(labels)))
    mentioned = _mentions(answer, choices)
    if len(mentioned) == 1:
        return Extraction(mentioned.pop(), "ok", "text", answer)
    if len(mentioned) > 1:
        return Extraction(None, "ambiguous", final=answer, mentioned=tuple(sorted(mentioned)))
    return Extraction(None, "unparsable", final=answer)


def alarm_extract(output: str, choices: Sequence[str]) -> Extraction:
    """The official ALARM code's rule (``generate_vllm_mcqa.py``, ``get_choice_from_id``): text
    after the last ``<answer>`` up to ``</answer>``, read as a 0-based option ID (negative ones
    index from the end, as Python lists do); not a number -> option 0. Out of range, ALARM
    scores the number itself as the prediction text ("if the option is number, sometimes llm
    can return number instead of id"): the option whose text is that number, else no option.
    """
    final = output.split("<answer>")[-1].split("</answer>")[0].strip()
    try:
        k = int(final)
    except ValueError:
        return Extraction(0, "ok", "alarm-fallback", final)
    if -len(choices) <= k < len(choices):
        return Extraction(k % len(choices), "ok", "alarm", final)
    same = [i for i, choice in enumerate(choices) if choice.strip() == str(k)]
    if same:
        return Extraction(same[0], "ok", "alarm-number", final)
    return Extraction(None, "unparsable", "alarm", final)
