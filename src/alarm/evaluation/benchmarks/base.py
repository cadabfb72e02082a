"""One engine for every multiple-choice benchmark; each benchmark is a data-driven spec.

A :class:`BenchmarkSpec` says where the release keeps its metadata file, how an entry names
its id, question, choices, answer, audio and categories, which official scoring rule applies,
and which official prediction files to write. :func:`load_items` reads a release as it lies on
disk into immutable :class:`Item` s: a JSON list or JSON lines next to the audio files, or
(where the spec has a :class:`ParquetLayout`) Parquet shards with the audio inside, whose
clips are written once to a cache folder so every item has a file. It fails with one clear
:class:`BenchmarkError` naming the file and the entry (``entry 3``, ``line 4``, ``row 7``) for
malformed JSON or Parquet, a missing or empty field, a duplicate id, or missing or undecodable
audio.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from alarm.audio import AudioError, encoded_suffix, load_audio
from alarm.io import write_once

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

log = logging.getLogger(__name__)


class BenchmarkError(ValueError):
    """A benchmark file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Item:
    """One question about one or more audio clips (most benchmarks: multiple choice, one clip).

    ``choices`` are the non-empty options in order (empty for open and instruction questions),
    ``letters`` the official letter of each (``A``, ``B``, ``D`` when a release leaves
    ``choice_c`` empty), ``answer`` the reference option text (``None`` where the release
    withholds it), ``groups`` the categories the official scorer reports (e.g.
    ``{"task": "sound", "difficulty": "easy"}``) and ``record`` the release's own entry, kept
    to write the official prediction files. An item read only to be scored from an entry that
    names no clip has ``audio`` = :data:`NO_AUDIO`.
    ``extra_audio`` are the clips after the first of a question about several (MMAU-Pro's
    multi-audio questions); ``kind`` is ``choice``, ``open`` or ``instruction``.
    """

    id: str
    audio: Path
    question: str
    choices: tuple[str, ...]
    letters: tuple[str, ...]
    answer: str | None
    groups: Mapping[str, str]
    record: Mapping[str, Any] = field(repr=False, compare=False)
    extra_audio: tuple[Path, ...] = ()
    kind: str = "choice"

    @property
    def audio_files(self) -> tuple[Path, ...]:
        """Every clip of the question, in the order the release lists them."""
        return (self.audio, *self.extra_audio)

    @property
    def answer_index(self) -> int | None:
        """Position of the reference answer among the choices (first exact match), if any."""
        if self.answer is None:
            return None
        for i, choice in enumerate(self.choices):
            if choice == self.answer:
                return i
        return None


@dataclass(frozen=True)
class ParquetLayout:
    """A release published as Parquet shards with the audio inside (a Hugging Face ``Audio``
    column, ``{"bytes": ..., "path": ...}`` per row).

    ``files`` maps a split to glob patterns under the data folder, tried in order; the first
    that matches gives the shards, read in name order. A row has the fields of a JSON-layout
    entry except the spec's ``audio_fields`` (the file reference the embedded audio replaces). Its clip is
    written once, atomically, to ``<cache>/<id><suffix>`` under the data folder (or a folder
    the caller names) and the item points at that file.
    """

    files: Mapping[str, tuple[str, ...]]
    audio_column: str = "audio"
    cache: str = "_alarm_audio"
    batch_rows: int = 64  # rows decoded from Parquet at a time: bounds memory, not results


# An official rule decides one prediction string: True (correct), False (wrong), or None
# (the official script leaves the entry out of its counts).
OfficialRule = Callable[[Item, Any], "bool | None"]

# What an official script does with an entry that has no prediction key: "skip" it (MMAU,
# MMAR: `if output_key not in sample: continue`), read it as "" (MMSU: `record.get('response',
# '')`, so it counts wrong), or stop with an error (AIR-Bench: `line['response']`, KeyError).
MissingPolicy = Literal["skip", "empty", "error"]
MISSING_POLICIES: tuple[str, ...] = get_args(MissingPolicy)

# What a question asks for: one of the options, a free answer (judged), or a reply that must
# follow verifiable instructions (checked by rules). Only "choice" needs options, and an
# "instruction" question needs no reference answer.
QUESTION_KINDS = ("choice", "open", "instruction")

