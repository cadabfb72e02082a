"""What enters the model: audio batches and the parts of a user turn.

``AudioBatch`` is a batch of waveforms resampled once per encoder sample rate, with true
lengths. ``AudioSlot`` / ``UserPart`` describe where audio goes in a user turn; the model
(``audio_slots``, ``user_parts``) produces them and the chat layer (``alarm.chat``) renders
them, so they live here, below both, and imports run one way (modeling -> chat).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch.nn.utils.rnn import pad_sequence

from alarm.audio import Waveform


@dataclass
class AudioBatch:
    """``waves[rate]`` is (B, S) right-padded, ``lengths[rate]`` is (B,) true sample counts.

    ``encoder_states[kind]``, when given (e.g. read from the feature cache), is the frozen
    encoder's output ``(hidden (L, B, T, D), frames (B,))``: the model then skips that encoder
    and ``waves`` may lack its rate. ``lengths`` is still needed: the chat layer sizes audio
    slots from sample counts.
    """

    waves: dict[int, torch.Tensor]
    lengths: dict[int, torch.Tensor]
    encoder_states: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @classmethod
    def from_waveforms(cls, waveforms: Sequence[Waveform], rates: Iterable[int]) -> AudioBatch:
        """Resample every waveform to each rate an encoder needs and pad per rate."""
        if not waveforms:
            raise ValueError("an audio batch needs at least one waveform")
        waves, lengths = {}, {}
        for rate in sorted(set(rates)):
            tensors = [w.resample(rate).to_tensor() for w in waveforms]
            waves[rate] = pad_sequence(tensors, batch_first=True)
            lengths[rate] = torch.tensor([t.numel() for t in tensors], dtype=torch.long)
        return cls(waves, lengths)

    @property
    def batch_size(self) -> int:
        return next(iter(self.lengths.values())).shape[0]

    def at(self, rate: int) -> tuple[torch.Tensor, torch.Tensor]:
        if rate not in self.waves:
            raise KeyError(f"audio batch has no {rate} Hz version (has {sorted(self.waves)})")
        return self.waves[rate], self.lengths[rate]

    def to(self, device: torch.device | str) -> AudioBatch:
        return AudioBatch(
            {r: w.to(device) for r, w in self.waves.items()},
            {r: n.to(device) for r, n in self.lengths.items()},
            {k: (h.to(device), n.to(device)) for k, (h, n) in self.encoder_states.items()},
        )


@dataclass(frozen=True)
class AudioSlot:
    """Room for ``size`` audio embeddings (boundary embeddings included) in a user turn."""

    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"an audio slot needs at least one position, got {self.size}")


UserPart = str | AudioSlot
