"""AlarmForConditionalGeneration: frozen RLM + frozen encoders + trainable audio path.

    waves per rate -> encoders (frozen)            {kind: (L, B, T_k, D_k)}
                   -> branches (layer average, adapter, projection)   {kind: (B, T'_k, H_k)}
                   -> fusion (none | cross-attention | perceiver)     (B, T, H)
                   -> [start, audio, end] boundary embeddings         (B, T + 2, H)
                   -> spliced into the user turn at the ``<|audio|>`` placeholders
                   -> frozen RLM (loss on target tokens only)

Frozen vs trainable is declared here once: ``language_model.*`` and ``encoders.*`` are frozen
(no grad, eval mode), everything else trains. ``save_pretrained`` writes the trainable weights
and the config; ``from_pretrained`` rebuilds the frozen parts from the names in the config.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM

from alarm.encoders import FrozenEncoder, build_encoder
from alarm.encoders.base import module_shell, seeded
from alarm.io import atomic_path
from alarm.modeling.adapters import AudioBranch, length_mask
from alarm.modeling.configuration import AlarmConfig
from alarm.modeling.fusion import build_fusion
from alarm.modeling.inputs import AudioBatch, AudioSlot, UserPart
from alarm.modeling.tokenizer import AUDIO_TOKEN, load_tokenizer, token_id
from alarm.packaged import resolve_weights

WEIGHTS_NAME = "model.safetensors"
FROZEN_PREFIXES = ("language_model.", "encoders.")


# Buffers that keep their dtype when the frozen parts are cast: rotary frequencies, from which
# positions are computed (in bf16, position 750 would be 752). ``from_pretrained(dtype=...)``
# leaves them in fp32 too.
KEEP_DTYPE_BUFFERS = frozenset({"inv_freq", "original_inv_freq"})


def cast_floating(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast ``module``'s floating parameters and buffers to ``dtype`` in place, except `KEEP_DTYPE_BUFFERS`."""
    for sub in module.modules():
        for param in sub.parameters(recurse=False):
            if param.is_floating_point() and param.dtype != dtype:
                param.data = param.data.to(dtype)
        for name, buffer in sub.named_buffers(recurse=False):
            if buffer.is_floating_point() and buffer.dtype != dtype and name not in KEEP_DTYPE_BUFFERS:
                sub._buffers[name] = buffer.to(dtype)
    return module


