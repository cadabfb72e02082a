"""Atomic file output, the one mechanism every long job uses so a kill never leaves half a file.

Write to a temporary file in the destination's directory, then rename it over the
destination (atomic on POSIX): readers see the old file or the new one, never a mix, and a
killed job leaves at most a ``.tmp-*`` file that the next run ignores.

Jobs that finish item by item (predictions, judgements, transcripts) append to a
:class:`JsonlStore` instead: whole lines keyed by id, so a rerun skips what is there.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary file name next to ``path``; on success it replaces ``path``.

    For writers that take a file name (safetensors, Parquet, matplotlib). On an exception the
    temporary file is removed and ``path`` is left as it was.
    """
    final = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(final))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(final))
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)  # mkstemp files are 0600; give the result the usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open`` for writing, atomically (see :func:`atomic_path`). Text modes default to UTF-8."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically."""
    with atomic_open(path) as f:
        f.write(text)


def write_once(path: str | os.PathLike[str], data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless a file of the same size is already there.

    For audio extracted from Parquet shards (corpus collection, benchmark loaders): the bytes
    are written on the first run and kept on later ones; a kill mid-write leaves only a
    ``.tmp-*`` file. Returns whether it wrote.
    """
    if os.path.isfile(path) and os.path.getsize(path) == len(data):
        return False
    with atomic_open(path, "wb") as f:
        f.write(data)
    return True


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write indented JSON atomically."""
    with atomic_open(path) as f:
        json.dump(data, f, ensure_ascii=False, indent=2)
        f.write("\n")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Write JSON lines atomically; returns the number of rows."""
    n = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


class JsonlStore:
    """An append-only JSONL file of records keyed by ``id`` (first record of an id wins)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _repair(self) -> None:
        """Cut a torn last line (a run killed in the middle of a write)."""
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if not data or data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            log.warning(
                "%s: dropping a torn last line (%d bytes) left by an interrupted run", self.path, len(data) - keep
            )
            f.truncate(keep)

    def load(self) -> dict[str, dict[str, Any]]:
        """All records by id; a line that is not a JSON object with an id is an error naming it."""
        self._repair()
        records: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{self.path}: line {number} is not valid JSON: {err.msg}") from None
                if not isinstance(record, dict) or "id" not in record:
                    raise ValueError(f"{self.path}: line {number} is not a JSON object with an 'id'")
                if str(record["id"]) in records:
                    log.warning("%s: line %d repeats id %r; the first one is kept", self.path, number, record["id"])
                    continue
                records[str(record["id"])] = record
        return records

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append whole lines in one write, then flush and fsync."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
