"""Chat layout: the RLM's own chat template with audio spliced into user turns.

A user turn is a sequence of parts: text, and :class:`AudioSlot` s that reserve a number of
positions for audio embeddings. The template is rendered with one ``<|audio|>`` placeholder
per slot where the slot stands, tokenized, and each placeholder is expanded to the slot's
size; the model later fills all placeholder positions of a batch, in order, with one
``masked_scatter``. The paper trains with one clip before the text of the last user turn
(earlier turns, ``context``, as text: InstructS2S's "earlier turns as text, last query
spoken"); at inference a user turn may hold several clips, and earlier user turns may hold
clips too (a context turn whose content is a list of parts).

Labels are -100 everywhere except the target: its reasoning (``<think>...</think>``) and its
answer, so the loss is computed on what the RLM must produce. The end-of-turn token is not
part of the target by default, as in the official training (``hf_dataset.py``): a target may
be cut mid-thought, and a frozen RLM already knows where to stop. ``eos=True`` appends it
to finished targets (reasoning closed), for small RLMs that must be taught to stop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

# AudioSlot / UserPart live below the model (the model makes them, this module renders them);
# they stay importable from here.
from alarm.modeling.inputs import AudioSlot, UserPart
from alarm.modeling.tokenizer import AUDIO_TOKEN, token_id

IGNORE_INDEX = -100
THINK_OPEN, THINK_END = "<think>", "</think>"


@dataclass(frozen=True)
class ChatExample:
    """One tokenized conversation: ids with expanded audio placeholders, and labels."""

    input_ids: list[int]
    labels: list[int]

    @property
    def num_target_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


@dataclass
class ChatBatch:
    """Padded batch. ``lengths`` are true lengths; masks are derived from them."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    labels: torch.Tensor | None  # (B, T) or None at inference
    lengths: torch.Tensor  # (B,)


#: An earlier turn, ``{"role": "user" | "assistant" | "system", "content": ...}``. Content is
#: text, or for a user turn a list of parts (text and audio slots) like the last user turn's.
ContextTurn = Mapping[str, "str | Sequence[UserPart]"]


def render_prompt(
    tokenizer: PreTrainedTokenizerBase,
    user: Sequence[UserPart],
    *,
    system: str | None = None,
    context: Sequence[ContextTurn] = (),
) -> tuple[str, list[AudioSlot]]:
    """Render the chat template up to the assistant's generation prompt.

    Returns the prompt text (one ``<|audio|>`` where each slot stands) and the slots in the
    order they appear in it: earlier user turns' first, then the last user turn's.
    """
    slots: list[AudioSlot] = []
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    for turn in context:
        if set(turn) != {"role", "content"} or turn["role"] not in ("user", "assistant", "system"):
            raise ValueError(f"context turns are {{role, content}} with role user/assistant/system, got {turn!r}")
        content = turn["content"]
        if not isinstance(content, str) and turn["role"] != "user":
            raise ValueError(f"only user turns may hold audio, got a {turn['role']} turn with parts: {turn!r}")
        parts = [content] if isinstance(content, str) else content
        messages.append({"role": turn["role"], "content": _render_parts(parts, slots)})
    messages.append({"role": "user", "content": _render_parts(user, slots)})
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return text, slots


def _render_parts(parts: Sequence[UserPart], slots: list[AudioSlot]) -> str:
    """A turn's text with one placeholder per slot; the slots are appended to ``slots`` in order."""
    pieces = []
    for part in parts:
        if isinstance(part, AudioSlot):
            slots.append(part)
            pieces.append(AUDIO_TOKEN)
        elif isinstance(part, str):
            if AUDIO_TOKEN in part:
                raise ValueError(f"chat text may not contain the audio placeholder {AUDIO_TOKEN!r}")
            pieces.append(part)
        else:
            raise TypeError(f"a turn's parts are text or AudioSlot, got {type(part).__name__}")
    return "".join(pieces)


def build_example(
    tokenizer: PreTrainedTokenizerBase,
    user: Sequence[UserPart],
    *,
    system: str | None = None,
    context: Sequence[ContextTurn] = (),
    target: str | None = None,
    eos: bool = False,
) -> ChatExample:
    """Tokenize one conversation; with ``target`` the labels cover the target only.

    The target is the assistant's full output, ``<think>reasoning</think>answer``. When the
    template's generation prompt already opens the reasoning (Qwen3-Thinking-2507 does), the
    target's own opening tag is dropped so it is not predicted twice. With ``eos`` the
    end-of-turn token follows a finished target (an open ``<think>`` never gets one).
    """
    text, slots = render_prompt(tokenizer, user, system=system, context=context)
    audio_id = token_id(tokenizer, AUDIO_TOKEN)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if ids.count(audio_id) != len(slots):  # a template that drops or rewrites turns would misplace audio
        raise ValueError(f"the chat template kept {ids.count(audio_id)} of {len(slots)} audio placeholders")
    prompt_ids: list[int] = []
    slot_sizes = iter(slots)
    for tok in ids:
        prompt_ids.extend([audio_id] * next(slot_sizes).size if tok == audio_id else [tok])

    if target is None:
        return ChatExample(prompt_ids, [IGNORE_INDEX] * len(prompt_ids))
    finished = target_finished(target)  # before the opening tag is dropped below
    if text.rstrip().endswith(THINK_OPEN):
        target = without_think_open(target)
    target_ids = tokenizer(target, add_special_tokens=False).input_ids
    if eos and finished:
        target_ids.append(int(tokenizer.eos_token_id))
    return ChatExample(prompt_ids + target_ids, [IGNORE_INDEX] * len(prompt_ids) + target_ids)


def without_think_open(target: str) -> str:
    """``target`` without its leading ``<think>``: the part a template that opens the reasoning leaves to predict."""
    stripped = target.lstrip()
    return stripped[len(THINK_OPEN) :].lstrip("\n") if stripped.startswith(THINK_OPEN) else target


def target_finished(target: str) -> bool:
    """False for a target cut inside its reasoning: ``<think>`` opened (or left to the template), never closed."""
    return THINK_END in target or THINK_OPEN not in target


def collate(examples: Sequence[ChatExample], pad_token_id: int, padding_side: str = "right") -> ChatBatch:
    """Pad a list of examples. Use ``padding_side="left"`` for generation."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    lengths = torch.tensor([len(e.input_ids) for e in examples], dtype=torch.long)
    width = int(lengths.max())
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.arange(width)
    attention_mask = positions[None, :] < lengths[:, None]
    if padding_side == "left":
        attention_mask = attention_mask.flip(1)
    for i, e in enumerate(examples):
        keep = attention_mask[i]
        input_ids[i, keep] = torch.tensor(e.input_ids)
        labels[i, keep] = torch.tensor(e.labels)
    has_targets = any(e.num_target_tokens for e in examples)
    return ChatBatch(input_ids, attention_mask.long(), labels if has_targets else None, lengths)
