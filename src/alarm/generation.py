"""Generation with a thinking budget, over prompt embeddings, batched or streamed.

Thinking budget ``B`` (the official ALARM recipe): the RLM generates at most ``B`` tokens in a
first pass. A sample that finished (end of turn) is done. A sample that ran out of tokens
while still reasoning gets a short closing sentence plus ``</think>`` appended, and every
unfinished sample continues from ``prompt + what it wrote`` in a second pass for the rest of
``max_new_tokens``. ``B = -1`` means no budget. Reasoning tokens therefore never exceed ``B``
and every output has a ``</think>`` before its answer (unless ``max_new_tokens`` runs out).
A model with no thinking mode (no ``</think>`` token: SmolLM2-Instruct, the real RLM of the
CPU presets) answers in one pass whatever ``B`` is, with empty reasoning.

The functions here take any audio-language model with the small interface of
:class:`~alarm.modeling.model.AlarmForConditionalGeneration` (``sample_rates``,
``audio_slots``, ``user_parts``, ``embed_inputs``, ``language_model``, ``tokenizer``), so the
single-encoder, fusion and ensemble (ALARM-E) models share one path. The budget logic
(:func:`budgeted_generate`) is written once over a :data:`DecodePass`; :func:`generate` plugs
in transformers' ``generate``, :mod:`alarm.generation_vllm` plugs in vLLM's.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.generation.streamers import BaseStreamer

from alarm.audio import Waveform
from alarm.chat import build_example, collate
from alarm.modeling.inputs import AudioBatch
from alarm.modeling.tokenizer import token_id

THINK_END = "</think>"
DEFAULT_CLOSING = "\n\nTime is up for thinking, so I will answer now with what I have worked out.\n"


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings. Sampling defaults follow Qwen3's advice for thinking models."""

    max_new_tokens: int = 4096
    thinking_budget: int = -1
    do_sample: bool = False
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    closing_text: str = DEFAULT_CLOSING

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be positive")
        if self.thinking_budget < -1:
            raise ValueError("thinking_budget is -1 (unlimited) or a number of tokens >= 0")


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


def _decode_kwargs(config: GenerationConfig) -> dict[str, Any]:
    if not config.do_sample:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": config.temperature, "top_p": config.top_p, "top_k": config.top_k}


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
        decode: runs one batched pass (greedy or sampled as the engine was told).
        embed_tokens: the RLM's input embedding, to append what pass 1 wrote to the prompt.
        prompts: each sample's prompt embeddings (S_i, H), no padding.
        on_closing: called with the closing ids when a sample gets them (streaming).
    """
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
    if first_len > 0:
        for i, row in enumerate(decode(list(prompts), first_len)):
            results[i], finished[i] = _trim(row, {eos}, pad)

    remaining = config.max_new_tokens - first_len
    todo = [i for i, done in enumerate(finished) if not done] if budget >= 0 else []
    closing = tokenizer(config.closing_text + THINK_END, add_special_tokens=False).input_ids
    if todo and remaining > 0:
        continued = []
        for i in todo:
            if think_end not in results[i]:
                results[i] = results[i] + closing
                budget_hit[i] = True
                if on_closing is not None:
                    on_closing(closing)
            prompt = prompts[i]
            written = embed_tokens(torch.tensor(results[i], dtype=torch.long, device=prompt.device))
            continued.append(torch.cat([prompt, written.to(prompt.dtype)], dim=0))
        for i, row in zip(todo, decode(continued, remaining)):
            more, finished[i] = _trim(row, {eos}, pad)
            results[i] = results[i] + more

    outputs = []
    for i, tokens in enumerate(results):
        body = tokens[:-1] if finished[i] else tokens
        text = tokenizer.decode(body, skip_special_tokens=False)
        reasoning, answer = split_reasoning(text) if think_end is not None else ("", text.strip())
        n_reason = body.index(think_end) if think_end in body else (len(body) if think_end is not None else 0)
        if budget_hit[i]:
            n_reason -= len(closing) - 1  # the closing sentence is ours, not the model's reasoning
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
    common = dict(eos_token_id=eos, pad_token_id=pad, streamer=streamer, **_decode_kwargs(config))

    def decode(prompts: list[torch.Tensor], max_new_tokens: int) -> list[list[int]]:
        batch, mask = left_pad(prompts)
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


def prepare_inputs(
    model: Any,
    waveforms: Sequence[Waveform],
    prompts: Sequence[str],
    *,
    system: str | None = None,
    context: Sequence[dict[str, str]] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt embeddings (B, S, H) and attention mask for (audio, prompt) pairs."""
    if len(waveforms) != len(prompts):
        raise ValueError(f"{len(waveforms)} audio inputs but {len(prompts)} prompts")
    audio = AudioBatch.from_waveforms(waveforms, model.sample_rates)
    system = model.config.system_prompt if system is None else system
    examples = [
        build_example(model.tokenizer, model.user_parts(p, slots), system=system or None, context=context)
        for p, slots in zip(prompts, model.audio_slots(audio.lengths))
    ]
    batch = collate(examples, int(model.tokenizer.pad_token_id), padding_side="left")
    device = model.language_model.device
    with torch.no_grad():
        embeds = model.embed_inputs(batch.input_ids.to(device), audio.to(device))
    return embeds, batch.attention_mask.to(device)


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
    waveforms: Sequence[Waveform],
    prompts: Sequence[str],
    config: GenerationConfig = GenerationConfig(),
    **chat: Any,
) -> list[GenerationOutput]:
    """Batched answers to questions about sounds, with the thinking budget."""
    embeds, mask = prepare_inputs(model, waveforms, prompts, **chat)
    return generate(model.language_model, model.tokenizer, embeds, mask, config)


def stream(
    model: Any,
    waveform: Waveform,
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