# The audio of an item read only for scoring from an entry that names no clip (scoring never
# opens it; ``mmsu_predictions.jsonl`` written for the Parquet release has ``audio_path: ""``).
NO_AUDIO = Path()


def filled(value: Any) -> bool:
    """A field value that counts as given: not None and not blank text."""
    return value is not None and not (isinstance(value, str) and not value.strip())


@dataclass(frozen=True)
class BenchmarkSpec:
    """Everything the engine needs to know about one benchmark release."""

    name: str
    title: str
    splits: Mapping[str, tuple[str, ...]]  # split -> metadata file names to look for, in order
    default_split: str
    id_field: str
    question_field: str
    answer_field: str
    required: tuple[str, ...]  # fields every entry must have (non-empty unless optional below)
    choices: Callable[[Mapping[str, Any]], list[tuple[str, str]]]  # entry -> [(letter, text)]
    # (entry, metadata file) -> audio path, or the paths of a question about several clips
    audio: Callable[[Mapping[str, Any], Path], Path | Sequence[Path]]
    audio_fields: tuple[str, ...]  # the fields ``audio`` reads: needed to run, never to score
    groups: tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...]  # (group, entry -> key)
    official_rule: OfficialRule
    prediction_kind: str  # what the official scorer reads: "text" (option text) or "letter"
    # Keys official prediction files keep the prediction in, in the order scoring reads them:
    # the first key an entry has wins (the current official script's key first).
    prediction_keys: tuple[str, ...]
    write_official: Callable[[Sequence[Item], Mapping[str, str], Path, str], list[Path]]
    answers_withheld: frozenset[str] = frozenset()  # splits released without answers
    group_order: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # official key order
    parquet: ParquetLayout | None = None  # a second release layout: Parquet with the audio inside
    missing_prediction: MissingPolicy = "skip"  # the official script's way with an entry without one
    # entry -> QUESTION_KINDS member, or None for an entry the official scorer leaves out; a
    # benchmark without it is all multiple choice
    question_type: Callable[[Mapping[str, Any]], str | None] | None = None

    def __post_init__(self) -> None:
        if self.missing_prediction not in MISSING_POLICIES:
            raise ValueError(f"missing_prediction is one of {MISSING_POLICIES}, got {self.missing_prediction!r}")

    @property
    def scoring_fields(self) -> tuple[str, ...]:
        """The required fields scoring reads: all but the audio reference (the official
        scorers never open the audio, and a Parquet release has no file reference)."""
        return tuple(name for name in self.required if name not in self.audio_fields)

    def canonical_prediction(self, item: Item, index: int | None) -> str:
        """The prediction string the official scorer expects for a chosen option ("" if none)."""
        if index is None:
            return ""
        return item.letters[index] if self.prediction_kind == "letter" else item.choices[index]

    def release_files(self, data: str | os.PathLike[str], split: str | None = None) -> list[Path]:
        """The files a split is read from: its metadata file (JSON or JSON lines), else the
        Parquet shards of a :class:`ParquetLayout`; ``data`` may also name one such file.

        The metadata file wins when a folder holds both layouts (its audio is already on disk).
        """
        split = split or self.default_split
        if split not in self.splits:
            raise BenchmarkError(f"{self.name}: unknown split {split!r}; known: {', '.join(self.splits)}")
        path = Path(data)
        if path.is_file():
            return [path]
        if not path.is_dir():
            raise BenchmarkError(f"{path}: no such file or directory (the {self.title} data folder)")
        for name in self.splits[split]:
            candidate = path / name
            if candidate.is_file():
                return [candidate]
        patterns = self.parquet.files.get(split, ()) if self.parquet is not None else ()
        for pattern in patterns:
            shards = sorted(p for p in path.glob(pattern) if p.is_file())
            if shards:
                return shards
        wanted = " or ".join(str(path / n) for n in (*self.splits[split], *patterns))
        raise BenchmarkError(f"{self.title} {split}: no metadata file found; looked for {wanted}")


