"""Line lists (Kaldi-style, LibriSpeech ``*.trans.txt``) and CSV/TSV tables: readers ``lines`` and ``table``."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alarm.corpus.collection.errors import SpecError
from alarm.corpus.collection.readers.base import Item, as_tuple, compile_regex, glob_files, path_fields, register


@dataclass(frozen=True)
class LinesOptions:
    """Line-per-entry text files: Kaldi-style lists, LibriSpeech ``*.trans.txt``, speaker tables.

    ``columns`` names the columns; the last one takes the rest of the line (transcripts,
    multi-word regions). ``sep`` None splits on runs of whitespace. ``path_regex`` adds named
    groups of each list file's path; ``_dir`` is the list file's folder.
    """

    files: tuple[str, ...]
    columns: tuple[str, ...]
    sep: str | None = None
    comment: str | None = None
    skip: int = 0
    path_regex: str | None = None
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", as_tuple(self.files))
        object.__setattr__(self, "columns", as_tuple(self.columns))
        if not self.columns:
            raise SpecError("lines reader needs at least one column")
        compile_regex(self.path_regex)


@register("lines", LinesOptions)
def read_lines(root: Path, opts: LinesOptions) -> Iterator[Item]:
    regex = compile_regex(opts.path_regex)
    for rel in glob_files(root, opts.files):
        base = path_fields(regex, rel)
        if base is None:
            continue
        with open(root / rel, encoding=opts.encoding, errors="replace") as f:
            for line_no, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if line_no <= opts.skip or not line.strip():
                    continue
                if opts.comment and line.lstrip().startswith(opts.comment):
                    continue
                parts = [p.strip() for p in line.strip().split(opts.sep, len(opts.columns) - 1)]
                row = dict(zip(opts.columns, parts))  # short lines leave trailing columns missing
                yield {**base, "_line": line_no, **row}


@dataclass(frozen=True)
class TableOptions:
    """CSV/TSV files read with :mod:`csv`.

    ``columns`` names the columns when the file has no header row. ``header_rows`` > 1
    joins stacked header rows into dotted names (FMA's ``tracks.csv``: ``track.genre_top``).
    ``comment`` skips lines starting with it (AudioSet's ``#`` lines); ``skipinitialspace``
    ignores blanks after a delimiter (``a, b, "c,d"``).
    """

    files: tuple[str, ...]
    delimiter: str = ","
    columns: tuple[str, ...] | None = None
    header_rows: int = 1
    comment: str | None = None
    skipinitialspace: bool = False
    path_regex: str | None = None
    encoding: str = "utf-8-sig"

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", as_tuple(self.files))
        if self.columns is not None:
            object.__setattr__(self, "columns", as_tuple(self.columns))
        if self.header_rows < 1:
            raise SpecError("header_rows must be at least 1")
        compile_regex(self.path_regex)


def _stacked_header(rows: list[list[str]]) -> list[str]:
    width = max(len(r) for r in rows)
    return [".".join(p for p in (r[i].strip() if i < len(r) else "" for r in rows) if p) for i in range(width)]


@register("table", TableOptions)
def read_table(root: Path, opts: TableOptions) -> Iterator[Item]:
    regex = compile_regex(opts.path_regex)
    for rel in glob_files(root, opts.files):
        base = path_fields(regex, rel)
        if base is None:
            continue
        with open(root / rel, encoding=opts.encoding, errors="replace", newline="") as f:
            lines = (line for line in f if not (opts.comment and line.startswith(opts.comment)))
            reader = csv.reader(lines, delimiter=opts.delimiter, skipinitialspace=opts.skipinitialspace)
            if opts.columns is not None:
                header = list(opts.columns)
            else:
                header = _stacked_header([next(reader, []) for _ in range(opts.header_rows)])
            for n, cells in enumerate(reader, 1):
                if not any(c.strip() for c in cells):
                    continue
                # Cells beyond the header are not addressable by name; missing ones stay missing.
                yield {**base, "_line": n + opts.header_rows * (opts.columns is None), **dict(zip(header, cells))}
