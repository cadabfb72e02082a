"""The training recipe: setup -> train -> cleanup, as one accelerate loop.

Why a loop of our own over accelerate and not HF ``Trainer``: the parts that matter here
are exactly the parts ``Trainer`` owns and hides. Resume must continue mid-epoch with the
same order without replaying the data loader (our step plan is a function of (seed, epoch),
so a position is two integers); the loss must be normalised by the target tokens of the
whole effective batch over all processes (one all-reduce before the backward passes), so
that 1 process with accumulation and N processes give the same step; checkpoints hold the
trainable weights only (``save_pretrained``), not the frozen 4B RLM; and the batch is an
audio structure (waves per rate, or cached encoder states) rather than a dict of tensors.
accelerate still provides what a loop should not rewrite: process groups (torchrun,
``accelerate launch``), DDP / DeepSpeed ZeRO-2 wrapping, autocast, gradient-accumulation
sync and clipping.

One optimizer step:
    1. each rank takes its A micro-batches of the step (see ``StepPlan.rank_batches``)
    2. all-reduce the number of target tokens N over the step (all ranks, all micro-batches)
    3. per micro-batch: loss = sum of token cross-entropies * A * W / N, backward (no sync
       until the last micro-batch); accelerate divides by A and DDP averages over W, so the
       gradient is that of (sum over the effective batch) / N
    4. clip, AdamW step, schedule step; log, validate, checkpoint as configured
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from alarm.chat import IGNORE_INDEX, collate
from alarm.io import write_text
from alarm.modeling.model import FROZEN_PREFIXES
from alarm.training.config import TrainConfig
from alarm.training.data import (
    REASONS,
    ChatFormat,
    Collator,
    LengthPlan,
    Rejection,
    StepPlan,
    TrainBatch,
    TrainingDataset,
    load_corpus,
    make_loader,
    plan_lengths,
    validation_batches,
)
from alarm.training.plan_cache import LengthCache
from alarm.training.report import MetricsLog, RejectsLog, plot_curves

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.pt"
CONFIG_NAME = "train_config.json"
PLAN_CACHE = "plan-cache"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# -- state ---------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Where the run is: optimizer steps done, position in the epoch, counters."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    samples: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StepRecord:
    """What one optimizer step did (passed to callbacks on every rank)."""

    step: int
    epoch: int
    loss: float
    lr: float
    grad_norm: float | None
    target_tokens: int
    samples: int
    val_loss: float | None = None


@dataclass(frozen=True)
class TrainResult:
    output: str
    steps: int
    final_model: str
    last_loss: float | None
    skipped: dict[str, int]


# -- model and recipe ----------------------------------------------------------------------


def read_trainable_weights(reference: str) -> dict[str, torch.Tensor]:
    """Trainable weights of a saved model directory or of ``official:<checkpoint>``."""
    from safetensors.torch import load_file

    from alarm.presets import OFFICIAL_PREFIX

    if reference.startswith(OFFICIAL_PREFIX):
        from alarm.modeling.official import read_official_state

        return read_official_state(reference[len(OFFICIAL_PREFIX) :])
    from alarm.modeling.model import WEIGHTS_NAME

    path = os.path.join(reference, WEIGHTS_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{reference}: no {WEIGHTS_NAME} (expected a directory written by save_pretrained)")
    return load_file(path)


def load_trainable(model: Any, weights: dict[str, torch.Tensor], source: str, prefix: str = "") -> list[str]:
    """Copy the weights under ``prefix`` into the model's trainable state; returns the keys loaded."""
    ours = model.trainable_state_dict()
    chosen = {k: v for k, v in weights.items() if k.startswith(prefix) and k in ours}
    if not chosen:
        raise ValueError(f"{source}: no trainable weights under {prefix or 'any prefix'!r} match this model")
    for key, value in chosen.items():
        if value.shape != ours[key].shape:
            raise ValueError(f"{source}: {key} has shape {tuple(value.shape)}, the model {tuple(ours[key].shape)}")
    model.load_state_dict(chosen, strict=False)
    log.info("initialised %d tensors under %r from %s", len(chosen), prefix or "*", source)
    return sorted(chosen)


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def apply_recipe(model: Any, config: TrainConfig) -> list[str]:
    """Stage-wise initialisation and the choice of modules that train; returns their parameter names.

    ``init_from`` then ``init_branches`` copy weights in; with ``train_modules`` every other
    trainable parameter is frozen for this run.
    """
    if config.init_from:
        load_trainable(model, read_trainable_weights(config.init_from), config.init_from)
    for kind, reference in config.init_branches.items():
        if kind not in model.branches:
            raise ValueError(f"init_branches names {kind!r}, the model's encoders are {sorted(model.branches)}")
        load_trainable(model, read_trainable_weights(reference), reference, prefix=f"branches.{kind}.")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if config.train_modules:
        unmatched = [p for p in config.train_modules if not any(_under(n, [p]) for n in trainable)]
        if unmatched:
            raise ValueError(f"train_modules {unmatched} match no trainable parameter; e.g. {trainable[:4]}")
        for name, param in model.named_parameters():
            if param.requires_grad and not _under(name, config.train_modules):
                param.requires_grad_(False)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def set_train_mode(model: Any, train_modules: Sequence[str]) -> None:
    """Train mode for what trains; eval for everything else (frozen dropout/BatchNorm stay fixed)."""
    model.train()  # the model keeps its RLM and encoders in eval itself
    if not train_modules:
        return
    for name, module in model.named_modules():
        inside = _under(name, train_modules)
        above = any(p.startswith(name + ".") for p in train_modules) or name == ""
        if not inside and not above:
            module.training = False  # per module, not .eval(): a parent must not switch its children


