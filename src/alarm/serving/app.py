"""The OpenAI-compatible HTTP app: ``/v1/chat/completions`` (plain and streamed), ``/v1/models``,
``/health``, ``/metrics`` and the playground page at ``/``.

Requests are validated by the pydantic models of :mod:`alarm.serving.protocol` (a 400 in
OpenAI's error shape naming the field), read into model inputs, and queued in the
:class:`~alarm.serving.engine.BatchEngine`, which answers many clients per batch. The
reasoning comes back as ``message.reasoning_content`` and the answer as ``message.content``,
as vLLM's reasoning parsers return them; streamed, the reasoning deltas come first.

(This module has no ``from __future__ import annotations``: FastAPI reads the endpoint
annotations at run time.)
"""

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from alarm.generation import THINK_END, GenerationOutput
from alarm.serving.engine import BatchEngine, Done, EngineConfig, EngineStopped, Event, Failed, QueueFull, Tokens
from alarm.serving.metrics import ServerMetrics
from alarm.serving.protocol import (
    ApiError,
    AssistantReply,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatQuery,
    Choice,
    ChunkChoice,
    CompletionTokensDetails,
    Delta,
    ServerLimits,
    Usage,
    to_query,
    validation_error,
)

log = logging.getLogger(__name__)
access_log = logging.getLogger("alarm.serving.access")

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class ServedModel:
    """The model behind the server and the name clients use for it."""

    model: Any
    name: str
    limits: ServerLimits = ServerLimits()


@dataclass
class Drain:
    """Graceful shutdown: once ``draining``, new requests get 503 while those in flight finish.

    ``in_flight`` is changed on the event loop only; other threads just read it.
    """

    draining: bool = False
    in_flight: int = 0

    def wait_idle(self, timeout: float, poll_s: float = 0.05) -> bool:
        """Block until no request is in flight; whether that happened within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(poll_s)
        return not self.in_flight


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _finish(out: GenerationOutput) -> str:
    return "stop" if out.finished else "length"


def _usage(prompt_tokens: int, out: GenerationOutput) -> Usage:
    completion = len(out.token_ids)
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        total_tokens=prompt_tokens + completion,
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=out.num_reasoning_tokens),
    )


def _split_streamed(text: str) -> tuple[str, str]:
    """(reasoning, answer) of the text so far; a ``</think>`` still arriving is held back."""
    head, sep, tail = text.partition(THINK_END)
    if sep:
        return head.replace("<think>", "", 1), tail
    for k in range(len(THINK_END) - 1, 0, -1):  # "...</thi" may be the start of the tag
        if head.endswith(THINK_END[:k]):
            head = head[:-k]
            break
    return head.replace("<think>", "", 1), ""


class _Deltas:
    """Turns a row's token ids, as they come, into reasoning and answer text deltas."""

    def __init__(self, tokenizer: Any, has_reasoning: bool) -> None:
        self.tokenizer, self.has_reasoning = tokenizer, has_reasoning
        self.ids: list[int] = []
        self.sent_reasoning, self.sent_answer = "", ""

    def add(self, ids: list[int], final: bool = False) -> list[Delta]:
        """The deltas of ``ids``; ``final`` flushes what was held back (an unfinished UTF-8 character)."""
        self.ids += [t for t in ids if t != self.tokenizer.eos_token_id]
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
        if text.endswith("\ufffd") and not final:  # wait for whole UTF-8 characters
            return []
        reasoning, answer = _split_streamed(text) if self.has_reasoning else ("", text)
        out = []
        if len(reasoning) > len(self.sent_reasoning):
            out.append(Delta(reasoning_content=reasoning[len(self.sent_reasoning) :]))
            self.sent_reasoning = reasoning
        answer = answer.lstrip() if not self.sent_answer else answer
        if len(answer) > len(self.sent_answer):
            out.append(Delta(content=answer[len(self.sent_answer) :]))
            self.sent_answer = answer
        return out


