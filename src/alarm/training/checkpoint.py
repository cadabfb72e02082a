"""Checkpoints of a run: ``<output>/checkpoints/step-NNNNNNN``, saved atomically, pruned, resumed.

A checkpoint holds what an exact resume needs: the trainable weights (``save_pretrained``;
under DeepSpeed in bf16/fp16 the gathered fp32 master weights), the optimizer state (one
file per rank under ZeRO, which partitions it), the LR schedule, the position in the run,
each rank's RNG state, a fingerprint of the step plan, and a copy of the run's settings. It
is written to a hidden temporary directory and renamed into place, so a directory named
``step-*`` with a trainer state in it is always complete.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from alarm.training.config import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.pt"
CONFIG_NAME = "train_config.json"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_name(step: int) -> str:
    """The folder name of step ``step``'s checkpoint (zero-padded: names sort by step)."""
    return f"step-{step:07d}"


def latest_checkpoint(output: str) -> str | None:
    """The newest complete checkpoint of a run (directories appear only when complete)."""
    root = os.path.join(output, CHECKPOINTS)
    if not os.path.isdir(root):
        return None
    done = sorted(
        n for n in os.listdir(root) if n.startswith("step-") and os.path.isfile(os.path.join(root, n, TRAINER_STATE))
    )
    return os.path.join(root, done[-1]) if done else None


def checkpoint_to_resume(config: TrainConfig) -> str | None:
    """The newest checkpoint of ``config.output`` for ``--resume``, or None (a fresh start).

    Settings that would change the result (``TrainConfig.resume_conflicts``) must equal the
    saved run's; a conflict is an error rather than a silently different run.
    """
    checkpoint = latest_checkpoint(config.output)
    if checkpoint is None:
        log.warning("--resume: no checkpoint in %s, starting from the beginning", config.output)
        return None
    with open(os.path.join(config.output, CONFIG_NAME), encoding="utf-8") as f:
        saved = TrainConfig.from_dict(json.load(f))
    conflicts = config.resume_conflicts(saved)
    if conflicts:
        raise ValueError(
            f"cannot resume {config.output}: settings {conflicts} differ from the saved run "
            f"({ {k: saved.to_dict()[k] for k in conflicts} }); they would change the result"
        )
    return checkpoint


def zero_master_weights(model: Any) -> dict[str, torch.Tensor]:
    """The trainable weights as DeepSpeed's fp32 master copies, gathered from every rank.

    DeepSpeed in bf16/fp16 trains fp32 master copies, partitioned over the ranks in its
    optimizer, and keeps only a rounded copy in the module: the saved weights are the
    gathered masters. Gathering is a collective, so every rank calls this.
    """
    from deepspeed.utils import safe_get_full_fp32_param

    state = model.trainable_state_dict()
    for name, param in model.named_parameters():
        if param.requires_grad:
            state[name] = safe_get_full_fp32_param(param)
    return state


def load_zero_optimizer(optimizer: Any, path: str) -> None:
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
    optimizer.optimizer.load_state_dict(states, load_from_fp32_weights=True)


class Checkpoints:
    """Saves, prunes and restores the checkpoints of one run, on every rank together.

    ``deepspeed_dtype`` is DeepSpeed's parameter dtype (None without DeepSpeed or in fp32):
    it decides whether the saved weights are the module's own or ZeRO's gathered masters.
    """

    def __init__(self, accelerator: Any, output: str, keep: int, deepspeed_dtype: torch.dtype | None) -> None:
        self.accelerator = accelerator
        self.output = output
        self.root = os.path.join(output, CHECKPOINTS)
        self.keep = keep  # newest checkpoints kept; 0 keeps them all
        self.deepspeed_dtype = deepspeed_dtype

    @property
    def deepspeed(self) -> bool:
        return self.accelerator.state.deepspeed_plugin is not None

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    def path(self, step: int) -> str:
        """Where step ``step``'s checkpoint is (or would be) in this run."""
        return os.path.join(self.root, checkpoint_name(step))

    def weights(self, model: Any) -> dict[str, torch.Tensor] | None:
        """The trainable weights to save; None: the module's own values (a collective under DeepSpeed)."""
        return zero_master_weights(model) if self.deepspeed_dtype is not None else None

    def save(
        self,
        step: int,
        model: Any,
        optimizer: Any,
        scheduler: Any,
        *,
        state: dict[str, Any],
        plan: dict[str, Any],
        extras: Callable[[str], None] = lambda folder: None,
        pinned: int | None = None,
    ) -> str:
        """Write ``step-NNNNNNN`` atomically: weights, optimizer, schedule, position, RNG.

        ``model`` is the unwrapped model; ``extras(folder)`` adds files on the main process
        (the curves) before the folder is renamed into place; the checkpoint of step
        ``pinned`` (the best so far) survives pruning.
        """
        acc = self.accelerator
        final = self.path(step)
        tmp = os.path.join(self.root, f".tmp-{checkpoint_name(step)}")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        acc.wait_for_everyone()
        torch.save(rng_state(), os.path.join(tmp, f"rng-rank{self.rank}.pt"))
        if self.deepspeed:  # ZeRO partitions the optimizer state: one file per rank
            torch.save(optimizer.state_dict(), os.path.join(tmp, f"optimizer-rank{self.rank}.pt"))
        weights = self.weights(model)
        acc.wait_for_everyone()
        if acc.is_main_process:
            model.save_pretrained(tmp, weights)
            torch.save(
                {
                    "optimizer": None if self.deepspeed else optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "state": state,
                    "plan": plan,
                },
                os.path.join(tmp, TRAINER_STATE),
            )
            shutil.copy(os.path.join(self.output, CONFIG_NAME), tmp)
            extras(tmp)
            shutil.rmtree(final, ignore_errors=True)  # the same step saved again after a resume
            os.replace(tmp, final)
            self.prune(pinned)
        acc.wait_for_everyone()
        return final

    def prune(self, pinned: int | None = None) -> None:
        """Delete all but the newest ``keep`` checkpoints and the one of step ``pinned``."""
        done = sorted(n for n in os.listdir(self.root) if n.startswith("step-"))
        stale = done[: max(0, len(done) - self.keep)] if self.keep else []
        for name in stale:
            if pinned is not None and name == checkpoint_name(pinned):
                continue
            shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def load(
        self, path: str, optimizer: Any, scheduler: Any, *, plan: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Restore the optimizer and schedule from ``path``; returns the saved position and this rank's RNG state.

        The RNG state is None when the checkpoint has none for this rank (the world size
        changed); it is restored by the caller last, after everything that draws random numbers.
        """
        saved = torch.load(os.path.join(path, TRAINER_STATE), map_location="cpu", weights_only=False)
        if saved["plan"] != plan:
            raise ValueError(f"{path}: the corpus or batching changed since this checkpoint ({saved['plan']})")
        if self.deepspeed:
            load_zero_optimizer(optimizer, path)
        else:
            optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        rng_path = os.path.join(path, f"rng-rank{self.rank}.pt")
        rng = torch.load(rng_path, weights_only=False) if os.path.exists(rng_path) else None
        if rng is None:
            log.warning(
                "%s has no RNG state for rank %d (world size changed?); dropout streams differ", path, self.rank
            )
        state = saved["state"]
        log.info(
            "resuming from %s at step %d (epoch %d, step %d of it)",
            path,
            state["step"],
            state["epoch"],
            state["step_in_epoch"],
        )
        return state, rng
