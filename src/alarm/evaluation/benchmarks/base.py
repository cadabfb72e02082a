"""One engine for every multiple-choice benchmark; each benchmark is a data-driven spec.

A :class:`BenchmarkSpec` says where the release keeps its metadata file, how an entry names
its id, question, choices, answer, audio and categories, which official scoring rule applies,
and which official prediction files to write. :func:`load_items` reads a release as it lies on
disk (JSON list or JSON lines + audio files) into immutable :class:`Item` s, failing with one
clear :class:`BenchmarkError` naming the file and the entry for malformed JSON, a missing or
empty field, a duplicate id, or missing audio.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class BenchmarkError(ValueError):
    """A benchmark file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Item:
    """One multiple-choice question about one audio clip.

    ``choices`` are the non-empty options in order, ``letters`` the official letter of each
    (``A``, ``B``, ``D`` when a release leaves ``choice_c`` empty), ``answer`` the reference
    option text (``None`` where the release withholds it), ``groups`` the categories the
    official scorer reports (e.g. ``{"task": "sound", "difficulty": "easy"}``) and ``record``
    the release's own entry, kept to write the official prediction files.
    """

    id: str
    audio: Path
    question: str
    choices: tuple[str, ...]
    letters: tuple[str, ...]
    answer: str | None
    groups: Mapping[str, str]
    record: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def answer_index(self) -> int | None:
        """Position of the reference answer among the choices (first exact match), if any."""
        if self.answer is None:
            return None
        for i, choice in enumerate(self.choices):
            if choice == self.answer:
                return i
        return None


# An official rule decides one prediction string: True (correct), False (wrong), or None
# (the official script leaves the entry out of its counts).
OfficialRule = Callable[[Item, Any], "bool | None"]


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
    audio: Callable[[Mapping[str, Any], Path], Path]  # (entry, metadata file) -> audio path
    groups: tuple[tuple[str, Callable[[Mapping[str, Any]], Any]], ...]  # (group, entry -> key)
    official_rule: OfficialRule
    prediction_kind: str  # what the official scorer reads: "text" (option text) or "letter"
    prediction_keys: tuple[str, ...]  # keys official prediction files keep the prediction in
    write_official: Callable[[Sequence[Item], Mapping[str, str], Path, str], list[Path]]
    answers_withheld: frozenset[str] = frozenset()  # splits released without answers
    group_order: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # official key order

    def canonical_prediction(self, item: Item, index: int | None) -> str:
        """The prediction string the official scorer expects for a chosen option ("" if none)."""
        if index is None:
            return ""
        return item.letters[index] if self.prediction_kind == "letter" else item.choices[index]

    def metadata_file(self, data: str | os.PathLike[str], split: str | None = None) -> Path:
        """The release's metadata file under ``data`` (or ``data`` itself when it is a file)."""
        split = split or self.default_split
        if split not in self.splits:
            raise BenchmarkError(f"{self.name}: unknown split {split!r}; known: {', '.join(self.splits)}")
        path = Path(data)
        if path.is_file():
            return path
        if not path.is_dir():
            raise BenchmarkError(f"{path}: no such file or directory (the {self.title} data folder)")
        for name in self.splits[split]:
            candidate = path / name
            if candidate.is_file():
                return candidate
        wanted = " or ".join(str(path / n) for n in self.splits[split])
        raise BenchmarkError(f"{self.title} {split}: no metadata file found; looked for {wanted}")


def read_entries(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(place, entry) pairs of a JSON list or a JSON-lines file; errors name the file and line."""
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


def parse_entry(spec: BenchmarkSpec, entry: Mapping[str, Any], path: Path, place: str, split: str) -> Item:
    """One release entry as an :class:`Item` (audio existence is checked by the caller)."""
    ident = entry.get(spec.id_field)
    label = f"{path}: {place}" + (f" (id {ident!r})" if ident not in (None, "") else "")
    for name in spec.required:
        if name not in entry or entry[name] is None or (isinstance(entry[name], str) and not entry[name].strip()):
            if name == spec.answer_field and split in spec.answers_withheld:
                continue
            raise BenchmarkError(f"{label}: missing or empty field {name!r}")
    try:
        choices = spec.choices(entry)
    except (BenchmarkError, TypeError, ValueError) as err:
        raise BenchmarkError(f"{label}: {err}") from None
    if len(choices) < 2:
        raise BenchmarkError(f"{label}: needs at least two answer choices, found {len(choices)}")
    for letter, text in choices:
        if not isinstance(text, str):
            raise BenchmarkError(f"{label}: choice {letter} is a {type(text).__name__}, not text")
    question = entry[spec.question_field]
    if not isinstance(question, str):
        raise BenchmarkError(f"{label}: field {spec.question_field!r} is not text")
    answer = entry.get(spec.answer_field)
    if split in spec.answers_withheld and (answer is None or answer == ""):
        answer = None
    elif answer is not None:
        answer = str(answer)
    try:
        audio = spec.audio(entry, path)
    except (KeyError, TypeError, ValueError) as err:
        raise BenchmarkError(f"{label}: cannot build the audio path ({err})") from None
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
    )


def items_from_entries(
    spec: BenchmarkSpec, entries: list[tuple[str, dict[str, Any]]], path: Path, split: str, *, check_audio: bool
) -> list[Item]:
    """Items of (place, entry) pairs read from ``path``; ids must be unique."""
    items: list[Item] = []
    seen: dict[str, str] = {}
    for place, entry in entries:
        item = parse_entry(spec, entry, path, place, split)
        if item.id in seen:
            raise BenchmarkError(f"{path}: {place}: duplicate id {item.id!r} (first at {seen[item.id]})")
        seen[item.id] = place
        if check_audio and not item.audio.is_file():
            raise BenchmarkError(f"{path}: {place} (id {item.id!r}): audio file {item.audio} does not exist")
        items.append(item)
    if not items:
        raise BenchmarkError(f"{path}: no entries")
    return items


def load_items(
    spec: BenchmarkSpec, data: str | os.PathLike[str], split: str | None = None, *, check_audio: bool = True
) -> list[Item]:
    """All items of a benchmark split as the release lays it out under ``data``."""
    split = split or spec.default_split
    path = spec.metadata_file(data, split)
    return items_from_entries(spec, read_entries(path), path, split, check_audio=check_audio)


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
