"""JSON documents (arrays, objects keyed by id, nested) and JSON lines: reader ``json``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alarm.corpus.collection.errors import CollectError, SpecError
from alarm.corpus.collection.readers.base import (
    Item,
    as_tuple,
    compile_regex,
    flatten,
    glob_files,
    path_fields,
    register,
)


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
        object.__setattr__(self, "files", as_tuple(self.files))
        object.__setattr__(self, "key_field", as_tuple(self.key_field))
        if self.layout not in ("list", "dict", "lines"):
            raise SpecError(f"json layout must be list, dict or lines, got {self.layout!r}")
        if not self.key_field:
            raise SpecError("json key_field needs at least one name")
        compile_regex(self.path_regex)


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
            yield {**where, **(flatten(value) if isinstance(value, Mapping) else {"value": value})}


def _json_records(doc: Any, opts: JsonOptions, rel: str) -> Iterator[Item]:
    for key in (opts.at or "").split(".") if opts.at else ():
        doc = doc.get(key) if isinstance(doc, Mapping) else None
    if opts.layout == "dict" and isinstance(doc, Mapping):
        yield from _json_dict_records(doc, opts.key_field, {})
    elif opts.layout == "list" and isinstance(doc, list):
        for value in doc:
            # A list of plain values (ids, names) gives items with one field, ``value``.
            yield flatten(value) if isinstance(value, Mapping) else {"value": value}
    else:
        raise CollectError(f"{rel}: expected a JSON {'object' if opts.layout == 'dict' else 'array'} of records")


@register("json", JsonOptions)
def read_json(root: Path, opts: JsonOptions) -> Iterator[Item]:
    regex = compile_regex(opts.path_regex)
    for rel in glob_files(root, opts.files):
        base = path_fields(regex, rel)
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
                    yield {**base, "_line": line_no, **flatten(value)}
            continue
        with open(root / rel, encoding="utf-8") as f:
            try:
                doc = json.load(f)
            except json.JSONDecodeError as err:
                raise CollectError(f"{rel}: not valid JSON ({err})") from None
        for record in _json_records(doc, opts, rel):
            yield {**base, **record}
