"""Two CPU processes (gloo DDP under torchrun) train exactly like one process with the same effective batch."""

import csv
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from alarm.training.config import TrainConfig
from alarm.training.synthetic import make_tone_corpus
from alarm.training.trainer import train
from tests.helpers import launch_env, train_flags, two_process_settings

torch.set_num_threads(1)


def _rows(path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_two_processes_match_one_process_with_accumulation(tmp_path):
    """Tolerance: 1e-5 relative on losses, gradient norms and weights (gloo sums in another order)."""
    root = tmp_path / "tones"
    make_tone_corpus(root, 8, num_validation=3, durations=(0.5, 1.0))
    settings = dict(two_process_settings(root), max_steps=3, eval_every=3, save_every=0)
    train(TrainConfig(**settings, output=str(tmp_path / "one")))

    flags = train_flags({**settings, "output": str(tmp_path / "two")})
    env = launch_env()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*command, "-m", "alarm.cli", "train", *flags], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]

    one, two = _rows(tmp_path / "one/metrics.csv"), _rows(tmp_path / "two/metrics.csv")
    assert [r["step"] for r in two] == ["1", "2", "3"]
    for key in ("loss", "grad_norm", "target_tokens", "samples"):
        assert [float(r[key]) for r in two] == pytest.approx([float(r[key]) for r in one], rel=1e-5), key
    assert float(two[-1]["val_loss"]) == pytest.approx(float(one[-1]["val_loss"]), rel=1e-5)
    a, b = load_file(tmp_path / "one/final/model.safetensors"), load_file(tmp_path / "two/final/model.safetensors")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-7)
    assert sorted(os.listdir(tmp_path / "two/checkpoints/step-0000003")) == [
        "config.json",
        "curves.png",
        "model.safetensors",
        "rng-rank0.pt",
        "rng-rank1.pt",
        "train_config.json",
        "trainer_state.pt",
    ]
