"""The files of a corpus build: one shard's outputs and rejects per stage, and merging shards.

Layout (see :mod:`alarm.corpus.pipeline`): ``<stage dir>/<shard tag>-<chunk>.parquet`` (the
last stage's dir is ``corpus/``), ``rejects/<stage>/<shard tag>-<chunk>.jsonl``,
``done-<tag>.json`` for a finished shard; :func:`merge` writes ``data/<split>-*.parquet`` and
``rejects.jsonl``. Every file is written atomically.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from alarm.corpus.prompts import (
    stable_seed,
)
from alarm.corpus.schema import CorpusRecord, RecordError, read_records, write_parquet
from alarm.corpus.stages import STAGES
from alarm.io import atomic_open, write_text

if TYPE_CHECKING:  # a shard's files are checked against the settings that made them
    from alarm.corpus.pipeline import BuildConfig

log = logging.getLogger(__name__)

CORPUS_DIR = "corpus"


def shard_of(record_id: str, num_shards: int) -> int:
    """The shard an id belongs to (stable across machines and runs)."""
    return stable_seed("shard", record_id) % num_shards


def shard_tag(index: int, num_shards: int) -> str:
    return f"s{index:05d}of{num_shards:05d}"


# -- files ------------------------------------------------------------------------------------------


def utc_now() -> str:
    """The time now, UTC, to the second: the timestamps of records, markers and merges."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_jsonl(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class ShardFiles:
    """The files one shard owns in an output directory (see the module docstring)."""

    def __init__(self, root: str, num_shards: int, shard_index: int) -> None:
        self.root = root
        self.num_shards = num_shards
        self.tag = shard_tag(shard_index, num_shards)

    def stage_dir(self, stage: str) -> str:
        return os.path.join(self.root, CORPUS_DIR if stage == STAGES[-1] else os.path.join("stages", stage))

    def reject_dir(self, stage: str) -> str:
        return os.path.join(self.root, "rejects", stage)

    def outputs(self, stage: str) -> list[str]:
        return sorted(glob.glob(os.path.join(self.stage_dir(stage), f"{self.tag}-*.parquet")))

    def rejects(self, stage: str) -> list[str]:
        return sorted(glob.glob(os.path.join(self.reject_dir(stage), f"{self.tag}-*.jsonl")))

    def read_outputs(self, stage: str) -> Iterator[CorpusRecord]:
        for path in self.outputs(stage):
            yield from read_records(path)  # type: ignore[misc]

    def output_ids(self, stage: str) -> Iterator[str]:
        """Ids of a stage's outputs, file by file (only the id column is read)."""
        import pyarrow.parquet as pq

        for path in self.outputs(stage):
            yield from pq.read_table(path, columns=["id"]).column("id").to_pylist()

    def output_rows(self, stage: str) -> int:
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.outputs(stage))

    def done_ids(self, stage: str) -> set[str]:
        ids = set(self.output_ids(stage))
        ids.update(row["id"] for p in self.rejects(stage) for row in read_jsonl(p))
        return ids

    def commit(self, stage: str, accepted: Sequence[CorpusRecord], rejected: Sequence[dict[str, Any]]) -> None:
        """Write one chunk's records and rejects, each file atomically."""
        names = [os.path.basename(p).rsplit(".", 1)[0] for p in self.outputs(stage) + self.rejects(stage)]
        index = 1 + max((int(n.rsplit("-", 1)[1]) for n in names), default=-1)
        name = f"{self.tag}-{index:05d}"
        if accepted:
            write_parquet(accepted, os.path.join(self.stage_dir(stage), f"{name}.parquet"))
        if rejected:
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejected)
            write_text(os.path.join(self.reject_dir(stage), f"{name}.jsonl"), lines)

    def clean_temp(self) -> int:
        """Remove temp files a killed run of this shard left behind (never another shard's)."""
        stale = glob.glob(os.path.join(self.root, "**", f".tmp-*{self.tag}*"), recursive=True)
        for path in stale:
            os.unlink(path)
        return len(stale)

    @property
    def done_marker(self) -> str:
        return os.path.join(self.root, f"done-{self.tag}.json")

    def check_config(self, config: BuildConfig) -> None:
        """Refuse to resume an output built with other settings (or another shard count)."""
        path = os.path.join(self.root, "build.json")
        mine = config.fingerprint()
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                theirs = json.load(f)
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if diff:
                raise ValueError(
                    f"{self.root} was built with other settings ({', '.join(diff)} differ); "
                    "use a new output directory or the original settings"
                )
        else:
            write_text(path, json.dumps(mine, indent=2, ensure_ascii=False) + "\n")


# -- merging shards ---------------------------------------------------------------------------------------


def corpus_files(directory: str) -> list[str]:
    """The corpus Parquet files of a build directory (``corpus/``) or a merged one (``data/``)."""
    for sub in (CORPUS_DIR, "data"):
        found = sorted(glob.glob(os.path.join(directory, sub, "*.parquet")))
        if found:
            return found
    return []


