"""Loading each release as it lies on disk, and clear errors for bad files and missing audio."""

from __future__ import annotations

import json

import pytest

from alarm.cli import main
from alarm.evaluation.benchmarks import BENCHMARKS, BenchmarkError, get_benchmark, load_items
from tests.test_eval_support import (
    MMAR_ENTRIES,
    MMAU_ENTRIES,
    build_airbench,
    build_mmar,
    build_mmau,
    build_mmsu,
)


def test_mmau_layout(tmp_path):
    build_mmau(tmp_path)
    items = load_items(get_benchmark("mmau"), tmp_path)
    assert [i.id for i in items] == [e["id"] for e in MMAU_ENTRIES]
    first = items[0]
    assert first.audio == tmp_path / "test-mini-audios" / "m1.wav" and first.audio.is_file()
    assert first.choices == ("Man", "Woman", "Child", "Robot") and first.letters == ("A", "B", "C", "D")
    assert first.answer == "Man" and first.answer_index == 0
    assert dict(first.groups) == {
        "task": "sound",
        "difficulty": "easy",
        "category": "Reasoning",
        "sub-category": "Acoustic Source Inference",
    }
    assert items[6].groups["category"] == "Reasoning"  # the release's one-element list


def test_mmau_test_split_has_answers_withheld(tmp_path):
    entries = [
        {**e, "answer": "", "split": "test", "audio_id": e["audio_id"].replace("test-mini", "test")}
        for e in MMAU_ENTRIES[:2]
    ]
    del entries[1]["answer"]  # a release that drops the key instead of blanking it
    (tmp_path / "mmau-test.json").write_text(json.dumps(entries), encoding="utf-8")
    spec = get_benchmark("mmau")
    items = load_items(spec, tmp_path, "test", check_audio=False)
    assert [i.answer for i in items] == [None, None]
    # The submission file is the release file itself, every entry in order and unchanged, with
    # the prediction added (MMAU README: "the original MMAU benchmark file with an additional
    # key named model_prediction"); no option chosen is "".
    (path,) = spec.write_official(items, {"m1": "Man"}, tmp_path / "out", "test")
    assert path.name == "mmau-test_predictions.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    assert rows == [
        {**entries[0], "model_prediction": "Man", "model_output": "Man"},
        {**entries[1], "model_prediction": "", "model_output": ""},
    ]


def test_mmar_json_and_jsonl_layouts(tmp_path):
    for jsonl in (True, False):
        root = tmp_path / str(jsonl)
        build_mmar(root, jsonl=jsonl)
        items = load_items(get_benchmark("mmar"), root)
        assert len(items) == len(MMAR_ENTRIES)
        assert items[2].choices == ("厨房", "街道", "教室") and items[2].groups["modality"] == "mix-sound-speech"
        assert items[0].audio == root / "audio" / "r1.wav"


def test_mmsu_layout_keeps_official_letters(tmp_path):
    build_mmsu(tmp_path)
    items = {i.id: i for i in load_items(get_benchmark("mmsu"), tmp_path)}
    assert items["s1"].audio == tmp_path / "audio" / "s1.wav"  # "/audio/..." is relative to the root
    assert items["s2"].choices == ("rising", "falling") and items["s2"].letters == ("A", "B")  # empty C/D dropped
    assert items["s4"].choices == ("male", "female")  # null choice_c, absent choice_d
    assert items["s1"].groups["sub-category"] == "Perception / Paralinguistics"
    # the metadata file itself may be given too
    assert len(load_items(get_benchmark("mmsu"), tmp_path / "question" / "mmsu.jsonl")) == 6


def test_airbench_layout_uses_flac_for_audio_grounding(tmp_path):
    build_airbench(tmp_path)
    items = {i.id: i for i in load_items(get_benchmark("airbench"), tmp_path)}
    assert items["4"].audio == tmp_path / "Foundation" / "Audio_Grounding_AudioGrounding" / "g4.flac"
    assert items["1"].audio.name == "id1.wav" and items["1"].choices == ("Male", "Female")
    assert items["4"].groups == {"task": "Audio_Grounding", "task_dataset": "Audio_Grounding_AudioGrounding"}


def _mmau_with(tmp_path, mutate):
    entries = json.loads(json.dumps(MMAU_ENTRIES[:3]))
    mutate(entries)
    return build_mmau(tmp_path, entries)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda e: e[1].pop("choices"), ["entry 1", "'m2'", "'choices'"]),
        (lambda e: e[2].update(question=""), ["entry 2", "'m3'", "'question'"]),
        (lambda e: e[1].update(choices=["only one"]), ["entry 1", "at least two"]),
        (lambda e: e[2].update(id="m1"), ["entry 2", "duplicate id 'm1'", "entry 0"]),
        (lambda e: e[0].update(choices="Man, Woman"), ["entry 0", "not a list"]),
    ],
)
def test_bad_entries_name_file_and_entry(tmp_path, mutate, expected):
    meta = _mmau_with(tmp_path, mutate)
    with pytest.raises(BenchmarkError) as err:
        load_items(get_benchmark("mmau"), tmp_path)
    message = str(err.value)
    assert str(meta) in message
    for part in expected:
        assert part in message


def test_malformed_json_names_file_and_line(tmp_path):
    meta = build_mmau(tmp_path, MMAU_ENTRIES[:2])
    meta.write_text(meta.read_text().replace('"question"', "question", 1))
    with pytest.raises(BenchmarkError, match=r"mmau-test-mini\.json: not valid JSON at line \d+"):
        load_items(get_benchmark("mmau"), tmp_path)
    mmar = build_mmar(tmp_path / "mmar", MMAR_ENTRIES[:3])
    lines = mmar.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1][:-5]
    mmar.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(BenchmarkError, match=r"MMAR-meta\.jsonl: line 2 is not valid JSON"):
        load_items(get_benchmark("mmar"), tmp_path / "mmar")


def test_missing_audio_names_file_entry_and_clip(tmp_path):
    meta = build_mmsu(tmp_path)
    (tmp_path / "audio" / "s3.wav").unlink()
    with pytest.raises(BenchmarkError) as err:
        load_items(get_benchmark("mmsu"), tmp_path)
    message = str(err.value)
    assert str(meta) in message and "line 3" in message and "'s3'" in message
    assert str(tmp_path / "audio" / "s3.wav") in message and "does not exist" in message


def test_missing_metadata_file_says_where_it_looked(tmp_path):
    for spec in BENCHMARKS.values():
        with pytest.raises(BenchmarkError, match="no metadata file found; looked for"):
            load_items(spec, tmp_path)
    with pytest.raises(BenchmarkError, match="unknown split"):
        load_items(get_benchmark("mmau"), tmp_path, "dev")


def test_cli_reports_bad_release_in_one_line(tmp_path, capsys):
    build_mmau(tmp_path / "data", MMAU_ENTRIES[:2])
    (tmp_path / "data" / "test-mini-audios" / "m2.wav").unlink()
    args = [
        "eval",
        "mmau",
        "--data",
        str(tmp_path / "data"),
        "--preset",
        "tiny-al-whisper-r",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mmau-test-mini.json: entry 1 (id 'm2')" in err[0] and "m2.wav does not exist" in err[0]
