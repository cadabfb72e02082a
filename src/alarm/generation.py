"""Generation with a thinking budget, over prompt embeddings, batched or streamed.

Thinking budget ``B`` (the two-pass scheme of the official ``generate_vllm_mcqa.py``): the RLM
generates at most ``B`` tokens in a first pass. A sample that finished (end of turn) is done.
A sample that ran out of tokens while still reasoning gets a short closing sentence plus
``</think>`` appended, and every unfinished sample continues from ``prompt + what it wrote``
in a second pass. ``B = -1`` means no budget. Reasoning tokens therefore never exceed ``B``
and every output has a ``</think>`` before its answer (unless the second pass runs out).

How long the second pass may run is ``GenerationConfig.second_pass``: ``remaining`` (ours,
the default) gives it what is left of ``max_new_tokens``, so an output never exceeds
``max_new_tokens``; ``full`` (official: the second ``llm.generate`` reuses the sampling
parameters whose ``max_tokens`` is the whole ``max_new_tokens``) gives it ``max_new_tokens``
again, capped so that prompt + output stay within ``max_model_len`` (vLLM stops a request
there). What the second pass continues from is ``GenerationConfig.continue_from``: ``ids``
(ours, the default) keeps the ids the model wrote and appends the closing sentence's ids;
``text`` (official ``get_response``) decodes the first pass, appends the closing sentence and
re-tokenizes the whole text, so tokens can merge across the seam (the same text, other ids).

Where a sample stops is ``GenerationConfig.stop_tokens``: empty (ours) stops at the
tokenizer's end of turn only; the official protocol lists ``<|im_end|>`` and
``<|endoftext|>``, the ids vLLM stops at by default for Qwen3 (the tokenizer's EOS plus the
``eos_token_id`` list of the RLM's ``generation_config.json``).
A model with no thinking mode (no ``</think>`` token: SmolLM2-Instruct, the real RLM of the
CPU presets) answers in one pass whatever ``B`` is, with empty reasoning.

The functions here take any audio-language model with the small interface of
:class:`~alarm.modeling.model.AlarmForConditionalGeneration` (``sample_rates``,
``audio_slots``, ``user_parts``, ``embed_inputs``, ``language_model``, ``tokenizer``), so the
single-encoder, fusion and ensemble (ALARM-E) models share one path. The budget logic
(:func:`budgeted_generate`) is written once over a :data:`DecodePass`; :func:`generate` plugs
in transformers' ``generate``, :mod:`alarm.generation_vllm` plugs in vLLM's.

Requests: :func:`build_inputs` turns OpenAI-style conversations whose user messages hold
decoded clips among their text (several per message, in earlier turns too) into prompt ids
and one flat audio batch; :func:`answer` / :func:`stream` take one clip or a list of clips per
question (placed before it), :func:`answer_chat` / :func:`stream_chat` whole conversations.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.generation.streamers import BaseStreamer

from alarm.audio import Waveform
from alarm.chat import build_example, collate
from alarm.modeling.inputs import AudioBatch, AudioSlot, UserPart
from alarm.modeling.tokenizer import token_id

log = logging.getLogger(__name__)

THINK_END = "</think>"
DEFAULT_CLOSING = "\n\nTime is up for thinking, so I will answer now with what I have worked out.\n"


SECOND_PASS = ("remaining", "full")
CONTINUE_FROM = ("ids", "text")


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings. Sampling defaults follow Qwen3's advice for thinking models.

    ``top_k = 0`` means no top-k cut; ``min_p = 0`` and ``repetition_penalty = 1`` change
    nothing. ``seed`` (sampling only) seeds every decoding pass, as the official evaluation
    gives vLLM one seed for all requests. ``closing_text`` is followed by ``</think>`` unless it
    holds one itself (the official sentence ends the reasoning itself, then ``\n\n``).
    ``second_pass``, ``max_model_len``, ``continue_from`` and ``stop_tokens``: see the module
    docstring (``stop_tokens`` the vocabulary lacks are ignored: the model cannot write them).
    """

    max_new_tokens: int = 4096
    thinking_budget: int = -1
    do_sample: bool = False
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    closing_text: str = DEFAULT_CLOSING
    second_pass: str = "remaining"
    max_model_len: int | None = None
    continue_from: str = "ids"
    stop_tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop_tokens", tuple(self.stop_tokens))
        if self.continue_from not in CONTINUE_FROM:
            raise ValueError(f"continue_from is one of {CONTINUE_FROM}, got {self.continue_from!r}")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be positive")
        if self.thinking_budget < -1:
            raise ValueError("thinking_budget is -1 (unlimited) or a number of tokens >= 0")
        if self.second_pass not in SECOND_PASS:
            raise ValueError(f"second_pass is one of {SECOND_PASS}, got {self.second_pass!r}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError("max_model_len must be positive (or None: no cap)")

    @property
    def closing(self) -> str:
        """What is appended to reasoning cut by the budget: the closing text, ended by ``</think>``."""
        return self.closing_text if THINK_END in self.closing_text else self.closing_text + THINK_END

    def second_pass_limit(self, first_len: int, prompt_len: int, written: int) -> int:
        """New tokens the second pass may write for one sample (see the module docstring)."""
        if self.second_pass == "remaining":
            return self.max_new_tokens - first_len
        limit = self.max_new_tokens
        if self.max_model_len is not None:
            limit = min(limit, self.max_model_len - prompt_len - written)
        return max(limit, 0)


@dataclass(frozen=True)
class GenerationOutput:
    """One sample's output. ``text`` is reasoning + ``</think>`` + answer as the RLM produced it."""

    text: str
    reasoning: str
    answer: str
    token_ids: list[int]
    num_reasoning_tokens: int
    budget_reached: bool
    finished: bool


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, answer) of an output; no ``</think>`` means it is all unfinished reasoning."""
    head, sep, tail = text.partition(THINK_END)
    if not sep:
        return head.replace("<think>", "", 1).strip(), ""
    return head.replace("<think>", "", 1).strip(), tail.strip()


class _QueueStreamer(BaseStreamer):
    """Forwards generated token ids to a queue.

    With prompt embeddings there are no prompt ids: ``generate`` first reports an empty
    tensor, which carries nothing and is dropped like any empty put.
    """

    def __init__(self, sink: queue.Queue[list[int] | None]) -> None:
        self.sink = sink

    def put(self, value: torch.Tensor) -> None:
        ids = value.reshape(-1).tolist()
        if ids:
            self.sink.put(ids)

    def end(self) -> None:
        pass  # a budgeted answer has two passes; the caller closes the stream


def _trim(ids: Sequence[int], stop_ids: set[int], pad_id: int) -> tuple[list[int], bool]:
    """Generated ids up to and including the first stop token; whether one was found."""
    out: list[int] = []
    for tok in ids:
        out.append(tok)
        if tok in stop_ids:
            return out, True
    while out and out[-1] == pad_id and pad_id not in stop_ids:
        out.pop()
    return out, False


def _optional_token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int | None:
    try:
        return token_id(tokenizer, token)
    except KeyError:
        return None


def has_thinking_mode(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the RLM reasons before it answers: its tokenizer knows ``</think>``."""
    return _optional_token_id(tokenizer, THINK_END) is not None


