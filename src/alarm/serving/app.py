"""The OpenAI-compatible HTTP app: ``/v1/chat/completions`` (plain and streamed), ``/v1/models``, ``/health``.

The model answers one request at a time (a lock): generation on a CPU or one GPU is the
bottleneck, and interleaving two ``generate`` calls on one model is not safe. The reasoning
comes back as ``message.reasoning_content`` and the answer as ``message.content``, as vLLM's
reasoning parsers return them; streamed, the reasoning deltas come first.
"""

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from alarm.generation import THINK_END, GenerationOutput, generate, prepare_inputs, stream
from alarm.serving.protocol import ApiError, ChatQuery, ServerLimits, parse_request

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """The model behind the server and the name clients use for it."""

    model: Any
    name: str
    limits: ServerLimits = ServerLimits()


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _seeded(query: ChatQuery) -> None:
    if query.seed is not None:  # under the lock: the sampling of this request alone
        torch.manual_seed(query.seed)


def answer_query(served: ServedModel, query: ChatQuery, lock: threading.Lock) -> dict[str, Any]:
    """A ``chat.completion`` object for one query."""
    model = served.model
    with lock:
        _seeded(query)
        embeds, mask = prepare_inputs(model, [query.wave], [query.prompt], system=query.system, context=query.context)
        (out,) = generate(model.language_model, model.tokenizer, embeds, mask, query.config)
    prompt_tokens = int(mask.sum())
    return {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": served.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": out.answer, "reasoning_content": out.reasoning},
                "finish_reason": _finish(out),
            }
        ],
        "usage": _usage(prompt_tokens, out),
    }


def _finish(out: GenerationOutput) -> str:
    return "stop" if out.finished else "length"


def _usage(prompt_tokens: int, out: GenerationOutput) -> dict[str, int]:
    completion = len(out.token_ids)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "completion_tokens_details": {"reasoning_tokens": out.num_reasoning_tokens},
    }


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


def stream_query(served: ServedModel, query: ChatQuery, lock: threading.Lock) -> Iterator[str]:
    """Server-sent events: ``chat.completion.chunk`` objects, reasoning deltas first, then ``[DONE]``."""
    cid, created = _completion_id(), int(time.time())

    def event(delta: dict[str, Any], finish: str | None = None) -> str:
        chunk = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": served.name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    yield event({"role": "assistant", "content": ""})
    outputs: list[GenerationOutput] = []
    text, sent_reasoning, sent_answer = "", "", ""
    with lock:
        _seeded(query)
        pieces = stream(
            served.model,
            query.wave,
            query.prompt,
            query.config,
            outputs=outputs,
            system=query.system,
            context=query.context,
        )
        try:
            for piece in pieces:
                text += piece
                reasoning, answer = _split_streamed(text)
                if len(reasoning) > len(sent_reasoning):
                    yield event({"reasoning_content": reasoning[len(sent_reasoning) :]})
                    sent_reasoning = reasoning
                answer = answer.lstrip() if not sent_answer else answer
                if len(answer) > len(sent_answer):
                    yield event({"content": answer[len(sent_answer) :]})
                    sent_answer = answer
        except Exception as err:  # the status line is gone: report in the stream, then end it
            log.exception("generation failed while streaming")
            yield f"data: {json.dumps(ApiError(500, f'generation failed: {err}', kind='server_error').body())}\n\n"
            yield "data: [DONE]\n\n"
            return
    (out,) = outputs
    yield event({}, _finish(out))
    yield "data: [DONE]\n\n"


def create_app(served: ServedModel, *, max_request_bytes: int = 64 * 2**20) -> Any:
    """The FastAPI app serving ``served``; bodies over ``max_request_bytes`` get a 413.

    (This module has no ``from __future__ import annotations``: FastAPI reads the endpoint
    annotations at run time, and ``Request`` is imported here, where fastapi is needed.)
    """
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="alarm", description="OpenAI-compatible audio chat completions")
    lock = threading.Lock()

    def error(err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        entry = {"id": served.name, "object": "model", "created": 0, "owned_by": "alarm"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_request_bytes:
            return error(ApiError(413, f"request body over {max_request_bytes} bytes", kind="request_too_large"))
        raw = await request.body()
        if len(raw) > max_request_bytes:
            return error(ApiError(413, f"request body over {max_request_bytes} bytes", kind="request_too_large"))
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return error(ApiError(400, f"the request body is not JSON: {err}"))
        try:
            name = body.get("model") if isinstance(body, dict) else None
            if name not in (None, served.name):
                raise ApiError(404, f"model {name!r} is not served here (serving {served.name!r})", param="model",
                               kind="not_found_error")  # fmt: skip
            query = await run_in_threadpool(parse_request, body, served.limits)
        except ApiError as err:
            return error(err)
        if query.stream:
            return StreamingResponse(stream_query(served, query, lock), media_type="text/event-stream")
        try:
            return await run_in_threadpool(answer_query, served, query, lock)
        except Exception as err:
            log.exception("generation failed")
            return error(ApiError(500, f"generation failed: {err}", kind="server_error"))

    return app
