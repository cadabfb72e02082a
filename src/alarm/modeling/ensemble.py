"""ALARM-E: inference-time ensemble of trained models, no extra training.

The user turn becomes ``[I_e, I_1, h_1, I_2, h_2, prompt]``: an instruction that the same
audio will be heard several times with different focus, then each member's audio (its own
boundary embeddings included) after a short header. In the paper the members are ALARM-CA
(perception-rich, 25 Hz) and AL-Whisper-Instruct-R (content, 25 Hz): 50 Hz in total.
Members share the frozen RLM, the tokenizer and any encoder built from the same spec, so the
ensemble costs one Whisper pass, not two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from alarm.modeling.inputs import AudioBatch, AudioSlot, UserPart
from alarm.modeling.model import AlarmForConditionalGeneration, embed_with_audio


@dataclass(frozen=True)
class EnsembleInstructions:
    """The text around the members' audio. ``headers[k]`` precedes member ``k``'s audio."""

    intro: str = (
        "You will hear the same recording more than once. Each time you listen with a different focus: "
        "sounds, music and the character of voices and recording; or the words that are spoken. "
        "Combine everything you hear before you respond.\n\n"
    )
    headers: tuple[str, ...] = ("Listening 1 (sounds, music, voices):\n", "\nListening 2 (spoken words):\n")
    outro: str = "\n\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnsembleInstructions:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown ensemble instruction keys: {sorted(unknown)}")
        return cls(**{k: tuple(v) if k == "headers" else v for k, v in data.items()})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "headers": list(self.headers)}


class AlarmEnsemble(nn.Module):
    """Concatenate the audio embeddings of several models sharing one frozen RLM."""

    def __init__(self, members: Sequence[AlarmForConditionalGeneration], instructions: EnsembleInstructions) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two models")
        if len(instructions.headers) != len(members):
            raise ValueError(f"{len(members)} members need {len(members)} headers, got {len(instructions.headers)}")
        lm = members[0].language_model
        if any(m.language_model is not lm for m in members):
            raise ValueError("ensemble members must share one language model object (build them with `build_ensemble`)")
        self.members = nn.ModuleList(members)
        self.instructions = instructions

    @property
    def language_model(self):
        return self.members[0].language_model

    @property
    def tokenizer(self):
        return self.members[0].tokenizer

    @property
    def config(self):
        return self.members[0].config

    @property
    def audio_token_id(self) -> int:
        return self.members[0].audio_token_id

    @property
    def sample_rates(self) -> list[int]:
        return sorted({r for m in self.members for r in m.sample_rates})

    def audio_lengths(self, sample_lengths: dict[int, torch.Tensor]) -> torch.Tensor:
        return sum(m.audio_lengths(sample_lengths) for m in self.members)

    def audio_token_counts(self, sample_lengths: dict[int, torch.Tensor]) -> torch.Tensor:
        return sum(m.audio_token_counts(sample_lengths) for m in self.members)

    def audio_slots(self, sample_lengths: dict[int, torch.Tensor]) -> list[list[AudioSlot]]:
        per_member = [m.audio_lengths(sample_lengths) for m in self.members]
        return [[AudioSlot(int(n[b])) for n in per_member] for b in range(per_member[0].shape[0])]

    def user_parts(self, prompt: str, slots: Sequence[AudioSlot]) -> list[UserPart]:
        parts: list[UserPart] = [self.instructions.intro]
        for header, slot in zip(self.instructions.headers, slots, strict=True):
            parts += [header, slot]
        return parts + [self.instructions.outro + prompt]

    def audio_embeddings(self, audio: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        # Concatenating along time keeps each sample's members in order for the splice.
        pieces = [m.audio_embeddings(audio) for m in self.members]
        return torch.cat([p[0] for p in pieces], dim=1), torch.cat([p[1] for p in pieces], dim=1)

    def embed_inputs(self, input_ids: torch.Tensor, audio: AudioBatch | None) -> torch.Tensor:
        return embed_with_audio(self, input_ids, audio)
