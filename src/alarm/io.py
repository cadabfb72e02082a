"""Atomic file output, the one mechanism every long job uses so a kill never leaves half a file.

Write to a temporary file in the destination's directory, then rename it over the
destination (atomic on POSIX): readers see the old file or the new one, never a mix, and a
killed job leaves at most a ``.tmp-*`` file that the next run ignores.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any


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