def iter_reject_rows(directory: str) -> Iterator[dict[str, Any]]:
    """Every reject of a build directory (``rejects/<stage>/``) or a merged one (``rejects.jsonl``), streamed."""
    merged = os.path.join(directory, "rejects.jsonl")
    paths = sorted(glob.glob(os.path.join(directory, "rejects", "*", "*.jsonl")))
    paths = [merged] if os.path.exists(merged) else paths
    for path in paths:
        with open(path, encoding="utf-8") as f:
            yield from (json.loads(line) for line in f if line.strip())


def reject_rows(directory: str) -> list[dict[str, Any]]:
    """Every reject of a build directory or a merged one, as a list."""
    return list(iter_reject_rows(directory))


def merge(
    inputs: Sequence[str], output: str, *, rows_per_file: int = 100_000, allow_partial: bool = False
) -> dict[str, Any]:
    """Join the corpus shards of build directories into ``output/data/<split>-NNNNN-of-NNNNN.parquet``.

    Every input must hold all its shards finished (``done-*.json``) unless ``allow_partial``;
    an id present twice is an error. Rows are sorted by id; rejects go to ``rejects.jsonl``
    (in input order). Memory is bounded by one output file of records plus the ids: pass 1
    reads only ids and splits (sorted, they give each output file's id range); pass 2 reads
    each input file once and appends its rows to the temp file of their output file; pass 3
    sorts one output file at a time and writes it.
    """
    import shutil
    import tempfile

    paths = []
    for directory in inputs:
        _check_finished(directory, allow_partial)
        paths.extend(corpus_files(directory))
    starts, counts = _output_ranges(paths, rows_per_file, inputs)
    data_dir = os.path.join(output, "data")
    os.makedirs(data_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(data_dir, "*.parquet")):
        os.unlink(stale)
    for stale in glob.glob(os.path.join(output, ".tmp-merge-*")):  # a killed merge's temp files
        shutil.rmtree(stale, ignore_errors=True)
    spill_dir = tempfile.mkdtemp(prefix=".tmp-merge-", dir=output)
    try:
        _spill(paths, starts, spill_dir)
        for split, first_ids in starts.items():
            for k in range(len(first_ids)):
                part = sorted(read_records(os.path.join(spill_dir, f"{split}-{k}.jsonl")), key=lambda r: r.id)
                write_parquet(part, os.path.join(data_dir, f"{split}-{k:05d}-of-{len(first_ids):05d}.parquet"))
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)

    n_rejects = 0
    with atomic_open(os.path.join(output, "rejects.jsonl")) as f:
        for directory in inputs:
            for row in iter_reject_rows(directory):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n_rejects += 1
    info = {"inputs": [os.path.abspath(d) for d in inputs], "records": counts, "rejects": n_rejects, "at": utc_now()}
    for directory in inputs:  # the settings travel with the merged corpus
        build_json = os.path.join(directory, "build.json")
        if os.path.exists(build_json):
            with open(build_json, encoding="utf-8") as f:
                info.setdefault("build", json.load(f))
    write_text(os.path.join(output, "merge.json"), json.dumps(info, indent=2) + "\n")
    return info


def _output_ranges(
    paths: Sequence[str], rows_per_file: int, inputs: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """(first id of each output file per split, records per split), from the id and split columns only."""
    import pyarrow.parquet as pq

    ids: dict[str, list[str]] = {"train": [], "validation": []}
    for path in paths:
        table = pq.read_table(path, columns=["id", "split"])
        for rid, split in zip(table.column("id").to_pylist(), table.column("split").to_pylist()):
            ids[split].append(rid)
    starts: dict[str, list[str]] = {}
    for split, rows in ids.items():
        rows.sort()
        for a, b in zip(rows, rows[1:]):
            if a == b:
                raise RecordError(f"record {a!r} appears twice in {', '.join(inputs)}")
        starts[split] = rows[::rows_per_file]
    return starts, {split: len(rows) for split, rows in ids.items()}


def _spill(paths: Sequence[str], starts: dict[str, list[str]], spill_dir: str) -> None:
    """Append every record to ``<spill_dir>/<split>-<k>.jsonl`` of the output file its id falls in."""
    import bisect

    spills: dict[tuple[str, int], Any] = {}
    try:
        for path in paths:
            for r in read_records(path):
                part = (r.split, bisect.bisect_right(starts[r.split], r.id) - 1)
                if part not in spills:
                    spills[part] = open(os.path.join(spill_dir, f"{part[0]}-{part[1]}.jsonl"), "w", encoding="utf-8")
                spills[part].write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    finally:
        for f in spills.values():
            f.close()


def _check_finished(directory: str, allow_partial: bool) -> None:
    markers = glob.glob(os.path.join(directory, "done-s*of*.json"))
    build_json = os.path.join(directory, "build.json")
    if not os.path.exists(build_json):
        raise ValueError(f"{directory} is not a corpus build directory (no build.json)")
    with open(build_json, encoding="utf-8") as f:
        num_shards = int(json.load(f)["num_shards"])
    done = {os.path.basename(m)[len("done-") : -len(".json")] for m in markers}
    missing = [shard_tag(i, num_shards) for i in range(num_shards) if shard_tag(i, num_shards) not in done]
    if missing and not allow_partial:
        raise ValueError(
            f"{directory}: shards not finished: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''} "
            "(run them, or merge with --allow-partial)"
        )
