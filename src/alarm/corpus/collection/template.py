"""The template language of dataset specs: ``"{field|filter:arg}"`` over one annotation item.

Templates are ``str.format``-like: ``"{field}"`` or ``"{field|filter:arg|filter}"``, with
``{{``/``}}`` for literal braces. Fields come from the reader (underscored names such as
``_path`` or ``_dir`` are added by the reader itself), joins add ``<join name>.<column>``.
Filters are listed in :data:`FILTERS`; ``if:FIELD=VALUE`` (:data:`ITEM_FILTERS`) is a
condition on another field of the item. A field whose template refers to a missing value is
left out of the metadata; an id or audio template that cannot be filled rejects the entry.
"""

from __future__ import annotations

import ast
import math
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from alarm.corpus.collection.errors import EntryProblem, SpecError


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and not value.strip():
        return True
    return isinstance(value, (list, tuple)) and not value


def _text(value: Any) -> str:
    """A field value as metadata text: bools read yes/no, floats lose float noise, lists join."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value if not _is_missing(v))
    return str(value).strip()


def _each(fn: Callable[[str], Any]) -> Callable[[Any, str | None, Mapping[str, Mapping[str, str]]], Any]:
    """Lift a string function to lists (applied per element) and to scalars of any type."""

    def apply(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
        if _is_missing(value):
            return None
        if isinstance(value, (list, tuple)):
            return [fn(_text(v)) for v in value if not _is_missing(v)]
        return fn(_text(value))

    return apply


def _each_arg(fn: Callable[[str, str], Any]) -> Callable[[Any, str | None, Mapping[str, Mapping[str, str]]], Any]:
    def apply(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
        return _each(lambda s: fn(s, arg or ""))(value, arg, maps)

    return apply


def _decade(text: str) -> str:
    # Exact ages are rarely audible; the decade is what a listener can guess (VocalSound).
    return f"{int(float(text)) // 10 * 10}s"


def _split(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    if _is_missing(value):
        return None
    parts = _text(value).split(arg) if arg else _text(value).split()
    return [p.strip() for p in parts if p.strip()]


def _join(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    if _is_missing(value):
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    return (arg if arg is not None else ", ").join(_text(v) for v in items if not _is_missing(v))


def _first(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    if _is_missing(value):
        return None
    return value[0] if isinstance(value, (list, tuple)) else value


def _nth(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    if _is_missing(value):
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    index = int(arg or 0)
    return items[index] if -len(items) <= index < len(items) else None


def _literal(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    # Python-literal lists in CSV cells (FMA's "['rock', 'indie']").
    if _is_missing(value) or not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _map(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    table = maps[arg or ""]
    # Unknown values pass through unchanged: a map names the codes it knows, the rest is text.
    return _each(lambda s: table.get(s, s))(value, arg, maps)


def _round(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    if _is_missing(value):
        return None
    return f"{float(_text(value)):.{int(arg or 0)}f}"


def _default(value: Any, arg: str | None, maps: Mapping[str, Mapping[str, str]]) -> Any:
    return arg if _is_missing(value) else value


_QUOTES = {"\x91": "'", "\x92": "'", "\x93": '"', "\x94": '"', "\u2018": "'", "\u2019": "'", "\u201c": '"'}
_QUOTES["\u201d"] = '"'
_QUOTES["\x85"] = "..."
_QUOTES["\x96"] = "-"
_QUOTES["\x97"] = "-"


def _first_group(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def _fix_quotes(text: str) -> str:
    # MELD's CSV carries Windows-1252 quote bytes decoded as control characters.
    return "".join(_QUOTES.get(ch, ch) for ch in text)


FILTERS: dict[str, Callable[[Any, str | None, Mapping[str, Mapping[str, str]]], Any]] = {
    "lower": _each(str.lower),
    "upper": _each(str.upper),
    "title": _each(str.title),
    "capitalize": _each(lambda s: s[:1].upper() + s[1:]),
    "strip": _each(str.strip),
    "squash": _each(lambda s: " ".join(s.split())),
    "spaces": _each(lambda s: " ".join(s.replace("_", " ").split())),
    "stem": _each(lambda s: posixpath.splitext(posixpath.basename(s))[0]),
    "before": _each_arg(lambda s, sep: s.split(sep, 1)[0].strip()),
    "strip_prefix": _each_arg(lambda s, p: s[len(p) :] if p and s.startswith(p) else s),
    "fix_quotes": _each(_fix_quotes),
    "decade": _each(_decade),
    "int": _each(lambda s: str(int(float(s)))),
    "round": _round,
    "map": _map,
    "split": _split,
    "join": _join,
    "first": _first,
    "nth": _nth,
    "default": _default,
    "zfill": _each_arg(lambda s, n: s.zfill(int(n or 0))),
    "head": _each_arg(lambda s, n: s[: int(n or 0)]),
    "match": _each_arg(lambda s, pattern: _first_group(pattern, s)),
    "literal": _literal,
}
"""Template filters: ``{field|name}`` or ``{field|name:arg}``; string filters apply per list element.

