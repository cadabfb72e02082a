"""The backend protocol and what every backend shares: requests, completions, the thinking budget.

:class:`Backend` turns a batch of :class:`ChatRequest` into :class:`Completion` s; its
:meth:`Backend.complete` applies each request's thinking budget with
:func:`complete_with_budget` over the backend's one-pass :meth:`Backend.generate`.
:func:`request_seed` gives each generation pass its sampling seed. The package docstring
(:mod:`alarm.corpus.backends`) describes the budget, the seeds and the completions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from alarm.corpus.prompts import THINK_END, stable_seed


def _from_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    """Build a frozen dataclass from a dict, refusing unknown keys (no silent typos)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{what}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
    return cls(**data)


#: How long the thinking budget's second pass may run: ``remaining`` (what the first pass left
#: of ``max_tokens``, so ``max_tokens`` caps the whole reply) or ``full`` (all of ``max_tokens``
#: again after a first pass of ``thinking_budget`` tokens, as the official rephrasing does).
SECOND_PASS = ("remaining", "full")


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings of one request. ``thinking_budget`` -1 means no budget;
    ``second_pass``: see :data:`SECOND_PASS`."""

    max_tokens: int = 4096
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    thinking_budget: int = -1
    seed: int | None = None
    second_pass: str = "remaining"

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {self.max_tokens}")
        if self.thinking_budget < -1:
            raise ValueError(f"thinking_budget is -1 (none) or >= 0, got {self.thinking_budget}")
        if self.second_pass not in SECOND_PASS:
            raise ValueError(f"second_pass is one of {SECOND_PASS}, got {self.second_pass!r}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"bad sampling values: temperature {self.temperature}, top_p {self.top_p}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingParams:
        return _from_dict(cls, data, "sampling parameters")

    def first_pass_tokens(self) -> int:
        """The cap of the pass that reasons under the budget (``thinking_budget`` > 0)."""
        return self.thinking_budget if self.second_pass == "full" else min(self.thinking_budget, self.max_tokens)

    def second_pass_tokens(self, used: int) -> int:
        """The cap of the pass after the budget, given the ``used`` tokens of the first."""
        return self.max_tokens if self.second_pass == "full" else self.max_tokens - used


@dataclass(frozen=True)
class ChatRequest:
    """Chat messages to complete.

    ``opening`` is the start of the reply, part of the request (the reply format's first
    words, :data:`instructions.OPENINGS`); ``prefix`` is text generated earlier that a pass
    continues (the thinking budget's second pass). Completions hold neither. ``closing``:
    the sentence that ends reasoning cut by the thinking budget (None: the default one of
    :func:`complete_with_budget`); a stage sets it when its texts come with their own (the
    official rephrasing's), and ``</think>`` is added unless it holds one.
    """

    messages: tuple[dict[str, str], ...]
    params: SamplingParams = SamplingParams()
    prefix: str = ""
    opening: str = ""
    closing: str | None = None

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
        replace(r, params=replace(r.params, max_tokens=r.params.first_pass_tokens()))
        if r.params.thinking_budget > 0
        else r
        for r in requests
    ]
    # B = 0 skips pass 1 (no reasoning at all): the answer starts right after the closing sentence.
    outs = _generate_some(generate, first, [r.params.thinking_budget != 0 for r in requests])
    final: list[Completion] = list(outs)
    again: list[tuple[int, ChatRequest, str, bool]] = []
    for i, (r, o) in enumerate(zip(requests, outs)):
        remaining = r.params.second_pass_tokens(o.num_tokens)
        if r.params.thinking_budget < 0 or o.error or o.finish_reason != "length" or remaining < 1:
            continue
        written, hit = o.text, THINK_END not in o.text
        if hit:
            written += _closed(r.closing if r.closing is not None else _closing(closing))
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


def _closed(sentence: str) -> str:
    """The closing sentence ended by ``</think>`` (the official one holds it, with text after it)."""
    return sentence if THINK_END in sentence else sentence + THINK_END


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
