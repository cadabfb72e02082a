"""Corpus records: validation and JSONL / Parquet round trips."""

import pytest

from alarm.corpus.schema import CorpusRecord, RecordError, SourceRecord, read_records, write_jsonl, write_parquet

SOURCE = dict(
    id="vctk/p225_001",
    dataset="vctk",
    category="speech",
    split="train",
    audio_path="wav48/p225_001.flac",
    offset_s=0.0,
    duration_s=2.5,
    metadata="gender: female; accent: English; transcript: Please call Stella.",
)


def _corpus(**over):
    return CorpusRecord(
        **{
            **SOURCE,
            "prompt": "Who speaks?",
            "response": "<think>x</think>\n\nA woman.",
            "response_raw": "<think>meta</think>\n\nA woman.",
            "rephrase_reasoning": "r",
            "prompt_candidates": ({"text": "Who speaks?", "kept": True, "reason": ""},),
            "context": ({"role": "user", "content": "hi"},),
            "provenance": {"rlm": "tiny", "seed": 3, "budget": 1536},
            **over,
        }
    )


@pytest.mark.parametrize("writer,suffix", [(write_jsonl, ".jsonl"), (write_parquet, ".parquet")])
def test_round_trip(tmp_path, writer, suffix):
    for records in ([SourceRecord(**SOURCE)], [_corpus(), _corpus(id="vctk/p225_002", provenance={"other": [1]})]):
        path = tmp_path / f"shard{suffix}"
        assert writer(records, path) == len(records)
        back = list(read_records(path))
        assert back == records and all(type(b) is type(r) for b, r in zip(back, records))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("id", "other/x", "id must look like"),
        ("category", "noise", "category"),
        ("split", "test", "split"),
        ("audio_path", "/abs/a.wav", "relative"),
        ("audio_path", "../a.wav", "relative"),
        ("duration_s", 0.0, "duration"),
        ("context", ({"role": "bot", "content": "x"},), "context turn"),
    ],
)
def test_bad_records_name_the_field(field, value, message):
    with pytest.raises(RecordError, match=message):
        SourceRecord(**{**SOURCE, field: value})


def test_unknown_and_missing_fields_and_bad_json(tmp_path):
    with pytest.raises(RecordError, match="unknown fields"):
        SourceRecord.from_dict({**SOURCE, "speaker": "p225"})
    with pytest.raises(RecordError, match="missing fields"):
        SourceRecord.from_dict({k: v for k, v in SOURCE.items() if k != "metadata"})
    bad = tmp_path / "bad.jsonl"
    write_jsonl([SourceRecord(**SOURCE)], bad)
    bad.write_text(bad.read_text() + "{not json\n")
    with pytest.raises(RecordError, match=r"bad.jsonl:2: not valid JSON"):
        list(read_records(bad))
    with pytest.raises(RecordError, match="one record type"):
        write_parquet([SourceRecord(**SOURCE), _corpus()], tmp_path / "mixed.parquet")
    with pytest.raises(RecordError, match="prompt candidate"):
        _corpus(prompt_candidates=({"text": "x"},))
