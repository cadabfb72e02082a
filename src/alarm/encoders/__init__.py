"""Frozen audio encoders, one file each, behind the protocol in `base.py`."""

from __future__ import annotations

import importlib
from dataclasses import replace

from alarm.encoders.base import EncoderSpec, FrozenEncoder
from alarm.packaged import resolve_weights

# kind -> "module:Class"; imported lazily so a user of one encoder never pays for the others.
ENCODERS: dict[str, str] = {
    "whisper": "alarm.encoders.whisper:WhisperEncoder",
    "w2vbert": "alarm.encoders.w2vbert:W2VBertEncoder",
    "muq": "alarm.encoders.muq:MuQEncoder",
    "sslam": "alarm.encoders.sslam:SSLAMEncoder",
}


def encoder_class(kind: str) -> type[FrozenEncoder]:
    """The encoder class registered under ``kind``."""
    try:
        module_name, class_name = ENCODERS[kind].split(":")
    except KeyError:
        raise ValueError(f"unknown encoder kind {kind!r}; known: {sorted(ENCODERS)}") from None
    return getattr(importlib.import_module(module_name), class_name)


def build_encoder(spec: EncoderSpec) -> FrozenEncoder:
    """Build a frozen encoder from its spec (real weights or seeded random init).

    ``spec.pretrained`` may name a packaged model (``packaged:whisper-base``): the network is
    read from its converted directory, while the encoder keeps the spec as written, so saved
    configs, ensemble sharing and feature caches see the portable name, not a local path.
    """
    local = replace(spec, pretrained=resolve_weights(spec.pretrained))
    encoder = encoder_class(spec.kind).from_spec(local)
    encoder.spec = spec
    return encoder.freeze()


__all__ = ["ENCODERS", "EncoderSpec", "FrozenEncoder", "build_encoder", "encoder_class"]
