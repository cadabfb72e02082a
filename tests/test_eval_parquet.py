"""MMSU's current Hugging Face release: Parquet shards with the audio inside.

The fixture is laid out as the dataset card describes it (``data/train-*`` shards; columns
``id``, ``task_name``, ``audio`` as a Hugging Face ``Audio`` struct of bytes and path,
``question``, ``choice_a``..``choice_d``, ``answer_gt``, ``category``, ``sub-category``,
``sub-sub-category``, ``linguistics_sub_discipline``) and holds the same questions and clips
as the JSON-lines fixture, so both layouts must give the same items and scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alarm.cli import main
from alarm.evaluation.benchmarks import BenchmarkError, get_benchmark, load_items
from alarm.evaluation.scoring import score
from tests.test_eval_support import MMSU_ENTRIES, build_mmsu

MMSU = get_benchmark("mmsu")
COLUMNS = (
    "id",
    "task_name",
    "question",
    "choice_a",
    "choice_b",
    "choice_c",
    "choice_d",
    "answer_gt",
    "category",
    "sub-category",
    "sub-sub-category",
    "linguistics_sub_discipline",
)
AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def parquet_rows(json_root: Path, entries: list[dict] = MMSU_ENTRIES) -> list[dict]:
    """The JSON-lines entries as Parquet rows: ``audio_path`` replaced by the clip's bytes."""
    rows = []
    for entry in entries:
        clip = json_root / entry["audio_path"].lstrip("/")
        row = {name: entry.get(name) for name in COLUMNS}
        row["audio"] = {"bytes": clip.read_bytes(), "path": clip.name}
        rows.append(row)
    return rows


def write_shards(root: Path, rows: list[dict], shards: int = 2, schema: pa.Schema | None = None) -> list[Path]:
    """Rows split over ``data/train-0000k-of-0000n.parquet`` as the Hugging Face Hub names them."""
    schema = schema or pa.schema([(name, pa.string()) for name in COLUMNS] + [("audio", AUDIO)])
    (root / "data").mkdir(parents=True, exist_ok=True)
    size = -(-len(rows) // shards)
    paths = []
    for k in range(shards):
        path = root / "data" / f"train-{k:05d}-of-{shards:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows[k * size : (k + 1) * size], schema=schema), path)
        paths.append(path)
    return paths


@pytest.fixture
def releases(tmp_path: Path) -> tuple[Path, Path]:
    """(JSON-lines release, Parquet release) with the same content."""
    json_root, parquet_root = tmp_path / "jsonl", tmp_path / "parquet"
    build_mmsu(json_root)
    write_shards(parquet_root, parquet_rows(json_root))
    return json_root, parquet_root


def _view(items) -> list[tuple]:
    return [(i.id, i.question, i.choices, i.letters, i.answer, dict(i.groups)) for i in items]


def test_parquet_release_gives_the_items_and_scores_of_the_jsonl_release(releases):
    json_root, parquet_root = releases
    from_json = load_items(MMSU, json_root)
    from_parquet = load_items(MMSU, parquet_root)
    assert _view(from_parquet) == _view(from_json)
    for item, twin in zip(from_parquet, from_json, strict=True):
        # each clip is extracted under the data folder, byte for byte
        assert item.audio == parquet_root / "_alarm_audio" / f"{item.id}.wav"
        assert item.audio.read_bytes() == twin.audio.read_bytes()
        assert "audio" not in item.record  # the bytes are not carried around
    outputs = {"s1": "B", "s2": "<answer>A</answer>", "s3": "Chocolate.", "s5": "C or D", "s6": "The answer is C"}
    for rule in ("extract", "official"):
        a = score(MMSU, from_json, outputs, rule=rule).to_dict()
        b = score(MMSU, from_parquet, outputs, rule=rule).to_dict()
        assert a == b
    assert score(MMSU, from_parquet, outputs).overall.correct == 3  # s1, s3, s6; s5 ambiguous, s2 wrong


def test_extraction_is_written_once(releases):
    _, root = releases
    load_items(MMSU, root)
    clip = root / "_alarm_audio" / "s1.wav"
    before = clip.stat()
    load_items(MMSU, root)
    after = clip.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # kept, not rewritten
    assert not list((root / "_alarm_audio").glob(".tmp-*"))


def test_cache_folder_can_be_elsewhere_and_scoring_writes_nothing(releases, tmp_path):
    _, root = releases
    items = load_items(MMSU, root, check_audio=False)
    assert len(items) == len(MMSU_ENTRIES) and not (root / "_alarm_audio").exists()
    items = load_items(MMSU, root, audio_cache=tmp_path / "out" / "clips")
    assert all(i.audio.parent == tmp_path / "out" / "clips" and i.audio.is_file() for i in items)
    # --data may also name the shards' folder or one shard
    assert len(load_items(MMSU, root / "data", check_audio=False)) == len(MMSU_ENTRIES)
    assert [i.id for i in load_items(MMSU, root / "data" / "train-00001-of-00002.parquet", check_audio=False)] == [
        "s4",
        "s5",
        "s6",
    ]


def test_jsonl_layout_wins_when_both_are_there(releases):
    json_root, _ = releases
    write_shards(json_root, parquet_rows(json_root))
    items = load_items(MMSU, json_root)
    assert items[0].audio == json_root / "audio" / "s1.wav" and not (json_root / "_alarm_audio").exists()


def test_ids_that_are_not_file_names_get_distinct_safe_files(tmp_path):
    json_root = tmp_path / "jsonl"
    build_mmsu(json_root)
    rows = parquet_rows(json_root)[:3]
    rows[0]["id"], rows[1]["id"], rows[2]["id"] = "../up", "a/b", "a_b"
    write_shards(tmp_path / "p", rows, shards=1)
    items = load_items(MMSU, tmp_path / "p")
    names = [i.audio.name for i in items]
    assert len(set(names)) == 3 and names[2] == "a_b.wav"
    assert all(i.audio.parent == tmp_path / "p" / "_alarm_audio" for i in items)


def _error(root: Path) -> str:
    with pytest.raises(BenchmarkError) as err:
        load_items(MMSU, root)
    return str(err.value)


def test_missing_column_names_file_and_column(releases, tmp_path):
    json_root, _ = releases
    rows = [{k: v for k, v in row.items() if k != "answer_gt"} for row in parquet_rows(json_root)]
    schema = pa.schema([(n, pa.string()) for n in COLUMNS if n != "answer_gt"] + [("audio", AUDIO)])
    shard = write_shards(tmp_path / "bad", rows, shards=1, schema=schema)[0]
    message = _error(tmp_path / "bad")
    assert message.startswith(f"{shard}: no column 'answer_gt' (its columns: id, task_name, question,")


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda rows: rows[1].update(audio={"bytes": b"RIFF not audio at all", "path": "s2.wav"}), "does not decode"),
        (lambda rows: rows[1].update(audio=None), "no audio in column 'audio'"),
        (lambda rows: rows[1].update(audio={"bytes": b"", "path": "s2.wav"}), "no audio in column 'audio'"),
        (lambda rows: rows[1].update(question=None), "missing or empty field 'question'"),
    ],
)
def test_bad_row_names_file_row_and_id(releases, tmp_path, mutate, expected):
    json_root, _ = releases
    rows = parquet_rows(json_root)
    mutate(rows)
    shard = write_shards(tmp_path / "bad", rows)[0]
    message = _error(tmp_path / "bad")
    assert message.startswith(f"{shard}: row 1 (id 's2'): ") and expected in message
    assert not (tmp_path / "bad" / "_alarm_audio" / "s2.wav").exists()


