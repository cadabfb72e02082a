"""How this process joins a run: the accelerate / DeepSpeed set-up rules and the dtypes they imply.

accelerate provides process groups (torchrun, ``accelerate launch``), DDP / DeepSpeed ZeRO-2
wrapping, autocast and gradient-accumulation sync; the rules here are what it does not
decide alone: which backend a CPU DeepSpeed launch needs, what a DeepSpeed config must be
told, and in which dtype the frozen parts are held.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from alarm.modeling.model import FROZEN_PREFIXES
from alarm.training.config import TrainConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def deepspeed_param_dtype(ds_config: dict[str, Any]) -> torch.dtype | None:
    """The dtype DeepSpeed casts the model's parameters to (None: it keeps them fp32)."""
    for key, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if ds_config.get(key, {}).get("enabled") is True:
            return dtype
    return None


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


def make_accelerator(config: TrainConfig) -> tuple[Any, int]:
    """The run's ``Accelerator`` and its gradient-accumulation steps (they depend on the world size).

    Mixed precision ``auto`` is bf16 on a GPU that has it, none otherwise. Under DeepSpeed the
    micro-batch size and the clipping norm are written into its config: DeepSpeed cannot infer
    them without a prepared data loader, and the loop feeds it batches of its own.
    """
    from accelerate import Accelerator, PartialState
    from accelerate.utils import InitProcessGroupKwargs

    cpu = not torch.cuda.is_available()
    state_args = accelerator_state_args(cpu)
    world = PartialState(**state_args).num_processes
    accumulation = config.accumulation_steps(world)
    precision = config.mixed_precision
    if precision == "auto":
        precision = "no" if cpu or not torch.cuda.is_bf16_supported() else "bf16"
    acc = Accelerator(
        cpu=state_args["cpu"],
        mixed_precision=precision,
        gradient_accumulation_steps=accumulation,
        kwargs_handlers=[InitProcessGroupKwargs(backend=state_args["backend"])] if state_args["backend"] else None,
    )
    if deepspeed_requested() and acc.state.deepspeed_plugin is None:  # never train without it silently
        raise RuntimeError("accelerate was launched with DeepSpeed but the run did not enable it")
    if acc.state.deepspeed_plugin is not None:  # values DeepSpeed cannot infer without a prepared loader
        ds = acc.state.deepspeed_plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = config.micro_batch_size
        ds["gradient_clipping"] = config.max_grad_norm
    return acc, accumulation


def run_dtypes(acc: Any, setting: str) -> tuple[torch.dtype | None, torch.dtype]:
    """``(DeepSpeed's parameter dtype or None, the frozen parts' dtype)`` for this run."""
    plugin = acc.state.deepspeed_plugin
    ds_dtype = deepspeed_param_dtype(plugin.deepspeed_config) if plugin is not None else None
    return ds_dtype, frozen_dtype(setting, on_gpu=torch.cuda.is_available(), deepspeed=ds_dtype)


def ignore_frozen_in_ddp(model: torch.nn.Module) -> None:
    """Tell DDP to skip the frozen parts: identical on every rank by construction, so DDP need
    not broadcast them at start (GBs of RLM) nor their buffers at every forward."""
    from torch.nn.parallel import DistributedDataParallel

    frozen = [n for n in model.state_dict() if n.startswith(FROZEN_PREFIXES)]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, frozen)
