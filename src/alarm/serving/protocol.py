"""OpenAI chat-completions requests in, one audio question out; errors in OpenAI's shape.

A request is read into a :class:`ChatQuery`: the clip (an ``input_audio`` part, or an
``audio_url`` part holding a ``data:`` URL), the user text, the system prompt, earlier text
turns, and the decoding settings. What the model cannot do is refused with a 400 naming the
field: one clip per request, in the last user message (the model hears one clip, placed
before the text of its turn, as it was trained); no URL fetching (the server does not reach
out); ``n`` = 1.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from alarm.audio import AudioError, Waveform, load_audio
from alarm.generation import GenerationConfig

THINKING_BUDGET_FIELD = "thinking_budget"  # extension, passed by clients as an extra body field


class ApiError(Exception):
    """A request error with its HTTP status, in the OpenAI error format."""

    def __init__(self, status: int, message: str, *, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


@dataclass(frozen=True)
class ServerLimits:
    """What the server accepts and its defaults."""

    max_new_tokens: int = 2048
    thinking_budget: int = -1
    max_audio_seconds: float = 600.0


@dataclass
class ChatQuery:
    """One audio question, ready for the model."""

    wave: Waveform
    prompt: str
    system: str | None
    context: list[dict[str, str]] = field(default_factory=list)
    config: GenerationConfig = field(default_factory=GenerationConfig)
    seed: int | None = None
    stream: bool = False


def _text_of(content: Any, where: str) -> str:
    """A message's text; audio outside the last user message is refused."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ApiError(400, f"{where}.content must be a string or a list of parts", param=f"{where}.content")
    texts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind in ("input_audio", "audio_url"):
            raise ApiError(400, f"{where}: audio is accepted in the last user message only", param=f"{where}.content")
        else:
            raise ApiError(400, f"{where}.content[{i}]: unsupported part type {kind!r}", param=f"{where}.content")
    return "\n".join(texts)


def _audio_bytes(part: dict[str, Any], where: str) -> bytes:
    if part["type"] == "input_audio":
        data = (part.get("input_audio") or {}).get("data")
    else:
        url = str((part.get("audio_url") or {}).get("url", ""))
        if not url.startswith("data:"):
            raise ApiError(400, f"{where}: only data: URLs are accepted (this server fetches nothing)", param=where)
        data = url.partition(",")[2]
    if not isinstance(data, str) or not data:
        raise ApiError(400, f"{where}: no base64 audio data", param=where)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ApiError(400, f"{where}: audio data is not valid base64 ({err})", param=where) from None


def _last_user(message: dict[str, Any], where: str, limits: ServerLimits) -> tuple[Waveform, str]:
    content = message.get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise ApiError(400, f"{where}.content must be a string or a list of parts", param=f"{where}.content")
    audio = [
        (i, p) for i, p in enumerate(parts) if isinstance(p, dict) and p.get("type") in ("input_audio", "audio_url")
    ]
    if len(audio) != 1:
        raise ApiError(400, f"{where}: exactly one audio part is needed, got {len(audio)}", param=f"{where}.content")
    index, part = audio[0]
    raw = _audio_bytes(part, f"{where}.content[{index}]")
    try:
        wave = load_audio(raw, max_seconds=limits.max_audio_seconds)
    except AudioError as err:
        raise ApiError(400, f"{where}.content[{index}]: {err}", param=f"{where}.content") from None
    text = _text_of([p for i, p in enumerate(parts) if i != index], where)
    return wave, text


def _int(body: dict[str, Any], key: str, low: int, high: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ApiError(400, f"{key} must be an integer {bound}, got {value!r}", param=key)
    return value


def _float(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApiError(400, f"{key} must be a number between {low} and {high}, got {value!r}", param=key)
    return float(value)


def parse_request(body: Any, limits: ServerLimits) -> ChatQuery:
    """Validate an OpenAI chat-completions body and read it into a :class:`ChatQuery`."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "messages must be a non-empty list of message objects", param="messages")
    if (n := _int(body, "n", 1, 1)) is not None and n != 1:
        raise ApiError(400, "n must be 1", param="n")
    system_parts, context = [], []
    *earlier, last = messages
    for i, message in enumerate(earlier):
        role, where = message.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            system_parts.append(_text_of(message.get("content"), where))
        elif role in ("user", "assistant"):
            context.append({"role": role, "content": _text_of(message.get("content"), where)})
        else:
            raise ApiError(400, f"{where}.role {role!r} is not supported", param=f"{where}.role")
    if last.get("role") != "user":
        raise ApiError(400, "the last message must be the user's question", param=f"messages[{len(earlier)}].role")
    wave, prompt = _last_user(last, f"messages[{len(earlier)}]", limits)

    max_tokens = _int(body, "max_completion_tokens", 1) or _int(body, "max_tokens", 1) or limits.max_new_tokens
    budget = _int(body, THINKING_BUDGET_FIELD, -1)
    temperature = _float(body, "temperature", 0.0, 2.0)
    top_p = _float(body, "top_p", 0.0, 1.0)
    sample = temperature is not None and temperature > 0
    defaults = GenerationConfig()
    config = GenerationConfig(
        max_new_tokens=min(max_tokens, limits.max_new_tokens),
        thinking_budget=limits.thinking_budget if budget is None else budget,
        do_sample=sample,
        temperature=temperature if sample else defaults.temperature,
        top_p=top_p if top_p is not None else defaults.top_p,
    )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, f"stream must be true or false, got {stream!r}", param="stream")
    return ChatQuery(
        wave=wave,
        prompt=prompt,
        system="\n\n".join(system_parts) if system_parts else None,
        context=context,
        config=config,
        seed=_int(body, "seed", 0),
        stream=stream,
    )
