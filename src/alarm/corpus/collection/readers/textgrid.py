"""Praat TextGrid files (long text format), one entry per non-empty interval: reader ``textgrid``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alarm.corpus.collection.readers.base import Item, as_tuple, compile_regex, glob_files, path_fields, register


@dataclass(frozen=True)
class TextGridOptions:
    """Praat TextGrid files (long text format): one entry per non-empty interval.

    Entries: ``tier`` (the tier's name, usually the speaker), ``start``/``end`` (seconds),
    ``text``, and ``path_regex`` groups of the file's path (AliMeeting: the meeting).
    """

    files: tuple[str, ...]
    path_regex: str | None = None
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", as_tuple(self.files))
        compile_regex(self.path_regex)


_TG_VALUE = re.compile(r"^\s*(name|xmin|xmax|text)\s*=\s*(.*?)\s*$")


def _tg_string(raw: str) -> str:
    # TextGrid strings are double-quoted with "" as an escaped quote.
    return raw[1:-1].replace('""', '"') if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw


@register("textgrid", TextGridOptions)
def read_textgrid(root: Path, opts: TextGridOptions) -> Iterator[Item]:
    regex = compile_regex(opts.path_regex)
    for rel in glob_files(root, opts.files):
        base = path_fields(regex, rel)
        if base is None:
            continue
        text = (root / rel).read_text(encoding=opts.encoding, errors="replace")
        if "intervals [" not in text:
            if "IntervalTier" in text:  # the short format names no fields; not supported
                yield {**base, "_error": f"{rel}: only the long TextGrid format is supported"}
            continue
        tier, interval = "", None
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("item ["):
                interval = None
            elif stripped.startswith("intervals ["):
                interval = {}
                continue
            match = _TG_VALUE.match(line)
            if match is None:
                continue
            key, value = match.groups()
            if interval is None:
                if key == "name":
                    tier = _tg_string(value)
                continue
            interval[key] = value
            if key == "text":
                words = _tg_string(value).strip()
                if words:
                    yield {
                        **base,
                        "tier": tier,
                        "start": interval.get("xmin"),
                        "end": interval.get("xmax"),
                        "text": words,
                    }
                interval = None
