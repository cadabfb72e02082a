"""The request and response bodies as pydantic models, and requests read into model inputs.

The models mirror the OpenAI chat-completions types (``openai.types.chat``): what a client
library sends validates here, and what the server answers parses there. Validation is
strict (no ``"5"`` for 5, no ``true`` for 1, no NaN) and unknown fields are refused, so a
malformed field gets a 400 naming it (:func:`validation_error`) rather than being ignored or
failing later. What needs the server's settings (the audio: base64, container, duration)
is checked when a validated request is read into a :class:`ChatQuery` (:func:`to_query`).

Audio may come as ``input_audio`` parts or ``audio_url`` parts holding a ``data:`` URL (the
server fetches nothing), any number of them, in any user message: each clip is spliced where
it stands (:func:`alarm.generation.build_inputs`). One clip before the question of the last
user message is the layout the model was trained on.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import soundfile as sf
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from alarm.audio import AudioError, Waveform, load_audio
from alarm.generation import GenerationConfig

MAX_INT = 2**31 - 1

#: ``input_audio.format`` names and the libsndfile containers each may hold.
AUDIO_FORMATS: dict[str, frozenset[str]] = {
    "wav": frozenset({"WAV", "WAVEX", "RF64", "W64"}),
    "flac": frozenset({"FLAC"}),
    "mp3": frozenset({"MP3"}),
    "ogg": frozenset({"OGG"}),
    "opus": frozenset({"OGG"}),
    "aiff": frozenset({"AIFF"}),
}


class ApiError(Exception):
    """A request error with its HTTP status, in the OpenAI error format."""

    def __init__(self, status: int, message: str, *, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


#: Discriminator values pydantic puts in an error's location after a list index.
_TAGS = frozenset({"system", "developer", "user", "assistant", "text", "input_audio", "audio_url"})


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("messages", 0, "content", 1)`` -> ``messages[0].content[1]`` (OpenAI's ``param`` style).

    What pydantic adds to a location besides fields (union members such as ``str`` or
    ``list[...]``, the discriminator value after an index) is dropped: the client wrote a
    field, not a type.
    """
    path, previous = "", None
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif (part == "body" and not path) or (isinstance(previous, int) and part in _TAGS):
            pass
        elif "[" in part or part in ("str", "int", "float", "bool", "none") or part.startswith("function-"):
            pass
        else:
            path += f".{part}" if path else part
        previous = part
    return path


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """A 400 naming the invalid field of a pydantic (or FastAPI) validation error.

    Of the errors, the deepest is reported: for a union (text or a list of parts) pydantic
    reports each member, and the one that went furthest names what the client got wrong.
    """
    first = max(errors, key=lambda e: len(e.get("loc", ())))
    param = field_path(tuple(first.get("loc", ())))
    if first.get("type") == "json_invalid":
        return ApiError(400, f"the request body is not JSON: {first.get('ctx', {}).get('error', first['msg'])}")
    where = f"{param}: " if param else ""
    return ApiError(400, f"{where}{first['msg']}", param=param or None)


class _Schema(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text may not contain NUL characters")
    return value


#: Message text; the total a request may hold is :attr:`ServerLimits.max_text_chars`.
Text = Annotated[str, AfterValidator(_no_nul)]


class TextPart(_Schema):
    type: Literal["text"]
    text: Text


class InputAudio(_Schema):
    data: str = Field(min_length=1)
    format: str

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in AUDIO_FORMATS:
            raise ValueError(f"unknown audio format {value!r}; one of {', '.join(AUDIO_FORMATS)}")
        return value


class InputAudioPart(_Schema):
    type: Literal["input_audio"]
    input_audio: InputAudio


class AudioUrl(_Schema):
    url: str = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _data_url(cls, value: str) -> str:
        if not value.startswith("data:"):
            raise ValueError("only data: URLs are accepted (this server fetches nothing: send the bytes)")
        return value


class AudioUrlPart(_Schema):
    type: Literal["audio_url"]
    audio_url: AudioUrl


UserPart = Annotated[TextPart | InputAudioPart | AudioUrlPart, Field(discriminator="type")]


class SystemMessage(_Schema):
    role: Literal["system", "developer"]
    content: Text | list[TextPart]
    name: str | None = None


class UserMessage(_Schema):
    role: Literal["user"]
    content: Text | list[UserPart]
    name: str | None = None


class AssistantMessage(_Schema):
    role: Literal["assistant"]
    content: Text | list[TextPart] | None = None
    name: str | None = None
    refusal: str | None = None


Message = Annotated[SystemMessage | UserMessage | AssistantMessage, Field(discriminator="role")]


class StreamOptions(_Schema):
    include_usage: bool = False


class ChatCompletionRequest(_Schema):
    """``POST /v1/chat/completions``: the OpenAI fields this server honours, plus ``thinking_budget``."""

    messages: list[Message] = Field(min_length=1, max_length=256)
    model: str | None = Field(None, max_length=512)
    max_tokens: int | None = Field(None, ge=1, le=MAX_INT)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_INT)
    thinking_budget: int | None = Field(None, ge=-1, le=MAX_INT)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    n: Literal[1] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=512)


# responses ---------------------------------------------------------------------------------


