"""What every reader shares: the :data:`Item` it yields, the registry, and path helpers.

A reader is a frozen options dataclass plus a function ``read(root, options)`` that yields
items, registered under a name with :func:`register`; a spec's ``Source(reader, options)``
looks the name up in :data:`READERS`. A new on-disk layout is a new module in this package
(imported by ``readers/__init__.py``), not an edit of the engine.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alarm.corpus.collection.errors import CollectError, SpecError

Item = dict[str, Any]
"""One annotation entry as a reader yields it: field name -> value (str, number, list, None)."""


@dataclass(frozen=True)
class ReaderKind:
    """A reader: its options type (a frozen dataclass) and the function that yields items."""

    options: type
    read: Callable[[Path, Any], Iterator[Item]]


READERS: dict[str, ReaderKind] = {}
"""Every reader by name; filled by :func:`register` when the reader modules are imported."""


def register(name: str, options: type) -> Callable[[Callable[[Path, Any], Iterator[Item]]], Callable]:
    """Register the decorated ``read(root, options)`` function as reader ``name``."""

    def add(read: Callable[[Path, Any], Iterator[Item]]) -> Callable[[Path, Any], Iterator[Item]]:
        if name in READERS:
            raise ValueError(f"two readers are named {name!r}")
        READERS[name] = ReaderKind(options, read)
        return read

    return add


def as_tuple(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def glob_files(root: Path, patterns: Sequence[str]) -> list[str]:
    """Files under ``root`` matching any pattern, as sorted POSIX paths relative to the root."""
    found = {p.relative_to(root).as_posix() for pattern in patterns for p in root.glob(pattern) if p.is_file()}
    if not found:
        raise CollectError(f"no file under {root} matches {list(patterns)}")
    return sorted(found)


def path_fields(regex: re.Pattern[str] | None, rel: str) -> dict[str, str] | None:
    base = {"_file": rel, "_dir": posixpath.dirname(rel)}
    if regex is None:
        return base
    match = regex.search(rel)
    if match is None:
        return None
    return {**base, **{k: v for k, v in match.groupdict().items() if v is not None}}


def compile_regex(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as err:
        raise SpecError(f"bad regex {pattern!r}: {err}") from None


def flatten(obj: Mapping[str, Any], prefix: str = "") -> Item:
    out: Item = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
