"""What a run trains and how: the model, stage-wise initialisation, AdamW, the schedule, the loss.

The preset is built with its frozen parts in the run's dtype (encoders a feature cache holds
become shells), ``init_from`` / ``init_branches`` copy trained weights in (ALARM-CA starts
from single-encoder adapters), ``train_modules`` narrows what trains (the fusion stage), and
the loss is the sum of next-token cross-entropies over target tokens only.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

from alarm.chat import IGNORE_INDEX
from alarm.modeling.model import cache_argument
from alarm.training.config import TrainConfig
from alarm.training.data import TrainBatch

log = logging.getLogger(__name__)


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


def set_train_mode(model: Any, train_modules: Sequence[str], frozen_batchnorm: str = "train") -> None:
    """Train mode for what trains; eval for everything else (frozen dropout stays off).

    ``frozen_batchnorm`` ``train`` leaves the BatchNorm layers of frozen audio-path modules in
    train mode, as the official fusion stage does (batch statistics, running statistics
    updated); ``eval`` fixes them too. The RLM and the encoders are always in eval.
    """
    model.train()  # the model keeps its RLM and encoders in eval itself
    if not train_modules:
        return
    for name, module in model.named_modules():
        inside = _under(name, train_modules)
        above = any(p.startswith(name + ".") for p in train_modules) or name == ""
        official_bn = frozen_batchnorm == "train" and isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
        if not inside and not above and not (official_bn and module.training):
            module.training = False  # per module, not .eval(): a parent must not switch its children


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


# Below this many shared positions a second forward call costs more than the positions it saves.
MIN_SHARED_PREFIX = 8


def shared_prefix_length(batch: TrainBatch, audio_token_id: int) -> int:
    """Leading positions with the same token in every row, before any audio and any target.

    Nothing that trains reaches them (the audio comes later and the RLM is frozen), so their
    keys and values are the same in every row and need no gradient: a chat template's system
    prompt, e.g. SmolLM2's default one, about a quarter of a short training row.
    """
    ids = batch.input_ids
    common = (ids == ids[:1]).all(0) & batch.attention_mask.bool().all(0) & (ids[0] != audio_token_id)
    length = int(common.long().cumprod(0).sum())
    positions = target_positions(batch.labels)
    first_target = int(positions.min()) if len(positions) else ids.shape[1] - 1
    return max(0, min(length, first_target, ids.shape[1] - 1))  # at least one position left to run


def _prefix_start(model: torch.nn.Module, batch: TrainBatch) -> int:
    core = getattr(model, "module", model)  # under DDP / DeepSpeed wrappers
    language_model, audio_token_id = getattr(core, "language_model", None), getattr(core, "audio_token_id", None)
    if language_model is None or audio_token_id is None or _checkpointing(language_model):
        return 0  # recomputed layers would append to the cache twice
    if any(p.requires_grad for p in language_model.parameters()):
        return 0  # a training RLM: the prefix's keys and values would need their gradient
    start = shared_prefix_length(batch, audio_token_id)
    return start if start >= MIN_SHARED_PREFIX else 0


def _checkpointing(language_model: torch.nn.Module) -> bool:
    flag = "is_activation_checkpointing"  # transformers 5.2x; is_gradient_checkpointing before
    return bool(getattr(language_model, flag if hasattr(language_model, flag) else "is_gradient_checkpointing", False))


def token_loss_sum(model: torch.nn.Module, batch: TrainBatch, prefix_cache: bool = True) -> torch.Tensor:
    """Sum of next-token cross-entropies (fp32) over ``batch``'s target tokens.

    With ``prefix_cache``, the rows' shared leading positions (:func:`shared_prefix_length`) run
    once, for one row and without gradient, and the batch continues from their keys and
    values: the same loss and gradients for a quarter less work on SmolLM2's short rows.
    """
    positions = target_positions(batch.labels)
    start = _prefix_start(model, batch) if prefix_cache else 0
    prefix: dict[str, Any] = {}
    if start:
        name = cache_argument(getattr(model, "module", model).language_model)
        with torch.no_grad():
            past = model(input_ids=batch.input_ids[:1, :start], use_cache=True, logits_to_keep=1)[name]
        past.batch_repeat_interleave(batch.input_ids.shape[0])  # the rows, whatever the ids say
        prefix = {name: past}
    out = model(
        input_ids=batch.input_ids[:, start:],
        attention_mask=batch.attention_mask,
        audio=batch.audio,
        use_cache=False,
        logits_to_keep=positions - start,
        **prefix,
    )
    targets = batch.labels[:, 1:].index_select(1, positions)  # (B, K); rows without a target there: ignored
    return F.cross_entropy(
        out.logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )
