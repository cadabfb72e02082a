"""AlarmConfig: which frozen RLM and encoders, and the shape of the trainable audio path.

Frozen parts are stored by name (hub id / local path) or, for tiny twins, by architecture
dict + seed, so ``from_pretrained`` rebuilds them bit-identically without storing them.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from alarm.encoders.base import EncoderSpec
from alarm.modeling.adapters import BranchConfig
from alarm.modeling.fusion import FusionConfig

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant that can hear. Listen to the audio and answer the request."


class AlarmConfig(PretrainedConfig):
    """Configuration of an ALARM audio-language model.

    Args:
        text_model: hub id or path of the frozen RLM; ``None`` with ``text_config`` for a tiny twin.
        text_config: ``Qwen3Config`` keyword arguments of a randomly initialised RLM.
        text_seed: seed of that random init.
        tokenizer_name: tokenizer id/path; defaults to ``text_model``; ``"tiny"`` = byte-level twin.
        encoders: list of :class:`EncoderSpec` dicts.
        branches: ``{encoder kind: BranchConfig dict}``; missing kinds get the defaults.
        fusion: :class:`FusionConfig` dict.
        system_prompt: default system prompt for chat.
        preset: the preset this config came from (informational).
    """

    model_type = "alarm"

    def __init__(
        self,
        text_model: str | None = None,
        text_config: dict[str, Any] | None = None,
        text_seed: int = 0,
        tokenizer_name: str | None = None,
        encoders: list[dict[str, Any]] | None = None,
        branches: dict[str, dict[str, Any]] | None = None,
        fusion: dict[str, Any] | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        preset: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.text_model = text_model
        self.text_config = dict(text_config or {})
        self.text_seed = int(text_seed)
        self.tokenizer_name = tokenizer_name or text_model
        self.encoders = [
            EncoderSpec.from_dict(e).to_dict() if isinstance(e, dict) else e.to_dict() for e in encoders or []
        ]
        kinds = [e["kind"] for e in self.encoders]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"each encoder kind may appear once, got {kinds}")
        self.branches = {k: BranchConfig.from_dict((branches or {}).get(k, {})).to_dict() for k in kinds}
        unknown = set(branches or {}) - set(kinds)
        if unknown:
            raise ValueError(f"branches given for encoders that are not in the model: {sorted(unknown)}")
        default_fusion = {"type": "none", "main": kinds[0]} if kinds else {"type": "none"}
        self.fusion = FusionConfig.from_dict(fusion or default_fusion).to_dict()
        self.system_prompt = system_prompt
        self.preset = preset
        super().__init__(**kwargs)
        if self.text_model is None and not self.text_config and encoders is not None:
            raise ValueError("give `text_model` (hub id or path) or `text_config` for a random tiny RLM")
        if self.tokenizer_name is None and encoders is not None:
            raise ValueError("give `tokenizer_name` when the RLM is built from `text_config`")

    # typed views -------------------------------------------------------------------------
    def encoder_specs(self) -> list[EncoderSpec]:
        return [EncoderSpec.from_dict(e) for e in self.encoders]

    def branch_config(self, kind: str) -> BranchConfig:
        return BranchConfig.from_dict(self.branches[kind])

    def fusion_config(self) -> FusionConfig:
        return FusionConfig.from_dict(self.fusion)

    @classmethod
    def from_preset_dict(cls, data: dict[str, Any]) -> AlarmConfig:
        """Build from a preset file's dict, rejecting keys the config does not know."""
        known = {
            "text_model",
            "text_config",
            "text_seed",
            "tokenizer_name",
            "encoders",
            "branches",
            "fusion",
            "system_prompt",
            "preset",
            "description",
        }
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown preset keys: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k != "description"})