def stop_ids(tokenizer: PreTrainedTokenizerBase, config: GenerationConfig) -> list[int]:
    """The ids that end a sample: the tokenizer's end of turn, then ``config.stop_tokens`` it knows."""
    ids = [int(tokenizer.eos_token_id)]
    for token in config.stop_tokens:
        tid = _optional_token_id(tokenizer, token)
        if tid is not None and tid not in ids:
            ids.append(tid)
    return ids


def _continuation(
    tokenizer: PreTrainedTokenizerBase, written: list[int], closing: list[int], config: GenerationConfig
) -> list[int]:
    """What the second pass continues from: the first pass's ids plus the closing sentence's
    (``ids``), or, as the official ``get_response``, their text re-tokenized (``text``; vLLM's
    output text drops special tokens)."""
    if config.continue_from == "ids":
        return written + closing
    text = tokenizer.decode(written, skip_special_tokens=True) + tokenizer.decode(closing)
    return tokenizer(text, add_special_tokens=False).input_ids


def _decode_kwargs(config: GenerationConfig) -> dict[str, Any]:
    """transformers ``generate`` keywords; neutral values are None so no processor is added."""
    if not config.do_sample:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {
        "do_sample": True,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
        "min_p": config.min_p or None,
        "repetition_penalty": None if config.repetition_penalty == 1.0 else config.repetition_penalty,
    }


#: The sampling keys of an RLM's ``generation_config.json`` that vLLM's
#: ``LLM.get_default_sampling_params()`` takes over (``ModelConfig.get_diff_sampling_param``),
#: with vLLM's value where the file has none.
SAMPLING_DEFAULTS: dict[str, float | int] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
}