class _Request:
    """One request's life on the event loop: its job in the engine, timings, the access log."""

    def __init__(self, served: ServedModel, engine: BatchEngine, query: ChatQuery, metrics: ServerMetrics) -> None:
        self.served, self.query, self.metrics = served, query, metrics
        self.id, self.created, self.start = _completion_id(), int(time.time()), time.monotonic()
        self.first_token: float | None = None
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def deliver(event: Event) -> None:  # the model thread hands events to the loop
            try:
                loop.call_soon_threadsafe(self.events.put_nowait, event)
            except RuntimeError:  # the loop is gone (shutdown): nobody is listening
                pass

        self.job = engine.submit(query, deliver)

    async def next_event(self, is_disconnected: Callable[[], Awaitable[bool]] | None = None) -> Event:
        """The next event; a client that disconnects while waiting cancels the job."""
        while True:
            try:
                event = await asyncio.wait_for(self.events.get(), timeout=0.5)
            except TimeoutError:
                if is_disconnected is not None and await is_disconnected():
                    self.job.cancel()
                    raise asyncio.CancelledError("the client disconnected") from None
                continue
            if isinstance(event, Tokens) and self.first_token is None:
                self.first_token = time.monotonic()
            return event

    def finished(self, status: int, done: Done | None = None) -> None:
        """Record the request in the metrics and the access log (one JSON object per line)."""
        now = time.monotonic()
        self.metrics.request(status)
        record: dict[str, Any] = {
            "id": self.id,
            "status": status,
            "stream": self.query.stream,
            "queued_s": round((self.job.started or now) - self.start, 4),
            "latency_s": round(now - self.start, 4),
        }
        if self.first_token is not None:
            record["ttft_s"] = round(self.first_token - self.start, 4)
        if done is not None:
            ttft = self.first_token - self.start if self.first_token is not None else None
            self.metrics.answered(ttft=ttft, latency=now - self.start, tokens=len(done.output.token_ids))
            record.update(
                prompt_tokens=done.prompt_tokens,
                completion_tokens=len(done.output.token_ids),
                finish_reason=_finish(done.output),
                batch_size=done.batch_size,
            )
        if self.job.cancelled:
            record["cancelled"] = True
        access_log.info(json.dumps(record))


