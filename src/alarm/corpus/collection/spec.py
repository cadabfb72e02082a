"""Dataset specs: what a dataset is (:class:`DatasetSpec`) as data, and its JSON form.

A spec names a reader (:class:`Source`) and the templates that turn each annotation item
into a record; :class:`Join` and :class:`TableMap` pull in side tables, :class:`Variant`
makes several records per item, :class:`Windowing` cuts long recordings into windows of
utterances and :class:`Part` describes a file holding several timed texts at once. Every
template is compiled when the spec is built, so a malformed spec fails at import time.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alarm.corpus.collection.errors import SpecError
from alarm.corpus.collection.readers import READERS, Item, as_tuple
from alarm.corpus.collection.template import Template
from alarm.corpus.schema import CATEGORIES


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
        object.__setattr__(self, "audio", as_tuple(self.audio))
        if not self.audio:
            raise SpecError(f"{what}: at least one audio template is needed")
        object.__setattr__(self, "fields", _pairs(self.fields, f"{what} fields"))
        object.__setattr__(self, "context", _pairs(self.context, f"{what} context"))
        object.__setattr__(self, "where", tuple((t, as_tuple(v)) for t, v in _items(self.where)))
        object.__setattr__(self, "exclude", tuple((t, as_tuple(v)) for t, v in _items(self.exclude)))
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