def model_sampling_defaults(language_model: Any) -> dict[str, float | int]:
    """The RLM's own sampling settings, as vLLM's ``get_default_sampling_params()`` reads them.

    The keys of :data:`SAMPLING_DEFAULTS` that the model's ``generation_config.json`` sets
    (Qwen3-4B-Thinking-2507: temperature 0.6, top_p 0.95, top_k 20), vLLM's defaults for the
    others. A model without a generation config gets vLLM's defaults (plain sampling).
    """
    config = getattr(language_model, "generation_config", None)
    given = config.to_diff_dict() if config is not None else {}
    out = dict(SAMPLING_DEFAULTS)
    for key in SAMPLING_DEFAULTS:
        if given.get(key) is not None:
            out[key] = type(SAMPLING_DEFAULTS[key])(given[key])
    out["top_k"] = max(int(out["top_k"]), 0)  # -1 and 0 both mean no top-k cut
    return out


#: One decoding pass of an engine: per-sample prompt embeddings (S_i, H) and a token limit in,
#: per-sample generated ids out (a stop token and any padding after it may be included; the
#: budget logic trims them). Transformers and vLLM (``alarm.generation_vllm``) both plug in here.
DecodePass = Callable[[list[torch.Tensor], int], list[list[int]]]


@torch.no_grad()
def budgeted_generate(
    decode: DecodePass,
    embed_tokens: Callable[[torch.Tensor], torch.Tensor],
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[torch.Tensor],
    config: GenerationConfig = GenerationConfig(),
    on_closing: Callable[[list[int]], None] | None = None,
) -> list[GenerationOutput]:
    """The two-pass thinking budget over any decoding engine (see the module docstring).

    Args:
        decode: runs one batched pass (greedy or sampled, as ``config`` says).
        embed_tokens: the RLM's input embedding, to append what pass 1 wrote to the prompt.
        prompts: each sample's prompt embeddings (S_i, H), no padding.
        on_closing: called with the closing ids when a sample gets them (streaming).
    """
    stops = set(stop_ids(tokenizer, config))
    eos = int(tokenizer.eos_token_id)
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
    # A model without a thinking mode (no </think> token, e.g. SmolLM2-Instruct) has no
    # reasoning to cut: the budget does not apply, one pass answers, reasoning is empty.
    think_end = _optional_token_id(tokenizer, THINK_END)
    budget = config.thinking_budget if think_end is not None else -1
    first_len = config.max_new_tokens if budget < 0 else min(budget, config.max_new_tokens)
    results: list[list[int]] = [[] for _ in prompts]
    finished = [False] * len(results)
    budget_hit = [False] * len(results)
    n_written = [0] * len(results)  # reasoning tokens the model wrote before the budget cut it
    if first_len > 0:
        for i, row in enumerate(decode(list(prompts), first_len)):
            results[i], finished[i] = _trim(row, stops, pad)

    todo = [i for i, done in enumerate(finished) if not done] if budget >= 0 else []
    if config.second_pass == "remaining" and config.max_new_tokens <= first_len:
        todo = []  # nothing left for a second pass: outputs stay as the first pass left them
    closing = tokenizer(config.closing, add_special_tokens=False).input_ids
    if todo:
        continued, limits = [], []
        for i in todo:
            if think_end not in results[i]:
                n_written[i] = len(results[i])
                results[i] = _continuation(tokenizer, results[i], closing, config)
                budget_hit[i] = True
                if on_closing is not None:
                    on_closing(closing)
            prompt = prompts[i]
            limits.append(config.second_pass_limit(first_len, int(prompt.shape[0]), len(results[i])))
            written = embed_tokens(torch.tensor(results[i], dtype=torch.long, device=prompt.device))
            continued.append(torch.cat([prompt, written.to(prompt.dtype)], dim=0))
        # one batched pass at the longest limit; each row is cut to its own (a sample's cap
        # under max_model_len depends on its prompt length)
        keep = [k for k, limit in enumerate(limits) if limit > 0]
        if keep:
            rows = decode([continued[k] for k in keep], max(limits[k] for k in keep))
            for k, row in zip(keep, rows):
                i = todo[k]
                more, finished[i] = _trim(row[: limits[k]], stops, pad)
                results[i] = results[i] + more

    outputs = []
    for i, tokens in enumerate(results):
        body = tokens[:-1] if finished[i] else tokens
        text = tokenizer.decode(body, skip_special_tokens=False)
        reasoning, answer = split_reasoning(text) if think_end is not None else ("", text.strip())
        n_reason = body.index(think_end) if think_end in body else (len(body) if think_end is not None else 0)
        if budget_hit[i]:
            n_reason = n_written[i]  # the closing sentence is not the model's reasoning
        outputs.append(GenerationOutput(text, reasoning, answer, tokens, n_reason, budget_hit[i], finished[i]))
    return outputs