def read_entries(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(place, entry) pairs of a JSON list, a JSON-lines file or a Parquet table whose rows are
    entries (``row i``, from 0); errors name the file and the line."""
    if path.suffix == ".parquet":
        return list(_parquet_rows(path, None, ()))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise BenchmarkError(f"{path}: not UTF-8 text ({err})") from None
    stripped = text.lstrip()
    if not stripped:
        raise BenchmarkError(f"{path}: empty file")
    if stripped.startswith("["):
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as err:
            raise BenchmarkError(
                f"{path}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
            ) from None
        pairs = [(f"entry {i}", e) for i, e in enumerate(entries)]
    else:
        pairs = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                pairs.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise BenchmarkError(f"{path}: line {number} is not valid JSON: {err.msg}") from None
    for place, entry in pairs:
        if not isinstance(entry, dict):
            raise BenchmarkError(f"{path}: {place} is a JSON {type(entry).__name__}, not an object")
    return pairs


def group_key(value: Any) -> str | None:
    """A category value as a key: strings as they are, lists joined with '/' (MMAU has both)."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return "/".join(str(v) for v in value) if value else None
    return str(value)


def _label(path: Path, place: str, ident: Any) -> str:
    """Where an entry is, for error messages: ``<file>: entry 3 (id 'x')``."""
    return f"{path}: {place}" + (f" (id {ident!r})" if ident not in (None, "") else "")


def parse_entry(
    spec: BenchmarkSpec,
    entry: Mapping[str, Any],
    path: Path,
    place: str,
    split: str,
    *,
    required: Sequence[str] | None = None,
    audio: Path | None = None,
    null_choice: str | None = None,
) -> Item:
    """One release entry as an :class:`Item` (audio existence is checked by the caller).

    ``required`` replaces the spec's required fields and ``audio`` the spec's audio path rule,
    for layouts that carry the audio themselves. ``null_choice``: the option text a present
    but null ``choice_<x>`` field becomes (None: the option is dropped); see
    :func:`with_null_choices`.
    """
    ident = entry.get(spec.id_field)
    label = _label(path, place, ident)
    kind = spec.question_type(entry) if spec.question_type is not None else "choice"
    if kind not in QUESTION_KINDS:
        raise BenchmarkError(f"{label}: cannot tell what kind of question this is")
    listed = entry if null_choice is None else with_null_choices(entry, null_choice)  # record stays as released
    for name in spec.required if required is None else required:
        if not filled(listed.get(name)):
            if name == spec.answer_field and (split in spec.answers_withheld or kind == "instruction"):
                continue
            raise BenchmarkError(f"{label}: missing or empty field {name!r}")
    try:
        choices = spec.choices(listed)
    except (BenchmarkError, TypeError, ValueError) as err:
        raise BenchmarkError(f"{label}: {err}") from None
    if kind == "choice" and len(choices) < 2:
        raise BenchmarkError(f"{label}: needs at least two answer choices, found {len(choices)}")
    for letter, text in choices:
        if not isinstance(text, str):
            raise BenchmarkError(f"{label}: choice {letter} is a {type(text).__name__}, not text")
    question = entry[spec.question_field]
    if not isinstance(question, str):
        raise BenchmarkError(f"{label}: field {spec.question_field!r} is not text")
    answer = entry.get(spec.answer_field)
    if (split in spec.answers_withheld or kind == "instruction") and (answer is None or answer == ""):
        answer = None
    elif answer is not None:
        answer = str(answer)
    extra: tuple[Path, ...] = ()
    if audio is None:
        try:
            found = spec.audio(entry, path)
        except (KeyError, TypeError, ValueError) as err:
            raise BenchmarkError(f"{label}: cannot build the audio path ({err})") from None
        if isinstance(found, Path):
            audio = found
        elif found:
            audio, *rest = found
            extra = tuple(rest)
        else:
            raise BenchmarkError(f"{label}: names no audio file")
    groups = {}
    for group, key in spec.groups:
        value = group_key(key(entry))
        if value is not None:
            groups[group] = value
    return Item(
        id=str(ident),
        audio=audio,
        question=question,
        choices=tuple(text for _, text in choices),
        letters=tuple(letter for letter, _ in choices),
        answer=answer,
        groups=groups,
        record=dict(entry),
        extra_audio=extra,
        kind=kind,
    )


def items_from_entries(
    spec: BenchmarkSpec,
    entries: list[tuple[str, dict[str, Any]]],
    path: Path,
    split: str,
    *,
    check_audio: bool,
    null_choice: str | None = None,
) -> list[Item]:
    """Items of (place, entry) pairs read from ``path``; ids must be unique (``null_choice``: :func:`parse_entry`).

    With ``check_audio`` every clip must exist; without, the items are for scoring: the audio
    fields may be missing or empty (the item's audio is then :data:`NO_AUDIO`).
    """
    items: list[Item] = []
    seen: dict[str, str] = {}
    required = spec.required if check_audio else spec.scoring_fields
    left_out = 0
    for place, entry in entries:
        if spec.question_type is not None and spec.question_type(entry) is None:
            left_out += 1  # the official scorer drops it too
            continue
        names_audio = check_audio or all(filled(entry.get(name)) for name in spec.audio_fields)
        audio = None if names_audio else NO_AUDIO
        item = parse_entry(spec, entry, path, place, split, required=required, audio=audio, null_choice=null_choice)
        if item.id in seen:
            raise BenchmarkError(f"{path}: {place}: duplicate id {item.id!r} (first at {seen[item.id]})")
        seen[item.id] = place
        for clip in item.audio_files if check_audio else ():
            if not clip.is_file():
                raise BenchmarkError(f"{path}: {place} (id {item.id!r}): audio file {clip} does not exist")
        items.append(item)
    if left_out:
        log.warning("%s: %d entries left out, as the official scorer leaves them out", path, left_out)
    if not items:
        raise BenchmarkError(f"{path}: no entries")
    return items


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _file_stem(ident: str) -> str:
    """A file name for an id: the id itself when it is a plain name, else a cleaned prefix plus
    a hash of the id, so ids that clean to the same text still get different files."""
    stem = _UNSAFE.sub("_", ident).lstrip(".")
    if stem == ident and stem:
        return stem
    return f"{stem[:80]}-{hashlib.sha1(ident.encode('utf-8')).hexdigest()[:12]}"


def _embedded(cell: Any) -> tuple[bytes | None, str | None]:
    """(bytes, original file name) of an audio cell: a Hugging Face ``Audio`` struct or raw bytes."""
    if isinstance(cell, Mapping):
        data, name = cell.get("bytes"), cell.get("path")
        return (bytes(data) if data else None), (str(name) if name else None)
    if isinstance(cell, bytes | bytearray | memoryview) and len(cell):
        return bytes(cell), None
    return None, None


def _parquet_rows(
    shard: Path, layout: ParquetLayout | None, required: Sequence[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``row i``, row) pairs of one shard, 0-based as pyarrow and pandas count; a file that is
    not Parquet or lacks a column the entries need fails naming the file. Without a layout
    the rows are plain entries (no audio column inside)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(shard)
    except (OSError, pa.ArrowException) as err:
        raise BenchmarkError(f"{shard}: not a readable Parquet file ({err})") from None
    with handle:
        columns = handle.schema_arrow.names
        audio_column = () if layout is None else (layout.audio_column,)
        missing = [name for name in (*audio_column, *required) if name not in columns]
        if missing:
            raise BenchmarkError(
                f"{shard}: no column {', '.join(repr(m) for m in missing)} (its columns: {', '.join(columns)})"
            )
        row = 0
        try:
            for batch in handle.iter_batches(batch_size=64 if layout is None else layout.batch_rows):
                for entry in batch.to_pylist():
                    yield f"row {row}", entry
                    row += 1
        except (OSError, pa.ArrowException) as err:
            raise BenchmarkError(f"{shard}: cannot read the rows after row {row - 1} ({err})") from None


def _extract(target: Path, data: bytes, label: str, column: str) -> None:
    """Write a row's clip to ``target`` once, after checking that it decodes."""
    if target.is_file() and target.stat().st_size == len(data):
        return  # written (and checked) by an earlier load
    try:
        load_audio(data, max_seconds=None)
    except AudioError as err:
        reason = str(err).partition(": ")[2] or str(err)
        raise BenchmarkError(f"{label}: the audio in column {column!r} does not decode ({reason})") from None
    try:
        write_once(target, data)
    except OSError as err:
        raise BenchmarkError(f"{label}: cannot write its audio to {target} ({err.strerror or err})") from None


def items_from_parquet(
    spec: BenchmarkSpec, shards: Sequence[Path], split: str, cache: Path, *, check_audio: bool
) -> list[Item]:
    """Items of a Parquet release; with ``check_audio`` every clip is checked and extracted
    to ``cache`` (existing files of the right size are kept), otherwise nothing is written."""
    layout = spec.parquet
    if layout is None:
        raise ValueError(f"{spec.title} has no Parquet layout")
    required = spec.scoring_fields
    items: list[Item] = []
    seen: dict[str, str] = {}
    for shard in shards:
        for place, entry in _parquet_rows(shard, layout, required):
            data, name = _embedded(entry.pop(layout.audio_column, None))
            ident = entry.get(spec.id_field)
            stem = _file_stem(str(ident))
            audio = cache / (stem + (encoded_suffix(data, name) if data else ".wav"))
            item = parse_entry(spec, entry, shard, place, split, required=required, audio=audio)
            if item.id in seen:
                raise BenchmarkError(f"{shard}: {place}: duplicate id {item.id!r} (first at {seen[item.id]})")
            seen[item.id] = f"{shard.name} {place}"
            label = _label(shard, place, item.id)
            if data is None:
                raise BenchmarkError(f"{label}: no audio in column {layout.audio_column!r}")
            if check_audio:
                _extract(audio, data, label, layout.audio_column)
            items.append(item)
    if not items:
        source = shards[0] if len(shards) == 1 else f"{shards[0].parent} ({len(shards)} shards)"
        raise BenchmarkError(f"{source}: no rows")
    return items


def load_items(
    spec: BenchmarkSpec,
    data: str | os.PathLike[str],
    split: str | None = None,
    *,
    check_audio: bool = True,
    audio_cache: str | os.PathLike[str] | None = None,
    null_choice: str | None = None,
) -> list[Item]:
    """All items of a benchmark split as the release lays it out under ``data``.

    ``check_audio``: every clip must exist (Parquet: must decode, and is extracted); without
    it the items are for scoring only and entries need not name their clip.
    ``audio_cache``: where a Parquet release's clips go; default ``<data>/<layout.cache>``.
    ``null_choice``: the text of a null ``choice_<x>`` option (:func:`with_null_choices`; JSON
    releases, AIR-Bench's layout); None drops such options.
    """
    split = split or spec.default_split
    files = spec.release_files(data, split)
    if files[0].suffix == ".parquet" and spec.parquet is not None:
        root = Path(data) if Path(data).is_dir() else Path(data).parent
        cache = Path(audio_cache) if audio_cache is not None else root / spec.parquet.cache
        return items_from_parquet(spec, files, split, cache, check_audio=check_audio)
    entries = read_entries(files[0])
    return items_from_entries(spec, entries, files[0], split, check_audio=check_audio, null_choice=null_choice)


def with_null_choices(entry: Mapping[str, Any], text: str) -> dict[str, Any]:
    """``entry`` with each present but null ``choice_<x>`` field set to ``text``.

    The official AIR-Bench preparation lists every ``choice_<x>`` key the entry has and writes
    each with ``str()``, so a null choice becomes an option reading "None"
    (``scripts/benchmarks/dataset_collection/airbench.py``); absent keys stay absent.
    """
    return {k: text if k.startswith("choice_") and v is None else v for k, v in entry.items()}


def letter_choices(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``choice_a`` ... ``choice_d`` fields (MMSU, AIR-Bench); absent, null or empty ones dropped."""
    out = []
    for letter in "abcd":
        value = entry.get(f"choice_{letter}")
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        out.append((letter.upper(), value if isinstance(value, str) else str(value)))
    return out


def list_choices(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A ``choices`` list (MMAU, MMAR), lettered A, B, C, ... by position."""
    values = entry.get("choices")
    if not isinstance(values, list):
        raise BenchmarkError(f"'choices' is a {type(values).__name__}, not a list")
    return [(LETTERS[i], v if isinstance(v, str) else str(v)) for i, v in enumerate(values)]


def relative_audio(field_name: str) -> Callable[[Mapping[str, Any], Path], Path]:
    """Audio named by ``field_name`` relative to the metadata file's folder (``./audio/x.wav``)."""

    def resolve(entry: Mapping[str, Any], meta: Path) -> Path:
        return meta.parent / str(entry[field_name])

    return resolve
