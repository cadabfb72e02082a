"""LLM backends for the corpus pipeline: one interface, four implementations.

A backend turns a batch of chat requests into completions::

    backend.complete([ChatRequest(messages, SamplingParams(max_tokens=..., thinking_budget=B)), ...])

* :class:`ScriptedBackend` (``scripted.py``) - texts from a Python function (tests,
  benchmarks, dry runs); :class:`RulesResponder` is the default function: it answers this
  project's instructions with well-formed, known texts derived from the request.
* :class:`TransformersBackend` (``transformers.py``) - a local ``transformers`` causal LM
  (the tiny RLM in tests), batched, each row sampled with its own generator (:class:`RowSampler`).
* :class:`OpenAIHTTPBackend` (``http.py``) - any OpenAI-compatible server (vLLM, SGLang, ...)
  through ``httpx``: bounded concurrency, timeouts, retries with exponential backoff and
  jitter on 429 / 5xx / connection errors / malformed bodies.
* :class:`VLLMBackend` (``vllm.py``) - ``vllm.LLM`` in-process (optional; needs the ``vllm`` package).

``base.py`` holds what they share: the protocol (:class:`Backend`), :class:`SamplingParams`,
:class:`ChatRequest`, :class:`Completion`, the budget (:func:`complete_with_budget`) and the
seeds (:func:`request_seed`); ``spec.py`` builds a backend from a spec string
(:class:`BackendSpec`, :func:`build_backend`). ``torch``, ``httpx`` and ``vllm`` are imported
only when a backend that needs them is made, so HTTP-only runs never load torch.

**Thinking budget** (paper, Section 2.1; the official mechanism): pass 1 generates at most
``B`` tokens; a completion that stopped is done; one cut off while still reasoning gets the
closing sentence of :mod:`alarm.generation` plus ``</think>``, and every cut-off completion
continues from ``prompt + what it wrote`` for the rest of ``max_tokens`` (``second_pass=
"remaining"``) or for all of ``max_tokens`` again (``"full"``, the official rephrasing's;
:data:`base.SECOND_PASS`; the model's context length still bounds it). Every backend does
the second pass by continuing an assistant prefix (:attr:`ChatRequest.prefix`; over HTTP the
vLLM extension ``continue_final_message``).

**Seeds.** A request's ``SamplingParams.seed`` (the pipeline derives it from the seed, the
stage, the record id and the attempt) decides its sampled text: the transformers backend
draws each row from its own generator, vLLM and the HTTP body get the seed per request
(:func:`request_seed`, which gives the second pass a seed of its own).

**Completions** hold only generated text (never the prompt or a request's prefix). A
thinking model's chat template opens ``<think>`` in the prompt, so its completion reads
``reasoning </think> answer``.

:class:`ChatServer` (``server.py``) serves any backend as ``POST /v1/chat/completions`` on a
local port (with an optional fault hook); tests and benchmarks run :class:`OpenAIHTTPBackend`
against it.
"""

from __future__ import annotations

from alarm.corpus.backends.base import (
    Backend,
    ChatRequest,
    Completion,
    SamplingParams,
    complete_with_budget,
    request_seed,
)
from alarm.corpus.backends.http import OpenAIHTTPBackend
from alarm.corpus.backends.scripted import Responder, RulesResponder, ScriptedBackend
from alarm.corpus.backends.server import ChatServer, FaultHook
from alarm.corpus.backends.spec import BackendSpec, build_backend
from alarm.corpus.backends.transformers import RowSampler, TransformersBackend
from alarm.corpus.backends.vllm import VLLMBackend

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
    "request_seed",
    "Responder",
    "FaultHook",
    "RowSampler",
]
