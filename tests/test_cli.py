"""The CLI as a user runs it."""

import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from alarm.cli import main


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1] for line in lines[1:] if not line.startswith(" ")}
    assert "alarm-ca" in rows and "tiny-alarm-e" in rows and len(rows) == 18  # every shipped preset
    assert rows["tiny-alarm-ca"] == "random" and rows["alarm-ca"] == "missing"  # no hub weights here
    assert rows["cpu-al-whisper-r"] in ("installed", "missing")  # packaged: `alarm models install`


def test_inspect_reports_tokens_and_params(tmp_path, capsys):
    clip = tmp_path / "clip.flac"
    assert main(["clip", str(clip), "--seconds", "2", "--sample-rate", "22050"]) == 0
    capsys.readouterr()
    assert main(["inspect", "--preset", "tiny-alarm-ca", str(clip)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["seconds"] == 2.0 and row["audio_tokens"] == 50 and row["token_rate_hz"] == 25.0
    assert row["trainable_params"] > 0 and row["frozen_params"] > row["trainable_params"]


def test_inspect_bad_audio_exits_nonzero_naming_file(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(1600, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    for path, reason in ((bad, "not a readable audio file"), (nan, "NaN")):
        proc = subprocess.run(
            [sys.executable, "-m", "alarm.cli", "inspect", "--preset", "tiny-al-sslam-r", str(path)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode != 0
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and reason in err[0]
