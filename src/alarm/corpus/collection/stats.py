"""Corpus statistics, the paper's Table 1: instances, hours, unique audio and prompts per row and split."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from alarm.corpus.schema import CATEGORIES, RecordError

STAT_SPLITS = ("total", "train", "validation")


@dataclass
class _Tally:
    instances: int = 0
    seconds: float = 0.0
    audio: set[int] = field(default_factory=set)
    prompts: set[int] = field(default_factory=set)


@dataclass
class CorpusStats:
    """Instances, hours, unique audio files and unique prompts per category (or dataset) and split.

    Unique prompts only exist for generated corpus rows (those with a ``prompt``);
    ``has_prompts`` says whether any row had one.
    """

    rows: dict[str, dict[str, _Tally]] = field(default_factory=dict)
    has_prompts: bool = False

    def add(self, key: str, split: str, seconds: float, audio: str, prompt: str | None) -> None:
        tallies = self.rows.setdefault(key, {s: _Tally() for s in STAT_SPLITS})
        # Stable within a run is all that is needed: hashes keep memory flat for millions of rows.
        audio_key, prompt_key = hash(audio), hash(prompt) if prompt else None
        for name in ("total", split):
            tally = tallies.setdefault(name, _Tally())
            tally.instances += 1
            tally.seconds += seconds
            tally.audio.add(audio_key)
            if prompt_key is not None:
                tally.prompts.add(prompt_key)
        if prompt_key is not None:
            self.has_prompts = True

    def table(self) -> list[dict[str, Any]]:
        """One dict per row (plus ``Total``): ``{name, instances, hours, unique_audio, unique_prompts}``,
        each value a ``{total, train, validation}`` dict."""
        out = []
        total: dict[str, _Tally] = {s: _Tally() for s in STAT_SPLITS}
        for key in self.rows:
            out.append(self._row(key, self.rows[key]))
            for split, tally in self.rows[key].items():
                t = total.setdefault(split, _Tally())
                t.instances += tally.instances
                t.seconds += tally.seconds
                t.audio |= tally.audio
                t.prompts |= tally.prompts
        out.append(self._row("Total", total))
        return out

    def _row(self, name: str, tallies: Mapping[str, _Tally]) -> dict[str, Any]:
        def per(fn: Callable[[_Tally], Any]) -> dict[str, Any]:
            return {s: fn(tallies.get(s, _Tally())) for s in STAT_SPLITS}

        row = {
            "name": name,
            "instances": per(lambda t: t.instances),
            "hours": per(lambda t: round(t.seconds / 3600.0, 4)),
            "unique_audio": per(lambda t: len(t.audio)),
        }
        if self.has_prompts:
            row["unique_prompts"] = per(lambda t: len(t.prompts))
        return row


def _stat_rows(path: str) -> Iterator[Mapping[str, Any]]:
    """The few columns statistics need, without building full records (corpora are large)."""
    wanted = ["dataset", "category", "split", "audio_path", "offset_s", "duration_s", "prompt"]
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        shard = pq.ParquetFile(path)
        columns = [c for c in wanted if c in shard.schema_arrow.names]
        for batch in shard.iter_batches(columns=columns, batch_size=65_536):
            yield from batch.to_pylist()
    elif path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as err:
                        raise RecordError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
    else:
        raise RecordError(f"{path}: expected a .jsonl or .parquet file")


def corpus_stats(paths: Iterable[str | os.PathLike[str]], by: str = "category") -> CorpusStats:
    """Table 1 of the paper over record files (source manifests or generated corpus shards).

    ``by`` is ``category`` (the paper's rows, in the paper's order) or ``dataset``. A unique
    audio file is a distinct ``audio_path`` (segments of one file count once).
    """
    if by not in ("category", "dataset"):
        raise ValueError(f"by must be 'category' or 'dataset', got {by!r}")
    stats = CorpusStats()
    if by == "category":  # the paper's row order; categories that do not occur are dropped below
        stats.rows = {c: {s: _Tally() for s in STAT_SPLITS} for c in CATEGORIES}
    for path in paths:
        for n, row in enumerate(_stat_rows(os.fspath(path)), 1):
            try:
                key, split = str(row[by]), str(row["split"])
                seconds = float(row["duration_s"])
            except (KeyError, TypeError, ValueError):
                raise RecordError(f"{path}: row {n} lacks {by}/split/duration_s") from None
            stats.add(key, split, seconds, f"{row.get('dataset')}:{row.get('audio_path')}", row.get("prompt"))
    stats.rows = {k: v for k, v in stats.rows.items() if v["total"].instances}
    if by == "dataset":
        stats.rows = dict(sorted(stats.rows.items()))
    return stats
