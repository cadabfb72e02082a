"""Verifiable instruction checks of MMAU-Pro's "instruction following" questions.

Each question names one constraint (``task_identifier``) with its arguments (``kwargs``); a
reply passes or fails it. The rules are those of the official
``evaluate_mmau_pro_comprehensive.py`` (``evaluate_aif_sample``; sonalkum/MMAUPro at bf12804),
re-implemented one small function per constraint:

* words are ``str.split()`` pieces; keywords and forbidden words are ``", "``-separated lists
  matched as lower-case substrings; a keyword's frequency counts ``\\b<keyword>\\b`` matches;
* paragraphs are separated by ``***``, two responses by ``******``; bullets are lines starting
  with ``* ``; highlights are ``*text*``; placeholders ``[text]``; a title ``<<text>>``;
* start/end phrases and postscript markers compare letters only (and spaces, for phrases),
  lower case;
* "Repeat Prompt" passes when the reply starts with the question (the script passes the
  question as the prompt's transcription);
* an unknown constraint fails.

One difference: the official script counts sentences with NLTK's Punkt tokenizer; NLTK is not a
dependency here, so :func:`count_sentences` splits after ``.``, ``!`` or ``?`` followed by
white space. The two agree on plain prose; Punkt also knows abbreviations ("Dr. Smith"), which
this split does not. An argument that is missing or null takes the script's default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def count_sentences(text: str) -> int:
    return len([s for s in _SENTENCE_END.split(text.strip()) if s.strip()])


def _arg(kwargs: Mapping[str, Any], name: str, default: Any) -> Any:
    value = kwargs.get(name)
    return default if value is None else value


def _letters(text: str, keep_spaces: bool = False) -> str:
    return re.sub(r"[^a-zA-Z ]" if keep_spaces else r"[^a-zA-Z]", "", text).lower()


def _keyword_count(text: str, keyword: str) -> int:
    return len(re.findall(r"\b" + re.escape(keyword.lower()) + r"\b", text.lower()))


def _capital_words(text: str) -> int:
    return sum(word.isupper() for word in text.split())


def _sections(text: str, splitter: str) -> int:
    return len([s for s in re.split(rf"\s*{re.escape(splitter)}\s*", text.strip()) if s.strip()])


def _between(value: int, kwargs: Mapping[str, Any]) -> bool:
    return _arg(kwargs, "N1", 0) <= value <= _arg(kwargs, "N2", 999)


def _two_responses(text: str) -> bool:
    parts = text.split("******")
    return len(parts) == 2 and parts[0].lower().strip() != parts[1].lower().strip()


# (reply, kwargs, question) -> passed
Check = Callable[[str, Mapping[str, Any], str], bool]

CHECKS: dict[str, Check] = {
    "Include Keywords": lambda r, k, q: all(w.lower() in r.lower() for w in str(_arg(k, "keywords", "")).split(", ")),
    "Keyword Frequency": lambda r, k, q: _keyword_count(r, str(_arg(k, "keyword", ""))) == _arg(k, "N", 0),
    "Forbidden Words": lambda r, k, q: (
        not any(w.lower() in r.lower() for w in str(_arg(k, "forbidden_words", "")).split(", "))
    ),
    "Number Paragraphs": lambda r, k, q: len([p for p in r.split("***") if p.strip()]) == _arg(k, "N", 0),
    "Number Words (at least)": lambda r, k, q: len(r.split()) >= _arg(k, "N", 0),
    "Number Words (at most)": lambda r, k, q: len(r.split()) <= _arg(k, "N", 0),
    "Number Words (range)": lambda r, k, q: _between(len(r.split()), k),
    "Number Sentences (at least)": lambda r, k, q: count_sentences(r) >= _arg(k, "N", 0),
    "Number Sentences (at most)": lambda r, k, q: count_sentences(r) <= _arg(k, "N", 0),
    "Number Sentences (range)": lambda r, k, q: _between(count_sentences(r), k),
    "Postscript": lambda r, k, q: _letters(str(_arg(k, "postscript_marker", ""))) in _letters(r),
    "Number Placeholder": lambda r, k, q: len(re.findall(r"\[[^\]]+\]", r)) >= _arg(k, "N", 0),
    "Number Bullets": lambda r, k, q: len(re.findall(r"(?:^|\n)\s*\*\s+", r)) == _arg(k, "N", 0),
    "Title": lambda r, k, q: re.search(r"<<[^>]+>>", r) is not None,
    "Minimum Number Highlighted Section": lambda r, k, q: len(re.findall(r"\*([^*]+)\*", r)) >= _arg(k, "N", 0),
    "Multiple Sections": lambda r, k, q: _sections(r, str(_arg(k, "section_splitter", ""))) == _arg(k, "N", 0),
    "Repeat Prompt": lambda r, k, q: r.strip().lower().startswith(q.strip().lower()),
    "Two Responses": lambda r, k, q: _two_responses(r),
    "All Uppercase": lambda r, k, q: r.isupper(),
    "All Lowercase": lambda r, k, q: r.islower(),
    "All-capital Words (at least)": lambda r, k, q: _capital_words(r) >= _arg(k, "N", 0),
    "All-capital Words (at most)": lambda r, k, q: _capital_words(r) <= _arg(k, "N", 0),
    "All-capital Words (range)": lambda r, k, q: _between(_capital_words(r), k),
    "Start Checker": lambda r, k, q: _letters(r, True).startswith(_letters(str(_arg(k, "start_phrase", "")), True)),
    "End Checker": lambda r, k, q: _letters(r, True).endswith(_letters(str(_arg(k, "end_phrase", "")), True)),
    "Quotation": lambda r, k, q: r.strip().startswith('"') and r.strip().endswith('"'),
    "No Commas": lambda r, k, q: "," not in r,
}


def follows(reply: str, task: str, kwargs: Mapping[str, Any] | None, question: str) -> bool:
    """Whether ``reply`` meets the constraint ``task`` with ``kwargs`` (unknown task: False)."""
    check = CHECKS.get(task)
    return bool(check(reply, kwargs or {}, question)) if check is not None else False
