"""The corpus record: one row per training instance, shared by corpus, training and evaluation.

Field names are a contract between stages (see docs/architecture.md); extend, don't rename.
Collectors emit :class:`SourceRecord` (where the audio is and what is annotated); the
pipeline completes it into a :class:`CorpusRecord` (the training example). Records are
immutable, validated on creation, and round-trip through JSONL (small fixtures) and Parquet
shards (readable by ``datasets``), both written atomically (temp file + rename).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from alarm import io as atomic

CATEGORIES = ("speech", "sound", "music", "instruction")
SPLITS = ("train", "validation")
ROLES = ("system", "user", "assistant")


class RecordError(ValueError):
    """A record that breaks the schema; the message names the record id and the field."""


@dataclass(frozen=True)
class SourceRecord:
    """A segment of an audio file and what is known about it (collector output).

    ``audio_path`` is relative to an audio root given at run time; ``offset_s`` /
    ``duration_s`` select the segment in seconds; ``metadata`` is the textual surrogate of
    the audio; ``context`` holds earlier text turns (InstructS2S, HeySQuAD with context).
    """

    id: str
    dataset: str
    category: str
    split: str
    audio_path: str
    offset_s: float
    duration_s: float
    metadata: str
    context: tuple[dict[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "context", tuple(dict(t) for t in self.context))
        object.__setattr__(self, "offset_s", float(self.offset_s))
        object.__setattr__(self, "duration_s", float(self.duration_s))
        self._check()

    def _fail(self, what: str) -> RecordError:
        return RecordError(f"record {self.id!r}: {what}")

    def _check(self) -> None:
        if not self.id or not self.id.startswith(f"{self.dataset}/"):
            raise self._fail(f"id must look like '<dataset>/<source id>', dataset is {self.dataset!r}")
        if self.category not in CATEGORIES:
            raise self._fail(f"category {self.category!r} is not one of {CATEGORIES}")
        if self.split not in SPLITS:
            raise self._fail(f"split {self.split!r} is not one of {SPLITS}")
        if not self.audio_path or os.path.isabs(self.audio_path) or ".." in self.audio_path.split("/"):
            raise self._fail(f"audio_path {self.audio_path!r} must be relative to the audio root")
        if self.offset_s < 0 or not self.duration_s > 0:
            raise self._fail(f"segment offset {self.offset_s} s / duration {self.duration_s} s is not valid")
        for turn in self.context:
            if set(turn) != {"role", "content"} or turn["role"] not in ROLES:
                raise self._fail(f"context turn {turn!r} must be {{role, content}} with role in {ROLES}")

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: dataclasses.asdict deep-copies provenance, half the pipeline's own cost.
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["context"] = [dict(t) for t in self.context]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise RecordError(f"record {data.get('id')!r}: unknown fields {sorted(unknown)}")
        missing = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING} - set(data)
        missing -= {f.name for f in dataclasses.fields(cls) if f.default_factory is not dataclasses.MISSING}
        if missing:
            raise RecordError(f"record {data.get('id')!r}: missing fields {sorted(missing)}")
        return cls(
            **{k: tuple(v) if k in ("context", "prompt_candidates") and v is not None else v for k, v in data.items()}
        )


@dataclass(frozen=True)
class CorpusRecord(SourceRecord):
    """A training instance: the source record plus the self-generated prompt and targets.

    ``prompt_candidates`` holds every candidate with the filter's verdict
    (``{text, kept, reason}``); ``response_raw`` is R0 (with its ``<think>``), ``response`` the
    training target after self-rephrasing (R0 where rephrasing is skipped), and
    ``rephrase_reasoning`` the rephrasing pass's own reasoning, never part of the target.
    """

    prompt: str = ""
    prompt_candidates: tuple[dict[str, Any], ...] = ()
    response_raw: str = ""
    response: str = ""
    rephrase_reasoning: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def _check(self) -> None:
        super()._check()
        object.__setattr__(self, "prompt_candidates", tuple(dict(c) for c in self.prompt_candidates))
        for cand in self.prompt_candidates:
            if set(cand) != {"text", "kept", "reason"}:
                raise self._fail(f"prompt candidate {cand!r} must be {{text, kept, reason}}")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["prompt_candidates"] = [dict(c) for c in self.prompt_candidates]
        return data


# -- files ----------------------------------------------------------------------------------


def write_jsonl(records: Iterable[SourceRecord], path: str | os.PathLike[str]) -> int:
    """Write records as JSON lines, atomically. Returns the number written."""
    return atomic.write_jsonl(path, (r.to_dict() for r in records))


def _provenance_to_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Provenance is free-form; Parquet stores it as a JSON string so its keys may vary by row.
    return [{**r, "provenance": json.dumps(r["provenance"], sort_keys=True)} if "provenance" in r else r for r in rows]


def write_parquet(records: Iterable[SourceRecord], path: str | os.PathLike[str]) -> int:
    """Write records as one Parquet file (a shard), atomically. Returns the number written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = list(records)
    kinds = {type(r) for r in records}
    if len(kinds) > 1:  # one column set per shard, so `datasets` reads it as one table
        raise RecordError(f"{path}: a shard holds one record type, got {sorted(k.__name__ for k in kinds)}")
    rows = _provenance_to_json([r.to_dict() for r in records])
    with atomic.atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    return len(rows)


def read_records(path: str | os.PathLike[str]) -> Iterator[SourceRecord]:
    """Records from a ``.jsonl`` or ``.parquet`` file, streamed; a corpus row if it has corpus fields."""
    path = str(path)
    if path.endswith(".parquet"):
        rows: Iterable[dict[str, Any]] = _parquet_rows(path)
    elif path.endswith(".jsonl"):
        rows = _jsonl_rows(path)
    else:
        raise RecordError(f"{path}: expected a .jsonl or .parquet file")
    for row in rows:
        if isinstance(row.get("provenance"), str):
            row["provenance"] = json.loads(row["provenance"])
        cls = CorpusRecord if "response" in row else SourceRecord
        yield cls.from_dict(row)


def _parquet_rows(path: str, batch_rows: int = 1024) -> Iterator[dict[str, Any]]:
    # Batch by batch: a large source file is never held whole in memory.
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        for batch in f.iter_batches(batch_size=batch_rows):
            yield from batch.to_pylist()


def _jsonl_rows(path: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
