"""The collection engine: :class:`Collector` runs one :class:`DatasetSpec` over a dataset root.

Three stages, each a method group of :class:`Collector`: items (the reader's entries with
joins merged, filters applied and embedded audio extracted), candidates (an entry's id,
audio path, segment, split, metadata parts; or a window of utterances) and records (the
candidate checked against the audio file's header, or decoded, and validated as a
:class:`~alarm.corpus.schema.SourceRecord`). A bad entry never stops the run: it becomes a
:class:`~alarm.corpus.collection.rejects.Reject`. :func:`collect_to_file` writes the records
and the rejects file atomically.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alarm import io as atomic
from alarm.corpus.collection.errors import CollectError, EntryProblem
from alarm.corpus.collection.metadata import LAYOUTS, Turn, render_metadata
from alarm.corpus.collection.readers import Item
from alarm.corpus.collection.rejects import (
    BAD_ANNOTATION,
    DUPLICATE_ID,
    OUT_OF_RANGE,
    UNREADABLE_AUDIO,
    ZERO_DURATION,
    AudioInfo,
    CollectSummary,
    Reject,
    default_rejects_path,
    probe_audio,
    write_rejects,
)
from alarm.corpus.collection.spec import DatasetSpec, Join, Pairs, TableMap, Variant
from alarm.corpus.collection.template import Template
from alarm.corpus.schema import RecordError, SourceRecord, write_jsonl, write_parquet

log = logging.getLogger(__name__)


SEGMENT_TOLERANCE_S = 0.5
"""A segment may end this far past the end of its file (annotation rounding); it is cut there."""


@dataclass(frozen=True)
class CollectOptions:
    """How to run a collection.

    ``check``: ``header`` reads each audio file's header (fast: existence, format, length);
    ``decode`` also decodes every segment with :func:`alarm.audio.load_audio`, which
    catches truncated files and NaN samples at the cost of reading all the audio.
    ``workers`` threads read headers in parallel (I/O bound). ``limit`` stops after that many
    kept records (a quick look at a new dataset). ``metadata_layout``: ``ours`` or
    ``official`` (the official repository's one-line layout; :mod:`.metadata`).
    """

    validation_fraction: float = 0.1
    check: str = "header"
    workers: int = 4
    progress: bool = True
    limit: int | None = None
    metadata_layout: str = "ours"

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction <= 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1], got {self.validation_fraction}")
        if self.check not in ("header", "decode"):
            raise ValueError(f"check must be 'header' or 'decode', got {self.check!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.metadata_layout not in LAYOUTS:
            raise ValueError(f"metadata_layout must be one of {LAYOUTS}, got {self.metadata_layout!r}")


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


def hash_split(record_id: str, validation_fraction: float) -> str:
    """A stable train/validation assignment: the same id always lands in the same split."""
    digest = hashlib.blake2b(record_id.encode("utf-8"), digest_size=8).digest()
    return "validation" if int.from_bytes(digest, "big") / 2**64 < validation_fraction else "train"


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise EntryProblem(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise EntryProblem(f"{what} {text!r} is not finite")
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
            except EntryProblem:
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
            except EntryProblem:
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
                except EntryProblem as err:  # the entry becomes a bad-annotation reject downstream
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
            raise EntryProblem(f"none of the parts has a text ({[p.text for p in self.spec.parts]})")
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
        except EntryProblem:
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
                    raise EntryProblem(item["_error"])
                yield self._candidate(item)
            except _Filtered as why:
                self.summary.filtered[str(why)] += 1
            except EntryProblem as err:
                self._reject(self._entry_id(item), BAD_ANNOTATION, str(err))

    def _windows(self, items: Iterable[Item]) -> Iterator[_Candidate]:
        w = self.spec.windowing
        assert w is not None
        groups: dict[str, list[tuple[float, float, Item]]] = defaultdict(list)
        for item in items:
            try:
                if "_error" in item:
                    raise EntryProblem(item["_error"])
                group = self._require(w.group, item, "group")
                start = _number(self._require(w.start, item, "start"), "start")
                end = _number(self._require(w.end, item, "end"), "end")
                if not 0 <= start < end:
                    raise EntryProblem(f"utterance times {start}-{end} are not a positive interval")
                groups[group].append((start, end, item))
            except EntryProblem as err:
                where = f"{item.get('_file', '?')}" + (f"#{item['_id']}" if item.get("_id") else "")
                self._reject(f"{self.spec.name}/?{where}", BAD_ANNOTATION, str(err))
        for group in sorted(groups):
            utterances = sorted(groups[group], key=lambda u: (u[0], u[1]))
            for k, window in enumerate(self._cut(utterances)):
                try:
                    yield self._window_candidate(group, k, window)
                except _Filtered as why:
                    self.summary.filtered[str(why)] += 1
                except EntryProblem as err:
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

    def _segment(self, cand: _Candidate, info: AudioInfo) -> float:
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

    def _record(self, cand: _Candidate, info: AudioInfo) -> SourceRecord:
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
                duration,
                text=cand.text,
                text_label=self.spec.text_label,
                turns=cand.turns,
                fields=cand.fields,
                layout=self.options.metadata_layout,
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
        cache: dict[str, AudioInfo] = {}
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
