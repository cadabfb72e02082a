"""Merge collected source records with the released ALARM-Corpora prompts and responses.

The official ``scripts/alarm/merge_with_online_alarm_corpora.py`` joins the released rows
(``Blinorot/ALARM-Corpora``, no audio) with the locally collected datasets by the key
``(dataset_name, unique_id_1, unique_id_2)``; by default it takes the ``raw_train`` /
``raw_validation`` splits, with ``--merge-filtered`` the filtered ``train`` / ``validation``.
The released columns (``upload_dataset.py``): ``dataset_name``, ``context`` (the chosen
prompt; HeySQuAD's passage, InstructS2S's earlier turns), ``audio_description`` (the
metadata the responses were written from), ``llm_answer_with_context`` (the target),
``llm_answer_no_context`` (HeySQuAD's answer to the question alone, else empty),
``unique_id_1``, ``unique_id_2``, ``dataset_index``.

Here the released files are a local copy of that dataset (Parquet or JSONL files named by
split, as the Hub stores them: ``data/raw_train-00000-of-00003.parquet``); nothing is fetched.
Our source records do not carry the official unique ids, so a keys file maps each record id
to them. Unmatched rows on either side go to the rejects file with their reason, never
silently dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alarm import io as atomic
from alarm.corpus.schema import CorpusRecord, RecordError, SourceRecord, read_records, write_jsonl, write_parquet

RELEASED = "Blinorot/ALARM-Corpora"
COLUMNS = (
    "dataset_name",
    "context",
    "audio_description",
    "llm_answer_with_context",
    "llm_answer_no_context",
    "unique_id_1",
    "unique_id_2",
    "dataset_index",
)
#: released split -> our split, per ``splits`` setting (official default: raw).
SPLITS: dict[str, dict[str, str]] = {
    "raw": {"raw_train": "train", "raw_validation": "validation"},
    "filtered": {"train": "train", "validation": "validation"},
}
_SPLIT_OF_FILE = re.compile(r"^(raw_train|raw_validation|train|validation)(?=[-.])")
#: our collector name -> the official dataset name, where they differ.
OFFICIAL_DATASET_NAMES = {"ami": "amicorpus", "asvspoof2019": "asvspoof19"}
#: datasets whose responses were not rephrased (the released answer is R0 itself).
UNREPHRASED = ("heysquad_human", "instructs2s")

Key = tuple[str, str, str]


@dataclass(frozen=True)
class MergeConfig:
    """``sources``: our records; ``released``: files or folders of the released dataset;
    ``keys``: JSONL of ``{id, unique_id_1, unique_id_2[, dataset_name]}`` per source id."""

    sources: tuple[str, ...]
    released: tuple[str, ...]
    keys: str
    out: str
    rejects: str | None = None
    splits: Literal["raw", "filtered"] = "raw"

    def __post_init__(self) -> None:
        if self.splits not in SPLITS:
            raise ValueError(f"splits is one of {sorted(SPLITS)}, got {self.splits!r}")
        if not self.out.endswith((".jsonl", ".parquet")):
            raise ValueError(f"--out {self.out}: expected a .jsonl or .parquet file")

    @property
    def rejects_path(self) -> Path:
        out = Path(self.out)
        return Path(self.rejects) if self.rejects else out.with_name(out.name.split(".")[0] + ".rejects.jsonl")


@dataclass
class MergeSummary:
    merged: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"merged": self.merged, "rejected": dict(sorted(self.rejected.items()))}


def released_files(paths: tuple[str, ...], splits: str) -> list[tuple[str, Path]]:
    """(released split, file) of every Parquet/JSONL file of the chosen splits, in name order."""
    files: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            files += sorted(p for p in given.rglob("*") if p.suffix in (".parquet", ".jsonl"))
        elif given.is_file():
            files.append(given)
        else:
            raise ValueError(f"released data {given}: no such file or folder")
    chosen = []
    for path in files:
        match = _SPLIT_OF_FILE.match(path.name)
        if match is None:
            raise ValueError(
                f"released file {path}: its name names no split (raw_train, raw_validation, train, validation)"
            )
        if match.group(1) in SPLITS[splits]:
            chosen.append((match.group(1), path))
    if not chosen:
        raise ValueError(f"released data {list(paths)}: no file of the {splits} splits {sorted(SPLITS[splits])}")
    return chosen


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as f:
            missing = set(COLUMNS) - set(f.schema_arrow.names)
            if missing:
                raise ValueError(f"released file {path}: missing columns {sorted(missing)}")
            for batch in f.iter_batches(columns=list(COLUMNS), batch_size=4096):
                yield from batch.to_pylist()
        return
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                row = json.loads(line)
                missing = set(COLUMNS) - set(row)
                if missing:
                    raise ValueError(f"released file {path}:{line_no}: missing columns {sorted(missing)}")
                yield row


def load_keys(path: str) -> dict[str, Key]:
    """Our record id -> the official key; the dataset name defaults to the official name of ours."""
    keys: dict[str, Key] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not {"id", "unique_id_1", "unique_id_2"} <= set(row):
                raise ValueError(f"keys file {path}:{line_no}: needs id, unique_id_1, unique_id_2")
            ours = row["id"].split("/", 1)[0]
            name = row.get("dataset_name") or OFFICIAL_DATASET_NAMES.get(ours, ours)
            keys[row["id"]] = (str(name), str(row["unique_id_1"]), str(row["unique_id_2"]))
    return keys


def _key(row: dict[str, Any]) -> Key:
    # str() as the official collectors store both ids as strings; a local copy may have typed them.
    return (str(row["dataset_name"]), str(row["unique_id_1"]), str(row["unique_id_2"]))


def _merged(source: SourceRecord, row: dict[str, Any], split: str, released_split: str, path: Path) -> CorpusRecord:
    """The corpus record of one source record and its released row.

    HeySQuAD's "NoContext" use (a record with no context) takes ``llm_answer_no_context`` and
    no text, as the official ``hf_dataset.py``; every other record ``llm_answer_with_context``
    and the released ``context`` as its text.
    """
    no_context = not source.context and bool(row["llm_answer_no_context"])
    answer = row["llm_answer_no_context"] if no_context else row["llm_answer_with_context"]
    if not answer:
        raise RecordError("the released row has an empty answer")
    fields = {k: v for k, v in source.to_dict().items() if k in SourceRecord.__dataclass_fields__}
    return CorpusRecord(
        **{**fields, "split": split, "metadata": row["audio_description"]},
        prompt="" if no_context else (row["context"] or ""),
        # R0 is not released for rephrased datasets; unrephrased ones were trained on R0 itself.
        response_raw=answer if source.dataset in UNREPHRASED else "",
        response=answer,
        provenance={
            "source": "released",
            "released": {
                "corpus": RELEASED,
                "split": released_split,
                "file": path.name,
                "dataset_name": row["dataset_name"],
                "unique_id_1": str(row["unique_id_1"]),
                "unique_id_2": str(row["unique_id_2"]),
                "dataset_index": row["dataset_index"],
                "answer_column": "llm_answer_no_context" if no_context else "llm_answer_with_context",
            },
        },
    )


def merge_released(config: MergeConfig) -> MergeSummary:
    """Write the merged corpus and the rejects file; returns the counts."""
    keys = load_keys(config.keys)
    summary, rejects, merged = MergeSummary(), [], []

    def reject(side: str, ident: str, reason: str, detail: str = "") -> None:
        rejects.append({"side": side, "id": ident, "reason": reason, "detail": detail})
        summary.rejected[reason] = summary.rejected.get(reason, 0) + 1

    by_key: dict[Key, list[SourceRecord]] = {}
    for path in config.sources:
        for record in read_records(path):
            key = keys.get(record.id)
            if key is None:
                reject("source", record.id, "no_released_key", "the keys file does not map this id")
            else:
                by_key.setdefault(key, []).append(record)  # HeySQuAD's two uses share a key

    done: set[str] = set()
    for released_split, path in released_files(config.released, config.splits):
        split = SPLITS[config.splits][released_split]
        for row in _rows(path):
            key = _key(row)
            sources = by_key.get(key)
            if not sources:
                reject(
                    "released", "/".join(key), "no_source_record", f"{path.name} dataset_index {row['dataset_index']}"
                )
                continue
            for source in sources:
                if source.id in done:
                    reject("released", "/".join(key), "duplicate_released_key", f"{source.id} already merged")
                    continue
                try:
                    merged.append(_merged(source, row, split, released_split, path))
                except RecordError as err:
                    reject("source", source.id, "empty_released_answer", str(err))
                done.add(source.id)
    for sources in by_key.values():
        for source in sources:
            if source.id not in done:
                reject("source", source.id, "not_in_released", f"no row of the {config.splits} splits has its key")

    out = str(config.out)
    (write_parquet if out.endswith(".parquet") else write_jsonl)(merged, out)
    atomic.write_jsonl(config.rejects_path, rejects)
    summary.merged = len(merged)
    return summary
