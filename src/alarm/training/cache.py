"""Frozen-encoder feature cache: the selected hidden layers of every sample, stored once.

The frozen encoders are most of a training step's compute (85-90% of a forward pass in
docs/benchmarks.md) and give the same output every epoch, so they can run once:

    out/manifest.json                  encoder specs (kind, layers, weights, seed), dtype; all of a
                                       model's encoders or a subset (the rest run online)
    out/shards/part-RRR-NNNNN.safetensors   tensors "<id>/<kind>": (L, T, D), fp16 by default
    out/shards/part-RRR-NNNNN.json     sidecar: {id: {samples: {rate: n}, source: [path, offset, duration]}}
    out/rejects.jsonl                  samples that could not be read, with the reason

A shard's sidecar is written (atomically) after its tensors, so a shard without a sidecar is
unfinished and is written again; extraction restarted after a kill skips every id already
in a finished shard. Under ``torchrun`` each rank takes every W-th row and writes its own
shards (RRR = rank). Training refuses a cache made with other encoders or layers, and a row
whose audio path or segment changed since extraction counts as not cached.

fp16 halves the disk of fp32 at a relative error near 1e-3 on the states; a state that is
not finite in fp16 (an overflow) is stored in fp32 instead.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from alarm.audio import AudioError, load_audio
from alarm.corpus.schema import SourceRecord
from alarm.io import atomic_open, atomic_path
from alarm.modeling.inputs import AudioBatch
from alarm.training.data import UNREADABLE_AUDIO, Rejection, worker_context
from alarm.training.report import RejectsLog

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def manifest_for(model: Any, dtype: str, kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """What identifies a cache: the frozen encoders it holds (spec = kind, layers, weights, seed, window).

    ``kinds`` (default: all of the model's) may name a subset: a partial cache, e.g. the
    heavy Whisper states only, with the other encoders run online during training.
    """
    chosen = list(model.encoders) if kinds is None else list(kinds)
    unknown = [k for k in chosen if k not in model.encoders]
    if unknown or not chosen:
        raise ValueError(f"encoders {unknown or chosen} are not among the model's {list(model.encoders)}")
    return {
        "format": FORMAT_VERSION,
        "dtype": dtype,
        "encoders": {kind: model.encoders[kind].spec.to_dict() for kind in chosen},
    }


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of the cache in ``directory``, checked for this code's format."""
    path = os.path.join(os.fspath(directory), "manifest.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{os.fspath(directory)} is not a feature cache (no manifest.json)")
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{os.fspath(directory)}: cache format {manifest.get('format')}, expected {FORMAT_VERSION}")
    return manifest


def _source(record: SourceRecord) -> list[Any]:
    return [record.audio_path, round(record.offset_s, 6), round(record.duration_s, 6)]


def _atomic_json(data: Any, path: str) -> None:
    with atomic_open(path) as f:
        json.dump(data, f)


def _read_index(shard_dir: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """{id: (shard file, entry)} over all finished shards."""
    index = {}
    if not os.path.isdir(shard_dir):
        return index
    for name in sorted(os.listdir(shard_dir)):
        if name.endswith(".json") and not name.startswith(".tmp-"):
            with open(os.path.join(shard_dir, name), encoding="utf-8") as f:
                entries = json.load(f)
            tensors = os.path.join(shard_dir, name[: -len(".json")] + ".safetensors")
            index.update({sid: (tensors, entry) for sid, entry in entries.items()})
    return index


class FeatureCache:
    """Read side of the cache (used by training, also inside DataLoader workers)."""

    def __init__(self, directory: str | os.PathLike[str], model: Any | None = None) -> None:
        """Open ``directory``; with ``model``, refuse a cache of other encoders or layers.

        The cache may hold a subset of the model's encoders (:attr:`kinds`); each one it
        holds must be exactly the model's.
        """
        self.directory = os.fspath(directory)
        self.manifest = read_manifest(self.directory)
        self.kinds: list[str] = list(self.manifest["encoders"])
        if model is not None:
            foreign = [k for k in self.kinds if k not in model.encoders]
            if foreign:
                raise ValueError(f"{self.directory} holds encoders {foreign} that the model does not have")
            ours = manifest_for(model, self.manifest["dtype"], self.kinds)["encoders"]
            if ours != self.manifest["encoders"]:
                raise ValueError(
                    f"{self.directory} was extracted for other encoders: cache {self.manifest['encoders']}, "
                    f"model {ours}"
                )
        self.index = _read_index(os.path.join(self.directory, "shards"))
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict[str, Any]:
        # Open file handles do not pickle; a worker started with spawn opens its own.
        return {**self.__dict__, "_handles": {}}

    def has(self, record: SourceRecord) -> bool:
        """Whether the record is cached for exactly its current audio segment."""
        found = self.index.get(record.id)
        return found is not None and found[1]["source"] == _source(record)

    def load(self, sample_id: str) -> tuple[dict[int, int], dict[str, torch.Tensor]]:
        """Sample counts per rate and the states ``{kind: (L, T, D)}`` of one sample."""
        shard, entry = self.index[sample_id]
        if os.getpid() != self._pid:  # a forked worker opens its own handles
            self._handles, self._pid = {}, os.getpid()
        handle = self._handles.get(shard)
        if handle is None:
            handle = self._handles[shard] = safe_open(shard, framework="pt")
        states = {kind: handle.get_tensor(f"{sample_id}/{kind}") for kind in self.kinds}
        return {int(rate): int(n) for rate, n in entry["samples"].items()}, states


# -- extraction ----------------------------------------------------------------------------


class _AudioDataset(Dataset):
    def __init__(self, records: Sequence[SourceRecord], audio_root: str, rates: Sequence[int], max_seconds: float):
        self.records, self.audio_root, self.rates, self.max_seconds = records, audio_root, rates, max_seconds

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[SourceRecord, Any]:
        record = self.records[i]
        try:
            wave = load_audio(
                os.path.join(self.audio_root, record.audio_path),
                offset_s=record.offset_s,
                duration_s=record.duration_s,
                max_seconds=self.max_seconds,
            )
        except AudioError as err:
            return record, Rejection(record.id, UNREADABLE_AUDIO, str(err))
        return record, wave


@dataclass(frozen=True)
class ExtractResult:
    written: int
    already_cached: int
    rejected: int


class _ShardWriter:
    """Collects per-sample states and writes a shard (tensors, then sidecar) when full."""

    def __init__(self, shard_dir: str, rank: int, max_bytes: int) -> None:
        self.shard_dir, self.rank, self.max_bytes = shard_dir, rank, max_bytes
        done = [n for n in os.listdir(shard_dir) if n.startswith(f"part-{rank:03d}-") and n.endswith(".json")]
        self.next_number = 1 + max((int(n[9:14]) for n in done), default=-1)
        self.tensors: dict[str, torch.Tensor] = {}
        self.entries: dict[str, Any] = {}
        self.bytes = 0

    def add(self, record: SourceRecord, samples: dict[int, int], states: dict[str, torch.Tensor]) -> None:
        for kind, hidden in states.items():
            self.tensors[f"{record.id}/{kind}"] = hidden
            self.bytes += hidden.numel() * hidden.element_size()
        self.entries[record.id] = {"samples": {str(r): n for r, n in samples.items()}, "source": _source(record)}
        if self.bytes >= self.max_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.entries:
            return
        stem = os.path.join(self.shard_dir, f"part-{self.rank:03d}-{self.next_number:05d}")
        with atomic_path(stem + ".safetensors") as tmp:
            save_file(self.tensors, tmp, metadata={"format": str(FORMAT_VERSION)})
        _atomic_json(self.entries, stem + ".json")  # the shard counts as written from here on
        self.next_number += 1
        self.tensors, self.entries, self.bytes = {}, {}, 0


def _store_dtype(hidden: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    stored = hidden.to(dtype)
    if not bool(torch.isfinite(stored).all()):  # fp16 overflow: keep this sample exact instead
        return hidden.float().clone()
    return stored.clone()


@torch.no_grad()
def extract_features(
    model: Any,
    records: Sequence[SourceRecord],
    *,
    audio_root: str,
    out: str | os.PathLike[str],
    dtype: str = "float16",
    batch_size: int = 8,
    shard_megabytes: int = 1024,
    num_workers: int = 2,
    max_audio_seconds: float = 600.0,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    encoders: Sequence[str] | None = None,
) -> ExtractResult:
    """Run the frozen encoders over ``records`` and store their selected layers (see module doc).

    ``encoders`` (default: all) names the encoders to cache; training runs the others online.
    Resumable: ids already in a finished shard are skipped. Returns counts of this run.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    out = os.fspath(out)
    shard_dir = os.path.join(out, "shards")
    os.makedirs(shard_dir, exist_ok=True)
    manifest = manifest_for(model, dtype, encoders)
    kinds = list(manifest["encoders"])
    manifest_path = os.path.join(out, "manifest.json")
    if os.path.isfile(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            existing = json.load(f)
        if existing != manifest:
            raise ValueError(f"{out} holds a cache of other encoders or dtype: {existing}; refusing to mix")
    elif rank == 0:
        _atomic_json(manifest, manifest_path)

    index = _read_index(shard_dir)
    mine = list(records)[rank::world_size]
    todo = [r for r in mine if not (r.id in index and index[r.id][1]["source"] == _source(r))]
    todo.sort(key=lambda r: r.duration_s)  # similar lengths per batch: less padding in the encoders
    already = len(mine) - len(todo)
    log.info("feature cache %s: %d rows for rank %d, %d already cached", out, len(mine), rank, already)

    device = next(model.encoders[kinds[0]].parameters()).device
    rejects = RejectsLog(os.path.join(out, "rejects.jsonl" if world_size == 1 else f"rejects-rank{rank}.jsonl"))
    writer = _ShardWriter(shard_dir, rank, shard_megabytes * 2**20)
    loader = DataLoader(
        _AudioDataset(todo, audio_root, model.sample_rates, max_audio_seconds),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=list,
        multiprocessing_context=worker_context("auto", num_workers),
    )
    written = rejected = 0
    for items in tqdm(loader, desc="extracting", disable=not progress or rank != 0):
        good = [(r, w) for r, w in items if not isinstance(w, Rejection)]
        for _, bad in ((r, w) for r, w in items if isinstance(w, Rejection)):
            rejects.add(bad)
            rejected += 1
        if not good:
            continue
        audio = AudioBatch.from_waveforms([w for _, w in good], model.sample_rates).to(device)
        per_kind = {kind: model.encoders[kind].encode(*audio.at(model.encoders[kind].sample_rate)) for kind in kinds}
        for b, (record, _) in enumerate(good):
            samples = {rate: int(n[b]) for rate, n in audio.lengths.items()}
            states = {
                kind: _store_dtype(hidden[:, b, : int(frames[b])].cpu(), DTYPES[dtype])
                for kind, (hidden, frames) in per_kind.items()
            }
            writer.add(record, samples, states)
            written += 1
    writer.flush()
    return ExtractResult(written, already, rejected)
