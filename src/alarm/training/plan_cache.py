"""Cached length plans: the token count of every corpus row, computed once per corpus and layout.

Planning tokenizes every row (prompt + audio positions + target). For hundreds of thousands
of rows that is minutes at every start, although the count depends only on

    the row:     prompt, response, context, duration_s
    the layout:  tokenizer (vocabulary, merges, chat template, special tokens), system
                 prompt, audio length rule (encoders, windows, adapters, fusion)

so counts are stored under a key per row (a hash of its fields) in one file per layout
(a hash of the layout), ``DIR/lengths-<layout>.npz``. A start then tokenizes only rows it
has not seen: a new shard, an edited response. Any change to the layout selects another
file, so a stale count is never read. The layout hash is functional: besides the
tokenizer's own serialisation it hashes the token ids of probe conversations and the audio
positions of probe durations, so a change of the chat code or of a length rule is caught
even when no setting changed.

Writes are atomic (a killed run leaves the previous file intact) and merge what the file
already holds; two runs writing at once can only lose each other's new rows, which are then
computed again. Counts read from the cache equal computed ones, so a resumed run plans the
same order (its checkpoint's plan fingerprint checks it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from alarm.corpus.schema import CorpusRecord
from alarm.io import atomic_path

log = logging.getLogger(__name__)

CACHE_VERSION = 1
KEY_CHARS = 32  # hex characters of a row key (128 bits)
# Durations (s) the audio length rule is probed at: short, window edges (10.24 s SSLAM,
# 30 s the others), several windows, the longest default segment.
PROBE_SECONDS = (0.01, 0.1, 0.5, 1.0, 2.5, 7.3, 10.24, 10.25, 20.48, 29.99, 30.0, 30.01, 45.5, 61.0, 123.4, 600.0)


def row_key(record: CorpusRecord) -> bytes:
    """Hash of the fields a row's token count depends on."""
    fields = [record.prompt, record.response, list(record.context), record.duration_s]
    text = json.dumps(fields, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_CHARS].encode("ascii")


def _tokenizer_identity(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    extra = {
        "class": type(tokenizer).__name__,
        "template": getattr(tokenizer, "chat_template", None),
        "special": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
    }
    return vocabulary + json.dumps(extra, sort_keys=True)


def layout_key(fmt: Any) -> str:
    """Hash of everything besides the row that decides its token count (see module docstring).

    ``fmt`` is a :class:`~alarm.training.data.ChatFormat`.
    """
    probe_rows = [
        CorpusRecord(
            id="probe/0",
            dataset="probe",
            category="sound",
            split="train",
            audio_path="probe.wav",
            offset_s=0.0,
            duration_s=3.0,
            metadata="",
            prompt="What do you hear? Ünïcödé, 数字 123.",
            response="<think>A short probe.</think>An answer.",
            context=({"role": "user", "content": "Earlier turn."}, {"role": "assistant", "content": "Reply."}),
        ),
    ]
    probes = [fmt.example(r, fmt.nominal_lengths(r.duration_s)).input_ids for r in probe_rows]
    probe_samples = {rate: torch.tensor([max(1, round(s * rate)) for s in PROBE_SECONDS]) for rate in fmt.sample_rates}
    rule = fmt.audio_lengths(probe_samples).tolist()
    digest = hashlib.sha256()
    for part in (
        str(CACHE_VERSION),
        _tokenizer_identity(fmt.tokenizer),
        json.dumps([fmt.system, list(fmt.sample_rates), probes, rule], ensure_ascii=False),
    ):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


class LengthCache:
    """Token counts of rows for one layout, read from and written to ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], fmt: Any, *, writable: bool = True) -> None:
        self.directory = os.fspath(directory)
        self.layout = layout_key(fmt)
        self.path = os.path.join(self.directory, f"lengths-{self.layout[:24]}.npz")
        self.writable = writable
        self.counts = self._read()

    def __len__(self) -> int:
        return len(self.counts)

    def _read(self) -> dict[bytes, int]:
        """The counts in the file; empty when there is none or it cannot be used (then recomputed)."""
        if not os.path.isfile(self.path):
            return {}
        try:
            with np.load(self.path) as saved:
                if str(saved["layout"]) != self.layout:  # a 24-character prefix collision
                    return {}
                return dict(zip(saved["keys"].tolist(), saved["tokens"].tolist()))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            log.warning("length plan cache %s is unreadable (%s); counting again", self.path, err)
            return {}

    def lookup(self, keys: Sequence[bytes]) -> np.ndarray:
        """(N,) cached token counts, -1 where a row is not cached."""
        return np.fromiter((self.counts.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))

    def add(self, keys: Sequence[bytes], tokens: Sequence[int]) -> None:
        """Store new counts and write the file (atomically, merged with what it holds now)."""
        self.counts.update(zip(keys, (int(t) for t in tokens)))
        if not self.writable or not keys:
            return
        merged = {**self._read(), **self.counts}  # another run may have added rows since we read it
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
                np.savez(
                    f,
                    layout=np.array(self.layout),
                    keys=np.array(list(merged), dtype=f"S{KEY_CHARS}"),
                    tokens=np.array(list(merged.values()), dtype=np.int64),
                )
        log.info("length plan cache %s: %d rows", self.path, len(merged))
