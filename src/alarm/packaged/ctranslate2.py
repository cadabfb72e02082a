"""CTranslate2 Whisper models -> a transformers ``WhisperForConditionalGeneration`` directory.

A CTranslate2 ``model.bin`` is a flat list of named tensors. Its layout (format version 6):

    u32 version | u16 len, spec name | u32 spec revision | u32 count
    count x ( u16 len, name | u8 rank | rank x u32 dim | u8 dtype | u32 nbytes | bytes )
    u32 aliases x ( u16 len, alias | u16 len, target )

Strings are NUL-terminated inside their length. dtypes: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16
(int8-quantised models also carry ``.../weight_scale``; they are refused here).

Names map one to one onto transformers' Whisper (see `hf_key`); the fused projections are
split: encoder and decoder ``self_attention/linear_0`` is q, k, v stacked along rows (k has
no bias in transformers), decoder ``attention/linear_1`` is the cross-attention k, v. Sizes
that are not stored as tensors (heads) are stored as scalars; the rest comes from shapes.
No ``ctranslate2`` package is needed: numpy reads the file.
"""

from __future__ import annotations

import json
import os
import re
import struct
from typing import Any

import numpy as np
import torch

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_SUPPORTED_VERSIONS = (5, 6)


class _Reader:
    def __init__(self, data: memoryview) -> None:
        self.data, self.pos = data, 0

    def unpack(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        n = self.unpack("H")
        raw = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return raw.rstrip(b"\0").decode("utf-8")

    def take(self, n: int) -> memoryview:
        chunk = self.data[self.pos : self.pos + n]
        if len(chunk) != n:
            raise ValueError("truncated CTranslate2 file")
        self.pos += n
        return chunk


def read_model_bin(data: bytes | memoryview) -> tuple[str, dict[str, np.ndarray]]:
    """The spec name and the named variables of a CTranslate2 ``model.bin`` (aliases resolved)."""
    reader = _Reader(memoryview(data))
    version = reader.unpack("I")
    if version not in _SUPPORTED_VERSIONS:
        raise ValueError(f"CTranslate2 format version {version} is not supported (known: {_SUPPORTED_VERSIONS})")
    spec = reader.string()
    reader.unpack("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = [reader.unpack("I") for _ in range(reader.unpack("B"))]
        code = reader.unpack("B")
        if code not in _DTYPES:
            raise ValueError(f"{name}: unknown CTranslate2 dtype code {code}")
        nbytes = reader.unpack("I")
        variables[name] = np.frombuffer(reader.take(nbytes), dtype=_DTYPES[code]).reshape(shape)
    if reader.pos < len(reader.data):
        for _ in range(reader.unpack("I")):
            alias, target = reader.string(), reader.string()
            variables[alias] = variables[target]
    if reader.pos != len(reader.data):
        raise ValueError(f"{len(reader.data) - reader.pos} unread bytes at the end of the CTranslate2 file")
    return spec, variables


# CTranslate2 name pattern -> transformers name (``{i}`` = layer index, ``{p}`` = weight/bias).
_LAYER_NAMES = {
    "self_attention/layer_norm/gamma": "self_attn_layer_norm.weight",
    "self_attention/layer_norm/beta": "self_attn_layer_norm.bias",
    "self_attention/linear_1/{p}": "self_attn.out_proj.{p}",
    "attention/layer_norm/gamma": "encoder_attn_layer_norm.weight",
    "attention/layer_norm/beta": "encoder_attn_layer_norm.bias",
    "attention/linear_0/{p}": "encoder_attn.q_proj.{p}",
    "attention/linear_2/{p}": "encoder_attn.out_proj.{p}",
    "ffn/layer_norm/gamma": "final_layer_norm.weight",
    "ffn/layer_norm/beta": "final_layer_norm.bias",
    "ffn/linear_0/{p}": "fc1.{p}",
    "ffn/linear_1/{p}": "fc2.{p}",
}
_STACK_NAMES = {
    "conv1/{p}": "conv1.{p}",
    "conv2/{p}": "conv2.{p}",
    "layer_norm/gamma": "layer_norm.weight",
    "layer_norm/beta": "layer_norm.bias",
    "position_encodings/encodings": "embed_positions.weight",
    "embeddings/weight": "embed_tokens.weight",
}
# Fused projections: split along rows into these transformers projections (None = no bias there).
_FUSED = {
    "self_attention/linear_0": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "attention/linear_1": ("encoder_attn.k_proj", "encoder_attn.v_proj"),
}
_NO_BIAS = ("k_proj",)  # Whisper's key projections have no bias


def _match(table: dict[str, str], rest: str) -> str | None:
    for pattern, target in table.items():
        if "{p}" in pattern:
            stem = pattern.replace("/{p}", "")
            if rest in (f"{stem}/weight", f"{stem}/bias"):
                return target.replace("{p}", rest.rsplit("/", 1)[1])
        elif rest == pattern:
            return target
    return None


def _tensor(value: np.ndarray) -> torch.Tensor:
    # float32 on disk: transformers then loads the directory in float32 like any checkpoint
    # (the export is float16; widening is exact). np.array copies out of the read-only file buffer.
    return torch.from_numpy(np.array(value, dtype=np.float32))


def whisper_state_dict(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """transformers ``WhisperForConditionalGeneration`` weights from CTranslate2 variables.

    Scalars (head counts, flags) and the decoder's tied output projection are skipped; any
    other name that has no mapping is an error, so a format change cannot go unnoticed.
    """
    if any(name.endswith("weight_scale") for name in variables):
        raise ValueError("int8-quantised CTranslate2 models are not supported; use a float16/float32 export")
    state: dict[str, torch.Tensor] = {}
    for name, value in variables.items():
        if value.ndim == 0 or name == "decoder/projection/weight":
            continue
        stack, _, rest = name.partition("/")
        layer = re.match(r"layer_(\d+)/(.*)", rest)
        prefix = f"model.{stack}."
        if layer is not None:
            prefix += f"layers.{layer.group(1)}."
            rest = layer.group(2)
            fused = next((f for f in _FUSED if rest.startswith(f + "/")), None)
            if fused is not None:
                kind = rest.rsplit("/", 1)[1]
                for part, target in zip(np.split(value, len(_FUSED[fused]), axis=0), _FUSED[fused]):
                    if kind == "bias" and target.endswith(_NO_BIAS):
                        continue
                    state[f"{prefix}{target}.{kind}"] = _tensor(part)
                continue
            target = _match(_LAYER_NAMES, rest)
        else:
            target = _match(_STACK_NAMES, rest)
        if target is None:
            raise ValueError(f"CTranslate2 variable {name!r} has no transformers counterpart")
        state[prefix + target] = _tensor(value)
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    return state


def _count_layers(variables: dict[str, np.ndarray], stack: str) -> int:
    found = {int(m.group(1)) for name in variables if (m := re.match(rf"{stack}/layer_(\d+)/", name))}
    return max(found) + 1 if found else 0


def whisper_config(variables: dict[str, np.ndarray], tokenizer: dict[str, Any]) -> dict[str, Any]:
    """``WhisperConfig`` keyword arguments read off the tensor shapes and the tokenizer."""
    ids = {t["content"]: t["id"] for t in tokenizer.get("added_tokens", [])}
    d_model = int(variables["encoder/conv1/weight"].shape[0])
    end = ids["<|endoftext|>"]
    return {
        "vocab_size": int(variables["decoder/embeddings/weight"].shape[0]),
        "num_mel_bins": int(variables["encoder/conv1/weight"].shape[1]),
        "d_model": d_model,
        "encoder_layers": _count_layers(variables, "encoder"),
        "decoder_layers": _count_layers(variables, "decoder"),
        "encoder_attention_heads": int(variables["encoder/num_heads"]),
        "decoder_attention_heads": int(variables["decoder/num_heads"]),
        "encoder_ffn_dim": int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "decoder_ffn_dim": int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "max_source_positions": int(variables["encoder/position_encodings/encodings"].shape[0]),
        "max_target_positions": int(variables["decoder/position_encodings/encodings"].shape[0]),
        "pad_token_id": end,
        "bos_token_id": end,
        "eos_token_id": end,
        "decoder_start_token_id": ids["<|startoftranscript|>"],
        "tie_word_embeddings": True,
    }


def whisper_generation_config(config: dict[str, Any], ct2_config: dict[str, Any], tokenizer: dict[str, Any]):
    """The ``generation_config.json`` transformers' Whisper ``generate`` reads (languages, tasks, suppression)."""
    ids = {t["content"]: t["id"] for t in tokenizer.get("added_tokens", [])}
    by_id = {v: k for k, v in ids.items()}
    multilingual = config["vocab_size"] >= 51865
    generation = {
        "decoder_start_token_id": config["decoder_start_token_id"],
        "bos_token_id": config["bos_token_id"],
        "eos_token_id": config["eos_token_id"],
        "pad_token_id": config["pad_token_id"],
        "max_length": config["max_target_positions"],
        "no_timestamps_token_id": ids["<|notimestamps|>"],
        "suppress_tokens": list(ct2_config.get("suppress_ids", [])),
        "begin_suppress_tokens": list(ct2_config.get("suppress_ids_begin", [])),
        "alignment_heads": [list(h) for h in ct2_config.get("alignment_heads", [])],
        "is_multilingual": multilingual,
    }
    if multilingual:
        generation["lang_to_id"] = {by_id[i]: i for i in ct2_config.get("lang_ids", []) if i in by_id}
        generation["task_to_id"] = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    return generation


def convert_whisper(model_bin: bytes, ct2_config: dict[str, Any], tokenizer_json: str, out_dir: str) -> None:
    """Write a transformers Whisper directory (config, weights, feature extractor, tokenizer) to ``out_dir``."""
    from safetensors.torch import save_file
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    spec, variables = read_model_bin(model_bin)
    if spec != "WhisperSpec":
        raise ValueError(f"expected a CTranslate2 WhisperSpec model, got {spec!r}")
    with open(tokenizer_json, encoding="utf-8") as f:
        tokenizer = json.load(f)
    config = WhisperConfig(**whisper_config(variables, tokenizer))
    state = whisper_state_dict(variables)
    # Check the mapping against the real module: no missing and no unexpected key, shapes equal.
    with torch.device("meta"):
        expected = {k: v.shape for k, v in WhisperForConditionalGeneration(config).state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected.keys() & state.keys() if tuple(expected[k]) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        raise ValueError(
            f"CTranslate2 -> transformers mapping: missing {missing}, unexpected {unexpected}, shape {wrong}"
        )

    config.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "generation_config.json"), "w", encoding="utf-8") as f:
        json.dump(whisper_generation_config(config.to_dict(), ct2_config, tokenizer), f, indent=2)
    # Tied output projection: stored once, as transformers does.
    save_file(
        {k: v for k, v in state.items() if k != "proj_out.weight"},
        os.path.join(out_dir, "model.safetensors"),
        metadata={"format": "pt"},
    )
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out_dir)
    _save_whisper_tokenizer(tokenizer_json, out_dir)


def _save_whisper_tokenizer(tokenizer_json: str, out_dir: str) -> None:
    from transformers import WhisperTokenizerFast

    tokenizer = WhisperTokenizerFast(
        tokenizer_file=tokenizer_json,
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.save_pretrained(out_dir)
