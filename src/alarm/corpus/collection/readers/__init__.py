"""Readers: one module per on-disk annotation layout, each registered by name in :data:`READERS`.

========================  ==============================================================
reader (module)           layout
========================  ==============================================================
``lines`` (tables)        line lists: Kaldi-style, LibriSpeech ``*.trans.txt``, speaker lists
``table`` (tables)        CSV/TSV files, stacked headers, comment lines
``files`` (files)         one entry per file: folder-per-label trees, one transcript per file
``json`` (json_records)   JSON arrays, objects keyed by id (nested), JSON lines
``parquet`` (parquet)     Parquet shards with embedded audio, extracted once to files
``conversations``         multi-turn spoken conversations in JSON (InstructS2S)
``ami`` (ami)             AMI manual annotations in NXT XML
``textgrid`` (textgrid)   Praat TextGrid files (long format)
========================  ==============================================================

A new layout is a new module here: an options dataclass and a ``read(root, options)``
generator decorated with ``@register(name, Options)``, imported below.
"""

from __future__ import annotations

# Importing a reader module registers its reader.
from alarm.corpus.collection.readers import ami, conversations, files, json_records, parquet, tables, textgrid  # noqa: F401
from alarm.corpus.collection.readers.ami import AmiOptions, read_ami
from alarm.corpus.collection.readers.base import READERS, Item, ReaderKind, as_tuple, register
from alarm.corpus.collection.readers.conversations import ConversationOptions, read_conversations
from alarm.corpus.collection.readers.files import FilesOptions, read_files
from alarm.corpus.collection.readers.json_records import JsonOptions, read_json
from alarm.corpus.collection.readers.parquet import ParquetOptions, read_parquet
from alarm.corpus.collection.readers.tables import LinesOptions, TableOptions, read_lines, read_table
from alarm.corpus.collection.readers.textgrid import TextGridOptions, read_textgrid

__all__ = [
    "READERS",
    "AmiOptions",
    "ConversationOptions",
    "FilesOptions",
    "Item",
    "JsonOptions",
    "LinesOptions",
    "ParquetOptions",
    "ReaderKind",
    "TableOptions",
    "TextGridOptions",
    "as_tuple",
    "read_ami",
    "read_conversations",
    "read_files",
    "read_json",
    "read_lines",
    "read_parquet",
    "read_table",
    "read_textgrid",
    "register",
]