def frozen_dtype(setting: str, on_gpu: bool, deepspeed: torch.dtype | None = None) -> torch.dtype:
    """The dtype of the frozen parts: ``auto`` is bfloat16 on a GPU that has it, float32 otherwise.

    fp32 on a CPU keeps CPU runs exact (tests, resume); bf16 halves a 4B RLM on a GPU, where
    the RLM then runs in bf16 with or without autocast. DeepSpeed in bf16/fp16 (``deepspeed``)
    casts every parameter of the model, frozen ones included, but no buffer: the frozen parts
    must already be in that dtype, or their fp32 buffers meet bf16 weights.
    """
    if deepspeed is not None:
        if setting not in ("auto", str(deepspeed).removeprefix("torch.")):
            raise ValueError(
                f"--frozen-dtype {setting}: DeepSpeed in {str(deepspeed).removeprefix('torch.')} holds every "
                "parameter in that dtype; use --frozen-dtype auto"
            )
        return deepspeed
    if setting != "auto":
        return DTYPES[setting]
    return torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32


def deepspeed_param_dtype(ds_config: dict[str, Any]) -> torch.dtype | None:
    """The dtype DeepSpeed casts the model's parameters to (None: it keeps them fp32)."""
    for key, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if ds_config.get(key, {}).get("enabled") is True:
            return dtype
    return None


def encoder_shells(specs: Sequence[Any]) -> dict[str, Any]:
    """Encoders without their networks (specs, sizes, length rules), for training from a cache.

    A seeded random encoder (tiny/mid presets) is built on the meta device: no memory, no
    init time. Released weights are read by the encoder's own loader and freed at once, so
    they never reach the accelerator (building them without reading would need each encoder
    to construct from its config alone).
    """
    from alarm.encoders import build_encoder

    shells = {}
    for spec in specs:
        if spec.pretrained is None:
            with torch.device("meta"):
                shells[spec.kind] = build_encoder(spec).without_weights()
        else:
            shells[spec.kind] = build_encoder(spec).without_weights()
    return shells


def build_training_model(config: TrainConfig, dtype: torch.dtype = torch.float32) -> Any:
    """The preset with its frozen parts in ``dtype``; encoders a feature cache holds without networks.

    A cache holds its encoders' states for every row it serves (rows it lacks are skipped as
    ``not_in_feature_cache``), so those encoders never run: the model gets shells that keep
    their specs and length rules (the cache manifest and the chat layout need them). Encoders
    a partial cache lacks are built in full and run online.
    """
    from alarm.presets import resolve

    model_config, build = resolve(config.preset)
    if not config.features:
        return build(frozen_dtype=dtype)
    from alarm.training.cache import read_manifest

    cached = read_manifest(config.features)["encoders"]
    shells = encoder_shells([spec for spec in model_config.encoder_specs() if spec.kind in cached])
    return build(frozen_dtype=dtype, encoders=shells)


