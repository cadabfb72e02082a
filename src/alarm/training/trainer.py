"""The training loop: setup -> train -> finish, as one accelerate loop.

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

What a run trains (model, initialisation, optimizer, schedule, loss) is in
:mod:`~alarm.training.recipe`; how the process joins the run (accelerate / DeepSpeed rules,
dtypes) in :mod:`~alarm.training.launch`; saving, pruning and resuming in
:mod:`~alarm.training.checkpoint`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from alarm.chat import collate
from alarm.io import write_text
from alarm.training.checkpoint import (
    CONFIG_NAME,
    Checkpoints,
    checkpoint_to_resume,
    latest_checkpoint,
    set_rng_state,
)
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
from alarm.training.launch import ignore_frozen_in_ddp, make_accelerator, run_dtypes
from alarm.training.plan_cache import LengthCache
from alarm.training.recipe import (
    apply_recipe,
    build_optimizer,
    build_training_model,
    load_trainable,
    read_trainable_weights,
    schedule_factor,
    set_train_mode,
    token_loss_sum,
)
from alarm.training.report import MetricsLog, RejectsLog, plot_curves

log = logging.getLogger(__name__)

PLAN_CACHE = "plan-cache"


# -- state ---------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Where the run is: optimizer steps done, position in the epoch, counters."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    samples: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    best_step: int | None = None  # the checkpoint with the lowest validation loss so far
    best_val_loss: float | None = None


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
    final_step: int  # the step whose weights final_model holds
    best_val_loss: float | None = None


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
        from accelerate.utils import set_seed

        config = self.config
        acc, self.accumulation = make_accelerator(config)
        self.accelerator = acc
        self.rank, self.world = acc.process_index, acc.num_processes
        os.makedirs(config.output, exist_ok=True)
        self.resume_from = checkpoint_to_resume(config) if resume else None
        if acc.is_main_process:
            write_text(os.path.join(config.output, CONFIG_NAME), json.dumps(config.to_dict(), indent=2))
        set_seed(config.seed)  # trainable init and dropout; identical on every rank

        self.ds_dtype, self.frozen_dtype = run_dtypes(acc, config.frozen_dtype)
        self.checkpoints = Checkpoints(acc, config.output, config.keep_checkpoints, self.ds_dtype)
        model = build_training_model(config, self.frozen_dtype)
        self.trained_names = apply_recipe(model, config)
        self.fmt = ChatFormat.from_model(model, config.system_prompt, eos=config.train_eos)
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
        if self.resume_from:
            load_trainable(model, read_trainable_weights(self.resume_from), self.resume_from)
        ignore_frozen_in_ddp(model)
        # The scheduler is stepped by us, once per optimizer step: accelerate would step it per process.
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.unwrapped = acc.unwrap_model(self.model)
        self.trainable = [p for p in self.unwrapped.parameters() if p.requires_grad]
        if self.resume_from:
            self._load_checkpoint(self.resume_from)
        # Only the main process writes metrics; the others log nothing of their own.
        self.metrics = (
            MetricsLog(
                config.output,
                resume_step=self.state.step if self.resume_from else None,
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
            target_tokens=config.target_tokens,
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
        state, self._rng_to_restore = self.checkpoints.load(
            path, self.optimizer, self.scheduler, plan=self._plan_fingerprint()
        )
        self.state = TrainState(**state)

    def _plan_fingerprint(self) -> dict[str, Any]:
        return {
            "samples": len(self.dataset),
            "first_ids": [r.id for r in self.dataset.records[:3]],
            "tokens_sum": int(self.plan.tokens.sum()),
            "steps_per_epoch": self.plan.steps_per_epoch,
        }

    def save_checkpoint(self) -> str:
        """Write ``checkpoints/step-NNNNNNN`` atomically: weights, optimizer, schedule, position, RNG."""
        return self.checkpoints.save(
            self.state.step,
            self.unwrapped,
            self.optimizer,
            self.scheduler,
            state=asdict(self.state),
            plan=self._plan_fingerprint(),
            extras=lambda folder: self.plot(os.path.join(folder, "curves.png")),
            pinned=self.state.best_step,
        )

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
        set_train_mode(self.unwrapped, self.config.train_modules, self.config.frozen_batchnorm)
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
        set_train_mode(model, self.config.train_modules, self.config.frozen_batchnorm)
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
        set_train_mode(self.unwrapped, config.train_modules, config.frozen_batchnorm)
        rng = getattr(self, "_rng_to_restore", None)
        if rng is not None:
            set_rng_state(rng)  # last, after everything in setup that may draw random numbers
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
                    self._track_best(val_loss)
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

    def _track_best(self, val_loss: float | None) -> None:
        """Note this step as the best so far when it will be checkpointed with a lower validation loss."""
        state, config = self.state, self.config
        if config.final_weights != "best" or val_loss is None:
            return
        # only checkpointed steps can become final/: every save_every-th (> 0 with "best") and the last
        if state.step % config.save_every and state.step != self.total_steps:
            return
        if state.best_val_loss is None or val_loss < state.best_val_loss:
            state.best_step, state.best_val_loss = state.step, val_loss

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
        if latest_checkpoint(config.output) != self.checkpoints.path(self.state.step):
            self.save_checkpoint()
        final = os.path.join(config.output, "final")
        final_step = self.state.step
        if config.final_weights == "best" and self.state.best_step is not None:
            final_step = self.state.best_step
            log.info("final/ holds step %d (validation loss %.4f)", final_step, self.state.best_val_loss)
        weights = self.checkpoints.weights(self.unwrapped) if final_step == self.state.step else None
        if acc.is_main_process:
            if final_step != self.state.step:  # the pinned checkpoint's weights, as saved
                weights = read_trainable_weights(self.checkpoints.path(final_step))
            self.unwrapped.save_pretrained(final, weights)
        acc.wait_for_everyone()
        if self.metrics is not None:
            self.metrics.close()
        skipped = dict(Counter(r.reason for r in self.length_plan.rejections) + Counter(self.state.skipped))
        if skipped:
            log.warning("skipped samples by reason: %s (see %s)", skipped, self.rejects.path)
        acc.end_training()
        return TrainResult(
            config.output,
            self.state.step,
            final,
            last.loss if last else None,
            skipped,
            final_step=final_step,
            best_val_loss=self.state.best_val_loss,
        )


def train(
    config: TrainConfig, *, resume: bool = False, callbacks: Sequence[Callable[[StepRecord], None]] = ()
) -> TrainResult:
    """Train as configured (``resume``: continue from the newest checkpoint in ``config.output``)."""
    return Trainer(config, resume=resume, callbacks=callbacks).run()
