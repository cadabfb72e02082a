"""`alarm serve --engine vllm`: the audio path in torch, the RLM's decoding in vLLM's async engine.

Each request's conversation is embedded by the ALARM model (its clips spliced where they
stand, :func:`~alarm.generation.build_inputs`), and its thinking-budget generation is
:func:`~alarm.generation.budgeted_generate`, the code the transformers engine runs, with each
pass decoded as one request of vLLM's ``AsyncLLM`` from the prompt embeddings
(``enable_prompt_embeds``). vLLM batches the requests of all clients continuously: a request
joins the running batch at the next step and leaves it when it ends, so nobody waits for a
batch to finish. Tokens stream to the client as vLLM hands them out; a client that goes away
is aborted in vLLM.

The same contract as :class:`~alarm.serving.engine.BatchEngine` (``submit``, ``queue_depth``,
``start``, ``stop``), so the app serves either. ``vllm`` is imported when the engine is built.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from alarm.generation import budgeted_generate, build_inputs, embed, stop_ids, unpad
from alarm.generation_vllm import VLLMSettings, import_vllm, rlm_source, sampling_params
from alarm.serving.engine import Done, EngineConfig, EngineStopped, Failed, Job, QueueFull, Tokens
from alarm.serving.protocol import ChatQuery

log = logging.getLogger(__name__)


class VLLMServingEngine:
    """Requests through vLLM's continuous batching; at most ``max_batch_size`` in vLLM at once."""

    def __init__(
        self,
        model: Any,
        settings: VLLMSettings = VLLMSettings(),  # noqa: B008 (frozen dataclasses: a shared default is safe)
        config: EngineConfig = EngineConfig(),  # noqa: B008
    ):
        self.vllm = import_vllm()
        self.model, self.config = model, config
        self.on_batch = None  # vLLM forms its own batches, step by step
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="alarm-vllm-loop", daemon=True)
        self._loop_thread.start()
        with rlm_source(model, settings) as source:
            args = self.vllm.AsyncEngineArgs(model=source, enable_prompt_embeds=True, **settings.llm_kwargs())
            self.llm = self._await(self._start(args))
        # one worker per request in vLLM: it embeds the request, then waits on vLLM pass by pass
        self._workers = ThreadPoolExecutor(config.max_batch_size, thread_name_prefix="alarm-vllm")
        self._audio = threading.Lock()  # the torch audio path runs one request at a time
        self._lock = threading.Lock()
        self._waiting = self._running = 0
        self._stopping = False

    async def _start(self, args: Any) -> Any:
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM.from_engine_args(args)

    def _await(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    @property
    def queue_depth(self) -> int:
        return self._waiting

    def start(self) -> VLLMServingEngine:
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Finish the requests taken, then shut vLLM down."""
        with self._lock:
            self._stopping = True
        self._workers.shutdown(wait=True)
        self.llm.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(timeout)

    def submit(self, query: ChatQuery, deliver: Any) -> Job:
        """Queue a request. Raises :class:`QueueFull` or :class:`EngineStopped`."""
        job = Job(query, deliver)
        with self._lock:
            if self._stopping:
                raise EngineStopped("the engine is shutting down")
            if self._waiting >= self.config.max_queue:
                raise QueueFull(f"{self._waiting} requests are waiting (the limit)")
            self._waiting += 1
        self._workers.submit(self._answer, job)
        return job

    def _answer(self, job: Job) -> None:
        with self._lock:
            self._waiting -= 1
            self._running += 1
        try:
            if not job.cancelled:
                self._run(job)
        except Exception as err:  # noqa: BLE001 - reported to that client
            log.exception("a request failed in the vLLM engine")
            job.deliver(Failed(err))
        finally:
            with self._lock:
                self._running -= 1

    def _run(self, job: Job) -> None:
        job.started = time.monotonic()
        query, tokenizer = job.query, self.model.tokenizer
        with self._audio, torch.inference_mode():
            (prompt,) = unpad(*embed(self.model, build_inputs(self.model, [query.messages])))
        stops = stop_ids(tokenizer, query.config)

        def decode(prompts: list[torch.Tensor], max_new_tokens: int) -> list[list[int]]:
            (one,) = prompts  # budgeted_generate over one request: each pass is one vLLM request
            params = self._params(query, max_new_tokens, stops)
            return [self._await(self._decode(job, one, params))]

        def closing(ids: list[int]) -> None:
            if not job.cancelled:
                job.deliver(Tokens(list(ids)))

        with torch.inference_mode():
            embed_tokens = self.model.language_model.get_input_embeddings()
            (out,) = budgeted_generate(decode, embed_tokens, tokenizer, [prompt], query.config, closing)
        job.deliver(Done(out, prompt_tokens=int(prompt.shape[0]), batch_size=self._running))

    def _params(self, query: ChatQuery, max_new_tokens: int, stops: list[int]) -> Any:
        from vllm.sampling_params import RequestOutputKind

        params = sampling_params(self.vllm, query.config, max_new_tokens, stops)
        params.output_kind = RequestOutputKind.DELTA  # each output holds the new tokens only
        if query.config.do_sample and query.seed is not None:
            params.seed = query.seed  # per request in vLLM: other requests' sampling is untouched
        return params

    async def _decode(self, job: Job, prompt: torch.Tensor, params: Any) -> list[int]:
        request_id = uuid.uuid4().hex
        ids: list[int] = []
        request = {"prompt_embeds": prompt.detach().to("cpu").contiguous()}
        async for output in self.llm.generate(request, params, request_id):
            if job.cancelled:
                await self.llm.abort(request_id)
                break
            new = list(output.outputs[0].token_ids)
            if new:
                job.deliver(Tokens(new))
                ids += new
        return ids