class AssistantReply(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    reasoning_content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantReply
    finish_reason: Literal["stop", "length"]


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails


class ChatCompletion(BaseModel):
    """A ``chat.completion`` object."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    """A ``chat.completion.chunk`` event of a streamed answer."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


# requests into model inputs ----------------------------------------------------------------


@dataclass(frozen=True)
class ServerLimits:
    """What the server accepts and its defaults."""

    max_new_tokens: int = 2048
    thinking_budget: int = -1
    max_audio_seconds: float = 600.0
    max_text_chars: int = 200_000
    closing_text: str | None = None  # the thinking budget's closing sentence; None: ours (--official-texts)


@dataclass
class ChatQuery:
    """One request, ready for the model: the conversation with its clips decoded, and how to decode.

    ``messages`` is what :func:`alarm.generation.build_inputs` reads: ``{"role", "content"}``
    with content text, or for a user message text and :class:`Waveform` s in order.
    """

    messages: list[dict[str, Any]]
    config: GenerationConfig = field(default_factory=GenerationConfig)
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False


def _text(content: str | list[TextPart] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "\n".join(part.text for part in content)


def _audio_bytes(part: InputAudioPart | AudioUrlPart, where: str) -> tuple[bytes, str | None]:
    """The decoded bytes of an audio part and the format it claims (``None`` for a data URL)."""
    if isinstance(part, InputAudioPart):
        data, claimed, where = part.input_audio.data, part.input_audio.format, f"{where}.input_audio.data"
    else:
        data, claimed, where = part.audio_url.url.partition(",")[2], None, f"{where}.audio_url.url"
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ApiError(400, f"{where}: audio data is not valid base64 ({err})", param=where) from None
    if not raw:
        raise ApiError(400, f"{where}: no base64 audio data", param=where)
    return raw, claimed


def _check_container(raw: bytes, claimed: str, where: str) -> None:
    """Refuse audio whose container is not the one ``input_audio.format`` names."""
    try:
        container = sf.info(io.BytesIO(raw)).format
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return  # not decodable at all: load_audio reports it with its reason
    if container not in AUDIO_FORMATS[claimed]:
        raise ApiError(
            400, f"{where}: format is {claimed!r} but the data is {container}", param=f"{where}.input_audio.format"
        )


def _clip(part: InputAudioPart | AudioUrlPart, where: str, limits: ServerLimits) -> Waveform:
    raw, claimed = _audio_bytes(part, where)
    if claimed is not None:
        _check_container(raw, claimed, where)
    try:
        return load_audio(raw, max_seconds=limits.max_audio_seconds)
    except AudioError as err:
        raise ApiError(400, f"{where}: {err}", param=where) from None


def _user_content(message: UserMessage, where: str, limits: ServerLimits) -> str | list[str | Waveform]:
    """A user message's text and decoded clips, in order (each clip is spliced where it stands)."""
    if isinstance(message.content, str):
        return message.content
    return [
        part.text if isinstance(part, TextPart) else _clip(part, f"{where}.content[{i}]", limits)
        for i, part in enumerate(message.content)
    ]


def to_query(request: ChatCompletionRequest, limits: ServerLimits) -> ChatQuery:
    """A validated request as model inputs; audio is decoded here (400s name the field).

    System and developer messages are joined into the system prompt; user messages, the last
    and earlier ones, may hold any number of clips among their text.
    """
    *earlier, last = request.messages
    if not isinstance(last, UserMessage):
        raise ApiError(400, "the last message must be the user's question", param=f"messages[{len(earlier)}].role")
    system, turns = [], []
    for i, message in enumerate(request.messages):
        if isinstance(message, SystemMessage):
            system.append(_text(message.content))
        elif isinstance(message, UserMessage):
            turns.append({"role": "user", "content": _user_content(message, f"messages[{i}]", limits)})
        else:
            turns.append({"role": "assistant", "content": _text(message.content)})
    messages = [{"role": "system", "content": "\n\n".join(system)}, *turns] if system else turns
    clips = [p for m in turns if not isinstance(m["content"], str) for p in m["content"] if isinstance(p, Waveform)]
    seconds = sum(clip.seconds for clip in clips)
    if seconds > limits.max_audio_seconds:
        raise ApiError(400, f"messages: {seconds:.1f} s of audio in all, over the limit of "
                            f"{limits.max_audio_seconds:g} s", param="messages")  # fmt: skip
    chars = sum(len(p) for m in messages for p in ([m["content"]] if isinstance(m["content"], str) else m["content"])
                if isinstance(p, str))  # fmt: skip
    if chars > limits.max_text_chars:
        raise ApiError(400, f"messages: {chars} characters of text, over the limit of {limits.max_text_chars}",
                       param="messages")  # fmt: skip

    max_tokens = request.max_completion_tokens or request.max_tokens or limits.max_new_tokens
    sample = request.temperature is not None and request.temperature > 0
    defaults = GenerationConfig()
    config = GenerationConfig(
        max_new_tokens=min(max_tokens, limits.max_new_tokens),
        thinking_budget=limits.thinking_budget if request.thinking_budget is None else request.thinking_budget,
        do_sample=sample,
        temperature=request.temperature if sample else defaults.temperature,
        top_p=request.top_p if request.top_p is not None else defaults.top_p,
        closing_text=limits.closing_text if limits.closing_text is not None else defaults.closing_text,
    )
    return ChatQuery(
        messages=messages,
        config=config,
        seed=request.seed,
        stream=bool(request.stream),
        include_usage=request.stream_options is not None and request.stream_options.include_usage,
    )


def parse_request(body: Any, limits: ServerLimits) -> ChatQuery:
    """Validate a JSON body (already parsed) and read it into a :class:`ChatQuery`."""
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError as err:
        raise validation_error(err.errors()) from None
    return to_query(request, limits)
