"""One entry per matched file (folder-per-label trees, one transcript per utterance): reader ``files``."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alarm.corpus.collection.readers.base import Item, as_tuple, compile_regex, glob_files, path_fields, register
from alarm.corpus.collection.rejects import probe_audio


@dataclass(frozen=True)
class FilesOptions:
    """One entry per file matched (folder-per-label trees, one transcript file per utterance).

    ``regex`` (searched in the relative path) adds its named groups; entries whose path does
    not match are ignored (stray files). ``text_field`` stores the file's text in that field.
    Each entry has ``_path`` (the file), ``_dir``, ``_name`` and ``_stem``. With
    ``audio_info`` each audio file's header is read and its length goes to ``_seconds``
    (left out when the header cannot be read); as a join this gives the length of files
    the records do not point at (LibriMix: each source utterance inside a mixture).
    """

    files: tuple[str, ...]
    regex: str | None = None
    text_field: str | None = None
    encoding: str = "utf-8"
    audio_info: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", as_tuple(self.files))
        compile_regex(self.regex)


@register("files", FilesOptions)
def read_files(root: Path, opts: FilesOptions) -> Iterator[Item]:
    regex = compile_regex(opts.regex)
    for rel in glob_files(root, opts.files):
        base = path_fields(regex, rel)
        if base is None:
            continue
        name = posixpath.basename(rel)
        item = {**base, "_path": rel, "_name": name, "_stem": posixpath.splitext(name)[0]}
        if opts.text_field:
            try:
                item[opts.text_field] = (root / rel).read_text(encoding=opts.encoding).strip()
            except (OSError, UnicodeDecodeError) as err:
                item["_error"] = f"{rel}: cannot read text ({err})"
        if opts.audio_info:
            info = probe_audio(root / rel)
            if info.reason is None:
                item["_seconds"] = info.seconds
        yield item
