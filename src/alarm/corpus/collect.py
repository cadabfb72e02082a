"""Source collectors: one engine runs a short declarative spec per dataset.

A :class:`DatasetSpec` is data. It names a *reader* (how the dataset's annotations are laid
out on disk: CSV/TSV tables, whitespace or Kaldi-style lists, one text file per utterance,
folder-per-label trees, JSON/JSONL, Parquet shards with embedded audio, conversation JSON,
AMI's NXT XML) and *templates* that turn each annotation item into a source record: the
record id, where the audio is (relative to the dataset root), the main text (transcript,
label or caption) and the ``label: value`` fields of the metadata text. Joins pull in
side tables (speaker info, clip tags), variants emit several records per item (Clotho's
five captions, HeySQuAD with and without its passage), and a :class:`Windowing` cuts long
recordings into windows of utterances using the source's own timestamps (AMI meetings).

:class:`Collector` runs a spec over a dataset root and yields validated
:class:`~alarm.corpus.schema.SourceRecord` s. Entries that cannot become a record are
never fatal: a missing or unreadable audio file, zero duration, a segment outside the file,
a duplicate id or an annotation row the templates cannot fill is skipped and kept as a
:class:`Reject` with its reason; :class:`CollectSummary` counts what was kept (records,
hours, per split), rejected (per reason) and filtered out on purpose (e.g. test splits).

Templates are ``str.format``-like: ``"{field}"`` or ``"{field|filter:arg|filter}"``, with
``{{``/``}}`` for literal braces. Fields come from the reader (underscored names such as
``_path`` or ``_dir`` are added by the reader itself), joins add ``<join name>.<column>``.
Filters are listed in :data:`FILTERS`. A field whose template refers to a missing value is
left out of the metadata; an id or audio template that cannot be filled rejects the entry.

Metadata text (the paper's textual surrogate A_text), one consistent shape for every source::

    [00:00.0-00:02.6] transcript: Please call Stella.
    duration: 2.6 s; gender: female; age: 23; accent: English; region: Southern England

and for windows of a long recording (times relative to the window start)::

    [00:00.0-00:01.3] speaker 1: okay
    [00:02.1-00:04.0] speaker 2 (emotion: joy): does anyone want to see it
    duration: 4.0 s; speakers: 2; speaker 1 gender: male; speaker 2 gender: female

Instruction sources (``metadata_style="transcript"``) keep only the spoken query's
transcript, since the pipeline uses it verbatim as the prompt.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import posixpath
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf

from alarm import io as atomic
from alarm.audio import encoded_suffix
from alarm.corpus.schema import CATEGORIES, RecordError, SourceRecord, write_jsonl, write_parquet

log = logging.getLogger(__name__)

Item = dict[str, Any]
"""One annotation entry as a reader yields it: field name -> value (str, number, list, None)."""

# Reasons an entry is rejected; the rejects file and the summary use exactly these strings.
MISSING_AUDIO = "missing audio"
UNREADABLE_AUDIO = "unreadable audio"
ZERO_DURATION = "zero duration"
OUT_OF_RANGE = "segment outside the audio"
DUPLICATE_ID = "duplicate id"
BAD_ANNOTATION = "bad annotation"
REASONS = (MISSING_AUDIO, UNREADABLE_AUDIO, ZERO_DURATION, OUT_OF_RANGE, DUPLICATE_ID, BAD_ANNOTATION)

SEGMENT_TOLERANCE_S = 0.5
"""A segment may end this far past the end of its file (annotation rounding); it is cut there."""


class SpecError(ValueError):
    """A dataset spec (or one of its templates) is malformed; the message names the part."""


class CollectError(RuntimeError):
    """The dataset root does not look like the spec's layout (e.g. no annotation files)."""


# -- templates ------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and not value.strip():
        return True
    return isinstance(value, (list, tuple)) and not value


def _text(value: Any) -> str:
    """A field value as metadata text: bools read yes/no, floats lose float noise, lists join."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value if not _is_missing(v))
    return str(value).strip()


def _each(fn: Callable[[str], Any]) -> Callable[[Any, str | None, Mapping[str, Mapping[str, str]]], Any]:
    """Lift a string function to lists (applied per element) and to scalars of any type."""

    def apply(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
        if _is_missing(value):
            return None
        if isinstance(value, (list, tuple)):
            return [fn(_text(v)) for v in value if not _is_missing(v)]
        return fn(_text(value))

    return apply


def _each_arg(fn: Callable[[str, str], Any]) -> Callable[[Any, str | None, Mapping[str, Mapping[str, str]]], Any]:
    def apply(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
        return _each(lambda s: fn(s, arg or ""))(value, arg, maps)

    return apply


def _decade(text: str) -> str:
    # Exact ages are rarely audible; the decade is what a listener can guess (VocalSound).
    return f"{int(float(text)) // 10 * 10}s"


def _split(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    if _is_missing(value):
        return None
    parts = _text(value).split(arg) if arg else _text(value).split()
    return [p.strip() for p in parts if p.strip()]


def _join(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    if _is_missing(value):
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    return (arg if arg is not None else ", ").join(_text(v) for v in items if not _is_missing(v))


def _first(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    if _is_missing(value):
        return None
    return value[0] if isinstance(value, (list, tuple)) else value


def _nth(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    if _is_missing(value):
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    index = int(arg or 0)
    return items[index] if -len(items) <= index < len(items) else None


def _literal(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    # Python-literal lists in CSV cells (FMA's "['rock', 'indie']").
    if _is_missing(value) or not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _map(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    table = maps[arg or ""]
    # Unknown values pass through unchanged: a map names the codes it knows, the rest is text.
    return _each(lambda s: table.get(s, s))(value, arg, maps)


def _round(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    if _is_missing(value):
        return None
    return f"{float(_text(value)):.{int(arg or 0)}f}"


def _default(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    return arg if _is_missing(value) else value


_QUOTES = {"\x91": "'", "\x92": "'", "\x93": '"', "\x94": '"', "\u2018": "'", "\u2019": "'", "\u201c": '"'}
_QUOTES["\u201d"] = '"'
_QUOTES["\x85"] = "..."
_QUOTES["\x96"] = "-"
_QUOTES["\x97"] = "-"


def _first_group(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def _fix_quotes(text: str) -> str:
    # MELD's CSV carries Windows-1252 quote bytes decoded as control characters.
    return "".join(_QUOTES.get(ch, ch) for ch in text)


FILTERS: dict[str, Callable[[Any, str | None, Mapping[str, Mapping[str, str]]], Any]] = {
    "lower": _each(str.lower),
    "upper": _each(str.upper),
    "title": _each(str.title),
    "capitalize": _each(lambda s: s[:1].upper() + s[1:]),
    "strip": _each(str.strip),
    "squash": _each(lambda s: " ".join(s.split())),
    "spaces": _each(lambda s: " ".join(s.replace("_", " ").split())),
    "stem": _each(lambda s: posixpath.splitext(posixpath.basename(s))[0]),
    "before": _each_arg(lambda s, sep: s.split(sep, 1)[0].strip()),
    "strip_prefix": _each_arg(lambda s, p: s[len(p) :] if p and s.startswith(p) else s),
    "fix_quotes": _each(_fix_quotes),
    "decade": _each(_decade),
    "int": _each(lambda s: str(int(float(s)))),
    "round": _round,
    "map": _map,
    "split": _split,
    "join": _join,
    "first": _first,
    "nth": _nth,
    "default": _default,
    "zfill": _each_arg(lambda s, n: s.zfill(int(n or 0))),
    "head": _each_arg(lambda s, n: s[: int(n or 0)]),
    "match": _each_arg(lambda s, pattern: _first_group(pattern, s)),
    "literal": _literal,
}
"""Template filters: ``{field|name}`` or ``{field|name:arg}``; string filters apply per list element.

lower/upper/title/capitalize/strip: case and whitespace; squash: collapse runs of whitespace;
spaces: ``_`` to space; stem: file name without folder and extension; before:SEP: text before
SEP; strip_prefix:P; fix_quotes: Windows-1252 quote bytes to ASCII; decade: 37 -> "30s";
int: "25.0" -> "25"; round:N: N decimals; map:NAME: look the value up in the spec's ``maps``;
split:SEP: text to list (whitespace without SEP); join:SEP: list to text (", " default);
first: first list element; nth:N: element N (0-based, missing if
absent); default:TEXT: TEXT when the value is missing; zfill:N: pad with zeros to N
characters; head:N: the first N characters; match:REGEX: the first group of REGEX (missing
when it does not match); literal: a Python-literal cell (``"['a', 'b']"``) to its value.

