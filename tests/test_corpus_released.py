"""`alarm corpus merge-released`: our source records joined with a fabricated released ALARM-Corpora copy."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from alarm.cli import main
from alarm.corpus.schema import SourceRecord, read_records, write_jsonl


def _source(id_, dataset, category="speech", context=()):
    return SourceRecord(id_, dataset, category, "train", f"{id_}.wav", 0.0, 2.0, "our metadata", context)


def _released_row(dataset, uid1, uid2, index, context, answer, no_context=""):
    return {
        "dataset_name": dataset,
        "context": context,
        "audio_description": f"[00:00-00:02] released {uid2} (duration: 2s)",
        "llm_answer_with_context": answer,
        "llm_answer_no_context": no_context,
        "unique_id_1": uid1,
        "unique_id_2": uid2,
        "dataset_index": index,
    }


def _layout(tmp_path):
    """Sources, keys and a released copy in the Hub's layout (data/<split>-NNNNN-of-NNNNN.parquet)."""
    sources = [
        _source("vctk/p225_001", "vctk"),
        _source("ami/ES2002a_0", "ami"),  # official name: amicorpus
        _source("heysquad_human/q1/question", "heysquad_human", "instruction"),
        _source("heysquad_human/q1/context", "heysquad_human", "instruction", ({"role": "user", "content": "P"},)),
        _source("vctk/p225_002", "vctk"),  # has a key, no released row
        _source("vctk/p225_003", "vctk"),  # no key
    ]
    write_jsonl(sources, tmp_path / "S.jsonl")
    keys = [
        {"id": "vctk/p225_001", "unique_id_1": "p225", "unique_id_2": "p225_001"},
        {"id": "ami/ES2002a_0", "unique_id_1": "ES2002a", "unique_id_2": "0"},
        {"id": "heysquad_human/q1/question", "unique_id_1": "q1", "unique_id_2": "False"},
        {"id": "heysquad_human/q1/context", "unique_id_1": "q1", "unique_id_2": "False"},
        {"id": "vctk/p225_002", "unique_id_1": "p225", "unique_id_2": "p225_002"},
    ]
    (tmp_path / "keys.jsonl").write_text("".join(json.dumps(k) + "\n" for k in keys))
    data = tmp_path / "ALARM-Corpora" / "data"
    data.mkdir(parents=True)
    raw = [
        _released_row("vctk", "p225", "p225_001", 0, "Who speaks?", "<think>x</think>A woman."),
        _released_row("amicorpus", "ES2002a", "0", 1, "How many?", "Three."),
        _released_row("heysquad_human", "q1", "False", 2, "P", "With the passage.", "From the question."),
        _released_row("gtzan", "genre: jazz", "j1", 3, "Genre?", "Jazz."),  # we collected no gtzan
    ]
    pq.write_table(pa.Table.from_pylist(raw[:2]), data / "raw_train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(raw[2:]), data / "raw_train-00001-of-00002.parquet")
    filtered = [_released_row("vctk", "p225", "p225_001", 0, "Who speaks?", "<think>x</think>A woman.")]
    pq.write_table(pa.Table.from_pylist(filtered), data / "validation-00000-of-00001.parquet")
    return data.parent


def _run(tmp_path, *extra):
    released = _layout(tmp_path)
    out = tmp_path / "C.jsonl"
    args = ["corpus", "merge-released", "--source", str(tmp_path / "S.jsonl"), "--released", str(released)]
    assert main([*args, "--keys", str(tmp_path / "keys.jsonl"), "--out", str(out), *extra]) == 0
    merged = {r.id: r for r in read_records(out)}
    rejects = [json.loads(line) for line in (tmp_path / "C.rejects.jsonl").read_text().splitlines()]
    return merged, rejects


def test_merge_joins_by_dataset_name_and_unique_ids_and_reports_both_sides(tmp_path, capsys):
    merged, rejects = _run(tmp_path)
    assert set(merged) == {"vctk/p225_001", "ami/ES2002a_0", "heysquad_human/q1/question", "heysquad_human/q1/context"}
    vctk = merged["vctk/p225_001"]
    assert vctk.prompt == "Who speaks?" and vctk.response == "<think>x</think>A woman." and vctk.response_raw == ""
    assert vctk.metadata == "[00:00-00:02] released p225_001 (duration: 2s)"  # the text the response came from
    assert vctk.audio_path == "vctk/p225_001.wav" and vctk.split == "train"
    released = vctk.provenance["released"]
    assert vctk.provenance["source"] == "released" and released["split"] == "raw_train"
    assert (released["dataset_name"], released["unique_id_1"], released["dataset_index"]) == ("vctk", "p225", 0)
    assert merged["ami/ES2002a_0"].response == "Three."
    # HeySQuAD: the question alone gets the no-context answer and no text; with the passage, the other
    alone, passage = merged["heysquad_human/q1/question"], merged["heysquad_human/q1/context"]
    assert (alone.prompt, alone.response, alone.response_raw) == ("", "From the question.", "From the question.")
    assert (passage.prompt, passage.response) == ("P", "With the passage.")
    reasons = {(r["side"], r["id"]): r["reason"] for r in rejects}
    assert reasons == {
        ("source", "vctk/p225_003"): "no_released_key",
        ("source", "vctk/p225_002"): "not_in_released",
        ("released", "gtzan/genre: jazz/j1"): "no_source_record",
    }
    summary = json.loads(capsys.readouterr().out)
    assert summary["merged"] == 4 and sum(summary["rejected"].values()) == 3


def test_filtered_splits_take_the_released_train_and_validation(tmp_path, capsys):
    merged, rejects = _run(tmp_path, "--splits", "filtered")
    assert list(merged) == ["vctk/p225_001"] and merged["vctk/p225_001"].split == "validation"
    assert merged["vctk/p225_001"].provenance["released"]["split"] == "validation"
    assert {r["reason"] for r in rejects} == {"no_released_key", "not_in_released"}


def test_a_released_file_without_the_official_columns_is_refused(tmp_path, capsys):
    _layout(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.Table.from_pylist([{"dataset_name": "vctk", "prompt": "x"}]), bad / "raw_train-0.parquet")
    args = ["corpus", "merge-released", "--source", str(tmp_path / "S.jsonl"), "--released", str(bad)]
    assert main([*args, "--keys", str(tmp_path / "keys.jsonl"), "--out", str(tmp_path / "C.jsonl")]) == 2
    assert "missing columns" in capsys.readouterr().err
