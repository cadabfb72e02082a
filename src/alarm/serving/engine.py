"""The batched engine behind ``alarm serve``: a bounded queue, a scheduler, one model thread.

Requests wait in a bounded queue (:class:`QueueFull` when it is full: the app answers 429).
One thread owns the model: it takes the oldest request and every queued request that
decodes the same way (equal :class:`~alarm.generation.GenerationConfig`), waiting at most
``max_wait_s`` for a batch to fill up to ``max_batch_size``, and runs the batch through the
same two-pass thinking-budget generation that ``alarm eval`` uses
(:func:`~alarm.generation.budgeted_generate`). Each row's new tokens go to its client as the
row advances; a client that goes away is cancelled, and its row stops (a stopping criterion
marks it done, so the batch ends as soon as every live row has). A seeded sampled request
runs alone, so its seed decides its sampling and nothing else's.

Greedy answers do not depend on the batch: each conversation is embedded on its own (its
clips spliced where they stand, :func:`~alarm.generation.build_inputs`) and rows are
left-padded, so a row sees the positions and attention it would see alone (tested).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from alarm.generation import (
    THINK_END,
    GenerationConfig,
    GenerationOutput,
    _decode_kwargs,
    _optional_token_id,
    budgeted_generate,
    build_inputs,
    embed,
    left_pad,
    unpad,
)
from alarm.serving.protocol import ChatQuery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """How the scheduler forms batches and how many requests may wait."""

    max_batch_size: int = 32
    max_wait_s: float = 0.01
    max_queue: int = 256

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_queue < 1 or self.max_wait_s < 0:
            raise ValueError(f"max_batch_size and max_queue must be >= 1 and max_wait_s >= 0, got {self}")


class QueueFull(Exception):
    """The engine's queue is full; the client should retry later."""


class EngineStopped(Exception):
    """The engine no longer takes requests."""


@dataclass(frozen=True)
class Tokens:
    """New token ids of one row (generated, or the budget's closing sentence)."""

    ids: list[int]


@dataclass(frozen=True)
class Done:
    """A finished row: its output, its prompt length and the size of the batch it ran in."""

    output: GenerationOutput
    prompt_tokens: int
    batch_size: int


@dataclass(frozen=True)
class Failed:
    error: BaseException


Event = Tokens | Done | Failed


@dataclass(eq=False)
class Job:
    """One request inside the engine. ``deliver`` is called from the model thread."""

    query: ChatQuery
    deliver: Callable[[Event], None]
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """The client went away: drop the request, or stop its row."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def batch_key(self) -> GenerationConfig | None:
        """Jobs with equal keys share batches; a seeded sampled job (``None``) runs alone."""
        config = self.query.config
        return None if config.do_sample and self.query.seed is not None else config


class _Rows:
    """Which job each row of the current decoding pass belongs to.

    Pass 1 decodes every job; the budget's pass 2 decodes those that did not reach the end
    of turn (in order), and the closing sentence goes to those of them that were still
    reasoning: the same rules as :func:`~alarm.generation.budgeted_generate`, read here from
    the ids of pass 1 so that streamed tokens reach the right client.
    """

    def __init__(self, jobs: Sequence[Job], eos: int, think_end: int | None) -> None:
        self.current: list[Job] = list(jobs)
        self.eos, self.think_end = eos, think_end
        self._passes = 0
        # before any pass every row is unfinished and still reasoning (a budget of 0 skips pass 1)
        self._closing: collections.deque[Job] = collections.deque(jobs)

    def begin_pass(self, count: int) -> list[Job]:
        if self._passes and len(self.current) != count:
            raise RuntimeError(f"pass {self._passes + 1} has {count} rows, the engine expected {len(self.current)}")
        self._passes += 1
        return self.current

    def end_pass(self, ids: list[list[int]]) -> None:
        unfinished = [(job, row) for job, row in zip(self.current, ids) if self.eos not in row]
        self.current = [job for job, _ in unfinished]
        self._closing = collections.deque(job for job, row in unfinished if self.think_end not in row)

    def closing(self, ids: list[int]) -> None:
        job = self._closing.popleft()
        if not job.cancelled:
            job.deliver(Tokens(list(ids)))


class _RowStreamer(BaseStreamer):
    """Sends each row's new token to its job; ``generate`` calls ``put`` with (B,) ids per step.

    A row that reached the end of turn is padded by ``generate`` until the batch ends: it
    gets nothing more.
    """

    def __init__(self, jobs: Sequence[Job], eos: int) -> None:
        self.jobs, self.eos = jobs, eos
        self.ended = [False] * len(jobs)

    def put(self, value: torch.Tensor) -> None:
        if value.dim() != 1 or value.numel() != len(self.jobs):  # the (B, 0) prompt "ids" of embeddings
            return
        for i, (job, tok) in enumerate(zip(self.jobs, value.tolist())):
            if not (self.ended[i] or job.cancelled):
                job.deliver(Tokens([tok]))
            self.ended[i] = self.ended[i] or tok == self.eos

    def end(self) -> None:
        pass


class _Cancelled(StoppingCriteria):
    """Marks the rows of clients that went away as done."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = jobs

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **_: Any) -> torch.Tensor:
        return torch.tensor([job.cancelled for job in self.jobs], dtype=torch.bool, device=input_ids.device)