One filter looks at the rest of the item instead of the value: ``if:FIELD=VALUE`` keeps the
value only when FIELD renders as VALUE (``if:FIELD``: when FIELD is present), so a field
can depend on another (SonicMaster's singer gender only for songs with vocals).
"""

ITEM_FILTERS = frozenset({"if"})
"""Filters that read other fields of the item (applied by :class:`Template`, not in :data:`FILTERS`)."""


def _condition_holds(condition: str, item: Mapping[str, Any]) -> bool:
    name, sep, wanted = condition.partition("=")
    other = item.get(name.strip())
    if _is_missing(other):
        return False
    return not sep or _text(other) == wanted


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


@dataclass(frozen=True)
class _Slot:
    field: str
    filters: tuple[tuple[str, str | None], ...]


class Template:
    """A compiled field template (see the module docstring); renders an item or reports why not."""

    def __init__(self, source: str) -> None:
        if not isinstance(source, str):
            raise SpecError(f"template must be a string, got {source!r}")
        self.source = source
        parts: list[str | _Slot] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(source):
            literal = source[pos : match.start()]
            if "{" in literal or "}" in literal:
                raise SpecError(f"template {source!r}: unbalanced brace")
            parts.append(literal)
            token = match.group(0)
            if token in ("{{", "}}"):
                parts.append(token[0])
            else:
                parts.append(self._slot(match.group(1)))
            pos = match.end()
        tail = source[pos:]
        if "{" in tail or "}" in tail:
            raise SpecError(f"template {source!r}: unbalanced brace")
        parts.append(tail)
        self._parts = tuple(p for p in parts if p != "")

    def _slot(self, body: str) -> _Slot:
        name, *chain = body.split("|")
        if not name.strip():
            raise SpecError(f"template {self.source!r}: empty field name")
        filters = []
        for spec in chain:
            fname, sep, arg = spec.partition(":")
            if fname not in FILTERS and fname not in ITEM_FILTERS:
                known = sorted({*FILTERS, *ITEM_FILTERS})
                raise SpecError(f"template {self.source!r}: unknown filter {fname!r} (known: {known})")
            if fname in ITEM_FILTERS and not (sep and arg.strip()):
                raise SpecError(f"template {self.source!r}: filter {fname!r} needs a condition (if:FIELD=VALUE)")
            filters.append((fname, arg if sep else None))
        return _Slot(name.strip(), tuple(filters))

    @property
    def map_names(self) -> set[str]:
        return {arg or "" for p in self._parts if isinstance(p, _Slot) for f, arg in p.filters if f == "map"}

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(p.field for p in self._parts if isinstance(p, _Slot))

    def render(self, item: Mapping[str, Any], maps: Mapping[str, Mapping[str, str]]) -> str | None:
        """The filled template, or None when a referenced field is missing (after filters)."""
        out = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = item.get(part.field)
            for name, arg in part.filters:
                if name == "if":
                    value = value if _condition_holds(arg or "", item) else None
                    continue
                try:
                    value = FILTERS[name](value, arg, maps)
                except (ValueError, TypeError) as err:
                    raise _EntryProblem(
                        f"field {part.field!r}: filter {name!r} cannot take {value!r} ({err})"
                    ) from None
            if _is_missing(value):
                return None
            out.append(_text(value))
        return "".join(out)

    def require(self, item: Mapping[str, Any], maps: Mapping[str, Mapping[str, str]], what: str) -> str:
        """Like :meth:`render`, but a missing field is a problem with the entry."""
        value = self.render(item, maps)
        if value is None:
            missing = [f for f in self.fields if _is_missing(item.get(f))]
            raise _EntryProblem(f"{what} template {self.source!r} needs field(s) {missing or list(self.fields)}")
        return value

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


class _EntryProblem(Exception):
    """An annotation entry the spec cannot turn into a record (becomes a BAD_ANNOTATION reject)."""


# -- readers --------------------------------------------------------------------------------


def _as_tuple(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _glob(root: Path, patterns: Sequence[str]) -> list[str]:
    """Files under ``root`` matching any pattern, as sorted POSIX paths relative to the root."""
    found = {p.relative_to(root).as_posix() for pattern in patterns for p in root.glob(pattern) if p.is_file()}
    if not found:
        raise CollectError(f"no file under {root} matches {list(patterns)}")
    return sorted(found)


def _path_fields(regex: re.Pattern[str] | None, rel: str) -> dict[str, str] | None:
    base = {"_file": rel, "_dir": posixpath.dirname(rel)}
    if regex is None:
        return base
    match = regex.search(rel)
    if match is None:
        return None
    return {**base, **{k: v for k, v in match.groupdict().items() if v is not None}}


def _compile_regex(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as err:
        raise SpecError(f"bad regex {pattern!r}: {err}") from None


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
        object.__setattr__(self, "files", _as_tuple(self.files))
        object.__setattr__(self, "columns", _as_tuple(self.columns))
        if not self.columns:
            raise SpecError("lines reader needs at least one column")
        _compile_regex(self.path_regex)


def read_lines(root: Path, opts: LinesOptions) -> Iterator[Item]:
    regex = _compile_regex(opts.path_regex)
    for rel in _glob(root, opts.files):
        base = _path_fields(regex, rel)
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
        object.__setattr__(self, "files", _as_tuple(self.files))
        if self.columns is not None:
            object.__setattr__(self, "columns", _as_tuple(self.columns))
        if self.header_rows < 1:
            raise SpecError("header_rows must be at least 1")
        _compile_regex(self.path_regex)


def _stacked_header(rows: list[list[str]]) -> list[str]:
    width = max(len(r) for r in rows)
    return [".".join(p for p in (r[i].strip() if i < len(r) else "" for r in rows) if p) for i in range(width)]


def read_table(root: Path, opts: TableOptions) -> Iterator[Item]:
    regex = _compile_regex(opts.path_regex)
    for rel in _glob(root, opts.files):
        base = _path_fields(regex, rel)
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


@dataclass(frozen=True)
class FilesOptions:
    """One entry per file matched (folder-per-label trees, one transcript file per utterance).

    ``regex`` (searched in the relative path) adds its named groups; entries whose path does
    not match are ignored (stray files). ``text_field`` stores the file's text in that field.
    Each entry has ``_path`` (the file), ``_dir``, ``_name`` and ``_stem``. With
    ``audio_info`` each audio file's header is read and its length goes to ``_seconds``
    (left out when the header cannot be read); as a join this gives the length of files
    the records do not point at (LibriMix: each source utterance inside a mixture).
    """

    files: tuple[str, ...]
    regex: str | None = None
    text_field: str | None = None
    encoding: str = "utf-8"
    audio_info: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", _as_tuple(self.files))
        _compile_regex(self.regex)


def read_files(root: Path, opts: FilesOptions) -> Iterator[Item]:
    regex = _compile_regex(opts.regex)
    for rel in _glob(root, opts.files):
        base = _path_fields(regex, rel)
        if base is None:
            continue
        name = posixpath.basename(rel)
        item = {**base, "_path": rel, "_name": name, "_stem": posixpath.splitext(name)[0]}
        if opts.text_field:
            try:
                item[opts.text_field] = (root / rel).read_text(encoding=opts.encoding).strip()
            except (OSError, UnicodeDecodeError) as err:
                item["_error"] = f"{rel}: cannot read text ({err})"
        if opts.audio_info:
            info = probe_audio(root / rel)
            if info.reason is None:
                item["_seconds"] = info.seconds
        yield item


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> Item:
    out: Item = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class JsonOptions:
    """JSON documents or JSON lines; nested objects are flattened to ``a.b`` field names.

    ``layout``: ``list`` (an array of objects), ``dict`` (an object of objects keyed by id;
    the key goes to ``key_field``) or ``lines`` (JSONL). With several ``key_field`` names the
    objects nest that deep, one key per level (DailyTalk's ``{dialogue: {turn: {...}}}``:
    ``key_field=("dialogue", "turn")``). ``at`` is a dotted path to the records inside the
    document (``"data"`` for ``{"data": [...]}``).
    """

    files: tuple[str, ...]
    layout: str = "list"
    key_field: str | tuple[str, ...] = "key"
    at: str | None = None
    path_regex: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", _as_tuple(self.files))
        object.__setattr__(self, "key_field", _as_tuple(self.key_field))
        if self.layout not in ("list", "dict", "lines"):
            raise SpecError(f"json layout must be list, dict or lines, got {self.layout!r}")
        if not self.key_field:
            raise SpecError("json key_field needs at least one name")
        _compile_regex(self.path_regex)


def _json_dict_records(doc: Mapping[str, Any], key_fields: Sequence[str], keys: Item) -> Iterator[Item]:
    """Records of an object of objects nested ``len(key_fields)`` deep, each with its keys as fields."""
    name, deeper = key_fields[0], key_fields[1:]
    for key, value in doc.items():
        where = {**keys, name: key}
        if deeper and isinstance(value, Mapping):
            yield from _json_dict_records(value, deeper, where)
        elif deeper:
            yield {**where, "_error": f"expected an object under {name} {key!r}, got {type(value).__name__}"}
        else:
            yield {**where, **(_flatten(value) if isinstance(value, Mapping) else {"value": value})}


def _json_records(doc: Any, opts: JsonOptions, rel: str) -> Iterator[Item]:
    for key in (opts.at or "").split(".") if opts.at else ():
        doc = doc.get(key) if isinstance(doc, Mapping) else None
    if opts.layout == "dict" and isinstance(doc, Mapping):
        yield from _json_dict_records(doc, opts.key_field, {})
    elif opts.layout == "list" and isinstance(doc, list):
        for value in doc:
            # A list of plain values (ids, names) gives items with one field, ``value``.
            yield _flatten(value) if isinstance(value, Mapping) else {"value": value}
    else:
        raise CollectError(f"{rel}: expected a JSON {'object' if opts.layout == 'dict' else 'array'} of records")


def read_json(root: Path, opts: JsonOptions) -> Iterator[Item]:
    regex = _compile_regex(opts.path_regex)
    for rel in _glob(root, opts.files):
        base = _path_fields(regex, rel)
        if base is None:
            continue
        if opts.layout == "lines":
            with open(root / rel, encoding="utf-8") as f:
                for line_no, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        value = json.loads(line)
                    except json.JSONDecodeError as err:
                        yield {**base, "_line": line_no, "_error": f"{rel}:{line_no}: not valid JSON ({err.msg})"}
                        continue
                    yield {**base, "_line": line_no, **_flatten(value)}
            continue
        with open(root / rel, encoding="utf-8") as f:
            try:
                doc = json.load(f)
            except json.JSONDecodeError as err:
                raise CollectError(f"{rel}: not valid JSON ({err})") from None
        for record in _json_records(doc, opts, rel):
            yield {**base, **record}


@dataclass(frozen=True)
class ParquetOptions:
    """Parquet shards with the audio embedded (Hugging Face ``Audio`` columns: bytes + path,
    or a plain binary column holding the encoded file).

    Each kept row's audio bytes are written once to ``<root>/<extract_to>/<name>.<ext>`` (kept
    on later runs; written atomically) so records can point at a file; ``_audio`` is that path.
    ``name`` is a template over the row (e.g. ``"{_split}/{id}"``). ``json_columns`` hold JSON
    text (SonicMaster's ``meta``): each is parsed and flattened to ``<column>.<key>`` fields.
    ``drop_columns`` are never loaded (a second embedded audio column the records do not use).
    """

    files: tuple[str, ...]
    name: str
    audio_column: str = "audio"
    extract_to: str = "_alarm_audio"
    path_regex: str | None = None
    batch_rows: int = 64
    json_columns: tuple[str, ...] = ()
    drop_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", _as_tuple(self.files))
        object.__setattr__(self, "json_columns", _as_tuple(self.json_columns))
        object.__setattr__(self, "drop_columns", _as_tuple(self.drop_columns))
        Template(self.name)
        _compile_regex(self.path_regex)


def _embedded_audio(cell: Any) -> tuple[bytes | None, str | None]:
    """``(bytes, original file name)`` of an audio cell: an ``Audio`` struct or plain bytes."""
    if isinstance(cell, Mapping):
        return cell.get("bytes") or None, cell.get("path")
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return bytes(cell) or None, None
    return None, None


def _parse_json_columns(row: dict[str, Any], columns: Sequence[str]) -> str | None:
    """Replace each JSON-text column of ``row`` by its parsed value; the first problem, if any."""
    for column in columns:
        text = row.get(column)
        if text is None:
            continue
        try:
            row[column] = json.loads(text)
        except (TypeError, json.JSONDecodeError) as err:
            return f"column {column!r} is not JSON text ({err})"
    return None


def read_parquet(root: Path, opts: ParquetOptions) -> Iterator[Item]:
    import pyarrow.parquet as pq

    regex = _compile_regex(opts.path_regex)
    name = Template(opts.name)
    for rel in _glob(root, opts.files):
        base = _path_fields(regex, rel)
        if base is None:
            continue
        shard = pq.ParquetFile(root / rel)
        columns = [c for c in shard.schema_arrow.names if c not in opts.drop_columns]
        row_no = 0
        for batch in shard.iter_batches(batch_size=opts.batch_rows, columns=columns):
            for row in batch.to_pylist():
                row_no += 1
                audio = row.pop(opts.audio_column, None)
                problem = _parse_json_columns(row, opts.json_columns)
                item = {**base, "_row": row_no, **_flatten(row)}
                if problem is not None:
                    yield {**item, "_error": f"{rel} row {row_no}: {problem}"}
                    continue
                try:
                    stem = name.require(item, {}, "extracted audio name")
                except _EntryProblem as err:
                    yield {**item, "_error": f"{rel} row {row_no}: {err}"}
                    continue
                data, original_name = _embedded_audio(audio)
                if not data:
                    yield {**item, "_error": f"{rel} row {row_no}: no embedded audio in column {opts.audio_column!r}"}
                    continue
                target = posixpath.join(opts.extract_to, stem + encoded_suffix(data, original_name))
                # Written by the engine once the entry survives its filters (no disk for dropped rows).
                yield {**item, "_audio": target, "_audio_bytes": data}


@dataclass(frozen=True)
class ConversationOptions:
    """Multi-turn spoken conversations in JSON (InstructS2S): one entry per spoken user turn.

    Each entry has the conversation ``id``, the ``turn`` index, the turn's ``text``, ``_audio``
    (``audio_dir`` joined with the last ``keep_path_parts`` parts of the turn's audio path as
    stored in the file) and ``_context``: the earlier turns as ``{role, content}`` text.
    """

    files: tuple[str, ...]
    id_key: str = "id"
    turns_key: str = "conversation"
    role_key: str = "from"
    text_key: str = "text"
    audio_key: str = "speech"
    user_role: str = "human"
    audio_dir: str = ""
    keep_path_parts: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", _as_tuple(self.files))
        if self.keep_path_parts < 1:
            raise SpecError("keep_path_parts must be at least 1")


def read_conversations(root: Path, opts: ConversationOptions) -> Iterator[Item]:
    for rel in _glob(root, opts.files):
        with open(root / rel, encoding="utf-8") as f:
            try:
                doc = json.load(f)
            except json.JSONDecodeError as err:
                raise CollectError(f"{rel}: not valid JSON ({err})") from None
        if not isinstance(doc, list):
            raise CollectError(f"{rel}: expected a JSON array of conversations")
        for conv in doc:
            conv_id = conv.get(opts.id_key) if isinstance(conv, Mapping) else None
            turns = conv.get(opts.turns_key) if isinstance(conv, Mapping) else None
            if conv_id is None or not isinstance(turns, list):
                yield {"_file": rel, "_error": f"{rel}: conversation without {opts.id_key!r}/{opts.turns_key!r}"}
                continue
            context: list[dict[str, str]] = []
            for index, turn in enumerate(turns):
                text = str(turn.get(opts.text_key) or "").strip()
                is_user = turn.get(opts.role_key) == opts.user_role
                if is_user:
                    item: Item = {"_file": rel, "id": conv_id, "turn": index, "text": text, "_context": tuple(context)}
                    speech = turn.get(opts.audio_key)
                    if not speech:
                        item["_error"] = f"{rel}: conversation {conv_id} turn {index} has no {opts.audio_key!r}"
                    else:
                        tail = str(speech).replace("\\", "/").split("/")[-opts.keep_path_parts :]
                        item["_audio"] = posixpath.join(opts.audio_dir, *tail)
                    yield item
                context.append({"role": "user" if is_user else "assistant", "content": text})


_NITE = "{http://nite.sourceforge.net/}"


@dataclass(frozen=True)
class AmiOptions:
    """AMI manual annotations in NXT XML: one entry per transcribed segment (utterance).

    Reads ``<annotations>/corpusResources/meetings.xml`` (who is who in each meeting),
    ``words/<meeting>.<agent>.words.xml`` and ``segments/<meeting>.<agent>.segments.xml``.
    Entries: ``meeting``, ``agent`` (A-E), ``speaker`` (global id, e.g. ``MEE006``),
    ``sex`` (its first letter), ``start``/``end`` (seconds) and ``text`` (the words, with
    punctuation attached; vocal sounds and other non-word events are left out).
    """

    annotations: str = "ami_public_manual_1.6.2"


def _ami_words(path: Path) -> tuple[list[str], dict[str, int]]:
    """Tokens of one words file in document order and the position of each element id.

    Segments point at ranges of element ids that include non-word events (vocal sounds,
    disfluency markers, gaps); those take a position but contribute no text.
    """
    tokens: list[str] = []
    index: dict[str, int] = {}
    for element in ET.parse(path).getroot():
        index[element.get(f"{_NITE}id", "")] = len(tokens)
        text = (element.text or "").strip() if element.tag == "w" else ""
        # Punctuation attaches to the word before it (its own slot is left empty).
        if text and element.get("punc") == "true":
            last = next((i for i in range(len(tokens) - 1, -1, -1) if tokens[i]), None)
            if last is not None:
                tokens[last] += text
                text = ""
        tokens.append(text)
    return tokens, index


def _ami_span(href: str, tokens: list[str], index: Mapping[str, int]) -> str | None:
    ids = re.findall(r"id\(([^)]+)\)", href.partition("#")[2])
    if not ids or any(i not in index for i in ids):
        return None
    first, last = index[ids[0]], index[ids[-1]]
    return " ".join(t for t in tokens[first : last + 1] if t)


def read_ami(root: Path, opts: AmiOptions) -> Iterator[Item]:
    base = root / opts.annotations
    meetings_xml = base / "corpusResources" / "meetings.xml"
    if not meetings_xml.is_file():
        raise CollectError(f"{meetings_xml} not found: --root must hold {opts.annotations}/ (AMI manual annotations)")
    speakers: dict[tuple[str, str], str] = {}
    for meeting in ET.parse(meetings_xml).getroot():
        for speaker in meeting:
            key = (meeting.get("observation", ""), speaker.get("nxt_agent", ""))
            speakers[key] = speaker.get("global_name", "")
    for rel in _glob(root, (f"{opts.annotations}/segments/*.segments.xml",)):
        meeting, agent = posixpath.basename(rel).split(".")[:2]
        words_path = base / "words" / f"{meeting}.{agent}.words.xml"
        global_name = speakers.get((meeting, agent))
        where = {"_file": rel, "meeting": meeting, "agent": agent}
        if global_name is None or not words_path.is_file():
            yield {**where, "_error": f"{rel}: no speaker in meetings.xml or no words file for {meeting}.{agent}"}
            continue
        tokens, index = _ami_words(words_path)
        for segment in ET.parse(root / rel).getroot():
            if segment.tag != "segment":
                continue
            child = next((c for c in segment if c.tag == f"{_NITE}child"), None)
            text = _ami_span(child.get("href", ""), tokens, index) if child is not None else None
            if not text:
                continue  # segments holding only non-word events (laughs, coughs) carry no transcript
            yield {
                **where,
                "_id": segment.get(f"{_NITE}id", ""),
                "speaker": global_name,
                "sex": global_name[:1],
                "start": segment.get("transcriber_start"),
                "end": segment.get("transcriber_end"),
                "text": text,
            }


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
        object.__setattr__(self, "files", _as_tuple(self.files))
        _compile_regex(self.path_regex)


_TG_VALUE = re.compile(r"^\s*(name|xmin|xmax|text)\s*=\s*(.*?)\s*$")


def _tg_string(raw: str) -> str:
    # TextGrid strings are double-quoted with "" as an escaped quote.
    return raw[1:-1].replace('""', '"') if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw


def read_textgrid(root: Path, opts: TextGridOptions) -> Iterator[Item]:
    regex = _compile_regex(opts.path_regex)
    for rel in _glob(root, opts.files):
        base = _path_fields(regex, rel)
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


@dataclass(frozen=True)
class ReaderKind:
    """A reader: its options type (a frozen dataclass) and the function that yields items."""

    options: type
    read: Callable[[Path, Any], Iterator[Item]]


READERS: dict[str, ReaderKind] = {
    "lines": ReaderKind(LinesOptions, read_lines),
    "table": ReaderKind(TableOptions, read_table),
    "files": ReaderKind(FilesOptions, read_files),
    "json": ReaderKind(JsonOptions, read_json),
    "parquet": ReaderKind(ParquetOptions, read_parquet),
    "conversations": ReaderKind(ConversationOptions, read_conversations),
    "ami": ReaderKind(AmiOptions, read_ami),
    "textgrid": ReaderKind(TextGridOptions, read_textgrid),
}


# -- specs ----------------------------------------------------------------------------------


def _build_dataclass(cls: type, data: Mapping[str, Any], what: str) -> Any:
    """``cls(**data)``, with unknown or missing keys reported by name."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{what}: expected an object, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise SpecError(f"{what}: unknown key(s) {sorted(unknown)}; allowed: {sorted(names)}")
    try:
        return cls(**data)
    except TypeError as err:
        raise SpecError(f"{what}: {err}") from None


@dataclass(frozen=True)
class Source:
    """Which reader parses the annotations, and its options."""

    reader: str
    options: Any

    def __post_init__(self) -> None:
        if self.reader not in READERS:
            raise SpecError(f"unknown reader {self.reader!r} (known: {sorted(READERS)})")
        kind = READERS[self.reader]
        if isinstance(self.options, Mapping):
            object.__setattr__(self, "options", _build_dataclass(kind.options, self.options, f"{self.reader} reader"))
        if not isinstance(self.options, kind.options):
            raise SpecError(f"{self.reader} reader: options must be {kind.options.__name__}")

    @classmethod
    def of(cls, reader: str, **options: Any) -> Source:
        return cls(reader, options)

    def read(self, root: Path) -> Iterator[Item]:
        return READERS[self.reader].read(root, self.options)


Pairs = tuple[tuple[str, str], ...]


def _pairs(value: Any, what: str) -> Pairs:
    """``((label, template), ...)`` from a tuple of pairs or a JSON list of 2-lists."""
    try:
        pairs = tuple((str(a), str(b)) for a, b in value)
    except (TypeError, ValueError):
        raise SpecError(f"{what}: expected a list of (label, template) pairs") from None
    for _, template in pairs:
        Template(template)
    return pairs


@dataclass(frozen=True)
class Join:
    """A side table merged into items: ``{<name>.<column>}`` fields where ``key`` == ``on``.

    ``key`` is a template over the table's rows, ``on`` one over the items. With
    ``required`` an item without a matching row is filtered out (an inner join: e.g. only
    speakers of VocalSound's training list); otherwise its joined fields are just missing.
    """

    name: str
    source: Source
    key: str
    on: str
    required: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.source, Mapping):
            object.__setattr__(self, "source", _source_from_dict(self.source, f"join {self.name!r}"))
        Template(self.key)
        Template(self.on)


