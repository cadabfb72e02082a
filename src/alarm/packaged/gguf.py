"""GGUF causal language models -> a plain transformers directory.

transformers reads GGUF files itself (``from_pretrained(dir, gguf_file=...)``, with the
``gguf`` package) and dequantises the weights to float32. A model loaded that way refuses
``save_pretrained`` ("quantized with gguf"), so the plain architecture is rebuilt from the
same config without its ``quantization_config`` and given the dequantised weights; that
model and the tokenizer (with the chat template the GGUF file carries) are saved as usual.
The result loads with ``AutoModelForCausalLM.from_pretrained(out_dir)`` and gives the same
tensors, hence the same greedy tokens, as the GGUF load.
"""

from __future__ import annotations

import os

import torch


def load_gguf(path: str) -> tuple[torch.nn.Module, object]:
    """The model and tokenizer transformers builds from a GGUF file (float32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(path))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model, tokenizer


def convert_gguf(path: str, out_dir: str) -> None:
    """Write ``config.json``, ``model.safetensors``, ``generation_config.json`` and the tokenizer to ``out_dir``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    loaded, tokenizer = load_gguf(path)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = loaded.state_dict()
    plain.load_state_dict(state, strict=True, assign=True)
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
