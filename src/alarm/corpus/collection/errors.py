"""The errors of collection: a malformed spec, a dataset root of the wrong layout, a bad entry."""

from __future__ import annotations


class SpecError(ValueError):
    """A dataset spec (or one of its templates) is malformed; the message names the part."""


class CollectError(RuntimeError):
    """The dataset root does not look like the spec's layout (e.g. no annotation files)."""


class EntryProblem(Exception):
    """An annotation entry the spec cannot turn into a record (becomes a BAD_ANNOTATION reject)."""