@dataclass(frozen=True)
class TableMap:
    """A ``map:`` table read from the dataset at run time (AudioSet: label id -> display name)."""

    name: str
    source: Source
    key: str
    value: str

    def __post_init__(self) -> None:
        if isinstance(self.source, Mapping):
            object.__setattr__(self, "source", _source_from_dict(self.source, f"table map {self.name!r}"))
        Template(self.key)
        Template(self.value)


@dataclass(frozen=True)
class Variant:
    """One of several records made from each item; its id gets ``/<suffix>``.

    ``fields`` sets item fields from templates (Clotho: ``{"caption": "{caption_3}"}``);
    ``context`` replaces the spec's context turns (HeySQuAD with and without its passage).
    """

    suffix: str
    fields: Pairs = ()
    context: Pairs | None = None

    def __post_init__(self) -> None:
        fields = self.fields.items() if isinstance(self.fields, Mapping) else self.fields
        object.__setattr__(self, "fields", _pairs(fields, f"variant {self.suffix!r} fields"))
        if self.context is not None:
            object.__setattr__(self, "context", _pairs(self.context, f"variant {self.suffix!r} context"))


@dataclass(frozen=True)
class Windowing:
    """Cut long recordings into windows of consecutive utterances (the source's timestamps).

    Items are utterances: ``group`` names the recording they belong to, ``start``/``end``
    give their times in the recording (seconds), ``speaker`` who speaks and ``text`` what.
    A window grows utterance by utterance (in start order) until adding the next one would
    make it longer than ``max_window_s`` or the silence before it exceeds ``max_gap_s``.
    Each window is one record (id ``<group>/<k>``) covering first start to last end; its
    metadata lists the utterances with times relative to the window, speakers numbered by
    first appearance. ``turn_fields`` are per utterance (emotion), ``speaker_fields`` per
    speaker (gender).
    """

    group: str
    start: str
    end: str
    speaker: str
    text: str
    turn_fields: Pairs = ()
    speaker_fields: Pairs = ()
    max_window_s: float = 30.0
    max_gap_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("group", "start", "end", "speaker", "text"):
            Template(getattr(self, name))
        object.__setattr__(self, "turn_fields", _pairs(self.turn_fields, "turn_fields"))
        object.__setattr__(self, "speaker_fields", _pairs(self.speaker_fields, "speaker_fields"))
        if not self.max_window_s > 0:
            raise SpecError(f"max_window_s must be positive, got {self.max_window_s}")


