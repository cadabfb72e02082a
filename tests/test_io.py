"""Atomic output: all or nothing, no temp files left, usual permissions."""

import os
import stat

import pytest

from alarm.io import atomic_open, write_json, write_jsonl, write_text


def test_success_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    assert write_jsonl(path, [{"a": 1}, {"b": "é"}]) == 2
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "é"}\n'
    write_text(path, "new")
    assert path.read_text() == "new"
    write_json(tmp_path / "x.json", {"k": [1]})
    assert (tmp_path / "x.json").read_text() == '{\n  "k": [\n    1\n  ]\n}\n'
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and not list(tmp_path.glob(".tmp-*"))