def test_duplicate_id_across_shards_and_unreadable_shard(releases, tmp_path):
    json_root, _ = releases
    rows = parquet_rows(json_root)
    rows[4]["id"] = "s1"
    second = write_shards(tmp_path / "dup", rows)[1]
    message = _error(tmp_path / "dup")
    assert message == f"{second}: row 1: duplicate id 's1' (first at train-00000-of-00002.parquet row 0)"
    (tmp_path / "junk" / "data").mkdir(parents=True)
    (tmp_path / "junk" / "data" / "train-00000-of-00001.parquet").write_bytes(b"not parquet")
    assert "train-00000-of-00001.parquet: not a readable Parquet file" in _error(tmp_path / "junk")


def test_cli_score_reads_either_layout(releases, tmp_path, capsys):
    predictions = tmp_path / "predictions.jsonl"
    outputs = {"s1": "B", "s3": "B", "s6": "<answer>D</answer>"}
    predictions.write_text(
        "".join(json.dumps({"id": i, "output": o, "style": "letters"}) + "\n" for i, o in outputs.items()),
        encoding="utf-8",
    )
    printed = []
    for root in releases:
        assert main(["eval", "score", "mmsu", "--predictions", str(predictions), "--data", str(root)]) == 0
        printed.append(json.loads(capsys.readouterr().out))
    assert printed[0] == printed[1] and printed[0]["overall"] == pytest.approx(200 / 3)


def test_eval_run_extracts_clips_to_the_audio_cache_flag(releases, tmp_path, capsys):
    """`alarm eval mmsu --audio-cache DIR`: a read-only release folder stays untouched."""
    _, parquet_root = releases
    cache = tmp_path / "clips"
    args = ["eval", "mmsu", "--data", str(parquet_root), "--preset", "tiny-al-whisper-r", "--out", str(tmp_path / "o")]
    args += ["--audio-cache", str(cache), "--limit", "2", "--max-new-tokens", "4", "--thinking-budget", "2"]
    assert main([*args, "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["generated"] == 2
    assert len(list(cache.iterdir())) == len(MMSU_ENTRIES)
    assert not (parquet_root / MMSU.parquet.cache).exists()