@dataclass(frozen=True)
class Part:
    """One timed, labelled text inside a record whose file holds several at once.

    LibriMix: a mixture is one file in which every speaker reads one utterance, all starting
    together. Each part renders as a main line of the metadata, ``[start-end] speaker:
    text``. ``when`` (template) says whether the entry has this part at all: a part whose
    ``when`` is missing is left out (the third speaker of a two-speaker mixture), one that
    exists but whose text or times cannot be filled makes the entry a bad annotation
    (never a silently shorter description). Without ``when`` a part exists when its text
    does. ``start``/``end`` are templates (seconds from the record start); without ``end``
    the part lasts to the end of the record. ``fields`` are shown in brackets after the
    speaker, like :attr:`Windowing.turn_fields`.
    """

    speaker: str
    text: str
    when: str | None = None
    start: str = "0"
    end: str | None = None
    fields: Pairs = ()

    def __post_init__(self) -> None:
        for template in (self.speaker, self.text, self.when, self.start, self.end):
            if template is not None:
                Template(template)
        object.__setattr__(self, "fields", _pairs(self.fields, f"part {self.speaker!r} fields"))


METADATA_STYLES = ("described", "transcript")


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the engine needs to know about one dataset, plus what ``--list`` shows.

    Required: ``name`` (id prefix, ``[a-z0-9_]+``), ``title``, ``category``, ``source``,
    ``id`` (template of the source id, unique within the dataset) and ``audio`` (template,
    or several: the first whose file exists is used, so one spec serves layout variants).
    ``text``/``text_label`` give the main line of the metadata, ``fields`` its
    ``label: value`` parts, ``context`` static text turns (``(role, template)``).
    ``where``/``exclude`` keep/drop items by a template's value (training partitions only).
    ``offset`` and ``duration`` or ``end`` (templates, seconds) select a segment of the file
    (Kaldi ``segments``); default: all of it. ``split`` (template, values mapped by
    ``split_map``) takes the split from the source; values that map to neither train nor
    validation are filtered out. Without it, a stable hash of the record id puts
    ``validation_fraction`` of records in validation. ``split_key`` (template) groups records
    that must share a split (the turns of one dialogue); default: the source id. ``maps``
    are value tables for the ``map:`` filter; ``table_maps`` are such tables read from the
    dataset itself. ``parts`` give the main lines of a record whose file holds several timed
    texts at once (:class:`Part`; instead of ``text``).
    """

    name: str
    title: str
    category: str
    source: Source
    id: str
    audio: tuple[str, ...]
    text: str | None = None
    text_label: str | None = None
    fields: Pairs = ()
    context: Pairs = ()
    joins: tuple[Join, ...] = ()
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    exclude: tuple[tuple[str, tuple[str, ...]], ...] = ()
    variants: tuple[Variant, ...] = ()
    windowing: Windowing | None = None
    parts: tuple[Part, ...] = ()
    offset: str | None = None
    duration: str | None = None
    end: str | None = None
    split: str | None = None
    split_map: Mapping[str, str] = field(default_factory=dict)
    split_key: str | None = None
    metadata_style: str = "described"
    maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    table_maps: tuple[TableMap, ...] = ()
    homepage: str = ""
    licence: str = ""
    layout: str = ""
    yields: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.name or ""):
            raise SpecError(f"dataset name {self.name!r} must match [a-z0-9_]+")
        what = f"dataset {self.name!r}"
        if self.category not in CATEGORIES:
            raise SpecError(f"{what}: category {self.category!r} is not one of {CATEGORIES}")
        if self.duration is not None and self.end is not None:
            raise SpecError(f"{what}: give duration or end, not both")
        object.__setattr__(self, "parts", tuple(self.parts))
        if self.parts and (self.text is not None or self.windowing is not None):
            raise SpecError(f"{what}: parts replace text and windowing; give only one of them")
        if self.metadata_style not in METADATA_STYLES:
            raise SpecError(f"{what}: metadata_style must be one of {METADATA_STYLES}")
        if not isinstance(self.source, Source):
            raise SpecError(f"{what}: source must be a Source")
        object.__setattr__(self, "audio", _as_tuple(self.audio))
        if not self.audio:
            raise SpecError(f"{what}: at least one audio template is needed")
        object.__setattr__(self, "fields", _pairs(self.fields, f"{what} fields"))
        object.__setattr__(self, "context", _pairs(self.context, f"{what} context"))
        object.__setattr__(self, "where", tuple((t, _as_tuple(v)) for t, v in _items(self.where)))
        object.__setattr__(self, "exclude", tuple((t, _as_tuple(v)) for t, v in _items(self.exclude)))
        for role, _ in self.context:
            if role not in ("system", "user", "assistant"):
                raise SpecError(f"{what}: context role {role!r} is not system/user/assistant")
        bad_split = {v for v in self.split_map.values() if v not in ("train", "validation", "")}
        if bad_split:
            raise SpecError(f"{what}: split_map values must be train, validation or '' (drop), got {bad_split}")
        names = {j.name for j in self.joins}
        if len(names) != len(self.joins):
            raise SpecError(f"{what}: join names must be unique")
        used_maps: set[str] = set()
        for template in self._templates():
            used_maps |= Template(template).map_names
        unknown = used_maps - set(self.maps) - {m.name for m in self.table_maps}
        if unknown:
            raise SpecError(f"{what}: templates use map(s) {sorted(unknown)} that are not in maps")

    def _templates(self) -> Iterator[str]:
        yield self.id
        yield from self.audio
        optional = (self.text, self.offset, self.duration, self.end, self.split, self.split_key)
        yield from (t for t in optional if t is not None)
        for part in self.parts:
            yield from (t for t in (part.speaker, part.text, part.when, part.start, part.end) if t is not None)
            yield from (t for _, t in part.fields)
        yield from (t for _, t in self.fields)
        yield from (t for _, t in self.context)
        yield from (t for t, _ in self.where)
        yield from (t for t, _ in self.exclude)
        for v in self.variants:
            yield from (t for _, t in v.fields)
            yield from (t for _, t in v.context or ())
        if self.windowing is not None:
            w = self.windowing
            yield from (w.group, w.start, w.end, w.speaker, w.text)
            yield from (t for _, t in w.turn_fields + w.speaker_fields)

    def describe(self) -> str:
        """The ``--list`` entry: name, category, licence, expected layout, metadata yielded."""
        lines = [f"{self.name}  [{self.category}]  {self.title}", f"  licence:  {self.licence or 'see homepage'}"]
        if self.homepage:
            lines.append(f"  get it:   {self.homepage}")
        if self.layout:
            lines.append(f"  layout:   {self.layout}")
        if self.yields:
            lines.append(f"  metadata: {self.yields}")
        return "\n".join(lines)


def _items(value: Any) -> Iterable[tuple[str, Any]]:
    return value.items() if isinstance(value, Mapping) else value


def _source_from_dict(data: Mapping[str, Any], what: str) -> Source:
    if not isinstance(data, Mapping) or set(data) - {"reader", "options"} or "reader" not in data:
        raise SpecError(f"{what}: source must be {{'reader': NAME, 'options': {{...}}}}, got {data!r}")
    return Source(data["reader"], dict(data.get("options", {})))


def spec_from_dict(data: Mapping[str, Any]) -> DatasetSpec:
    """A :class:`DatasetSpec` from plain JSON data (``alarm corpus collect --spec FILE``).

    Same keys as the dataclass; ``source`` is ``{"reader": ..., "options": {...}}``, joins,
    variants and windowing are objects with their dataclass keys; unknown keys are refused.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"a spec must be a JSON object, got {type(data).__name__}")
    data = dict(data)
    what = f"spec {data.get('name', '?')!r}"
    if "source" not in data:
        raise SpecError(f"{what}: missing key 'source'")
    data["source"] = _source_from_dict(data["source"], what)
    data["joins"] = tuple(_build_dataclass(Join, j, f"{what} join") for j in data.get("joins", ()))
    data["variants"] = tuple(_build_dataclass(Variant, v, f"{what} variant") for v in data.get("variants", ()))
    data["table_maps"] = tuple(_build_dataclass(TableMap, m, f"{what} table map") for m in data.get("table_maps", ()))
    if data.get("windowing") is not None:
        data["windowing"] = _build_dataclass(Windowing, data["windowing"], f"{what} windowing")
    data["parts"] = tuple(_build_dataclass(Part, part, f"{what} part") for part in data.get("parts", ()))
    return _build_dataclass(DatasetSpec, data, what)


