"""DeepSpeed ZeRO-2 through ``accelerate launch``, run for real on CPU (DeepSpeed's gloo backend).

Two processes under ZeRO-2 train like one process with the same effective batch; in bf16 the
saved weights are ZeRO's fp32 master weights (not the module's bf16 copy) and a resume from
the per-rank optimizer files repeats the uninterrupted run exactly.
"""

import csv
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from alarm.training.config import TrainConfig
from alarm.training.launch import accelerator_state_args, deepspeed_param_dtype, frozen_dtype
from alarm.training.synthetic import make_tone_corpus
from alarm.training.trainer import train
from tests.helpers import launch_env, train_flags, two_process_settings

torch.set_num_threads(1)

ZERO2 = os.path.join(os.path.dirname(__file__), "..", "configs", "deepspeed_zero2.json")


def _rows(path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _launch_zero2(flags: list[str]) -> None:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--use_deepspeed", "--deepspeed_config_file", ZERO2, "-m", "alarm.cli", "train", *flags]
    done = subprocess.run(launch, env=launch_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    pytest.importorskip("deepspeed", reason="DeepSpeed is optional: pip install 'alarm[deepspeed]'")
    root = tmp_path_factory.mktemp("tones")
    make_tone_corpus(root, 8, num_validation=3, durations=(0.5, 1.0))
    return two_process_settings(root)


def test_zero2_two_processes_match_one_process(settings, tmp_path):
    """Tolerance: 1e-5 relative on losses, gradient norms and weights (gloo sums in another order)."""
    run = dict(settings, max_steps=3, eval_every=3, save_every=3)
    train(TrainConfig(**run, output=str(tmp_path / "one")))
    _launch_zero2(train_flags({**run, "output": str(tmp_path / "zero2")}))

    one, two = _rows(tmp_path / "one/metrics.csv"), _rows(tmp_path / "zero2/metrics.csv")
    assert [r["step"] for r in two] == ["1", "2", "3"]
    for key in ("loss", "grad_norm", "target_tokens", "samples"):
        assert [float(r[key]) for r in two] == pytest.approx([float(r[key]) for r in one], rel=1e-5), key
    a, b = load_file(tmp_path / "one/final/model.safetensors"), load_file(tmp_path / "zero2/final/model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-7)
    # ZeRO partitions the optimizer state: one file per rank, next to the usual checkpoint.
    files = set(os.listdir(tmp_path / "zero2/checkpoints/step-0000003"))
    assert {"optimizer-rank0.pt", "optimizer-rank1.pt", "model.safetensors", "trainer_state.pt"} <= files


def test_zero2_bf16_saves_fp32_masters_and_resumes_exactly(settings, tmp_path):
    """bf16 under ZeRO-2: 6 steps straight == 3 steps, then a resume from the step-3 checkpoint."""
    run = dict(settings, max_steps=6, eval_every=3, save_every=3, mixed_precision="bf16")
    straight = tmp_path / "straight"
    _launch_zero2(train_flags({**run, "output": str(straight)}))

    cut = tmp_path / "cut"  # the same run, as if killed after its step-3 checkpoint
    shutil.copytree(straight, cut)
    shutil.rmtree(cut / "checkpoints/step-0000006")
    shutil.rmtree(cut / "final")
    _launch_zero2([*train_flags({**run, "output": str(cut)}), "--resume"])

    a, b = _rows(straight / "metrics.csv"), _rows(cut / "metrics.csv")
    assert [r["step"] for r in b] == [str(s) for s in range(1, 7)]
    for key in ("loss", "grad_norm", "lr", "val_loss"):
        assert [r[key] for r in b] == [r[key] for r in a], key  # the CSV's printed digits, all equal
    saved, resumed = load_file(straight / "final/model.safetensors"), load_file(cut / "final/model.safetensors")
    for key in saved:
        assert saved[key].dtype == torch.float32
        torch.testing.assert_close(resumed[key], saved[key], rtol=0, atol=0)
    # The module holds bf16 copies; the file must hold ZeRO's fp32 masters, which bf16 cannot represent.
    rounded = [bool(torch.equal(v, v.bfloat16().float())) for k, v in saved.items() if v.numel() > 8]
    assert rounded and not any(rounded)
    # bf16 actually ran: the first loss differs from an fp32 run's in its last digits, within 1%.
    fp32_run = tmp_path / "fp32"
    train(TrainConfig(**dict(settings, max_steps=1, eval_every=1, save_every=0), output=str(fp32_run)))
    first_fp32, first_bf16 = float(_rows(fp32_run / "metrics.csv")[0]["loss"]), float(a[0]["loss"])
    assert first_bf16 != first_fp32
    assert first_bf16 == pytest.approx(first_fp32, rel=1e-2)


def test_frozen_dtype_follows_deepspeed_half_precision():
    """DeepSpeed casts every parameter (frozen ones too) but no buffer: the frozen parts must match it."""
    assert frozen_dtype("auto", on_gpu=False, deepspeed=torch.bfloat16) == torch.bfloat16
    assert frozen_dtype("bfloat16", on_gpu=True, deepspeed=torch.bfloat16) == torch.bfloat16
    with pytest.raises(ValueError, match="DeepSpeed in bfloat16"):
        frozen_dtype("float32", on_gpu=True, deepspeed=torch.bfloat16)
    assert frozen_dtype("auto", on_gpu=False) == torch.float32
    assert deepspeed_param_dtype({"bf16": {"enabled": True}, "fp16": {"enabled": False}}) == torch.bfloat16
    assert deepspeed_param_dtype({"fp16": {"enabled": True}}) == torch.float16
    assert deepspeed_param_dtype({"bf16": {"enabled": False}}) is None


def test_cpu_deepspeed_launch_gets_a_gloo_group(monkeypatch):
    """accelerate ignores DeepSpeed under ``cpu=True``: a CPU DeepSpeed launch must not ask for it."""
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert accelerator_state_args(cpu=True) == {"cpu": False, "backend": "gloo"}
    assert accelerator_state_args(cpu=False) == {"cpu": False, "backend": None}
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    assert accelerator_state_args(cpu=True) == {"cpu": True, "backend": None}
