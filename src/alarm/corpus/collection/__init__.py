"""Source collection: one engine runs a short declarative spec per dataset.

A :class:`DatasetSpec` is data. It names a *reader* (how the dataset's annotations are laid
out on disk: CSV/TSV tables, whitespace or Kaldi-style lists, one text file per utterance,
folder-per-label trees, JSON/JSONL, Parquet shards with embedded audio, conversation JSON,
AMI's NXT XML) and *templates* that turn each annotation item into a source record: the
record id, where the audio is (relative to the dataset root), the main text (transcript,
label or caption) and the ``label: value`` fields of the metadata text. Joins pull in
side tables (speaker info, clip tags), variants emit several records per item (Clotho's
five captions, HeySQuAD with and without its passage), and a :class:`Windowing` cuts long
recordings into windows of utterances using the source's own timestamps (AMI meetings).

:class:`Collector` runs a spec over a dataset root and yields validated
:class:`~alarm.corpus.schema.SourceRecord` s. Entries that cannot become a record are
never fatal: a missing or unreadable audio file, zero duration, a segment outside the file,
a duplicate id or an annotation row the templates cannot fill is skipped and kept as a
:class:`Reject` with its reason; :class:`CollectSummary` counts what was kept (records,
hours, per split), rejected (per reason) and filtered out on purpose (e.g. test splits).

Where things are:

==================  ===========================================================================
module              job
==================  ===========================================================================
``spec``            :class:`DatasetSpec` and its parts (:class:`Source`, :class:`Join`,
                    :class:`TableMap`, :class:`Variant`, :class:`Windowing`, :class:`Part`),
                    :func:`spec_from_dict`
``template``        the template language (:class:`Template`, :data:`FILTERS`, ``if:`` conditions)
``readers/``        one module per annotation layout, registered by name in :data:`READERS`
``metadata``        the metadata text of a record (:func:`render_metadata`, :func:`clock`)
``engine``          :class:`Collector` (items -> candidates -> records), :func:`collect_to_file`
``rejects``         reject reasons, :class:`Reject`, :class:`CollectSummary`, :func:`probe_audio`
``stats``           :func:`corpus_stats` (the paper's Table 1)
``errors``          :class:`SpecError`, :class:`CollectError`
==================  ===========================================================================

The dataset specs themselves live in :mod:`alarm.corpus.collectors`, one module each.
"""

from __future__ import annotations

from alarm.corpus.collection.engine import SEGMENT_TOLERANCE_S, CollectOptions, Collector, collect_to_file, hash_split
from alarm.corpus.collection.errors import CollectError, SpecError
from alarm.corpus.collection.metadata import Turn, clock, render_metadata
from alarm.corpus.collection.readers import READERS, Item, ReaderKind, register
from alarm.corpus.collection.rejects import (
    BAD_ANNOTATION,
    DUPLICATE_ID,
    MISSING_AUDIO,
    OUT_OF_RANGE,
    REASONS,
    UNREADABLE_AUDIO,
    ZERO_DURATION,
    CollectSummary,
    Reject,
    default_rejects_path,
    probe_audio,
    write_rejects,
)
from alarm.corpus.collection.spec import (
    METADATA_STYLES,
    DatasetSpec,
    Join,
    Pairs,
    Part,
    Source,
    TableMap,
    Variant,
    Windowing,
    spec_from_dict,
)
from alarm.corpus.collection.stats import STAT_SPLITS, CorpusStats, corpus_stats
from alarm.corpus.collection.template import FILTERS, ITEM_FILTERS, Template

__all__ = [
    "BAD_ANNOTATION",
    "CollectError",
    "CollectOptions",
    "CollectSummary",
    "Collector",
    "CorpusStats",
    "DUPLICATE_ID",
    "DatasetSpec",
    "FILTERS",
    "ITEM_FILTERS",
    "Item",
    "Join",
    "METADATA_STYLES",
    "MISSING_AUDIO",
    "OUT_OF_RANGE",
    "Pairs",
    "Part",
    "READERS",
    "REASONS",
    "ReaderKind",
    "Reject",
    "SEGMENT_TOLERANCE_S",
    "STAT_SPLITS",
    "Source",
    "SpecError",
    "TableMap",
    "Template",
    "Turn",
    "UNREADABLE_AUDIO",
    "Variant",
    "Windowing",
    "ZERO_DURATION",
    "clock",
    "collect_to_file",
    "corpus_stats",
    "default_rejects_path",
    "hash_split",
    "probe_audio",
    "register",
    "render_metadata",
    "spec_from_dict",
    "write_rejects",
]