# -- metadata text --------------------------------------------------------------------------


def clock(seconds: float) -> str:
    """``mm:ss.s`` (``h:mm:ss.s`` from one hour), tenths of a second."""
    tenths = int(round(max(seconds, 0.0) * 10))
    minutes, rest = divmod(tenths, 600)
    text = f"{rest // 10:02d}.{rest % 10}"
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{text}"
    return f"{minutes:02d}:{text}"


@dataclass(frozen=True)
class Turn:
    """One utterance inside a window: times relative to the window start."""

    start_s: float
    end_s: float
    speaker: str
    text: str
    fields: Pairs = ()


def render_metadata(
    duration_s: float,
    *,
    text: str | None = None,
    text_label: str | None = None,
    turns: Sequence[Turn] = (),
    fields: Pairs = (),
) -> str:
    """The metadata text of one record (see the module docstring for its shape)."""
    lines = []
    for turn in turns:
        attrs = f" ({', '.join(f'{k}: {v}' for k, v in turn.fields)})" if turn.fields else ""
        end = min(turn.end_s, duration_s)
        lines.append(f"[{clock(turn.start_s)}-{clock(end)}] {turn.speaker}{attrs}: {turn.text}")
    if not turns and text is not None:
        lines.append(f"[{clock(0)}-{clock(duration_s)}] " + (f"{text_label}: {text}" if text_label else text))
    info = (("duration", f"{duration_s:.1f} s"), *fields)
    lines.append("; ".join(f"{k}: {v}" for k, v in info))
    return "\n".join(lines)


