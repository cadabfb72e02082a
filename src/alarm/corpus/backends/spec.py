"""Which backend to build, from a spec string or dict: :class:`BackendSpec` and :func:`build_backend`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from alarm.corpus.backends.base import Backend, _from_dict
from alarm.corpus.backends.http import OpenAIHTTPBackend
from alarm.corpus.backends.scripted import ScriptedBackend
from alarm.corpus.backends.transformers import TransformersBackend
from alarm.corpus.backends.vllm import VLLMBackend


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