lower/upper/title/capitalize/strip: case and whitespace; squash: collapse runs of whitespace;
spaces: ``_`` to space; stem: file name without folder and extension; before:SEP: text before
SEP; strip_prefix:P; fix_quotes: Windows-1252 quote bytes to ASCII; decade: 37 -> "30s";
int: "25.0" -> "25"; round:N: N decimals; map:NAME: look the value up in the spec's ``maps``;
split:SEP: text to list (whitespace without SEP); join:SEP: list to text (", " default);
first: first list element; nth:N: element N (0-based, missing if
absent); default:TEXT: TEXT when the value is missing; zfill:N: pad with zeros to N
characters; head:N: the first N characters; match:REGEX: the first group of REGEX (missing
when it does not match); literal: a Python-literal cell (``"['a', 'b']"``) to its value.

One filter looks at the rest of the item instead of the value: ``if:FIELD=VALUE`` keeps the
value only when FIELD renders as VALUE (``if:FIELD``: when FIELD is present), so a field
can depend on another (SonicMaster's singer gender only for songs with vocals).
"""

ITEM_FILTERS = frozenset({"if"})
"""Filters that read other fields of the item (applied by :class:`Template`, not in :data:`FILTERS`)."""


def _condition_holds(condition: str, item: Mapping[str, Any]) -> bool:
    name, sep, wanted = condition.partition("=")
    other = item.get(name.strip())
    if _is_missing(other):
        return False
    return not sep or _text(other) == wanted


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


@dataclass(frozen=True)
class _Slot:
    field: str
    filters: tuple[tuple[str, str | None], ...]


class Template:
    """A compiled field template (see the module docstring); renders an item or reports why not."""

    def __init__(self, source: str) -> None:
        if not isinstance(source, str):
            raise SpecError(f"template must be a string, got {source!r}")
        self.source = source
        parts: list[str | _Slot] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(source):
            literal = source[pos : match.start()]
            if "{" in literal or "}" in literal:
                raise SpecError(f"template {source!r}: unbalanced brace")
            parts.append(literal)
            token = match.group(0)
            if token in ("{{", "}}"):
                parts.append(token[0])
            else:
                parts.append(self._slot(match.group(1)))
            pos = match.end()
        tail = source[pos:]
        if "{" in tail or "}" in tail:
            raise SpecError(f"template {source!r}: unbalanced brace")
        parts.append(tail)
        self._parts = tuple(p for p in parts if p != "")

    def _slot(self, body: str) -> _Slot:
        name, *chain = body.split("|")
        if not name.strip():
            raise SpecError(f"template {self.source!r}: empty field name")
        filters = []
        for spec in chain:
            fname, sep, arg = spec.partition(":")
            if fname not in FILTERS and fname not in ITEM_FILTERS:
                known = sorted({*FILTERS, *ITEM_FILTERS})
                raise SpecError(f"template {self.source!r}: unknown filter {fname!r} (known: {known})")
            if fname in ITEM_FILTERS and not (sep and arg.strip()):
                raise SpecError(f"template {self.source!r}: filter {fname!r} needs a condition (if:FIELD=VALUE)")
            filters.append((fname, arg if sep else None))
        return _Slot(name.strip(), tuple(filters))

    @property
    def map_names(self) -> set[str]:
        return {arg or "" for p in self._parts if isinstance(p, _Slot) for f, arg in p.filters if f == "map"}

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(p.field for p in self._parts if isinstance(p, _Slot))

    def render(self, item: Mapping[str, Any], maps: Mapping[str, Mapping[str, str]]) -> str | None:
        """The filled template, or None when a referenced field is missing (after filters)."""
        out = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = item.get(part.field)
            for name, arg in part.filters:
                if name == "if":
                    value = value if _condition_holds(arg or "", item) else None
                    continue
                try:
                    value = FILTERS[name](value, arg, maps)
                except (ValueError, TypeError) as err:
                    raise EntryProblem(f"field {part.field!r}: filter {name!r} cannot take {value!r} ({err})") from None
            if _is_missing(value):
                return None
            out.append(_text(value))
        return "".join(out)

    def require(self, item: Mapping[str, Any], maps: Mapping[str, Mapping[str, str]], what: str) -> str:
        """Like :meth:`render`, but a missing field is a problem with the entry."""
        value = self.render(item, maps)
        if value is None:
            missing = [f for f in self.fields if _is_missing(item.get(f))]
            raise EntryProblem(f"{what} template {self.source!r} needs field(s) {missing or list(self.fields)}")
        return value

    def __repr__(self) -> str:
        return f"Template({self.source!r})"