def run_batch(model: Any, jobs: Sequence[Job]) -> None:
    """Answer ``jobs`` (equal generation settings) as one batch; every job gets its events.

    A job whose inputs cannot be prepared fails alone; a failure of the batch fails them all.
    """
    prompts, live = [], []
    for job in jobs:  # one at a time: a row's embeddings do not depend on its batch
        try:
            embeds, mask = embed(model, build_inputs(model, [job.query.messages]))
        except Exception as err:  # noqa: BLE001 - reported to that client, the others go on
            log.exception("preparing a request failed")
            job.deliver(Failed(err))
            continue
        prompts.append(unpad(embeds, mask)[0])
        live.append(job)
    if not live:
        return
    config, seed = live[0].query.config, live[0].query.seed
    lm, tokenizer = model.language_model, model.tokenizer
    eos = int(tokenizer.eos_token_id)
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
    rows = _Rows(live, eos, _optional_token_id(tokenizer, THINK_END))

    def decode(pass_prompts: list[torch.Tensor], max_new_tokens: int) -> list[list[int]]:
        jobs_now = rows.begin_pass(len(pass_prompts))
        batch, mask = left_pad(pass_prompts)
        ids = lm.generate(
            inputs_embeds=batch,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos,
            pad_token_id=pad,
            streamer=_RowStreamer(jobs_now, eos),
            stopping_criteria=StoppingCriteriaList([_Cancelled(jobs_now)]),
            **_decode_kwargs(config),
        ).tolist()
        rows.end_pass(ids)
        return ids

    try:
        if config.do_sample and seed is not None:
            torch.manual_seed(seed)  # alone in its batch (Job.batch_key): this request's sampling only
        outputs = budgeted_generate(decode, lm.get_input_embeddings(), tokenizer, prompts, config, rows.closing)
    except Exception as err:  # noqa: BLE001 - every client of the batch hears of it
        log.exception("generation failed for a batch of %d", len(live))
        for job in live:
            job.deliver(Failed(err))
        return
    for job, prompt, out in zip(live, prompts, outputs):
        job.deliver(Done(out, prompt_tokens=int(prompt.shape[0]), batch_size=len(live)))


class BatchEngine:
    """Owns the model thread; :meth:`submit` from any thread, events come back through ``deliver``."""

    def __init__(
        self,
        model: Any,
        config: EngineConfig = EngineConfig(),
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.model, self.config, self.on_batch = model, config, on_batch
        self._queue: collections.deque[Job] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def start(self) -> BatchEngine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="alarm-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Finish the batch in flight and the queued requests, then end the model thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, query: ChatQuery, deliver: Callable[[Event], None]) -> Job:
        """Queue a request. Raises :class:`QueueFull` or :class:`EngineStopped`."""
        job = Job(query, deliver)
        with self._wake:
            if self._stopping:
                raise EngineStopped("the engine is shutting down")
            if len(self._queue) >= self.config.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are waiting (the limit)")
            self._queue.append(job)
            self._wake.notify_all()
        return job

    def _next_batch(self) -> list[Job] | None:
        """The oldest live job and up to ``max_batch_size - 1`` queued jobs that batch with it."""
        with self._wake:
            while True:
                while self._queue and self._queue[0].cancelled:
                    self._queue.popleft()
                if self._queue:
                    break
                if self._stopping:
                    return None
                self._wake.wait()
            key = self._queue[0].batch_key
            deadline = time.monotonic() + self.config.max_wait_s
            while key is not None and not self._stopping:
                mates = sum(job.batch_key == key for job in self._queue)
                left = deadline - time.monotonic()
                if mates >= self.config.max_batch_size or left <= 0:
                    break
                self._wake.wait(left)
            batch = [self._queue.popleft()]
            if key is not None:
                for job in list(self._queue):
                    if len(batch) == self.config.max_batch_size:
                        break
                    if job.batch_key == key and not job.cancelled:
                        self._queue.remove(job)
                        batch.append(job)
        return batch

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            now = time.monotonic()
            for job in batch:
                job.started = now
            if self.on_batch is not None:
                self.on_batch(len(batch))
            with torch.inference_mode():
                run_batch(self.model, batch)