def schedule_factor(index: int, *, warmup: int, total: int, kind: str, min_ratio: float) -> float:
    """LR multiplier of the optimizer step with 0-based ``index``: linear warm-up to the peak, then decay."""
    if index < warmup:
        return (index + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (index - warmup) / max(1, total - warmup))
    decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * decay


def build_optimizer(model: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the parameters that train; no weight decay on biases, norms and vectors."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
    )


def target_positions(labels: torch.Tensor) -> torch.Tensor:
    """Input positions whose next token is a target in at least one row, shape ``(K,)``.

    Only these positions' logits enter the loss. With a ~50k vocabulary the LM head and its
    fp32 log-softmax over every audio and prompt position cost about as much as the rest of a
    small RLM's forward, so the loss asks the RLM for these positions alone (``logits_to_keep``).
    """
    return (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero().squeeze(1)


def token_loss_sum(model: torch.nn.Module, batch: TrainBatch) -> torch.Tensor:
    """Sum of next-token cross-entropies (fp32) over ``batch``'s target tokens."""
    positions = target_positions(batch.labels)
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        audio=batch.audio,
        use_cache=False,
        logits_to_keep=positions,
    )
    targets = batch.labels[:, 1:].index_select(1, positions)  # (B, K); rows without a target there: ignored
    return F.cross_entropy(out.logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")


# -- checkpoints ---------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(output: str) -> str | None:
    """The newest complete checkpoint of a run (directories appear only when complete)."""
    root = os.path.join(output, CHECKPOINTS)
    if not os.path.isdir(root):
        return None
    done = sorted(
        n for n in os.listdir(root) if n.startswith("step-") and os.path.isfile(os.path.join(root, n, TRAINER_STATE))
    )
    return os.path.join(root, done[-1]) if done else None


def deepspeed_requested() -> bool:
    """Whether ``accelerate launch --use_deepspeed`` started this process."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def accelerator_state_args(cpu: bool) -> dict[str, Any]:
    """``cpu`` and process-group ``backend`` for accelerate on this machine.

    accelerate forms a CPU (gloo) process group only when told ``cpu=True``, but with
    ``cpu=True`` it ignores DeepSpeed; and DeepSpeed without a named backend on a machine
    with no GPU joins the group yet reports one process. So on CPU a DeepSpeed launch gets
    ``cpu=False`` plus an explicit gloo backend (DeepSpeed's CPU accelerator), every other
    CPU launch ``cpu=True``.
    """
    if cpu and deepspeed_requested():
        return {"cpu": False, "backend": "gloo"}
    return {"cpu": cpu, "backend": None}


# -- the run -------------------------------------------------------------------------------


class Trainer:
    """One training run (see the module docstring); ``run()`` trains and returns a :class:`TrainResult`."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: bool = False,
        callbacks: Sequence[Callable[[StepRecord], None]] = (),
    ) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self._setup(resume)

    # setup ---------------------------------------------------------------------------------
    def _setup(self, resume: bool) -> None:
        from accelerate import Accelerator, PartialState
        from accelerate.utils import InitProcessGroupKwargs, set_seed

        config = self.config
        cpu = not torch.cuda.is_available()
        state_args = accelerator_state_args(cpu)
        world = PartialState(**state_args).num_processes
        self.accumulation = config.accumulation_steps(world)
        precision = config.mixed_precision
        if precision == "auto":
            precision = "no" if cpu or not torch.cuda.is_bf16_supported() else "bf16"
        self.accelerator = acc = Accelerator(
            cpu=state_args["cpu"],
            mixed_precision=precision,
            gradient_accumulation_steps=self.accumulation,
            kwargs_handlers=[InitProcessGroupKwargs(backend=state_args["backend"])] if state_args["backend"] else None,
        )
        if deepspeed_requested() and acc.state.deepspeed_plugin is None:  # never train without it silently
            raise RuntimeError("accelerate was launched with DeepSpeed but the run did not enable it")
        if acc.state.deepspeed_plugin is not None:  # values DeepSpeed cannot infer without a prepared loader
            ds = acc.state.deepspeed_plugin.deepspeed_config
            ds["train_micro_batch_size_per_gpu"] = config.micro_batch_size
            ds["gradient_clipping"] = config.max_grad_norm
        self.rank, self.world = acc.process_index, acc.num_processes
        os.makedirs(config.output, exist_ok=True)
        self.checkpoint = self._check_resume() if resume else None
        if acc.is_main_process:
            write_text(os.path.join(config.output, CONFIG_NAME), json.dumps(config.to_dict(), indent=2))
        set_seed(config.seed)  # trainable init and dropout; identical on every rank

        plugin = acc.state.deepspeed_plugin
        self.ds_dtype = deepspeed_param_dtype(plugin.deepspeed_config) if plugin is not None else None
        self.frozen_dtype = frozen_dtype(config.frozen_dtype, on_gpu=not cpu, deepspeed=self.ds_dtype)
        model = build_training_model(config, self.frozen_dtype)
        self.trained_names = apply_recipe(model, config)
        self.fmt = ChatFormat.from_model(model, config.system_prompt)
        self._setup_data(model)

        total = self.plan.steps_per_epoch * config.epochs
        self.total_steps = config.max_steps or total
        optimizer = build_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda i: schedule_factor(
                i,
                warmup=config.warmup_steps,
                total=self.total_steps,
                kind=config.lr_schedule,
                min_ratio=config.min_lr_ratio,
            ),
        )
        self.state = TrainState()
        if self.checkpoint:
            load_trainable(model, read_trainable_weights(self.checkpoint), self.checkpoint)
        # Frozen parts are identical on every rank by construction: DDP need not broadcast them
        # at start (GBs of RLM) nor their buffers at every forward.
        from torch.nn.parallel import DistributedDataParallel

        frozen = [n for n in model.state_dict() if n.startswith(FROZEN_PREFIXES)]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, frozen)
        # The scheduler is stepped by us, once per optimizer step: accelerate would step it per process.
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.unwrapped = acc.unwrap_model(self.model)
        self.trainable = [p for p in self.unwrapped.parameters() if p.requires_grad]
        if self.checkpoint:
            self._load_checkpoint(self.checkpoint)
        # Only the main process writes metrics; the others log nothing of their own.
        self.metrics = (
            MetricsLog(
                config.output,
                resume_step=self.state.step if self.checkpoint else None,
                report_to=config.report_to,
                run_config=config.to_dict(),
            )
            if acc.is_main_process
            else None
        )
        self.rejects = RejectsLog(
            os.path.join(config.output, "rejects.jsonl" if self.rank == 0 else f"rejects-rank{self.rank}.jsonl")
        )
        for rejection in self.length_plan.rejections:
            if self.rank == 0:
                self.rejects.add(rejection)
        log.info(
            "training %d parameters (%s...), frozen parts in %s, encoders %s, on %d samples: "
            "%d steps of %d (%d x %d x %d processes), %d per epoch",
            sum(p.numel() for p in self.trainable),
            ", ".join(self.trained_names[:3]),
            str(self.frozen_dtype).removeprefix("torch."),
            "loaded" if not config.features else f"from the feature cache for {', '.join(self.dataset.features.kinds)}",
            len(self.dataset),
            self.total_steps,
            config.effective_batch_size,
            config.micro_batch_size,
            self.accumulation,
            self.world,
            self.plan.steps_per_epoch,
        )

    def _check_resume(self) -> str | None:
        checkpoint = latest_checkpoint(self.config.output)
        if checkpoint is None:
            log.warning("--resume: no checkpoint in %s, starting from the beginning", self.config.output)
            return None
        with open(os.path.join(self.config.output, CONFIG_NAME), encoding="utf-8") as f:
            saved = TrainConfig.from_dict(json.load(f))
        conflicts = self.config.resume_conflicts(saved)
        if conflicts:
            raise ValueError(
                f"cannot resume {self.config.output}: settings {conflicts} differ from the saved run "
                f"({ {k: saved.to_dict()[k] for k in conflicts} }); they would change the result"
            )
        return checkpoint

    def _setup_data(self, model: Any) -> None:
        config = self.config
        features, online_rates = None, []
        if config.features:
            from alarm.training.cache import FeatureCache

            features = FeatureCache(config.features, model)
            online = [enc for kind, enc in model.encoders.items() if kind not in features.kinds]
            online_rates = sorted({enc.sample_rate for enc in online})
        records = load_corpus(config.corpus, config.train_split)
        if not records:
            raise ValueError(f"corpus {config.corpus} has no rows in split {config.train_split!r}")
        plan_cache = LengthCache(
            config.plan_cache or os.path.join(config.output, PLAN_CACHE),
            self.fmt,
            writable=self.accelerator.is_main_process,
        )
        plan_args = dict(
            max_seq_len=config.max_seq_len,
            max_audio_seconds=config.max_audio_seconds,
            num_workers=config.num_workers,
            progress=config.progress and self.accelerator.is_main_process,
            cache=plan_cache,
            start_method=config.worker_start_method,
        )
        self.length_plan: LengthPlan = plan_lengths(records, self.fmt, **plan_args)
        kept = self.length_plan.kept
        dataset_args = dict(
            audio_root=config.audio_root,
            max_seq_len=config.max_seq_len,
            max_audio_seconds=config.max_audio_seconds,
            features=features,
            online_rates=online_rates,
        )
        self.dataset = TrainingDataset([records[i] for i in kept], self.fmt, **dataset_args)
        self.plan = StepPlan(
            self.length_plan.tokens[kept],
            self.length_plan.audio_seconds[kept],
            config.micro_batch_size,
            config.effective_batch_size // config.micro_batch_size,
            config.seed,
            config.group_by_length,
            config.group_size,
        )
        if self.plan.steps_per_epoch == 0:
            raise ValueError(
                f"{len(kept)} usable training samples do not fill one step of {config.effective_batch_size}"
            )
        val_records = load_corpus(config.corpus, config.val_split) if config.val_split else []
        self.val_dataset = self.val_batches = None
        if val_records:
            val_plan = plan_lengths(val_records, self.fmt, **plan_args)
            val_kept = [val_records[i] for i in val_plan.kept]
            self.val_dataset = TrainingDataset(val_kept, self.fmt, **dataset_args)
            self.val_batches = validation_batches(
                val_plan.tokens[val_plan.kept], config.micro_batch_size, config.val_batches, self.rank, self.world
            )
            self.sample_indices = list(range(min(config.num_samples, len(val_kept))))
        else:
            self.sample_indices = []

    # checkpoints ---------------------------------------------------------------------------
    def _load_checkpoint(self, path: str) -> None:
        saved = torch.load(os.path.join(path, TRAINER_STATE), map_location="cpu", weights_only=False)
        if saved["plan"] != self._plan_fingerprint():
            raise ValueError(f"{path}: the corpus or batching changed since this checkpoint ({saved['plan']})")
        if self._is_deepspeed():
            self._load_zero_optimizer(path)
        else:
            self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = TrainState(**saved["state"])
        rng_path = os.path.join(path, f"rng-rank{self.rank}.pt")
        self._rng_to_restore = torch.load(rng_path, weights_only=False) if os.path.exists(rng_path) else None
        if self._rng_to_restore is None:
            log.warning(
                "%s has no RNG state for rank %d (world size changed?); dropout streams differ", path, self.rank
            )
        log.info(
            "resuming from %s at step %d (epoch %d, step %d of it)",
            path,
            self.state.step,
            self.state.epoch,
            self.state.step_in_epoch,
        )

    def _load_zero_optimizer(self, path: str) -> None:
        """Restore ZeRO's partitioned state, fp32 master weights included, from every rank's file.

        ZeRO reads the files of all ranks (it re-partitions when the world size changed) and,
        told ``load_from_fp32_weights``, restores the masters exactly instead of rebuilding them
        from the module's bf16 copy.
        """
        files = sorted(
            (f for f in os.listdir(path) if f.startswith("optimizer-rank")),
            key=lambda f: int(f.removeprefix("optimizer-rank").removesuffix(".pt")),
        )
        if not files:
            raise FileNotFoundError(f"{path}: no optimizer-rank*.pt (not a DeepSpeed checkpoint)")
        # DeepSpeed pickles its own classes (the loss scaler) into the state: files this run wrote.
        states = [torch.load(os.path.join(path, f), map_location="cpu", weights_only=False) for f in files]
        self.optimizer.optimizer.load_state_dict(states, load_from_fp32_weights=True)

    def _plan_fingerprint(self) -> dict[str, Any]:
        return {
            "samples": len(self.dataset),
            "first_ids": [r.id for r in self.dataset.records[:3]],
            "tokens_sum": int(self.plan.tokens.sum()),
            "steps_per_epoch": self.plan.steps_per_epoch,
        }

    def _is_deepspeed(self) -> bool:
        return self.accelerator.state.deepspeed_plugin is not None

    def _weights_to_save(self) -> dict[str, torch.Tensor] | None:
        """The trainable weights a checkpoint holds; None: the module's own values.

        DeepSpeed in bf16/fp16 trains fp32 master copies, partitioned over the ranks in its
        optimizer, and keeps only a rounded copy in the module: the saved weights are the
        gathered masters. Gathering is a collective, so every rank calls this.
        """
        if self.ds_dtype is None:
            return None
        from deepspeed.utils import safe_get_full_fp32_param

        state = self.unwrapped.trainable_state_dict()
        for name, param in self.unwrapped.named_parameters():
            if param.requires_grad:
                state[name] = safe_get_full_fp32_param(param)
        return state

    def save_checkpoint(self) -> str:
        """Write ``checkpoints/step-NNNNNNN`` atomically: weights, optimizer, schedule, position, RNG."""
        acc, step = self.accelerator, self.state.step
        root = os.path.join(self.config.output, CHECKPOINTS)
        final = os.path.join(root, f"step-{step:07d}")
        tmp = os.path.join(root, f".tmp-step-{step:07d}")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        acc.wait_for_everyone()
        torch.save(_rng_state(), os.path.join(tmp, f"rng-rank{self.rank}.pt"))
        if self._is_deepspeed():  # ZeRO partitions the optimizer state: one file per rank
            torch.save(self.optimizer.state_dict(), os.path.join(tmp, f"optimizer-rank{self.rank}.pt"))
        weights = self._weights_to_save()
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.unwrapped.save_pretrained(tmp, weights)
            torch.save(
                {
                    "optimizer": None if self._is_deepspeed() else self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "state": asdict(self.state),
                    "plan": self._plan_fingerprint(),
                },
                os.path.join(tmp, TRAINER_STATE),
            )
            shutil.copy(os.path.join(self.config.output, CONFIG_NAME), tmp)
            self.plot(os.path.join(tmp, "curves.png"))
            shutil.rmtree(final, ignore_errors=True)  # the same step saved again after a resume
            os.replace(tmp, final)
            self._prune(root)
        acc.wait_for_everyone()
        return final

    def _prune(self, root: str) -> None:
        keep = self.config.keep_checkpoints
        done = sorted(n for n in os.listdir(root) if n.startswith("step-"))
        stale = done[: max(0, len(done) - keep)] if keep else []
        for name in stale:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)

    def plot(self, png: str) -> None:
        plot_curves(self.metrics.path, png, title=f"{self.config.preset}: {os.path.basename(self.config.output)}")
        shutil.copy(png, os.path.join(self.config.output, "curves.png"))

    # one step ------------------------------------------------------------------------------
    def _reduce(self, values: Sequence[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(tensor, "sum").tolist() if self.world > 1 else tensor.tolist()

    def train_step(self, micro_batches: list[TrainBatch]) -> StepRecord:
        """Forward/backward over this rank's micro-batches of one step, then the optimizer step."""
        acc = self.accelerator
        rejected = [r for b in micro_batches for r in b.rejections]
        local = [sum(b.num_target_tokens for b in micro_batches), sum(b.size for b in micro_batches)]
        local += [sum(r.reason == reason for r in rejected) for reason in REASONS]
        n_tokens, n_samples, *n_rejected = self._reduce(local)
        scale = self.accumulation * self.world / max(n_tokens, 1.0)
        loss_sum = 0.0
        grad_norm = None
        for batch in micro_batches:
            if batch.size == 0:
                batch = self._stand_in()
            with acc.accumulate(self.model):
                if batch is not None:
                    self._last_batch = batch
                    batch = batch.to(acc.device)
                    ce = token_loss_sum(self.model, batch)
                    acc.backward(ce * scale)
                    loss_sum += float(ce.detach())
                if acc.sync_gradients:
                    grad_norm = self._clip()
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        (total_loss,) = self._reduce([loss_sum])
        for rejection in rejected:
            self.rejects.add(rejection)
        for reason, n in zip(REASONS, n_rejected):
            if n:
                self.state.skipped[reason] = self.state.skipped.get(reason, 0) + int(n)
        self.state.step += 1
        self.state.step_in_epoch += 1
        self.state.samples += int(n_samples)
        loss = total_loss / n_tokens if n_tokens else float("nan")
        return StepRecord(self.state.step, self.state.epoch, loss, lr, grad_norm, int(n_tokens), int(n_samples))

    def _stand_in(self) -> TrainBatch | None:
        """Inputs for a micro-batch whose samples were all rejected.

        Every rank must run the same backward passes (DDP and DeepSpeed synchronise on them),
        so the last inputs run again with every label ignored: no loss, no gradient.
        """
        if self._last_batch is not None:
            return self._last_batch.without_targets()
        if self.world > 1:
            raise RuntimeError("the first micro-batch of this run was rejected entirely; see the rejects file")
        return None

    def _clip(self) -> float | None:
        max_norm = self.config.max_grad_norm or float("inf")
        norm = self.accelerator.clip_grad_norm_(self.trainable, max_norm)
        if norm is None and hasattr(self.model, "get_global_grad_norm"):  # DeepSpeed clips inside its step
            norm = self.model.get_global_grad_norm()
        return float(norm) if norm is not None else None

    # validation and samples ----------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean target-token loss over the validation batches (all ranks), or None without a split."""
        if self.val_dataset is None:
            return None
        acc = self.accelerator
        self.unwrapped.eval()
        loss_sum = tokens = 0.0
        loader = self._loader(self.val_dataset, self.val_batches)
        for batch in loader:
            for rejection in batch.rejections:
                self.rejects.add(rejection)
            if batch.size == 0:
                continue
            batch = batch.to(acc.device)
            with acc.autocast():
                loss_sum += float(token_loss_sum(self.unwrapped, batch))
            tokens += batch.num_target_tokens
        set_train_mode(self.unwrapped, self.config.train_modules)
        loss_sum, tokens = self._reduce([loss_sum, tokens])
        return loss_sum / tokens if tokens else None

    def _loader(self, dataset: TrainingDataset, batches: list[list[int]]) -> Any:
        config = self.config
        return make_loader(dataset, batches, self.fmt.pad_token_id, config.num_workers, config.worker_start_method)

    @torch.no_grad()
    def write_samples(self) -> None:
        """Generate answers to the first validation prompts (thinking budget on) into samples.jsonl.

        The audio comes the way training reads it: waves, or with a feature cache the cached
        encoder states (the encoders are not loaded then); a row that cannot be read is
        skipped with a warning.
        """
        if not self.accelerator.is_main_process or not self.sample_indices:
            return
        from alarm.generation import GenerationConfig, generate

        records, samples = [], []
        for i in self.sample_indices:
            item = self.val_dataset[i]
            if isinstance(item, Rejection):
                log.warning("sample %s skipped: %s (%s)", item.id, item.reason, item.detail)
                continue
            records.append(self.val_dataset.records[i])
            samples.append(item)
        if not samples:
            return
        generation = GenerationConfig(
            max_new_tokens=self.config.sample_max_new_tokens, thinking_budget=self.config.sample_thinking_budget
        )
        device, model = self.accelerator.device, self.unwrapped
        prompts = [self.fmt.prompt(r, s.sample_lengths) for r, s in zip(records, samples)]
        batch = collate(prompts, self.fmt.pad_token_id, padding_side="left")
        audio = Collator(self.fmt.pad_token_id)(samples).audio.to(device)
        model.eval()
        with self.accelerator.autocast():
            embeds = model.embed_inputs(batch.input_ids.to(device), audio)
            outputs = generate(
                model.language_model, model.tokenizer, embeds, batch.attention_mask.to(device), generation
            )
        set_train_mode(model, self.config.train_modules)
        with open(os.path.join(self.config.output, "samples.jsonl"), "a", encoding="utf-8") as f:
            for record, out in zip(records, outputs):
                row = {
                    "step": self.state.step,
                    "id": record.id,
                    "prompt": record.prompt,
                    "target": record.response,
                    "output": out.text,
                    "reasoning_tokens": out.num_reasoning_tokens,
                    "budget_reached": out.budget_reached,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.metrics.write_text(
                    f"samples/{record.id}", f"**prompt** {record.prompt}\n\n{out.text}", row["step"]
                )

    # loop ----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        config, acc, state = self.config, self.accelerator, self.state
        self._last_batch: TrainBatch | None = None
        set_train_mode(self.unwrapped, config.train_modules)
        rng = getattr(self, "_rng_to_restore", None)
        if rng is not None:
            _set_rng_state(rng)  # last, after everything in setup that may draw random numbers
        bar = tqdm(
            total=self.total_steps,
            initial=state.step,
            desc="train",
            disable=not (config.progress and acc.is_main_process),
        )
        window = {
            "loss": 0.0,
            "norm": 0.0,
            "norms": 0,
            "steps": 0,
            "tokens": 0.0,
            "target": 0,
            "t0": time.perf_counter(),
        }
        started = time.perf_counter()
        last: StepRecord | None = None
        while state.step < self.total_steps:
            batches = self.plan.rank_batches(state.epoch, state.step_in_epoch, self.rank, self.world)
            loader = iter(self._loader(self.dataset, batches))
            while state.step_in_epoch < self.plan.steps_per_epoch and state.step < self.total_steps:
                micro = [next(loader) for _ in range(self.accumulation)]
                window["tokens"] += sum(b.num_tokens for b in micro)
                record = self.train_step(micro)
                window["loss"] += record.loss
                window["steps"] += 1
                if record.grad_norm is not None:
                    window["norm"] += record.grad_norm
                    window["norms"] += 1
                val_loss = None
                if state.step % config.eval_every == 0 or state.step == self.total_steps:
                    val_loss = self.evaluate()
                    self.write_samples()
                if state.step % config.log_every == 0 or val_loss is not None or state.step == self.total_steps:
                    self._log(record, val_loss, window, started)
                last = StepRecord(**{**asdict(record), "val_loss": val_loss})
                bar.update(1)
                bar.set_postfix(loss=f"{record.loss:.4f}", lr=f"{record.lr:.2e}")
                if config.save_every and state.step % config.save_every == 0:
                    self.save_checkpoint()
                for callback in self.callbacks:
                    callback(last)
            if state.step_in_epoch >= self.plan.steps_per_epoch:
                state.epoch += 1
                state.step_in_epoch = 0
        bar.close()
        return self._finish(last)

    def _log(self, record: StepRecord, val_loss: float | None, window: dict[str, Any], started: float) -> None:
        now = time.perf_counter()
        (tokens,) = self._reduce([window["tokens"]])
        if self.accelerator.is_main_process:
            self.metrics.write(
                {
                    "step": record.step,
                    "epoch": record.epoch,
                    "loss": window["loss"] / max(window["steps"], 1),
                    "lr": record.lr,
                    "grad_norm": window["norm"] / window["norms"] if window["norms"] else None,
                    "tokens_per_s": tokens / max(now - window["t0"], 1e-9),
                    "target_tokens": record.target_tokens,
                    "samples": self.state.samples,
                    "skipped": sum(self.state.skipped.values()) + len(self.length_plan.rejections),
                    "val_loss": val_loss,
                    "elapsed_s": now - started,
                    "peak_mem_mb": self._peak_memory_mb(),
                }
            )
        window.update(loss=0.0, norm=0.0, norms=0, steps=0, tokens=0.0, t0=time.perf_counter())

    def _peak_memory_mb(self) -> float:
        device = self.accelerator.device
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated(device) / 2**20
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    def _finish(self, last: StepRecord | None) -> TrainResult:
        acc, config = self.accelerator, self.config
        if latest_checkpoint(config.output) != os.path.join(config.output, CHECKPOINTS, f"step-{self.state.step:07d}"):
            self.save_checkpoint()
        final = os.path.join(config.output, "final")
        weights = self._weights_to_save()
        if acc.is_main_process:
            self.unwrapped.save_pretrained(final, weights)
        acc.wait_for_everyone()
        if self.metrics is not None:
            self.metrics.close()
        skipped = dict(Counter(r.reason for r in self.length_plan.rejections) + Counter(self.state.skipped))
        if skipped:
            log.warning("skipped samples by reason: %s (see %s)", skipped, self.rejects.path)
        acc.end_training()
        return TrainResult(config.output, self.state.step, final, last.loss if last else None, skipped)


def train(
    config: TrainConfig, *, resume: bool = False, callbacks: Sequence[Callable[[StepRecord], None]] = ()
) -> TrainResult:
    """Train as configured (``resume``: continue from the newest checkpoint in ``config.output``)."""
    return Trainer(config, resume=resume, callbacks=callbacks).run()