def _error_response(err: ApiError, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(err.body(), status_code=err.status, headers=headers)


class BodyLimit:
    """ASGI middleware: bodies over ``max_bytes`` get a 413 before the app reads them."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        too_large = ApiError(413, f"request body over {self.max_bytes} bytes", kind="request_too_large")
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await _error_response(too_large)(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await _error_response(too_large)(scope, receive, send)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)


def playground_html() -> str:
    """The playground page (plain HTML and JavaScript, packaged with the server)."""
    return resources.files("alarm.serving").joinpath("static/playground.html").read_text(encoding="utf-8")


def create_app(
    served: ServedModel,
    *,
    max_request_bytes: int = 64 * 2**20,
    engine: EngineConfig = EngineConfig(),  # noqa: B008 (frozen: one shared default is safe)
    drain: Drain | None = None,
    backend: Any = None,
) -> Any:
    """The FastAPI app serving ``served`` with a batched engine; bodies over ``max_request_bytes`` get a 413.

    ``drain``, when given, is shared with the process that serves the app (SIGTERM sets it).
    ``backend`` replaces the transformers :class:`BatchEngine` built from ``engine`` with
    another engine of the same contract (``alarm serve --engine vllm``:
    :class:`~alarm.serving.engine_vllm.VLLMServingEngine`).
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, PlainTextResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    drain = drain if drain is not None else Drain()
    batch_engine = backend if backend is not None else BatchEngine(served.model, engine)
    metrics = ServerMetrics(
        {
            "alarm_queue_depth": ("Requests waiting for a batch.", lambda: batch_engine.queue_depth),
            "alarm_requests_in_flight": ("Chat-completion requests being answered.", lambda: drain.in_flight),
        }
    )
    if isinstance(batch_engine, BatchEngine):  # vLLM forms its batches step by step: no batch sizes
        batch_engine.on_batch = metrics.batch
    tokenizer = served.model.tokenizer
    has_reasoning = THINK_END in tokenizer.get_vocab()

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        batch_engine.stop(timeout=5)

    app = FastAPI(title="alarm", description="OpenAI-compatible audio chat completions", lifespan=lifespan)
    app.state.drain, app.state.engine, app.state.metrics = drain, batch_engine.start(), metrics
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes)

    def refused(err: ApiError, headers: dict[str, str] | None = None) -> Any:
        metrics.request(err.status)
        access_log.info(json.dumps({"status": err.status, "error": err.message, "param": err.param}))
        return _error_response(err, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Any:
        return refused(validation_error(list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Any:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return refused(ApiError(exc.status_code, str(exc.detail), kind=kind), getattr(exc, "headers", None))

    @app.middleware("http")
    async def gate(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        """Draining: 503 for new requests. Chat completions must be JSON (415 otherwise)."""
        if request.url.path == CHAT_PATH and request.method == "POST":
            if drain.draining:
                return refused(ApiError(503, "the server is shutting down", kind="service_unavailable"),
                               {"Retry-After": "5"})  # fmt: skip
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                return refused(ApiError(415, f"content-type must be application/json, got {media or 'none'!r}"))
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def playground() -> str:
        return playground_html()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "draining" if drain.draining else "ok"}

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> str:
        return metrics.render()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        entry = {"id": served.name, "object": "model", "created": 0, "owned_by": "alarm"}
        return {"object": "list", "data": [entry]}

    async def answer(req: _Request, request: Request) -> Any:
        while not isinstance(event := await req.next_event(request.is_disconnected), (Done, Failed)):
            pass
        if isinstance(event, Failed):
            req.finished(500)
            return _error_response(ApiError(500, f"generation failed: {event.error}", kind="server_error"))
        out = event.output
        reply = ChatCompletion(
            id=req.id,
            created=req.created,
            model=served.name,
            choices=[
                Choice(
                    message=AssistantReply(content=out.answer, reasoning_content=out.reasoning),
                    finish_reason=_finish(out),
                )
            ],
            usage=_usage(event.prompt_tokens, out),
        )
        req.finished(200, event)
        return reply

    async def stream(req: _Request) -> AsyncIterator[str]:
        def chunk(delta: Delta, finish: str | None = None) -> str:
            body = ChatCompletionChunk(
                id=req.id, created=req.created, model=served.name,
                choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            )  # fmt: skip
            return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

        deltas, status, done = _Deltas(tokenizer, has_reasoning), 200, None
        try:
            yield chunk(Delta(role="assistant", content=""))
            while isinstance(event := await req.next_event(), Tokens):
                for delta in deltas.add(event.ids):
                    yield chunk(delta)
            if isinstance(event, Failed):  # the status line is gone: report in the stream, then end it
                status, failure = 500, ApiError(500, f"generation failed: {event.error}", kind="server_error")
                yield f"data: {json.dumps(failure.body())}\n\n"
            else:
                done = event
                for delta in deltas.add([], final=True):
                    yield chunk(delta)
                yield chunk(Delta(), _finish(event.output))
                if req.query.include_usage:
                    usage = ChatCompletionChunk(
                        id=req.id, created=req.created, model=served.name, choices=[],
                        usage=_usage(event.prompt_tokens, event.output),
                    )  # fmt: skip
                    yield f"data: {usage.model_dump_json(exclude_none=True)}\n\n"
            yield "data: [DONE]\n\n"
        finally:  # also when the client goes away mid-stream (this generator is closed): free its row
            if done is None and status == 200:
                req.job.cancel()
            drain.in_flight -= 1
            req.finished(499 if done is None and status == 200 else status, done)

    @app.post(CHAT_PATH, response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        if body.model not in (None, served.name):
            return refused(ApiError(404, f"model {body.model!r} is not served here (serving {served.name!r})",
                                    param="model", kind="not_found_error"))  # fmt: skip
        drain.in_flight += 1  # from here until the answer's last byte (a stream's end, below)
        streaming = False
        try:
            try:
                query = await run_in_threadpool(to_query, body, served.limits)
                req = _Request(served, batch_engine, query, metrics)
            except ApiError as err:
                return refused(err)
            except QueueFull as err:
                return refused(ApiError(429, f"the server is busy: {err}", kind="rate_limit_error"),
                               {"Retry-After": "1"})  # fmt: skip
            except EngineStopped as err:
                return refused(ApiError(503, str(err), kind="service_unavailable"), {"Retry-After": "5"})
            if query.stream:
                streaming = True
                return StreamingResponse(stream(req), media_type="text/event-stream")
            try:
                return await answer(req, request)
            except asyncio.CancelledError:
                req.finished(499)
                raise
        finally:
            if not streaming:
                drain.in_flight -= 1

    return app
