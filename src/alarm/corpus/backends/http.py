"""The OpenAI-compatible HTTP backend: any server (vLLM, SGLang, ...) through ``httpx``.

Bounded concurrency, timeouts, retries with exponential backoff and jitter on 429 / 5xx /
connection errors / malformed bodies. ``httpx`` is imported when a backend is made.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from alarm.corpus.backends.base import Backend, ChatRequest, Completion, _word_tokens, request_seed
from alarm.corpus.prompts import THINK_END

log = logging.getLogger(__name__)


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
