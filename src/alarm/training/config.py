"""TrainConfig: every setting of a training run, with the paper's recipe as the defaults.

Paper, Section 3.3: AdamW, peak learning rate 1e-4, 1500 warm-up steps, cosine decay,
effective batch 64 (32 for the single-encoder variants), 2 epochs (ALARM-CA's fusion stage:
the paper says 1 epoch, the released train_alarm_ca.sh runs 2, the default here). The official
code adds gradient clipping at 1.0, no weight decay and a 4096-token limit. A config is built
from (lowest to highest precedence) these defaults, a JSON file and command-line flags;
unknown keys are refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

# Settings that may differ between a run and its resumption: they change what is logged or
# how fast data arrives, never which samples are seen or how the weights move.
RESUMABLE_CHANGES = frozenset(
    {
        "output",  # a run directory may be moved and resumed
        "audio_root",
        "num_workers",
        "log_every",
        "eval_every",
        "save_every",
        "keep_checkpoints",
        "val_batches",
        "num_samples",
        "sample_max_new_tokens",
        "sample_thinking_budget",
        "report_to",
        "progress",
        "worker_start_method",
        "plan_cache",
    }
)
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "no", "bf16", "fp16")
FROZEN_DTYPES = ("auto", "float32", "bfloat16", "float16")
START_METHODS = ("auto", "fork", "spawn", "forkserver")
REPORTERS = ("tensorboard", "wandb")
FINAL_WEIGHTS = ("last", "best")
BATCHNORM_MODES = ("train", "eval")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Paths are strings so the config round-trips through JSON.

    What to train:
        preset: preset name, preset JSON file, saved model directory or ``official:<ckpt>``.
        corpus: a corpus shard (``.jsonl`` / ``.parquet``) or a directory of shards.
        output: run directory (checkpoints, metrics, plots, final model).
        audio_root: directory the corpus ``audio_path`` s are relative to.
        features: feature-cache directory from ``alarm features extract``; the frozen encoders
            are then read from disk instead of run (``audio_root`` is still used for samples).
        init_from: saved model directory (or ``official:<ckpt>``) whose trainable weights
            initialise every matching module (e.g. ALARM-P from AL-Whisper-Instruct-R).
        init_branches: ``{encoder kind: checkpoint}``; copies that encoder's branch (layer
            average, adapter, projection) from a single-encoder checkpoint (ALARM-CA stage 2).
        train_modules: prefixes of the trainable parameters that train (``("fusion",
            "audio_boundaries")`` for the CA recipe); empty means all of them. The others are
            frozen and kept in eval mode, except BatchNorm under ``frozen_batchnorm``.
        frozen_batchnorm: ``train`` (default, the official code: HF ``Trainer`` puts the whole
            model in train mode and frozen adapters only lose their gradients, so the frozen
            Whisper adapter's BatchNorm normalises with batch statistics and updates its running
            statistics during the fusion stage); ``eval``: it keeps the statistics it was
            trained with (frozen means frozen; ours).

    Optimisation: ``learning_rate`` (peak), ``warmup_steps``, ``lr_schedule``
    (cosine/linear/constant after warm-up), ``min_lr_ratio`` (floor of the decay as a
    fraction of the peak), ``weight_decay``, ``adam_beta1/2``, ``adam_eps``,
    ``max_grad_norm`` (0 disables clipping), ``effective_batch_size`` (samples per optimizer
    step over all processes), ``micro_batch_size`` (samples per forward per process; the
    accumulation is their ratio over the world size), ``epochs``, ``max_steps`` (stop after
    this many optimizer steps; the schedule then spans them), ``seed``.

    Data: ``train_split`` / ``val_split`` select corpus rows; ``max_seq_len`` is the token
    limit (prompt + audio positions + target; longer samples are skipped, never cut);
    ``max_audio_seconds`` refuses longer segments; ``group_by_length`` with ``group_size``
    micro-batches sorted together per bucket; ``num_workers`` DataLoader processes;
    ``worker_start_method`` how DataLoader workers
    start (``auto``: ``fork`` on Linux, the platform's default elsewhere, i.e. ``spawn`` on
    macOS; the batches are the same either way); ``plan_cache`` directory of cached length
    plans (default ``OUTPUT/plan-cache``; runs over the same corpus may share one).

    Target shape (defaults: the official recipe, ``hf_dataset.py`` and
    ``validate_and_filter_answers.py``): ``system_prompt`` None puts no system prompt in the
    rows, as the official training does; ``"model"`` uses the model config's, any other text
    itself. ``train_eos`` off: the end-of-turn token is not trained (official: targets may end
    mid-thought, and the frozen RLM already stops by itself); on: it follows every finished
    target, for a small RLM that must learn to stop (the demo). ``target_tokens`` (100, 612):
    rows whose target has fewer or more tokens are skipped (spoken-query rows are not checked,
    as officially); None (``--target-tokens none``) keeps every length.

    Precision: ``mixed_precision`` ``auto`` = bf16 autocast on a GPU, fp32 on a CPU.
    ``frozen_dtype``: dtype the frozen RLM and encoders are held in (``auto`` = bfloat16 on a
    GPU that supports it, float32 otherwise); trainable weights and optimizer state stay fp32.

    Observability: ``log_every`` steps per CSV row, ``eval_every`` (validation loss and
    generated samples), ``save_every`` (checkpoints; 0 = only at the end),
    ``keep_checkpoints`` (newest N kept; 0 = all), ``val_batches`` (micro-batches per
    validation; 0 = the whole split), ``num_samples`` generated per evaluation with
    ``sample_max_new_tokens`` / ``sample_thinking_budget``, ``report_to`` (``tensorboard``,
    ``wandb``: used when installed; the CSV is always written), ``progress`` bar.

    Result: ``final_weights`` ``last`` writes the last step's weights to ``OUTPUT/final``;
    ``best`` those of the checkpoint with the lowest validation loss (needs a validation
    split and checkpoints at evaluated steps: ``save_every`` a multiple of ``eval_every``;
    that checkpoint is never pruned).
    """

    preset: str
    corpus: str
    output: str
    audio_root: str | None = None
    features: str | None = None
    init_from: str | None = None
    init_branches: dict[str, str] = field(default_factory=dict)
    train_modules: tuple[str, ...] = ()
    frozen_batchnorm: str = "train"
    # optimisation (paper Section 3.3; clipping and weight decay from the official code)
    learning_rate: float = 1e-4
    warmup_steps: int = 1500
    lr_schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    effective_batch_size: int = 64
    micro_batch_size: int = 4
    epochs: int = 2
    max_steps: int | None = None
    seed: int = 42
    # data
    train_split: str = "train"
    val_split: str = "validation"
    max_seq_len: int = 4096
    max_audio_seconds: float = 600.0
    group_by_length: bool = True
    group_size: int = 64
    num_workers: int = 2
    worker_start_method: str = "auto"
    plan_cache: str | None = None
    system_prompt: str | None = None
    train_eos: bool = False
    target_tokens: tuple[int, int] | None = (100, 612)
    # precision
    mixed_precision: str = "auto"
    frozen_dtype: str = "auto"
    # observability
    log_every: int = 10
    eval_every: int = 1000
    save_every: int = 1000
    keep_checkpoints: int = 3
    val_batches: int = 50
    num_samples: int = 2
    sample_max_new_tokens: int = 256
    sample_thinking_budget: int = 128
    report_to: tuple[str, ...] = ("tensorboard",)
    progress: bool = True
    # result
    final_weights: str = "last"

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_modules", tuple(self.train_modules))
        object.__setattr__(self, "report_to", tuple(self.report_to))
        object.__setattr__(self, "init_branches", dict(self.init_branches))
        object.__setattr__(self, "target_tokens", _token_range(self.target_tokens))
        positive = ("learning_rate", "effective_batch_size", "micro_batch_size", "epochs", "max_seq_len", "group_size")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        non_negative = ("warmup_steps", "weight_decay", "max_grad_norm", "num_workers", "save_every")
        non_negative += ("keep_checkpoints", "val_batches", "num_samples")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")
        if self.log_every < 1 or self.eval_every < 1:
            raise ValueError("log_every and eval_every must be at least 1")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {PRECISIONS}, got {self.mixed_precision!r}")
        if self.frozen_dtype not in FROZEN_DTYPES:
            raise ValueError(f"frozen_dtype must be one of {FROZEN_DTYPES}, got {self.frozen_dtype!r}")
        if self.worker_start_method not in START_METHODS:
            raise ValueError(f"worker_start_method must be one of {START_METHODS}, got {self.worker_start_method!r}")
        if self.frozen_batchnorm not in BATCHNORM_MODES:
            raise ValueError(f"frozen_batchnorm must be one of {BATCHNORM_MODES}, got {self.frozen_batchnorm!r}")
        if self.final_weights not in FINAL_WEIGHTS:
            raise ValueError(f"final_weights must be one of {FINAL_WEIGHTS}, got {self.final_weights!r}")
        if self.final_weights == "best" and not (self.val_split and self.save_every):
            raise ValueError("final_weights 'best' needs a validation split and checkpoints (save_every > 0)")
        if self.final_weights == "best" and self.save_every % self.eval_every:
            raise ValueError(
                f"final_weights 'best' picks among checkpoints, so every one needs a validation loss: "
                f"save_every ({self.save_every}) must be a multiple of eval_every ({self.eval_every})"
            )
        unknown = set(self.report_to) - set(REPORTERS)
        if unknown:
            raise ValueError(f"report_to takes {REPORTERS}, got {sorted(unknown)}")
        if self.effective_batch_size % self.micro_batch_size:
            raise ValueError(
                f"effective_batch_size {self.effective_batch_size} is not a multiple of "
                f"micro_batch_size {self.micro_batch_size}"
            )
        if self.features is None and self.audio_root is None:
            raise ValueError("give audio_root (where the corpus audio lives) or features (a feature cache)")

    def accumulation_steps(self, world_size: int) -> int:
        """Micro-batches per process per optimizer step, so that the effective batch is exact."""
        per_step = self.micro_batch_size * world_size
        if self.effective_batch_size % per_step:
            raise ValueError(
                f"effective_batch_size {self.effective_batch_size} is not divisible by micro_batch_size "
                f"{self.micro_batch_size} x {world_size} processes"
            )
        return self.effective_batch_size // per_step

    # -- dict / JSON ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, refusing keys the config does not have."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}; known: {sorted(names)}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str], **overrides: Any) -> TrainConfig:
        """Read a JSON config file; ``overrides`` (e.g. from the command line) win."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a training config is a JSON object")
        return cls.from_dict({**data, **overrides})

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["train_modules"] = list(self.train_modules)
        data["report_to"] = list(self.report_to)
        return data

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def resume_conflicts(self, saved: TrainConfig) -> list[str]:
        """Settings that differ from the run being resumed and would change its result."""
        ours, theirs = self.to_dict(), saved.to_dict()
        return sorted(k for k in ours if k not in RESUMABLE_CHANGES and ours[k] != theirs[k])


def _token_range(value: Any) -> tuple[int, int] | None:
    """``target_tokens`` as (low, high), or None; from a tuple, a JSON list or the flag's strings."""
    if value is None or len(value) == 0 or [str(v).lower() for v in value] == ["none"]:
        return None  # `--target-tokens none` (or no values): no length filter
    if len(value) != 2:
        raise ValueError(f"target_tokens is two numbers, low and high, got {list(value)!r}")
    low, high = (int(v) for v in value)
    if not 0 <= low <= high:
        raise ValueError(f"target_tokens needs 0 <= low <= high, got ({low}, {high})")
    return low, high
