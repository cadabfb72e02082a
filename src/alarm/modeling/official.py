"""Load the official ALARM checkpoints (Blinorot/ALARM-CA, Blinorot/AL-*-R) into our model.

The official checkpoints are ``Qwen3AudioWrappedForCausalLM.push_to_hub`` exports: the whole
model, frozen RLM and frozen encoders included, plus its config (``audio_adapter_configs``,
``audio_fusion_config``, ...). We read only the trainable audio path and rebuild the frozen
parts from their own released ids. Key mapping (official -> ours):

==========================================================================  =====================================
``model.audio_adapter.adapters.<enc>.layer_fusion.layer_weights``           ``branches.<enc>.layer_average.weights``
``model.audio_adapter.adapters.<enc>.adapter.input_proj.*``                 ``branches.<enc>.adapter.input_proj.*``
``model.audio_adapter.adapters.<enc>.adapter.downsampler.0.0.*`` (conv k3)  ``branches.<enc>.adapter.conv1.*``
``model.audio_adapter.adapters.<enc>.adapter.downsampler.0.2.*`` (norm)     ``branches.<enc>.adapter.norm1.*``
``model.audio_adapter.adapters.<enc>.adapter.downsampler.1.0.*`` (conv k4)  ``branches.<enc>.adapter.conv2.*``
``model.audio_adapter.adapters.<enc>.adapter.downsampler.1.2.*`` (norm)     ``branches.<enc>.adapter.norm2.*``
``model.audio_adapter.adapters.muq.adapter.model.{0,2}.*`` (MLP)            ``branches.muq.adapter.{fc1,fc2}.*``
``model.audio_adapter.adapters.<enc>.llm_proj.*``                           ``branches.<enc>.projection.*``
``model.audio_fusion.fusion_model.in_proj.<enc>.*``                         ``fusion.in_proj.<enc>.*``
``model.audio_fusion.fusion_model.condition_modules.<enc>.<i>.*``           ``fusion.blocks.<enc>.<i>.*``
``model.audio_fusion.fusion_model.out_proj.*``                              ``fusion.out_proj.*``
``model.audio_start_emb``, ``model.audio_end_emb`` (1, H) each             ``audio_boundaries`` (2, H)
==========================================================================  =====================================

Official LayerNorm adapters wrap the norm (``...2.norm.weight``); the ``.norm`` level is
dropped. Keys of the RLM (``model.layers.*``, ``model.embed_tokens.*``, ``lm_head.*``) and of
the frozen encoders (``model.audio_encoder.*``) are not read. The official layer lists index
the same Hugging Face hidden states as ours (see docs/architecture.md). Behavioural
differences of the conv adapter: ours keeps ``ceil(T/2)`` frames (official: ``T // 2``, one
token fewer for an odd ``T``) and masks batch padding before each convolution (official: none,
so in a padded batch a shorter clip's last output frame also sees padding frames). At
inference (norms in eval mode) that is at most the last token of a clip. In training it is
not: a BatchNorm adapter (Whisper's) in train mode officially normalises with statistics that
include the padding frames of shorter clips, which changes every frame of the batch.
ALARM-P checkpoints (perceiver-io module names) are not mapped: no ALARM-P was released.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from alarm.encoders.base import read_checkpoint, read_json
from alarm.modeling.configuration import AlarmConfig
from alarm.modeling.model import AlarmForConditionalGeneration

OFFICIAL_RLM = "Qwen/Qwen3-4B-Thinking-2507"
ENCODER_IDS = {
    "whisper": "openai/whisper-large-v3",
    "w2vbert": "facebook/w2v-bert-2.0",
    "muq": "OpenMuQ/MuQ-large-msd-iter",
    "sslam": "ta012/SSLAM_AS2M_Finetuned",
}
OFFICIAL_SPEC = {"muq": {"input_rate": 16000}}

_RULES: list[tuple[str, str]] = [
    (r"audio_adapter\.adapters\.(\w+)\.layer_fusion\.layer_weights", r"branches.\1.layer_average.weights"),
    (r"audio_adapter\.adapters\.(\w+)\.adapter\.input_proj\.(\w+)", r"branches.\1.adapter.input_proj.\2"),
    (r"audio_adapter\.adapters\.(\w+)\.adapter\.downsampler\.0\.0\.(\w+)", r"branches.\1.adapter.conv1.\2"),
    (r"audio_adapter\.adapters\.(\w+)\.adapter\.downsampler\.0\.2\.(?:norm\.)?(\w+)", r"branches.\1.adapter.norm1.\2"),
    (r"audio_adapter\.adapters\.(\w+)\.adapter\.downsampler\.1\.0\.(\w+)", r"branches.\1.adapter.conv2.\2"),
    (r"audio_adapter\.adapters\.(\w+)\.adapter\.downsampler\.1\.2\.(?:norm\.)?(\w+)", r"branches.\1.adapter.norm2.\2"),
    (r"audio_adapter\.adapters\.(\w+)\.adapter\.model\.0\.(\w+)", r"branches.\1.adapter.fc1.\2"),
    (r"audio_adapter\.adapters\.(\w+)\.adapter\.model\.2\.(\w+)", r"branches.\1.adapter.fc2.\2"),
    (r"audio_adapter\.adapters\.(\w+)\.llm_proj\.(\w+)", r"branches.\1.projection.\2"),
    (r"audio_fusion\.fusion_model\.in_proj\.(\w+)\.(\w+)", r"fusion.in_proj.\1.\2"),
    (r"audio_fusion\.fusion_model\.condition_modules\.(\w+)\.(\d+)\.(.+)", r"fusion.blocks.\1.\2.\3"),
    (r"audio_fusion\.fusion_model\.out_proj\.(\w+)", r"fusion.out_proj.\1"),
]


def convert_state_dict(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an official audio-path state dict (``model.`` prefix removed) to our key names.

    Raises on any key it does not know, so a layout change is loud instead of half-loaded.
    """
    ours: dict[str, torch.Tensor] = {}
    boundaries = {}
    for key, tensor in official.items():
        if key in ("audio_start_emb", "audio_end_emb"):
            boundaries[key] = tensor.reshape(-1)
            continue
        for pattern, target in _RULES:
            if re.fullmatch(pattern, key):
                ours[re.sub(pattern, target, key)] = tensor
                break
        else:
            raise KeyError(f"official checkpoint key {key!r} has no counterpart in this model")
    if boundaries:
        ours["audio_boundaries"] = torch.stack([boundaries["audio_start_emb"], boundaries["audio_end_emb"]])
    return ours