# -- the engine -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reject:
    """An entry that did not become a record, and why (one line of the rejects file)."""

    id: str
    reason: str
    detail: str
    audio_path: str = ""

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass
class CollectSummary:
    """What one collection run kept, rejected (by reason) and filtered out (by reason)."""

    dataset: str
    kept: int = 0
    seconds: float = 0.0
    splits: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "kept": self.kept,
            "hours": round(self.hours, 4),
            "splits": dict(self.splits),
            "rejected": dict(self.rejected),
            "filtered": dict(self.filtered),
        }

    def format(self) -> str:
        splits = ", ".join(f"{k} {v}" for k, v in sorted(self.splits.items())) or "none"
        lines = [f"{self.dataset}: kept {self.kept} records, {self.hours:.3f} h ({splits})"]
        total = sum(self.rejected.values())
        lines.append(f"  rejected {total}" + "".join(f"\n    {r}: {n}" for r, n in self.rejected.most_common()))
        if self.filtered:
            lines.append(
                f"  filtered out {sum(self.filtered.values())}"
                + "".join(f"\n    {r}: {n}" for r, n in self.filtered.most_common())
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class CollectOptions:
    """How to run a collection.

    ``check``: ``header`` reads each audio file's header (fast: existence, format, length);
    ``decode`` also decodes every segment with :func:`alarm.audio.load_audio`, which
    catches truncated files and NaN samples at the cost of reading all the audio.
    ``workers`` threads read headers in parallel (I/O bound). ``limit`` stops after that many
    kept records (a quick look at a new dataset).
    """

    validation_fraction: float = 0.1
    check: str = "header"
    workers: int = 4
    progress: bool = True
    limit: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction <= 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1], got {self.validation_fraction}")
        if self.check not in ("header", "decode"):
            raise ValueError(f"check must be 'header' or 'decode', got {self.check!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


@dataclass
class _Candidate:
    """An entry turned into everything a record needs except what the audio file tells."""

    id: str
    audio_path: str
    offset_s: float
    duration_s: float | None
    split: str | None
    split_key: str = ""  # what the hash split looks at: all records of one entry share a split
    text: str | None = None
    fields: Pairs = ()
    turns: tuple[Turn, ...] = ()
    context: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True)
class _AudioInfo:
    seconds: float = 0.0
    reason: str | None = None
    detail: str = ""


