"""Adapters: compress one encoder's averaged features to 25 Hz and map them to the RLM width.

``ConvAdapter`` (Whisper, W2V-BERT, SSLAM; 50 -> 25 Hz): conv k=3 (D -> 2D), GELU, norm, then
conv k=4 stride 2 (2D -> D), GELU, norm; a larger even ``stride`` s (conv k=2s) compresses
further (s=4: 12.5 Hz, half the audio positions the RLM attends over, for CPU presets).
``MLPAdapter`` (MuQ, already 25 Hz): two linear layers with GELU. Padded frames are zeroed
before each convolution so a sample's output never depends on how much padding the batch gave it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from alarm.modeling.layer_average import LayerAverage


def length_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) bool mask, True on the first ``lengths[b]`` positions."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over channels of a (B, C, T) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "layer":
        return ChannelLayerNorm(channels)
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    raise ValueError(f"unknown norm {kind!r}; use 'layer' or 'batch'")


class ConvAdapter(nn.Module):
    """Two convolutions dividing the frame rate by ``stride`` (2: 50 -> 25 Hz, the paper's)."""

    def __init__(self, in_dim: int, dim: int, norm: str = "layer", stride: int = 2) -> None:
        super().__init__()
        if stride < 2 or stride % 2:
            raise ValueError(f"conv adapter stride must be even and at least 2, got {stride}")
        self.stride = stride
        self.input_proj = nn.Linear(in_dim, dim) if in_dim != dim else nn.Identity()
        self.conv1 = nn.Conv1d(dim, 2 * dim, kernel_size=3, padding=1)
        self.norm1 = _norm(norm, 2 * dim)
        # kernel 2s, padding s/2: exactly T / s outputs for T a multiple of s (s=2: k=4, p=1)
        self.conv2 = nn.Conv1d(2 * dim, dim, kernel_size=2 * stride, stride=stride, padding=stride // 2)
        self.norm2 = _norm(norm, dim)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        # Lengths are padded up to a multiple of the stride, then divided: ceil(T / s).
        return (lengths + self.stride - 1) // self.stride

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, T, D_in)
        x = self.input_proj(x) * length_mask(lengths, x.shape[1])[..., None]
        x = F.pad(x, (0, 0, 0, -x.shape[1] % self.stride)).transpose(1, 2)  # (B, D, T_padded)
        h = self.norm1(F.gelu(self.conv1(x)))  # (B, 2D, T_padded)
        out_lengths = self.output_lengths(lengths)
        h = h * length_mask(out_lengths * self.stride, h.shape[2])[:, None, :]
        y = self.norm2(F.gelu(self.conv2(h)))  # (B, D, T_padded / s)
        return y.transpose(1, 2), out_lengths


class MLPAdapter(nn.Module):
    """Linear-GELU-Linear-GELU; keeps the frame rate."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.gelu(self.fc2(F.gelu(self.fc1(x)))), lengths


@dataclass(frozen=True)
class BranchConfig:
    """How one encoder's features become a stream.

    adapter: ``conv`` (50 -> 25 Hz), ``mlp`` (rate kept) or ``none`` (raw averaged features,
        e.g. into a Perceiver that compresses them itself).
    dim: adapter width. norm: ``layer`` or ``batch`` (conv only).
    stride: the conv adapter's rate division (2, the paper's; 4 = 12.5 Hz).
    project: map the adapter output to the RLM width with a linear layer.
    """

    adapter: Literal["conv", "mlp", "none"] = "conv"
    dim: int = 1024
    norm: str = "layer"
    project: bool = True
    stride: int = 2

    def __post_init__(self) -> None:
        if self.stride != 2 and self.adapter != "conv":
            raise ValueError(f"stride is the conv adapter's; the {self.adapter!r} adapter has none")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BranchConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown branch config keys: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AudioBranch(nn.Module):
    """Layer average -> adapter -> projection for one encoder: (L, B, T, D_enc) -> (B, T', D_out)."""

    def __init__(self, config: BranchConfig, num_layers: int, encoder_dim: int, output_dim: int) -> None:
        super().__init__()
        self.layer_average = LayerAverage(num_layers)
        if config.adapter == "conv":
            self.adapter: nn.Module | None = ConvAdapter(encoder_dim, config.dim, config.norm, config.stride)
        elif config.adapter == "mlp":
            self.adapter = MLPAdapter(encoder_dim, config.dim)
        elif config.adapter == "none":
            self.adapter = None
        else:
            raise ValueError(f"unknown adapter {config.adapter!r}; use conv, mlp or none")
        width = encoder_dim if self.adapter is None else config.dim
        self.projection = nn.Linear(width, output_dim) if config.project else None
        self.output_dim = output_dim if config.project else width

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths if self.adapter is None else self.adapter.output_lengths(lengths)

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.layer_average(hidden)  # (B, T, D_enc)
        if self.adapter is not None:
            x, lengths = self.adapter(x, lengths)  # (B, T', D)
        if self.projection is not None:
            x = self.projection(x)  # (B, T', H)
        return x, lengths