def left_pad(prompts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded batch (B, S, H) and attention mask (B, S) of per-sample embeddings (S_i, H)."""
    batch = pad_sequence(list(prompts), batch_first=True, padding_side="left")
    lengths = torch.tensor([p.shape[0] for p in prompts], device=batch.device)
    mask = (torch.arange(batch.shape[1], device=batch.device)[None, :] >= batch.shape[1] - lengths[:, None]).long()
    return batch, mask


def unpad(inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """Each sample's valid prompt embeddings (S_i, H) of a padded batch."""
    return [row[keep.bool()] for row, keep in zip(inputs_embeds, attention_mask)]


@torch.no_grad()
def generate(
    language_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    config: GenerationConfig = GenerationConfig(),
    streamer: BaseStreamer | None = None,
) -> list[GenerationOutput]:
    """Generate from left-padded prompt embeddings (B, S, H) with the thinking budget (transformers)."""
    eos = int(tokenizer.eos_token_id)
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
    common = dict(
        eos_token_id=stop_ids(tokenizer, config), pad_token_id=pad, streamer=streamer, **_decode_kwargs(config)
    )

    def decode(prompts: list[torch.Tensor], max_new_tokens: int) -> list[list[int]]:
        batch, mask = left_pad(prompts)
        if config.do_sample and config.seed is not None:
            torch.manual_seed(config.seed)  # each pass from the same seed, like vLLM's per-request seed
        ids = language_model.generate(inputs_embeds=batch, attention_mask=mask, max_new_tokens=max_new_tokens, **common)
        return ids.tolist()

    on_closing = None if streamer is None else (lambda ids: streamer.put(torch.tensor(ids)))
    return budgeted_generate(
        decode,
        language_model.get_input_embeddings(),
        tokenizer,
        unpad(inputs_embeds, attention_mask),
        config,
        on_closing,
    )


#: One part of a message's content: text, or a decoded clip. The OpenAI shapes are accepted
#: too, with the audio already decoded: ``{"type": "text", "text": str}`` and
#: ``{"type": "input_audio", "input_audio": Waveform}``.
MessagePart = str | Waveform | Mapping[str, Any]

#: ``{"role": "system" | "user" | "assistant", "content": str | Sequence[MessagePart]}``.
Message = Mapping[str, Any]

#: What one request or one request's clips may be: a clip, or the clips in order.
Clips = Waveform | Sequence[Waveform]


@dataclass
class ModelInputs:
    """A batch of prompts ready for the model (:func:`build_inputs`); :func:`embed` splices it."""

    input_ids: torch.Tensor  # (B, S) left-padded, each clip's placeholder expanded to its size
    attention_mask: torch.Tensor  # (B, S)
    audio: AudioBatch | None  # every clip of the batch, in placeholder order; None when there is none
    clips_per_prompt: list[int]


@dataclass
class _Conversation:
    """A conversation read from messages: the system prompt and each turn's text and clips."""

    system: str | None
    turns: list[tuple[str, list[str | Waveform]]]

    @property
    def clips(self) -> list[Waveform]:
        return [item for _, items in self.turns for item in items if isinstance(item, Waveform)]


def _content_items(content: Any, where: str) -> list[str | Waveform]:
    """A message's content as text and clips in order; adjacent text parts are joined by a newline."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, Sequence):
        raise ValueError(f"{where}: content must be text or a list of parts, got {type(content).__name__}")
    items: list[str | Waveform] = []
    for i, part in enumerate(content):
        if isinstance(part, Mapping):  # the OpenAI shapes, audio already decoded
            part = part.get("text") if part.get("type") == "text" else part.get("input_audio", part)
        if isinstance(part, str) and items and isinstance(items[-1], str):
            items[-1] += "\n" + part  # separate text parts read as separate lines (as vLLM joins them)
        elif isinstance(part, (str, Waveform)):
            items.append(part)
        else:
            raise ValueError(f"{where}: content[{i}] is neither text nor a decoded clip (Waveform): {part!r:.80}")
    return items


def _read_conversation(messages: Sequence[Message], default_system: str | None, where: str) -> _Conversation:
    if not messages or not all(isinstance(m, Mapping) for m in messages):
        raise ValueError(f"{where}: a non-empty list of {{role, content}} messages is needed")
    system, turns = default_system, []
    for i, message in enumerate(messages):
        role, items = message.get("role"), _content_items(message.get("content"), f"{where}, message {i}")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"{where}, message {i}: role must be system, user or assistant, got {role!r}")
        if role != "user" and not all(isinstance(item, str) for item in items):
            raise ValueError(f"{where}, message {i}: only user messages may hold audio, not a {role} message")
        if role == "system" and i == 0:
            system = "".join(items)  # type: ignore[arg-type]  (text only, checked above)
        else:
            turns.append((role, items))
    if not turns or turns[-1][0] != "user":
        raise ValueError(f"{where}: the last message must be the user's")
    return _Conversation(system or None, turns)


def _clip_parts(model: Any, slots: Sequence[AudioSlot]) -> list[UserPart]:
    """How ``model`` lays out one clip: its ``user_parts`` with no question after the audio.

    A single model gives ``[slot]``; ALARM-E its instruction and a header before each member.
    """
    return [part for part in model.user_parts("", slots) if part != ""]


def build_inputs(model: Any, conversations: Sequence[Sequence[Message]]) -> ModelInputs:
    """Prompt ids and audio for a batch of OpenAI-style conversations whose clips are decoded.

    Each conversation is a list of messages ending with the user's. A first system message
    replaces the model's system prompt (empty text: none); without one the model's own is
    used. User messages, the last and earlier ones, may hold any number of clips among their
    text parts, each spliced where it stands and laid out as the model lays out its audio
    (ALARM-E: its instruction and member headers around each clip). The clips of the whole
    batch form one flat :class:`AudioBatch` in placeholder order, which the model fills with
    one ``masked_scatter``. A clip before the text of the last user message is the paper's
    layout: ``[clip, question]`` gives exactly the prompt the model was trained on.
    """
    if not conversations:
        raise ValueError("build_inputs needs at least one conversation")
    default = model.config.system_prompt
    read = [_read_conversation(messages, default, f"conversation {b}") for b, messages in enumerate(conversations)]
    clips = [clip for conversation in read for clip in conversation.clips]
    audio = AudioBatch.from_waveforms(clips, model.sample_rates) if clips else None
    slots = iter(model.audio_slots(audio.lengths) if audio is not None else [])

    def parts(items: list[str | Waveform]) -> list[UserPart]:
        """A user turn's parts: each clip replaced by its slots (taken in order) and their text."""
        out: list[UserPart] = []
        for item in items:
            out += _clip_parts(model, next(slots)) if isinstance(item, Waveform) else [item]
        return out

    examples = []
    for conversation in read:
        *context, user = [
            {"role": role, "content": parts(items) if role == "user" else "".join(items)}  # type: ignore[arg-type]
            for role, items in conversation.turns
        ]
        examples.append(build_example(model.tokenizer, user["content"], system=conversation.system, context=context))
    batch = collate(examples, int(model.tokenizer.pad_token_id), padding_side="left")
    return ModelInputs(batch.input_ids, batch.attention_mask, audio, [len(c.clips) for c in read])


def embed(model: Any, inputs: ModelInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt embeddings (B, S, H) with the audio spliced in, and the attention mask."""
    trained = getattr(model.language_model.config, "max_position_embeddings", None)
    longest = int(inputs.attention_mask.sum(1).max())
    if trained is not None and longest > trained:  # long audio: 25 audio positions per second
        log.warning("a prompt of %d positions is longer than the RLM's %d: answers may degrade", longest, trained)
    device = model.language_model.device
    audio = inputs.audio.to(device) if inputs.audio is not None else None
    with torch.no_grad():
        embeds = model.embed_inputs(inputs.input_ids.to(device), audio)
    return embeds, inputs.attention_mask.to(device)


def as_conversation(
    clips: Clips, prompt: str, *, system: str | None = None, context: Sequence[dict[str, str]] = ()
) -> list[Message]:
    """The messages of one question about one or more clips: the clips, then the question."""
    clips = [clips] if isinstance(clips, Waveform) else list(clips)
    head = [{"role": "system", "content": system}] if system is not None else []
    return [*head, *context, {"role": "user", "content": [*clips, prompt]}]


def prepare_inputs(
    model: Any,
    waveforms: Sequence[Clips],
    prompts: Sequence[str],
    *,
    system: str | None = None,
    context: Sequence[dict[str, str]] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt embeddings (B, S, H) and attention mask for (clips, prompt) pairs.

    Each request's clips (one waveform, or a list) go before its prompt in the last user turn.
    """
    if len(waveforms) != len(prompts):
        raise ValueError(f"{len(waveforms)} audio inputs but {len(prompts)} prompts")
    conversations = [as_conversation(w, p, system=system, context=context) for w, p in zip(waveforms, prompts)]
    return embed(model, build_inputs(model, conversations))


def answer_text(
    model: Any,
    prompts: Sequence[str],
    config: GenerationConfig = GenerationConfig(),
    *,
    system: str | None = None,
    context: Sequence[dict[str, str]] = (),
) -> list[GenerationOutput]:
    """The frozen RLM alone answering text prompts (no audio path): the text-only and metadata baselines.

    Same chat layout, system prompt and thinking budget as :func:`answer`, without audio slots.
    """
    system = model.config.system_prompt if system is None else system
    examples = [build_example(model.tokenizer, [p], system=system or None, context=context) for p in prompts]
    batch = collate(examples, int(model.tokenizer.pad_token_id), padding_side="left")
    device = model.language_model.device
    with torch.no_grad():
        embeds = model.language_model.get_input_embeddings()(batch.input_ids.to(device))
    return generate(model.language_model, model.tokenizer, embeds, batch.attention_mask.to(device), config)


def answer(
    model: Any,
    waveforms: Sequence[Clips],
    prompts: Sequence[str],
    config: GenerationConfig = GenerationConfig(),
    **chat: Any,
) -> list[GenerationOutput]:
    """Batched answers to questions about sounds (one clip or a list per question), with the thinking budget."""
    embeds, mask = prepare_inputs(model, waveforms, prompts, **chat)
    return generate(model.language_model, model.tokenizer, embeds, mask, config)


def answer_chat(
    model: Any, conversations: Sequence[Sequence[Message]], config: GenerationConfig = GenerationConfig()
) -> list[GenerationOutput]:
    """Batched answers to OpenAI-style conversations with decoded clips (see :func:`build_inputs`)."""
    embeds, mask = embed(model, build_inputs(model, conversations))
    return generate(model.language_model, model.tokenizer, embeds, mask, config)


def stream(
    model: Any,
    waveform: Clips,
    prompt: str,
    config: GenerationConfig = GenerationConfig(),
    *,
    outputs: list[GenerationOutput] | None = None,
    **chat: Any,
) -> Iterator[str]:
    """Yield the text of one answer as it is generated (reasoning, closing sentence, answer).

    ``outputs``, when given, receives the finished :class:`GenerationOutput` (token counts,
    whether the budget was reached or the answer finished) once the last piece is yielded.
    """
    embeds, mask = prepare_inputs(model, [waveform], [prompt], **chat)
    yield from stream_embeds(model, embeds, mask, config, outputs=outputs)


def stream_chat(
    model: Any,
    messages: Sequence[Message],
    config: GenerationConfig = GenerationConfig(),
    *,
    outputs: list[GenerationOutput] | None = None,
) -> Iterator[str]:
    """:func:`stream` for one OpenAI-style conversation with decoded clips (see :func:`build_inputs`)."""
    embeds, mask = embed(model, build_inputs(model, [messages]))
    yield from stream_embeds(model, embeds, mask, config, outputs=outputs)


def stream_embeds(
    model: Any,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    config: GenerationConfig = GenerationConfig(),
    *,
    outputs: list[GenerationOutput] | None = None,
) -> Iterator[str]:
    """Stream one answer from prompt embeddings (1, S, H); generation runs in a worker thread."""
    sink: queue.Queue[list[int] | None] = queue.Queue()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            done = generate(model.language_model, model.tokenizer, embeds, mask, config, streamer=_QueueStreamer(sink))
            if outputs is not None:
                outputs.extend(done)
        except BaseException as err:  # surfaced in the consumer's thread below
            failure.append(err)
        finally:
            sink.put(None)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    ids: list[int] = []
    shown = ""
    while (chunk := sink.get()) is not None:
        ids.extend(t for t in chunk if t != model.tokenizer.eos_token_id)
        text = model.tokenizer.decode(ids, skip_special_tokens=False)
        if len(text) > len(shown) and not text.endswith("\ufffd"):  # wait for whole UTF-8 characters
            yield text[len(shown) :]
            shown = text
    worker.join()
    if failure:
        raise failure[0]