def fusion_depths(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Cross-attention decoder layers per conditional encoder, counted in converted weights."""
    depths: dict[str, int] = {}
    for key in state:
        match = re.match(r"fusion\.blocks\.(\w+)\.(\d+)\.", key)
        if match:
            depths[match[1]] = max(depths.get(match[1], 0), int(match[2]) + 1)
    return depths


def _cross_attention_depth(fusion: dict[str, Any], weights: dict[str, int] | None) -> int:
    """One depth for every conditional encoder: the weights' if given, checked against the config.

    The official class default is 2 per encoder, the released ``alarm_ca.yaml`` sets 1: a
    config without ``num_hidden_layers`` means 2, and the weights settle it when read.
    """
    configured = [int(d) for d in fusion.get("num_hidden_layers", [2] * len(fusion["conditional_encoders"]))]
    configured_by_name = dict(zip(fusion["conditional_encoders"], configured, strict=True))
    if weights is not None:
        if weights != configured_by_name:
            raise ValueError(
                f"the checkpoint's weights hold {weights} cross-attention layers per encoder, "
                f"its config.json says {configured_by_name}"
            )
    if len(set(configured)) != 1:
        raise ValueError(f"per-encoder cross-attention depths differ: {configured}; one depth is supported")
    return configured[0]


def config_from_official(
    official: dict[str, Any],
    *,
    text: dict[str, Any] | None = None,
    encoders: dict[str, dict[str, Any]] | None = None,
    depths: dict[str, int] | None = None,
) -> AlarmConfig:
    """Our config for an official checkpoint's ``config.json`` (single-encoder or CA).

    ``text`` gives the RLM (default: the paper's, by hub id); ``encoders`` gives per kind the
    spec fields other than ``layers`` (default: the released encoder ids). Both are only
    overridden to point at local copies or, in tests, tiny twins. ``depths``
    (:func:`fusion_depths` of the checkpoint's weights) must agree with the config's
    cross-attention depth; :func:`load_official` passes them.
    """
    if official.get("use_explicit_audio_tokens"):
        raise ValueError("official checkpoints with explicit audio text tokens are not supported")
    adapters = {a["encoder_name"]: a for a in official["audio_adapter_configs"]}
    fusion = official["audio_fusion_config"]
    kinds = [e["encoder_name"] for e in official["audio_encoder_configs"]]
    if fusion["fusion_type"] == "crossattention":
        order = ["whisper", *fusion["conditional_encoders"]]
        our_fusion = {
            "type": "cross_attention",
            "main": fusion.get("main_encoder", "whisper"),
            "conditional": list(fusion["conditional_encoders"]),
            "hidden_size": fusion.get("hidden_dim", 1024),
            "ffn_size": fusion.get("ffn_dims", 4096),
            "num_heads": fusion.get("num_attention_heads", 16),
            "layers_per_encoder": _cross_attention_depth(fusion, depths),
            "dropout": fusion.get("dropout", 0.1),
            "memory_mask": "main",  # crossattention.py masks every conditional stream with Whisper's lengths
        }
        if fusion.get("use_skip_connection"):
            raise ValueError("official cross-attention with a skip connection is not supported")
    elif fusion["fusion_type"] == "sum" and len(kinds) == 1:
        order, our_fusion = kinds, {"type": "none", "main": kinds[0]}
    else:
        raise ValueError(f"official fusion {fusion['fusion_type']!r} with encoders {kinds} is not supported")
    branches = {}
    for kind in order:
        a = adapters[kind]
        if a["adapter_name"] == "downsampler_conformer":
            if a.get("use_conformer") or a.get("downsampler_depth", 1) != 1 or not a.get("pre_average", True):
                raise ValueError(f"{kind}: only the 2-conv downsampler adapter (no conformer) is supported")
            branches[kind] = {"adapter": "conv", "dim": a["adapter_embedding_dim"], "norm": a.get("norm_type", "batch")}
        elif a["adapter_name"] == "mlp":
            branches[kind] = {"adapter": "mlp", "dim": a.get("hidden_dim", 1024)}
        else:
            raise ValueError(f"{kind}: official adapter {a['adapter_name']!r} is not supported")
    # MuQ heard only 16 kHz audio upsampled to 24 kHz in the official training (see EncoderSpec.input_rate)
    sources = encoders or {k: {"pretrained": ENCODER_IDS[k], **OFFICIAL_SPEC.get(k, {})} for k in order}
    specs = [{**sources[k], "kind": k, "layers": _our_layers(k, adapters[k])} for k in order]
    return AlarmConfig(**(text or {"text_model": OFFICIAL_RLM}), encoders=specs, branches=branches, fusion=our_fusion)


def _our_layers(kind: str, adapter: dict[str, Any]) -> list[int]:
    layers = list(adapter["audio_encoder_layers"])
    # The official SSLAM list has no embedding entry (index 0 = block 1); ours does.
    return [i + 1 for i in layers] if kind == "sslam" else layers


def read_official_state(pretrained: str) -> dict[str, torch.Tensor]:
    """The audio path of an official checkpoint under our key names.

    Only those tensors are read: the RLM and the frozen encoders stored beside them stay on disk.
    """
    audio = read_checkpoint(pretrained, prefix="model.audio_", exclude=("model.audio_encoder.",))
    return convert_state_dict({f"audio_{k}": v for k, v in audio.items()})


def load_official(
    pretrained: str,
    *,
    text: dict[str, Any] | None = None,
    encoders: dict[str, dict[str, Any]] | None = None,
    **shared: Any,
) -> AlarmForConditionalGeneration:
    """Build our model from an official checkpoint (hub id or local directory).

    ``shared`` passes already-built frozen parts to the model (see ``build_ensemble``).
    """
    official_config = read_json(pretrained)
    if official_config is None:
        raise FileNotFoundError(f"{pretrained}: no config.json")
    state = read_official_state(pretrained)
    config = config_from_official(official_config, text=text, encoders=encoders, depths=fusion_depths(state) or None)
    model = AlarmForConditionalGeneration(config, **shared)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k in model.trainable_state_dict()]
    if missing or result.unexpected_keys:
        raise ValueError(f"{pretrained}: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}")
    return model.eval()
