"""`alarm corpus collect` / `--list` / `alarm corpus stats` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from alarm.cli import main
from alarm.corpus.collectors import all_specs
from alarm.corpus.schema import read_records


def build_esc50(root: Path) -> None:
    (root / "meta").mkdir(parents=True)
    (root / "meta/esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n"
        "1-100032-A-0.wav,1,0,dog,True,100032,A\n"
        "1-110389-A-0.wav,1,0,dog,True,110389,A\n"
        "5-9032-A-0.wav,5,0,dog,True,9032,A\n"
    )
    (root / "audio").mkdir()
    for name, seconds in (("1-100032-A-0", 1.0), ("1-110389-A-0", 0.5)):
        sf.write(root / f"audio/{name}.wav", np.full(int(8000 * seconds), 0.05, np.float32), 8000)


def test_list_shows_every_collector(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["corpus", "collect", "--list"]) == 0
    out = capsys.readouterr().out
    for name, spec in all_specs().items():
        assert f"{name}  [{spec.category}]" in out
    assert "licence:" in out and "layout:" in out and "metadata:" in out
    assert main(["corpus", "collect", "--list", "vctk"]) == 0
    assert capsys.readouterr().out.startswith("vctk  [speech]")


def test_collect_then_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_esc50(tmp_path / "ESC-50-master")
    out = tmp_path / "manifests/esc50.parquet"
    args = ["corpus", "collect", "esc50", "--root", str(tmp_path / "ESC-50-master"), "--out", str(out)]
    assert main([*args, "--no-progress", "--validation-fraction", "0"]) == 0
    printed = capsys.readouterr().out
    assert "esc50: kept 2 records" in printed and "missing audio: 1" in printed
    assert [r.id for r in read_records(out)] == ["esc50/1-100032-A-0", "esc50/1-110389-A-0"]
    rejects = [json.loads(line) for line in (tmp_path / "manifests/esc50.rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in rejects] == [("esc50/5-9032-A-0", "missing audio")]

    rejects_file = str(tmp_path / "manifests/esc50.rejects.jsonl")
    assert main(["corpus", "stats", str(out), rejects_file]) == 0  # a shell glob may pick up rejects files
    captured = capsys.readouterr()
    assert "skipping" in captured.err and "rejects" in captured.err
    lines = captured.out.splitlines()
    assert lines[0].startswith("category") and "instances (total / train / validation)" in lines[0]
    assert lines[1].split()[:6] == ["sound", "2", "/", "2", "/", "0"]
    assert lines[2].startswith("Total")
    assert main(["corpus", "stats", str(out), "--by", "dataset", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table[0]["name"] == "esc50" and table[0]["hours"]["total"] == round(1.5 / 3600, 4)


def test_collect_with_a_json_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_esc50(tmp_path)
    spec = {
        "name": "mysounds",
        "title": "my sounds",
        "category": "sound",
        "source": {"reader": "table", "options": {"files": "meta/esc50.csv"}},
        "id": "{src_file}",
        "audio": "audio/{filename}",
        "text": "{category}",
        "where": [["{fold}", ["1"]]],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "mine.jsonl"
    assert (
        main(["corpus", "collect", "--spec", str(tmp_path / "spec.json"), "--root", str(tmp_path), "--out", str(out)])
        == 0
    )
    assert [r.id for r in read_records(out)] == ["mysounds/100032", "mysounds/110389"]


def test_collect_errors_are_messages_not_tracebacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["corpus", "collect", "nosuchset", "--root", str(tmp_path), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "no collector named 'nosuchset'" in capsys.readouterr().err
    assert main(["corpus", "collect", "esc50", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "--root" in capsys.readouterr().err
    assert main(["corpus", "collect", "esc50", "--root", str(tmp_path), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "meta/esc50.csv" in capsys.readouterr().err  # an empty folder is not ESC-50
    assert main(["corpus", "collect"]) == 2
    assert main(["corpus", "stats", str(tmp_path / "absent.jsonl")]) == 2
