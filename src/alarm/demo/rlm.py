"""The demo's stand-in reasoning LLM: a tiny Qwen3 taught, text only, to answer from metadata.

ALARM's premise is an RLM that already answers well from a clip's textual surrogate; the
alignment only has to replace that text with listening. A tiny RLM with random weights has
no such skill and cannot be steered by any input (its logits are bounded by its 0.02-scale
embeddings; see docs/training.md), so the demo first gives it the skill: a few hundred
full-batch steps on ``(metadata, request) -> response`` pairs taken from the demo corpus
and from the benchmark's question format. The result is saved with ``save_pretrained``
and named by a preset file, so the rest of the demo loads it like any released RLM.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from alarm.chat import build_example, collate
from alarm.io import write_text
from alarm.modeling.tokenizer import load_tokenizer
from alarm.presets import load_preset

log = logging.getLogger(__name__)

# Wider than the tiny presets' 32: it has to learn to read the pitch word and describe it.
TEXT_CONFIG = {
    "vocab_size": 272,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
}


@dataclass(frozen=True)
class Lesson:
    """One text-only example: the metadata stands where the audio will be."""

    metadata: str
    request: str
    response: str


def teach_rlm(
    lessons: Sequence[Lesson],
    out_dir: str,
    *,
    system: str | None,
    steps: int,
    batch_size: int = 16,
    learning_rate: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Train a tiny Qwen3 on ``lessons`` (random batches) and save it to ``out_dir``; return the losses."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    rlm = Qwen3ForCausalLM(Qwen3Config(**TEXT_CONFIG))
    tokenizer = load_tokenizer("tiny")
    examples = [
        build_example(tokenizer, [f"{x.metadata}.\n", x.request], system=system, target=x.response) for x in lessons
    ]
    optimizer = torch.optim.AdamW(rlm.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / 20))
    losses = []
    rlm.train()
    for _ in tqdm(range(steps), desc="teaching the demo RLM", disable=not progress):
        picked = torch.randperm(len(examples), generator=generator)[:batch_size].tolist()
        batch = collate([examples[i] for i in picked], tokenizer.pad_token_id)
        loss = rlm(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rlm.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    rlm.eval()
    rlm.save_pretrained(out_dir)
    log.info("demo RLM: loss %.3f -> %.3f in %d steps", losses[0], losses[-1], steps)
    return losses


def write_preset(base: str, rlm_dir: str, path: str) -> str:
    """A preset file: ``base``'s audio path on the taught RLM (loaded from ``rlm_dir``)."""
    preset = load_preset(base)
    preset.pop("text_config", None)
    preset.pop("text_seed", None)
    preset.update(
        preset=f"demo-{base}",
        description=f"{base}'s audio path on the demo's taught tiny RLM",
        text_model=os.path.abspath(rlm_dir),
    )
    write_text(path, json.dumps(preset, indent=2) + "\n")
    return path