def probe_audio(path: Path) -> _AudioInfo:
    """Length of an audio file from its header, or the reject reason it deserves."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return _AudioInfo(reason=MISSING_AUDIO, detail="file does not exist")
    except OSError as err:
        return _AudioInfo(reason=UNREADABLE_AUDIO, detail=f"cannot stat ({err.strerror})")
    if not path.is_file():
        return _AudioInfo(reason=MISSING_AUDIO, detail="not a regular file")
    if st.st_size == 0:
        return _AudioInfo(reason=ZERO_DURATION, detail="file is empty (0 bytes)")
    try:
        info = sf.info(str(path))
    except Exception as err:  # libsndfile raises several types; any of them means "cannot read"
        return _AudioInfo(reason=UNREADABLE_AUDIO, detail=str(err).splitlines()[0][:300])
    if info.frames <= 0 or info.samplerate <= 0:
        return _AudioInfo(reason=ZERO_DURATION, detail=f"header declares {info.frames} frames")
    return _AudioInfo(seconds=info.frames / info.samplerate)


def hash_split(record_id: str, validation_fraction: float) -> str:
    """A stable train/validation assignment: the same id always lands in the same split."""
    digest = hashlib.blake2b(record_id.encode("utf-8"), digest_size=8).digest()
    return "validation" if int.from_bytes(digest, "big") / 2**64 < validation_fraction else "train"


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _EntryProblem(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise _EntryProblem(f"{what} {text!r} is not finite")
    return value


class Collector:
    """Runs one :class:`DatasetSpec` over a dataset root.

    Iterate :meth:`records` once; afterwards :attr:`summary` and :attr:`rejects` describe
    the run. Output order follows the reader (sorted file names, file order), so runs over
    the same data give the same records in the same order.
    """

    def __init__(self, spec: DatasetSpec, root: str | os.PathLike[str], options: CollectOptions | None = None) -> None:
        self.spec = spec
        self.root = Path(root)
        self.options = options or CollectOptions()
        self.summary = CollectSummary(spec.name)
        self.rejects: list[Reject] = []
        self._t: dict[str, Template] = {}
        self.maps: dict[str, Mapping[str, str]] = dict(spec.maps)  # + table maps, read when the run starts
        self._extracted: set[str] = set()  # embedded audio written in this run
        if not self.root.is_dir():
            raise CollectError(f"dataset root {self.root} is not a folder")

    # Templates are compiled once per run and looked up by their text.
    def _tpl(self, source: str) -> Template:
        if source not in self._t:
            self._t[source] = Template(source)
        return self._t[source]

    def _render(self, source: str | None, item: Item) -> str | None:
        return None if source is None else self._tpl(source).render(item, self.maps)

    def _require(self, source: str, item: Item, what: str) -> str:
        return self._tpl(source).require(item, self.maps, what)

    def _reject(self, record_id: str, reason: str, detail: str, audio_path: str = "") -> None:
        self.rejects.append(Reject(record_id, reason, detail, audio_path))
        self.summary.rejected[reason] += 1

    def _where(self, item: Item) -> str | None:
        """Why the item is filtered out, or None to keep it."""
        for template, allowed in self.spec.where:
            if self._render(template, item) not in allowed:
                return f"{template} not in {list(allowed)}"
        for template, dropped in self.spec.exclude:
            if self._render(template, item) in dropped:
                return f"{template} excluded"
        return None

    # -- stage 1: items --------------------------------------------------------------------

    def _load_join(self, join: Join) -> dict[str, Item]:
        table: dict[str, Item] = {}
        duplicates = 0
        for row in join.source.read(self.root):
            try:
                key = self._render(join.key, row)
            except _EntryProblem:
                key = None  # a side-table row its key template cannot read: it joins nothing
            if key is None or "_error" in row:
                continue
            if key in table:
                duplicates += 1
                continue
            table[key] = row
        if duplicates:
            log.warning(
                "%s: join %r has %d duplicate keys; the first row of each is used",
                self.spec.name,
                join.name,
                duplicates,
            )
        return table

    def _load_table_map(self, table_map: TableMap) -> dict[str, str]:
        values: dict[str, str] = {}
        for row in table_map.source.read(self.root):
            try:
                key, value = self._render(table_map.key, row), self._render(table_map.value, row)
            except _EntryProblem:
                continue
            if key is not None and value is not None:
                values.setdefault(key, value)
        return values

    def _items(self) -> Iterator[Item]:
        for table_map in self.spec.table_maps:
            self.maps[table_map.name] = self._load_table_map(table_map)
        # Joins reading the same table with the same key (one per LibriMix source) share one read.
        loaded: dict[str, dict[str, Item]] = {}
        tables: dict[str, dict[str, Item]] = {}
        for join in self.spec.joins:
            same = repr((join.source, join.key))  # frozen dataclasses: equal reprs, equal tables
            if same not in loaded:
                loaded[same] = self._load_join(join)
            tables[join.name] = loaded[same]
        for item in self.spec.source.read(self.root):
            if "_error" not in item:
                try:
                    why = self._join_and_filter(item, tables)
                except _EntryProblem as err:  # the entry becomes a bad-annotation reject downstream
                    item["_error"] = str(err)
                    why = None
                if why is not None:
                    self.summary.filtered[why] += 1
                    continue
            data = item.pop("_audio_bytes", None)
            # Only the first row of a name is extracted: a later row with the same id becomes a
            # duplicate-id reject and must not replace the audio of the record that was kept.
            if data is not None and "_error" not in item and item["_audio"] not in self._extracted:
                self._extracted.add(item["_audio"])
                atomic.write_once(self.root / item["_audio"], data)
            if not self.spec.variants:
                yield item
                continue
            for variant in self.spec.variants:
                copy = dict(item, _variant=variant)
                for name, template in variant.fields:
                    copy[name] = self._render(template, item)
                yield copy

    def _join_and_filter(self, item: Item, tables: Mapping[str, Mapping[str, Item]]) -> str | None:
        """Merge the joined rows into ``item``; the reason it is filtered out, or None."""
        for join in self.spec.joins:
            key = self._render(join.on, item)
            row = tables[join.name].get(key) if key is not None else None
            if row is None and join.required:
                return f"no {join.name} entry"
            for column, value in (row or {}).items():
                item[f"{join.name}.{column}"] = value  # namespaced: reader fields like _path too
        return self._where(item)

    # -- stage 2: candidates ---------------------------------------------------------------

    def _audio_path(self, item: Item) -> str:
        paths = [self._require(t, item, "audio") for t in self.spec.audio]
        if len(paths) == 1:
            return paths[0]
        # The first existing file wins; if none exists the first path is reported missing.
        return next((p for p in paths if (self.root / p).exists()), paths[0])

    def _split_of(self, item: Item) -> str | None:
        if self.spec.split is None:
            return None
        value = self._require(self.spec.split, item, "split")
        split = self.spec.split_map.get(value, value)
        if split not in ("train", "validation"):
            raise _Filtered(f"split {value!r}")
        return split

    def _context(self, item: Item) -> tuple[dict[str, str], ...]:
        variant: Variant | None = item.get("_variant")
        templates = variant.context if variant is not None and variant.context is not None else self.spec.context
        turns = [dict(t) for t in item.get("_context", ())]
        for role, template in templates:
            content = self._render(template, item)
            if content is not None:
                turns.append({"role": role, "content": content})
        return tuple(turns)

    def _fields(self, pairs: Pairs, item: Item) -> Pairs:
        rendered = ((label, self._render(template, item)) for label, template in pairs)
        return tuple((label, value) for label, value in rendered if value is not None)

    def _record_id(self, item: Item) -> str:
        source_id = self._require(self.spec.id, item, "id")
        variant: Variant | None = item.get("_variant")
        return f"{self.spec.name}/{source_id}" + (f"/{variant.suffix}" if variant is not None else "")

    def _split_key(self, item: Item) -> str:
        # Variants of one entry (Clotho's five captions of a clip) must not straddle the split.
        key = self.spec.split_key or self.spec.id
        return f"{self.spec.name}/{self._require(key, item, 'split key')}"

    def _parts(self, item: Item) -> tuple[Turn, ...]:
        turns = []
        for part in self.spec.parts:
            if part.when is not None:
                if self._render(part.when, item) is None:
                    continue
                text = self._require(part.text, item, f"part {part.speaker!r} text")
            else:
                text = self._render(part.text, item)
                if text is None:
                    continue
            start = _number(self._require(part.start, item, "part start"), "part start")
            end = math.inf if part.end is None else _number(self._require(part.end, item, "part end"), "part end")
            speaker = self._require(part.speaker, item, "part speaker")
            turns.append(Turn(start, end, speaker, text, self._fields(part.fields, item)))
        if not turns:
            raise _EntryProblem(f"none of the parts has a text ({[p.text for p in self.spec.parts]})")
        return tuple(turns)

    def _candidate(self, item: Item) -> _Candidate:
        record_id = self._record_id(item)
        offset_text = self._render(self.spec.offset, item)
        offset = _number(offset_text, "offset") if offset_text is not None else 0.0
        duration_text = self._render(self.spec.duration, item)
        duration = _number(duration_text, "duration") if duration_text is not None else None
        end_text = self._render(self.spec.end, item)
        if end_text is not None:
            duration = _number(end_text, "end") - offset
        return _Candidate(
            id=record_id,
            audio_path=self._audio_path(item),
            offset_s=offset,
            duration_s=duration,
            split=self._split_of(item),
            split_key=self._split_key(item),
            text=self._render(self.spec.text, item),
            fields=self._fields(self.spec.fields, item),
            turns=self._parts(item) if self.spec.parts else (),
            context=self._context(item),
        )

    def _entry_id(self, item: Item) -> str:
        """Best-effort id of an entry that could not be built, for the rejects file."""
        try:
            return self._record_id(item)
        except _EntryProblem:
            where = item.get("_file", "?")
            line = item.get("_line", item.get("_row"))
            return f"{self.spec.name}/?{where}" + (f":{line}" if line is not None else "")

    def _candidates(self) -> Iterator[_Candidate]:
        items = self._items()
        if self.spec.windowing is not None:
            yield from self._windows(items)
            return
        for item in items:
            try:
                if "_error" in item:
                    raise _EntryProblem(item["_error"])
                yield self._candidate(item)
            except _Filtered as why:
                self.summary.filtered[str(why)] += 1
            except _EntryProblem as err:
                self._reject(self._entry_id(item), BAD_ANNOTATION, str(err))

    def _windows(self, items: Iterable[Item]) -> Iterator[_Candidate]:
        w = self.spec.windowing
        assert w is not None
        groups: dict[str, list[tuple[float, float, Item]]] = defaultdict(list)
        for item in items:
            try:
                if "_error" in item:
                    raise _EntryProblem(item["_error"])
                group = self._require(w.group, item, "group")
                start = _number(self._require(w.start, item, "start"), "start")
                end = _number(self._require(w.end, item, "end"), "end")
                if not 0 <= start < end:
                    raise _EntryProblem(f"utterance times {start}-{end} are not a positive interval")
                groups[group].append((start, end, item))
            except _EntryProblem as err:
                where = f"{item.get('_file', '?')}" + (f"#{item['_id']}" if item.get("_id") else "")
                self._reject(f"{self.spec.name}/?{where}", BAD_ANNOTATION, str(err))
        for group in sorted(groups):
            utterances = sorted(groups[group], key=lambda u: (u[0], u[1]))
            for k, window in enumerate(self._cut(utterances)):
                try:
                    yield self._window_candidate(group, k, window)
                except _Filtered as why:
                    self.summary.filtered[str(why)] += 1
                except _EntryProblem as err:
                    self._reject(f"{self.spec.name}/{group}/{k}", BAD_ANNOTATION, str(err))

    def _cut(self, utterances: list[tuple[float, float, Item]]) -> Iterator[list[tuple[float, float, Item]]]:
        w = self.spec.windowing
        assert w is not None
        window: list[tuple[float, float, Item]] = []
        window_end = 0.0
        for start, end, item in utterances:
            if window:
                too_long = max(window_end, end) - window[0][0] > w.max_window_s
                too_quiet = w.max_gap_s is not None and start - window_end > w.max_gap_s
                if too_long or too_quiet:
                    yield window
                    window = []
            if not window:
                window_end = end
            window.append((start, end, item))
            window_end = max(window_end, end)
        if window:
            yield window

    def _window_candidate(self, group: str, k: int, window: list[tuple[float, float, Item]]) -> _Candidate:
        w = self.spec.windowing
        assert w is not None
        first = window[0][2]
        origin = window[0][0]
        order: dict[str, int] = {}
        speaker_items: dict[str, Item] = {}
        turns = []
        for start, end, item in window:
            speaker = self._require(w.speaker, item, "speaker")
            if speaker not in order:
                order[speaker] = len(order) + 1
                speaker_items[speaker] = item
            text = self._require(w.text, item, "text")
            turns.append(
                Turn(start - origin, end - origin, f"speaker {order[speaker]}", text, self._fields(w.turn_fields, item))
            )
        fields = [*self._fields(self.spec.fields, first), ("speakers", str(len(order)))]
        for speaker, n in order.items():
            fields += [
                (f"speaker {n} {label}", value)
                for label, value in self._fields(w.speaker_fields, speaker_items[speaker])
            ]
        return _Candidate(
            id=f"{self.spec.name}/{group}/{k}",
            audio_path=self._audio_path(first),
            offset_s=origin,
            duration_s=max(end for _, end, _ in window) - origin,
            split=self._split_of(first),
            fields=tuple(fields),
            turns=tuple(turns),
            context=self._context(first),
        )

    # -- stage 3: validation and records ---------------------------------------------------

    def _segment(self, cand: _Candidate, info: _AudioInfo) -> float:
        """The candidate's duration after checking its segment against the file (or raise)."""
        total = info.seconds
        if cand.offset_s >= total:
            raise _Rejected(OUT_OF_RANGE, f"offset {cand.offset_s:.3f} s is at or past the end ({total:.3f} s)")
        if cand.duration_s is None:
            return total - cand.offset_s
        end = cand.offset_s + cand.duration_s
        if end > total + SEGMENT_TOLERANCE_S:
            raise _Rejected(OUT_OF_RANGE, f"segment ends at {end:.3f} s, the file at {total:.3f} s")
        return min(end, total) - cand.offset_s

    def _decode_check(self, cand: _Candidate, duration: float) -> None:
        from alarm.audio import AudioError, load_audio

        try:
            load_audio(self.root / cand.audio_path, offset_s=cand.offset_s, duration_s=duration, max_seconds=None)
        except AudioError as err:
            text = str(err)
            reason = ZERO_DURATION if "empty" in text else UNREADABLE_AUDIO
            raise _Rejected(reason, text.splitlines()[0][:300]) from None

    def _record(self, cand: _Candidate, info: _AudioInfo) -> SourceRecord:
        if info.reason is not None:
            raise _Rejected(info.reason, info.detail)
        duration = self._segment(cand, info)
        if not duration > 0:
            raise _Rejected(ZERO_DURATION, f"segment of {duration:.3f} s")
        if self.options.check == "decode":
            self._decode_check(cand, duration)
        if self.spec.metadata_style == "transcript":
            if cand.text is None:
                raise _Rejected(BAD_ANNOTATION, "no transcript for a transcript-style dataset")
            metadata = cand.text
        else:
            metadata = render_metadata(
                duration, text=cand.text, text_label=self.spec.text_label, turns=cand.turns, fields=cand.fields
            )
        split = cand.split or hash_split(cand.split_key or cand.id, self.options.validation_fraction)
        try:
            return SourceRecord(
                id=cand.id,
                dataset=self.spec.name,
                category=self.spec.category,
                split=split,
                audio_path=cand.audio_path,
                offset_s=round(cand.offset_s, 6),
                duration_s=round(duration, 6),
                metadata=metadata,
                context=cand.context,
            )
        except RecordError as err:
            raise _Rejected(BAD_ANNOTATION, str(err)) from None

    def records(self) -> Iterator[SourceRecord]:
        """Validated records, in reader order; rejects and the summary fill in as it runs."""
        from tqdm.auto import tqdm

        seen: set[str] = set()
        cache: dict[str, _AudioInfo] = {}
        pool = ThreadPoolExecutor(self.options.workers) if self.options.workers > 1 else None
        bar = tqdm(desc=f"collect {self.spec.name}", unit="rec", disable=not self.options.progress)
        try:
            for batch in _batched(self._candidates(), 256):
                todo = sorted({c.audio_path for c in batch} - set(cache))
                paths = [self.root / p for p in todo]
                infos = pool.map(probe_audio, paths) if pool is not None else map(probe_audio, paths)
                cache.update(zip(todo, infos))
                for cand in batch:
                    bar.update(1)
                    if cand.id in seen:
                        self._reject(cand.id, DUPLICATE_ID, "an earlier entry has the same id", cand.audio_path)
                        continue
                    seen.add(cand.id)
                    try:
                        record = self._record(cand, cache[cand.audio_path])
                    except _Rejected as err:
                        self._reject(cand.id, err.reason, err.detail, cand.audio_path)
                        continue
                    self.summary.kept += 1
                    self.summary.seconds += record.duration_s
                    self.summary.splits[record.split] += 1
                    yield record
                    if self.options.limit is not None and self.summary.kept >= self.options.limit:
                        return
                if len(cache) > 100_000:  # windows share files only within a recording; bound memory
                    cache.clear()
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)


class _Filtered(Exception):
    """An entry deliberately left out (e.g. a test split): counted, not rejected."""


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_rejects(rejects: Iterable[Reject], path: str | os.PathLike[str]) -> int:
    """Write rejects as JSON lines, atomically. Returns the number written."""
    return atomic.write_jsonl(path, (r.to_dict() for r in rejects))


def default_rejects_path(out: str | os.PathLike[str]) -> Path:
    """``corpus/esc50.jsonl`` -> ``corpus/esc50.rejects.jsonl``."""
    out = Path(out)
    stem = out.name.rsplit(".", 1)[0] if "." in out.name else out.name
    return out.with_name(f"{stem}.rejects.jsonl")


def collect_to_file(
    spec: DatasetSpec,
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    rejects: str | os.PathLike[str] | None = None,
    options: CollectOptions | None = None,
) -> CollectSummary:
    """Collect ``spec`` from ``root`` into ``out`` (``.jsonl`` streamed, or ``.parquet``).

    The rejects go to ``rejects`` (default: ``<out stem>.rejects.jsonl``), always written,
    empty when nothing was rejected. Both files are written atomically.
    """
    out = Path(out)
    if out.suffix not in (".jsonl", ".parquet"):
        raise ValueError(f"{out}: the output must end in .jsonl or .parquet")
    collector = Collector(spec, root, options)
    if out.suffix == ".parquet":
        write_parquet(list(collector.records()), out)
    else:
        write_jsonl(collector.records(), out)
    write_rejects(collector.rejects, rejects if rejects is not None else default_rejects_path(out))
    log.info("%s", collector.summary.format())
    return collector.summary


# -- corpus statistics (the paper's Table 1) -------------------------------------------------

STAT_SPLITS = ("total", "train", "validation")


@dataclass
class _Tally:
    instances: int = 0
    seconds: float = 0.0
    audio: set[int] = field(default_factory=set)
    prompts: set[int] = field(default_factory=set)


@dataclass
class CorpusStats:
    """Instances, hours, unique audio files and unique prompts per category (or dataset) and split.

    Unique prompts only exist for generated corpus rows (those with a ``prompt``);
    ``has_prompts`` says whether any row had one.
    """

    rows: dict[str, dict[str, _Tally]] = field(default_factory=dict)
    has_prompts: bool = False

    def add(self, key: str, split: str, seconds: float, audio: str, prompt: str | None) -> None:
        tallies = self.rows.setdefault(key, {s: _Tally() for s in STAT_SPLITS})
        # Stable within a run is all that is needed: hashes keep memory flat for millions of rows.
        audio_key, prompt_key = hash(audio), hash(prompt) if prompt else None
        for name in ("total", split):
            tally = tallies.setdefault(name, _Tally())
            tally.instances += 1
            tally.seconds += seconds
            tally.audio.add(audio_key)
            if prompt_key is not None:
                tally.prompts.add(prompt_key)
        if prompt_key is not None:
            self.has_prompts = True

    def table(self) -> list[dict[str, Any]]:
        """One dict per row (plus ``Total``): ``{name, instances, hours, unique_audio, unique_prompts}``,
        each value a ``{total, train, validation}`` dict."""
        out = []
        total: dict[str, _Tally] = {s: _Tally() for s in STAT_SPLITS}
        for key in self.rows:
            out.append(self._row(key, self.rows[key]))
            for split, tally in self.rows[key].items():
                t = total.setdefault(split, _Tally())
                t.instances += tally.instances
                t.seconds += tally.seconds
                t.audio |= tally.audio
                t.prompts |= tally.prompts
        out.append(self._row("Total", total))
        return out

    def _row(self, name: str, tallies: Mapping[str, _Tally]) -> dict[str, Any]:
        def per(fn: Callable[[_Tally], Any]) -> dict[str, Any]:
            return {s: fn(tallies.get(s, _Tally())) for s in STAT_SPLITS}

        row = {
            "name": name,
            "instances": per(lambda t: t.instances),
            "hours": per(lambda t: round(t.seconds / 3600.0, 4)),
            "unique_audio": per(lambda t: len(t.audio)),
        }
        if self.has_prompts:
            row["unique_prompts"] = per(lambda t: len(t.prompts))
        return row


def _stat_rows(path: str) -> Iterator[Mapping[str, Any]]:
    """The few columns statistics need, without building full records (corpora are large)."""
    wanted = ["dataset", "category", "split", "audio_path", "offset_s", "duration_s", "prompt"]
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        shard = pq.ParquetFile(path)
        columns = [c for c in wanted if c in shard.schema_arrow.names]
        for batch in shard.iter_batches(columns=columns, batch_size=65_536):
            yield from batch.to_pylist()
    elif path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as err:
                        raise RecordError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
    else:
        raise RecordError(f"{path}: expected a .jsonl or .parquet file")


def corpus_stats(paths: Iterable[str | os.PathLike[str]], by: str = "category") -> CorpusStats:
    """Table 1 of the paper over record files (source manifests or generated corpus shards).

    ``by`` is ``category`` (the paper's rows, in the paper's order) or ``dataset``. A unique
    audio file is a distinct ``audio_path`` (segments of one file count once).
    """
    if by not in ("category", "dataset"):
        raise ValueError(f"by must be 'category' or 'dataset', got {by!r}")
    stats = CorpusStats()
    if by == "category":  # the paper's row order; categories that do not occur are dropped below
        stats.rows = {c: {s: _Tally() for s in STAT_SPLITS} for c in CATEGORIES}
    for path in paths:
        for n, row in enumerate(_stat_rows(os.fspath(path)), 1):
            try:
                key, split = str(row[by]), str(row["split"])
                seconds = float(row["duration_s"])
            except (KeyError, TypeError, ValueError):
                raise RecordError(f"{path}: row {n} lacks {by}/split/duration_s") from None
            stats.add(key, split, seconds, f"{row.get('dataset')}:{row.get('audio_path')}", row.get("prompt"))
    stats.rows = {k: v for k, v in stats.rows.items() if v["total"].instances}
    if by == "dataset":
        stats.rows = dict(sorted(stats.rows.items()))
    return stats
