"""TrainConfig: paper defaults, strict keys, file + flag precedence, resume compatibility."""

import json

import pytest
import torch

from alarm.cli import build_parser
from alarm.training.cli import config_from_args
from alarm.training.config import TrainConfig
from alarm.training.recipe import schedule_factor

torch.set_num_threads(1)

REQUIRED = {"preset": "tiny-al-whisper-r", "corpus": "c.jsonl", "output": "out", "audio_root": "audio"}


def test_defaults_are_the_paper_recipe():
    config = TrainConfig(**REQUIRED)
    assert config.learning_rate == 1e-4
    assert config.warmup_steps == 1500
    assert config.lr_schedule == "cosine"
    assert config.effective_batch_size == 64
    assert config.epochs == 2
    assert config.max_grad_norm == 1.0
    assert config.train_modules == ()  # everything trainable trains
    assert config.frozen_batchnorm == "train"  # official: frozen adapters' BatchNorm in train mode
    with pytest.raises(ValueError, match="frozen_batchnorm"):
        TrainConfig(**REQUIRED, frozen_batchnorm="frozen")


def test_unknown_and_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="unknown training settings.*learning_rat"):
        TrainConfig.from_dict({**REQUIRED, "learning_rat": 1e-3})
    with pytest.raises(ValueError, match="not a multiple"):
        TrainConfig(**REQUIRED, effective_batch_size=10, micro_batch_size=4)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(**REQUIRED, lr_schedule="step")
    with pytest.raises(ValueError, match="audio_root"):
        TrainConfig(preset="p", corpus="c", output="o")


def test_accumulation_makes_the_effective_batch_exact():
    config = TrainConfig(**REQUIRED, effective_batch_size=64, micro_batch_size=4)
    assert config.accumulation_steps(1) == 16
    assert config.accumulation_steps(4) == 4
    with pytest.raises(ValueError, match="not divisible"):
        config.accumulation_steps(3)


def test_config_file_then_flags(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({**REQUIRED, "learning_rate": 3e-4, "warmup_steps": 10, "train_modules": ["fusion"]}))
    args = build_parser().parse_args(
        ["train", "--config", str(path), "--warmup-steps", "20", "--init-branches", "whisper=ckpt/a", "muq=ckpt/b"]
    )
    config = config_from_args(args)
    assert config.learning_rate == 3e-4  # from the file
    assert config.warmup_steps == 20  # the flag wins
    assert config.train_modules == ("fusion",)
    assert config.init_branches == {"whisper": "ckpt/a", "muq": "ckpt/b"}
    assert config.epochs == 2  # untouched default
    with pytest.raises(ValueError, match="missing settings: --corpus"):
        config_from_args(build_parser().parse_args(["train", "--preset", "p", "--output", "o"]))


def test_json_round_trip_and_resume_conflicts():
    config = TrainConfig(**REQUIRED, train_modules=("fusion",), report_to=())
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.resume_conflicts(config) == []
    assert config.replace(num_workers=8, log_every=1).resume_conflicts(config) == []
    # a moved run directory, other worker start or plan-cache location: same result
    moved = config.replace(output="elsewhere", worker_start_method="spawn", plan_cache="/shared/plans")
    assert moved.resume_conflicts(config) == []
    assert config.replace(learning_rate=1.0, seed=3).resume_conflicts(config) == ["learning_rate", "seed"]
    assert config.replace(frozen_dtype="bfloat16").resume_conflicts(config) == ["frozen_dtype"]  # other numbers
    with pytest.raises(ValueError, match="frozen_dtype"):
        config.replace(frozen_dtype="int8")
    with pytest.raises(ValueError, match="worker_start_method"):
        config.replace(worker_start_method="thread")


def test_best_final_weights_need_validated_checkpoints():
    config = TrainConfig(**REQUIRED, report_to=(), eval_every=50, save_every=100, final_weights="best")
    assert config.final_weights == "best"
    with pytest.raises(ValueError, match="final_weights must be one of"):
        config.replace(final_weights="lowest")
    with pytest.raises(ValueError, match=r"save_every \(150\) must be a multiple of eval_every \(100\)"):
        config.replace(eval_every=100, save_every=150)
    with pytest.raises(ValueError, match="needs a validation split"):
        config.replace(val_split="")
    with pytest.raises(ValueError, match="needs a validation split"):
        config.replace(save_every=0)


def test_schedule_warms_up_then_decays_to_the_floor():
    factors = [schedule_factor(i, warmup=4, total=20, kind="cosine", min_ratio=0.1) for i in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))
    assert factors[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 15 / 16)).item()))
    linear = [schedule_factor(i, warmup=0, total=10, kind="linear", min_ratio=0.0) for i in range(10)]
    assert linear[0] == 1.0 and linear[5] == pytest.approx(0.5)


def test_shipped_deepspeed_config_leaves_batch_and_clipping_to_the_run():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "deepspeed_zero2.json"
    ds = json.loads(path.read_text())
    assert ds["zero_optimization"]["stage"] == 2
    # the trainer (micro-batch, clipping) and accelerate (accumulation, total batch, precision) fill these
    for key in (
        "train_micro_batch_size_per_gpu",
        "train_batch_size",
        "gradient_accumulation_steps",
        "gradient_clipping",
    ):
        assert ds[key] == "auto", key
    assert ds["bf16"]["enabled"] == "auto"


def test_official_target_shape_is_the_default():
    # hf_dataset.py / llm_audio_wrapper.py: no system prompt, no EOS; validate_and_filter_answers.py: 100..612
    config = TrainConfig(**REQUIRED)
    assert config.system_prompt is None and config.train_eos is False and config.target_tokens == (100, 612)
    assert TrainConfig(**REQUIRED, target_tokens=["none"]).target_tokens is None
    assert TrainConfig(**REQUIRED, target_tokens=["50", "700"]).target_tokens == (50, 700)
    with pytest.raises(ValueError, match="target_tokens"):
        TrainConfig(**REQUIRED, target_tokens=(700, 50))