def cache_argument(model: nn.Module) -> str:
    """The name of a ``transformers`` model's KV cache in its arguments and outputs.

    ``cache`` from transformers 5.2x, ``past_key_values`` before (the old name still works
    there, with a deprecation warning).
    """
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def build_language_model(config: AlarmConfig, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """The frozen RLM: released weights by id/path, or a seeded random Qwen3 for tiny twins.

    Released weights are read directly in ``dtype`` (no fp32 copy of a 4B model on the way);
    a tiny twin is initialised in fp32 and cast, so its values do not depend on ``dtype``.
    """
    if config.text_model is not None:
        return AutoModelForCausalLM.from_pretrained(resolve_weights(config.text_model), dtype=dtype or torch.float32)
    with seeded(config.text_seed):
        model = Qwen3ForCausalLM(Qwen3Config(**config.text_config))
    return cast_floating(model, dtype) if dtype is not None else model


def splice_audio(
    text_embeds: torch.Tensor, input_ids: torch.Tensor, audio_token_id: int, audio: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Fill the placeholder positions of a batch with audio embeddings in one ``masked_scatter``.

    Args:
        text_embeds: (B, S, H) token embeddings (placeholders embedded as anything).
        input_ids: (B, S) with ``audio_token_id`` at audio positions: one run per clip.
        audio: (N, T, H) embeddings of every clip in the batch, boundaries included, in the
            order their placeholders appear (prompt by prompt, left to right); N = B when each
            prompt holds one clip.
        valid: (N, T) which of them are real; taken in order, clip by clip.
    """
    mask = input_ids == audio_token_id
    packed = audio[valid]  # (sum of clip sizes, H): clip-major, time order kept
    per_prompt, per_clip = mask.sum(1), valid.sum(1)
    # Equal totals are not enough: each prompt must also take whole clips, so its placeholders
    # end where a clip ends (otherwise a clip would spill into the next prompt unnoticed).
    clip_ends = torch.cat([per_clip.new_zeros(1), per_clip.cumsum(0)]).to(per_prompt.device)
    whole = torch.isin(per_prompt.cumsum(0), clip_ends).all()
    if int(per_prompt.sum()) != packed.shape[0] or not bool(whole):
        raise ValueError(
            f"audio placeholders and audio embeddings disagree: the prompts have {per_prompt.tolist()} positions, "
            f"the {per_clip.numel()} clips produced {per_clip.tolist()}; build prompts with the model's `audio_slots`"
        )
    return text_embeds.masked_scatter(mask.unsqueeze(-1), packed.to(text_embeds.dtype))


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Trainable and frozen parameter counts; a module shared by ensemble members counts once."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {"trainable": trainable, "frozen": sum(p.numel() for p in module.parameters()) - trainable}


def embed_with_audio(alm: Any, input_ids: torch.Tensor, audio: AudioBatch | None) -> torch.Tensor:
    """Embed ``input_ids`` with ``alm``'s RLM and splice in ``alm.audio_embeddings(audio)``.

    Shared by single models and ensembles: anything with ``language_model``,
    ``audio_token_id`` and ``audio_embeddings``.
    """
    is_audio = input_ids == alm.audio_token_id
    embeds = alm.language_model.get_input_embeddings()(input_ids.masked_fill(is_audio, 0))
    if audio is None:
        if bool(is_audio.any()):
            raise ValueError("the prompt has audio placeholders but no audio was given")
        return embeds
    return splice_audio(embeds, input_ids, alm.audio_token_id, *alm.audio_embeddings(audio))


class AudioLengthRule:
    """Audio positions per sample from sample counts: the model's length rules without weights.

    Holds shells (`module_shell`) of the encoders, branches (with their adapters) and fusion,
    so ``model.audio_lengths`` and DataLoader workers run the very same code, and a worker
    started with ``spawn`` receives a few kilobytes instead of the model.
    """

    def __init__(self, encoders: dict[str, FrozenEncoder], branches: dict[str, nn.Module], fusion: nn.Module):
        self.encoders, self.branches, self.fusion = encoders, branches, fusion

    @classmethod
    def of(cls, model: AlarmForConditionalGeneration) -> AudioLengthRule:
        return cls(
            {k: e if e.released else e.without_weights() for k, e in model.encoders.items()},
            {k: module_shell(b, keep=("adapter",)) for k, b in model.branches.items()},
            module_shell(model.fusion),
        )

    def __call__(self, sample_lengths: dict[int, torch.Tensor]) -> torch.Tensor:
        per_stream = {}
        for kind, enc in self.encoders.items():
            frames = torch.tensor(
                [enc.output_length(int(n)) for n in sample_lengths[enc.sample_rate]], dtype=torch.long
            )
            per_stream[kind] = self.branches[kind].output_lengths(frames)
        return self.fusion.output_lengths(per_stream) + 2


class AlarmForConditionalGeneration(PreTrainedModel):
    """An audio-language model over a frozen reasoning LLM (see module docstring)."""

    config_class = AlarmConfig
    base_model_prefix = "alarm"
    main_input_name = "input_ids"

    def __init__(
        self,
        config: AlarmConfig,
        *,
        language_model: PreTrainedModel | None = None,
        encoders: dict[str, FrozenEncoder] | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        frozen_dtype: torch.dtype | None = None,
    ) -> None:
        """Build the model; pass already-built frozen parts to share them (e.g. in ALARM-E).

        ``frozen_dtype`` holds the frozen RLM and encoders in that dtype (bf16 halves a 4B
        RLM); the trainable audio path stays fp32 and its input is cast to it.
        """
        super().__init__(config)
        shared = encoders or {}
        self.language_model = (
            language_model if language_model is not None else build_language_model(config, frozen_dtype)
        )
        self.encoders = nn.ModuleDict({s.kind: shared.get(s.kind) or build_encoder(s) for s in config.encoder_specs()})
        hidden = self.language_model.get_input_embeddings().embedding_dim
        self.branches = nn.ModuleDict(
            {
                kind: AudioBranch(config.branch_config(kind), len(enc.layers), enc.hidden_size, hidden)
                for kind, enc in self.encoders.items()
            }
        )
        self.fusion = build_fusion(config.fusion_config(), {k: b.output_dim for k, b in self.branches.items()}, hidden)
        # Two trainable vectors around the audio, on the scale of the RLM's own embeddings.
        scale = float(self.language_model.get_input_embeddings().weight.detach().float().std())
        self.audio_boundaries = nn.Parameter(torch.randn(2, hidden) * scale)
        self.language_model.requires_grad_(False)
        self.language_model.eval()
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.tokenizer_name)
        self.audio_token_id = token_id(self.tokenizer, AUDIO_TOKEN)
        self._length_rule: AudioLengthRule | None = None
        if frozen_dtype is not None:
            self.cast_frozen(frozen_dtype)

    # frozen / trainable ------------------------------------------------------------------
    def train(self, mode: bool = True) -> AlarmForConditionalGeneration:
        super().train(mode)
        self.language_model.eval()  # frozen parts never train (dropout stays off)
        for encoder in self.encoders.values():
            encoder.eval()
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights and buffers of the trainable parts only."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(FROZEN_PREFIXES)}

    def cast_frozen(self, dtype: torch.dtype) -> AlarmForConditionalGeneration:
        """Hold the frozen RLM and encoders in ``dtype``; the trainable parts keep theirs."""
        cast_floating(self.language_model, dtype)
        for encoder in self.encoders.values():
            cast_floating(encoder, dtype)
        return self

    def release_encoders(self, kinds: Sequence[str] | None = None) -> AlarmForConditionalGeneration:
        """Replace encoders (all by default) by shells without their networks, freeing their memory.

        For training from a feature cache, where every batch carries the encoders' states:
        lengths, specs and the cache manifest still work; encoding raw audio raises.
        """
        for kind in self.encoders if kinds is None else kinds:
            self.encoders[kind] = self.encoders[kind].without_weights()
        self._length_rule = None
        return self

    # audio path ---------------------------------------------------------------------------
    @property
    def sample_rates(self) -> list[int]:
        return sorted({enc.sample_rate for enc in self.encoders.values()})

    def length_rule(self) -> AudioLengthRule:
        """The audio length rule alone: small and picklable (DataLoader workers, any start method)."""
        if self._length_rule is None:
            self._length_rule = AudioLengthRule.of(self)
        return self._length_rule

    def audio_lengths(self, sample_lengths: dict[int, torch.Tensor]) -> torch.Tensor:
        """(B,) audio positions each sample will take, boundaries included, without encoding.

        The chat layer needs the count before the model runs (e.g. in DataLoader workers);
        ``splice_audio`` checks it against what the encoders actually produced.
        """
        return self.length_rule()(sample_lengths)

    def audio_token_counts(self, sample_lengths: dict[int, torch.Tensor]) -> torch.Tensor:
        """(B,) encoded audio tokens per sample: positions minus boundaries and separators."""
        return self.audio_lengths(sample_lengths) - 2 - self.fusion.num_separators

    def audio_slots(self, sample_lengths: dict[int, torch.Tensor]) -> list[list[AudioSlot]]:
        """The audio slots of each sample's user turn (one per sample for a single model)."""
        return [[AudioSlot(int(n))] for n in self.audio_lengths(sample_lengths)]

    @staticmethod
    def user_parts(prompt: str, slots: Sequence[AudioSlot]) -> list[UserPart]:
        """Audio first, then the text: the layout the paper trains with (static: picklable)."""
        (slot,) = slots
        return [slot, prompt]

    def encode_audio(self, audio: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused audio content (B, T, H) and its lengths (B,), without boundaries.

        Encoders whose output ``audio.encoder_states`` already holds (feature cache) are not run.
        """
        streams = {}
        dtype = self.audio_boundaries.dtype
        cached = audio.encoder_states
        for kind, enc in self.encoders.items():
            hidden, frames = cached[kind] if kind in cached else enc.encode(*audio.at(enc.sample_rate))
            streams[kind] = self.branches[kind](hidden.to(dtype), frames.to(hidden.device))
        return self.fusion(streams)

    def audio_embeddings(self, audio: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """[start, content, end] per sample: (B, T + 2, H) and the (B, T + 2) valid mask."""
        content, lengths = self.encode_audio(audio)
        batch, width, hidden = content.shape
        out = content.new_zeros(batch, width + 2, hidden)
        out[:, 1 : width + 1] = content * length_mask(lengths, width)[..., None]
        out[:, 0] = self.audio_boundaries[0]
        out[torch.arange(batch, device=out.device), lengths + 1] = self.audio_boundaries[1].to(out.dtype)
        return out, length_mask(lengths + 2, width + 2)

    def embed_inputs(self, input_ids: torch.Tensor, audio: AudioBatch | None) -> torch.Tensor:
        """Token embeddings with the audio spliced in at the placeholders."""
        return embed_with_audio(self, input_ids, audio)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        audio: AudioBatch | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        """RLM forward on spliced embeddings; with ``labels`` the loss covers target tokens only."""
        inputs_embeds = self.embed_inputs(input_ids, audio)
        return self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    # persistence ------------------------------------------------------------------------
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        state_dict: dict[str, torch.Tensor] | None = None,
        **_: Any,
    ) -> None:
        """Write ``config.json`` and the trainable weights (``model.safetensors``), atomically.

        ``state_dict`` replaces the module's own trainable values, e.g. the fp32 master
        weights a DeepSpeed bf16 run keeps in its optimizer.
        """
        os.makedirs(save_directory, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        self.config.save_pretrained(save_directory)
        # fp32 whatever the compute dtype: one format on disk.
        state = {
            k: (v.float() if v.is_floating_point() else v).detach().contiguous().cpu()
            for k, v in (self.trainable_state_dict() if state_dict is None else state_dict).items()
        }
        with atomic_path(os.path.join(save_directory, WEIGHTS_NAME)) as tmp:
            save_file(state, tmp, metadata={"format": "pt", "frozen": ",".join(FROZEN_PREFIXES)})

    @classmethod
    def from_pretrained(cls, pretrained: str | os.PathLike, **kwargs: Any) -> AlarmForConditionalGeneration:
        """Rebuild the frozen parts from the config's names and load the trainable weights."""
        from transformers.utils import cached_file

        config = AlarmConfig.from_pretrained(pretrained)
        model = cls(config, **kwargs)
        state = load_file(cached_file(str(pretrained), WEIGHTS_NAME))
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(FROZEN_PREFIXES)]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"checkpoint {pretrained} does not match the model: missing {missing[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
        return model.eval()
