"""Parquet shards with embedded audio (Hugging Face ``Audio`` columns), extracted once: reader ``parquet``."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alarm.audio import encoded_suffix
from alarm.corpus.collection.errors import EntryProblem
from alarm.corpus.collection.readers.base import (
    Item,
    as_tuple,
    compile_regex,
    flatten,
    glob_files,
    path_fields,
    register,
)
from alarm.corpus.collection.template import Template


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
        object.__setattr__(self, "files", as_tuple(self.files))
        object.__setattr__(self, "json_columns", as_tuple(self.json_columns))
        object.__setattr__(self, "drop_columns", as_tuple(self.drop_columns))
        Template(self.name)
        compile_regex(self.path_regex)


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


@register("parquet", ParquetOptions)
def read_parquet(root: Path, opts: ParquetOptions) -> Iterator[Item]:
    import pyarrow.parquet as pq

    regex = compile_regex(opts.path_regex)
    name = Template(opts.name)
    for rel in glob_files(root, opts.files):
        base = path_fields(regex, rel)
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
                item = {**base, "_row": row_no, **flatten(row)}
                if problem is not None:
                    yield {**item, "_error": f"{rel} row {row_no}: {problem}"}
                    continue
                try:
                    stem = name.require(item, {}, "extracted audio name")
                except EntryProblem as err:
                    yield {**item, "_error": f"{rel} row {row_no}: {err}"}
                    continue
                data, original_name = _embedded_audio(audio)
                if not data:
                    yield {**item, "_error": f"{rel} row {row_no}: no embedded audio in column {opts.audio_column!r}"}
                    continue
                target = posixpath.join(opts.extract_to, stem + encoded_suffix(data, original_name))
                # Written by the engine once the entry survives its filters (no disk for dropped rows).
                yield {**item, "_audio": target, "_audio_bytes": data}
