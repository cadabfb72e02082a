"""``alarm train --preview N``: the first N training rows exactly as the RLM reads them.

Each row is built by the training code itself (:class:`~alarm.training.data.TrainingDataset`,
which reads the audio, sizes its slot and renders the chat), under the run's settings: the
system prompt, EOS, the target-length filter and the token limit. Nothing trains. Printed as
JSON lines: ``input`` is the prompt decoded with every run of audio positions shown as one
``<|audio:N|>`` marker (N positions, boundaries included), ``target`` the labelled tokens
decoded with special tokens kept, so a trained EOS shows as the tokenizer's end-of-turn text.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

from alarm.chat import IGNORE_INDEX
from alarm.modeling.tokenizer import AUDIO_TOKEN, token_id
from alarm.training.config import TrainConfig
from alarm.training.data import (
    TARGET_LENGTH,
    ChatFormat,
    Rejection,
    TrainingDataset,
    load_corpus,
    target_length_problems,
)

log = logging.getLogger(__name__)


def preview_rows(config: TrainConfig, n: int) -> Iterator[dict[str, Any]]:
    """The first ``n`` rows of ``config.train_split`` that would train, as ``{id, dataset, input, target, ...}``.

    Rows a filter leaves out are skipped, as training would skip them, and counted by reason
    in a warning (a corpus whose every row a filter drops would otherwise print nothing).
    """
    from alarm.training.recipe import build_training_model

    if config.audio_root is None:
        raise ValueError("--preview reads the audio: give --audio-root")
    model = build_training_model(config)
    fmt = ChatFormat.from_model(model, config.system_prompt, eos=config.train_eos)
    records = load_corpus(config.corpus, config.train_split)
    dataset = TrainingDataset(
        records,
        fmt,
        audio_root=config.audio_root,
        max_seq_len=config.max_seq_len,
        max_audio_seconds=config.max_audio_seconds,
    )
    shown = 0
    skipped: Counter[str] = Counter()
    for i, record in enumerate(records):
        if shown >= n:
            break
        if config.target_tokens and target_length_problems([record], fmt.tokenizer, config.target_tokens):
            skipped[TARGET_LENGTH] += 1
            continue
        sample = dataset[i]
        if isinstance(sample, Rejection):
            skipped[sample.reason] += 1
            log.info("preview: %s skipped (%s: %s)", sample.id, sample.reason, sample.detail)
            continue
        ids, labels = sample.input_ids.tolist(), sample.labels.tolist()
        prompt = [t for t, label in zip(ids, labels) if label == IGNORE_INDEX]
        target = [label for label in labels if label != IGNORE_INDEX]
        yield {
            "id": record.id,
            "dataset": record.dataset,
            "input": render_ids(fmt.tokenizer, prompt),
            "target": fmt.tokenizer.decode(target, skip_special_tokens=False),
            "input_tokens": len(prompt),
            "target_tokens": len(target),
        }
        shown += 1
    if skipped:
        reasons = ", ".join(f"{reason} {count}" for reason, count in skipped.most_common())
        log.warning(
            "preview: %d of the first %d rows left out by the training filters (%s)%s",
            sum(skipped.values()),
            sum(skipped.values()) + shown,
            reasons,
            "; --target-tokens none keeps every target length" if TARGET_LENGTH in skipped else "",
        )


def render_ids(tokenizer: Any, ids: list[int]) -> str:
    """``ids`` decoded, each run of audio placeholders shown as one ``<|audio:N|>`` marker."""
    audio_id = token_id(tokenizer, AUDIO_TOKEN)
    pieces: list[str] = []
    text: list[int] = []
    run = 0
    for tok in [*ids, None]:
        if tok == audio_id:
            if text:
                pieces.append(tokenizer.decode(text, skip_special_tokens=False))
                text = []
            run += 1
            continue
        if run:
            pieces.append(f"<|audio:{run}|>")
            run = 0
        if tok is not None:
            text.append(tok)
    if text:
        pieces.append(tokenizer.decode(text, skip_special_tokens=False))
    return "".join(pieces)
