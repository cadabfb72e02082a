"""Tokenizers: the RLM's own (from its id or path), or a tiny byte-level twin for tests and demos.

The tiny tokenizer is laid out like Qwen3's: byte-level BPE symbols, ``<|im_start|>`` /
``<|im_end|>`` turns, ``<think>`` / ``</think>`` as ordinary added tokens (as in the real
Qwen3 vocabulary) and a Qwen3-Thinking-2507-style chat template whose generation prompt opens
the reasoning with ``<think>\\n``. It needs no training and no download, so a tiny preset
runs the same chat code as the paper preset. Ids differ from real Qwen3; code looks them up
by string.
"""

from __future__ import annotations

from tokenizers.pre_tokenizers import ByteLevel
from transformers import AddedToken, AutoTokenizer, PreTrainedTokenizerBase, Qwen2Tokenizer

from alarm.packaged import resolve_weights

#: Placeholder the chat layer expands to one position per audio embedding (boundaries included).
AUDIO_TOKEN = "<|audio|>"
TINY_TOKENIZER = "tiny"

# Qwen3-Thinking-2507-style template (written for this project): system, earlier turns,
# the generation prompt opening the reasoning block. Past assistant turns keep only their
# answer, as Qwen3 drops historical reasoning.
TINY_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' %}"
    "{%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}"
    "{{- '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)


def tiny_tokenizer() -> Qwen2Tokenizer:
    """A Qwen3-layout byte-level tokenizer with no merges (one token per byte)."""
    symbols = sorted(ByteLevel.alphabet())  # the 256 byte-level symbols
    tokenizer = Qwen2Tokenizer(
        vocab={s: i for i, s in enumerate(symbols)},
        merges=[],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.add_tokens([AddedToken("<think>", special=False), AddedToken("</think>", special=False)])
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The RLM's tokenizer (``"tiny"`` for the byte-level twin) with the audio placeholder added."""
    if name_or_path == TINY_TOKENIZER:
        tokenizer = tiny_tokenizer()
    else:
        tokenizer = AutoTokenizer.from_pretrained(resolve_weights(name_or_path))
    return with_audio_token(tokenizer)


def with_audio_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Register the audio placeholder as a special token (never embedded by the RLM itself)."""
    if AUDIO_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [AUDIO_TOKEN]}, replace_extra_special_tokens=False)
    return tokenizer


def token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    """Id of a single-token string, with a loud error when the vocabulary lacks it."""
    ids = tokenizer.convert_tokens_to_ids([token])
    if not ids or ids[0] is None or ids[0] == tokenizer.unk_token_id:
        raise KeyError(f"tokenizer has no token {token!r}")
    return int(ids[0])


def has_thinking_mode(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the model reasons in ``<think>...</think>`` blocks (its vocabulary has ``</think>``).

    Qwen3 and the tiny twins do; SmolLM2-Instruct does not, and then thinking budgets do not apply.
    """
    return "</think>" in tokenizer.get_vocab()
