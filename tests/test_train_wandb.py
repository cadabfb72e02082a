"""wandb mirroring of the training metrics: what is sent (a recording stand-in) and a real offline run."""

import glob
import os
import sys
import types

import pytest
import torch

from alarm.training.config import TrainConfig
from alarm.training.report import WANDB_ID_FILE, MetricsLog, read_metrics
from alarm.training.synthetic import make_tone_corpus
from alarm.training.trainer import train

torch.set_num_threads(1)


class _Recorder:
    """Stands in for the ``wandb`` module: records init arguments and every log call."""

    def __init__(self) -> None:
        self.inits: list[dict] = []
        self.logged: list[tuple[dict, int]] = []
        self.finished = 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        run = types.SimpleNamespace()
        run.log = lambda data, step: self.logged.append((data, step))
        run.finish = lambda: setattr(self, "finished", self.finished + 1)
        return run


def test_metrics_are_mirrored_to_wandb_with_one_run_id_across_resume(tmp_path, monkeypatch):
    recorder = _Recorder()
    monkeypatch.setitem(sys.modules, "wandb", recorder)
    out = str(tmp_path / "run")
    os.makedirs(out)
    metrics = MetricsLog(out, report_to=("wandb",), run_config={"preset": "tiny"})
    metrics.write({"step": 1, "epoch": 0, "loss": 2.5, "lr": 1e-4, "grad_norm": None, "samples": 4})
    metrics.write_text("samples/0", "<think>x</think>a tone", 1)
    metrics.close()

    (first,) = recorder.inits
    assert first["config"] == {"preset": "tiny"} and first["dir"] == out and first["resume"] == "allow"
    assert recorder.logged == [
        ({"epoch": 0.0, "loss": 2.5, "lr": 1e-4, "samples": 4.0}, 1),  # None (no grad norm yet) is left out
        ({"samples/0": "<think>x</think>a tone"}, 1),
    ]
    assert recorder.finished == 1
    with open(os.path.join(out, WANDB_ID_FILE)) as f:
        assert f.read() == first["id"]

    MetricsLog(out, resume_step=1, report_to=("wandb",)).close()  # a resume continues the same wandb run
    assert recorder.inits[1]["id"] == first["id"]
    other = str(tmp_path / "elsewhere" / "run")  # same directory name, another run: another id
    os.makedirs(other)
    MetricsLog(other, report_to=("wandb",)).close()
    assert recorder.inits[2]["id"] != first["id"]


def test_training_logs_to_a_real_offline_wandb_run(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="wandb is optional: pip install 'alarm[wandb]'")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    root = tmp_path / "tones"
    make_tone_corpus(root, 4, num_validation=2, durations=(0.5,))
    out = tmp_path / "run"
    config = TrainConfig(
        preset="tiny-al-sslam-r",
        corpus=str(root / "corpus.jsonl"),
        audio_root=str(root),
        output=str(out),
        max_steps=2,
        effective_batch_size=2,
        micro_batch_size=2,
        warmup_steps=1,
        num_workers=0,
        log_every=1,
        eval_every=2,
        val_batches=1,
        num_samples=1,
        save_every=0,
        progress=False,
        report_to=("wandb",),
        target_tokens=None,  # synthetic targets are a sentence, under the official 100-token floor
    )
    train(config)
    # ``finish()`` hands the run to wandb's service process, whose writer may still be flushing
    # the file; ``teardown()`` returns only after that process has exited, so the file is whole.
    wandb.teardown()

    run_id = (out / WANDB_ID_FILE).read_text()
    (log_file,) = glob.glob(str(out / "wandb" / "offline-run-*" / f"run-{run_id}.wandb"))
    data = open(log_file, "rb").read()
    # The history records carry the metric names and values (protobuf strings, uncompressed).
    for key in (b"loss", b"grad_norm", b"tokens_per_s", b"val_loss", b"samples/tones/"):
        assert key in data, key
    first_loss = float(read_metrics(str(out / "metrics.csv"))[0]["loss"])
    assert f"{first_loss:.5f}"[:6].encode() in data
