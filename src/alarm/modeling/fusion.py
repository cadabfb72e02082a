"""Fusion of the encoder streams into one sequence for the RLM.

- ``none``: a single encoder's stream, unchanged (AL-*-R single-encoder models).
- ``cross_attention`` (ALARM-CA): the main (Whisper) stream is the query; it is refined by
  ``layers_per_encoder`` cross-attention decoder layers over each conditional stream in a
  fixed order (W2V-BERT -> MuQ -> SSLAM). One layer per encoder, as the released
  ``alarm_ca.yaml`` (``num_hidden_layers: [1, 1, 1]``) that produced the paper's numbers; the
  paper's text says a 2-layer block. Output keeps the main stream's 25 Hz length.
- ``perceiver`` (ALARM-P): one Perceiver per conditional encoder compresses its features into
  a fixed set of latents, each encoder's latents mapped to the RLM width by its own output
  projection (official ``MultiPerceiverFusion.out_proj[encoder]``); the latents (20 per
  encoder, 60 in the paper), framed by two trainable separators, are prepended to the main
  stream.

All take ``streams: {name: (x (B, T_n, D_n), lengths (B,))}`` and return ``(x (B, T, H), lengths)``.
ALARM-E is not a fusion module: it concatenates two models' audio at inference (see
``AlarmEnsemble`` in ``model.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from alarm.modeling.adapters import length_mask

Streams = dict[str, tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class FusionConfig:
    """Fusion type and sizes. Paper values are the defaults (official ALARM-CA / ALARM-P)."""

    type: Literal["none", "cross_attention", "perceiver"] = "none"
    main: str = "whisper"
    conditional: tuple[str, ...] = ()
    # cross-attention
    hidden_size: int = 1024
    ffn_size: int = 4096
    num_heads: int = 16
    layers_per_encoder: int = 1  # released alarm_ca.yaml: [1, 1, 1] (the paper's text: 2)
    dropout: float = 0.1
    # Which lengths mask a conditional stream (the cross-attention memory): "main", the
    # official crossattention.py (the Whisper stream's lengths mask every conditional stream,
    # which it does as all streams come from the same clip at 25 Hz), or "own", each stream's
    # own lengths (they differ by at most a frame). A saved config without the field loads
    # as "main".
    memory_mask: Literal["main", "own"] = "main"
    # perceiver
    num_latents: int = 20
    latent_size: int = 768
    cross_attention_heads: int = 4
    self_attention_heads: int = 4
    self_attention_layers: int = 6
    self_attention_repeats: int = 3  # the self-attention block is applied this many times, shared weights
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditional", tuple(self.conditional))
        if self.extra:
            raise ValueError(f"unknown fusion options: {sorted(self.extra)}")
        if self.type not in ("none", "cross_attention", "perceiver"):
            raise ValueError(f"unknown fusion type {self.type!r}; use none, cross_attention or perceiver")
        if self.type != "none" and not self.conditional:
            raise ValueError(f"fusion {self.type!r} needs conditional encoders")
        if self.memory_mask not in ("main", "own"):
            raise ValueError(f"memory_mask must be 'main' (official) or 'own', got {self.memory_mask!r}")
        if self.layers_per_encoder < 1:
            raise ValueError(f"layers_per_encoder must be at least 1, got {self.layers_per_encoder}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionConfig:
        known = set(cls.__dataclass_fields__) - {"extra"}
        return cls(
            **{k: v for k, v in data.items() if k in known}, extra={k: v for k, v in data.items() if k not in known}
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        data["conditional"] = list(self.conditional)
        return data


def padding_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) True on padding, the convention of ``nn.MultiheadAttention``."""
    return ~length_mask(lengths, width)


class SingleStream(nn.Module):
    """No fusion: the one stream passes through."""

    num_separators = 0

    def __init__(self, config: FusionConfig, dims: dict[str, int], output_dim: int) -> None:
        super().__init__()
        if dims[config.main] != output_dim:
            raise ValueError(f"stream {config.main!r} has width {dims[config.main]}, the RLM needs {output_dim}")
        self.main = config.main

    def output_lengths(self, lengths: dict[str, torch.Tensor]) -> torch.Tensor:
        return lengths[self.main]

    def forward(self, streams: Streams) -> tuple[torch.Tensor, torch.Tensor]:
        return streams[self.main]


class CrossAttentionFusion(nn.Module):
    """ALARM-CA: sequential cross-attention blocks, main stream as query."""

    num_separators = 0

    def __init__(self, config: FusionConfig, dims: dict[str, int], output_dim: int) -> None:
        super().__init__()
        self.main, self.conditional = config.main, config.conditional
        self.memory_mask = config.memory_mask
        self.in_proj = nn.ModuleDict(
            {n: nn.Linear(dims[n], config.hidden_size) for n in (self.main, *self.conditional)}
        )
        self.blocks = nn.ModuleDict(
            {
                name: nn.ModuleList(
                    nn.TransformerDecoderLayer(
                        d_model=config.hidden_size,
                        nhead=config.num_heads,
                        dim_feedforward=config.ffn_size,
                        dropout=config.dropout,
                        activation=F.gelu,
                        batch_first=True,
                        norm_first=True,
                    )
                    for _ in range(config.layers_per_encoder)
                )
                for name in self.conditional
            }
        )
        self.out_proj = nn.Linear(config.hidden_size, output_dim)

    def output_lengths(self, lengths: dict[str, torch.Tensor]) -> torch.Tensor:
        return lengths[self.main]

    def forward(self, streams: Streams) -> tuple[torch.Tensor, torch.Tensor]:
        x, lengths = streams[self.main]
        query = self.in_proj[self.main](x)  # (B, T, C)
        query_pad = padding_mask(lengths, query.shape[1])
        for name in self.conditional:
            memory, memory_lengths = streams[name]
            memory = self.in_proj[name](memory)  # (B, T_n, C)
            memory_pad = padding_mask(lengths if self.memory_mask == "main" else memory_lengths, memory.shape[1])
            for block in self.blocks[name]:
                query = block(query, memory, tgt_key_padding_mask=query_pad, memory_key_padding_mask=memory_pad)
        return self.out_proj(query), lengths


class PerceiverResampler(nn.Module):
    """Perceiver encoder: latents cross-attend to the input once, then self-attend.

    The self-attention block (``layers`` pre-LN transformer layers) is applied ``repeats``
    times with shared weights, as in Perceiver IO's shared latent blocks.
    """

    def __init__(self, input_dim: int, config: FusionConfig) -> None:
        super().__init__()
        c = config.latent_size
        self.latents = nn.Parameter(torch.randn(config.num_latents, c) * 0.02)
        self.norm_latents = nn.LayerNorm(c)
        self.norm_input = nn.LayerNorm(input_dim)
        self.cross_attention = nn.MultiheadAttention(
            c, config.cross_attention_heads, kdim=input_dim, vdim=input_dim, batch_first=True
        )
        self.cross_mlp = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, c), nn.GELU(), nn.Linear(c, c))
        self.self_attention = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=c,
                nhead=config.self_attention_heads,
                dim_feedforward=c,
                dropout=0.0,
                activation=F.gelu,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(config.self_attention_layers)
        )
        self.repeats = config.self_attention_repeats

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D_in) -> (B, N, C)
        latents = self.latents.unsqueeze(0).expand(x.shape[0], -1, -1)
        kv = self.norm_input(x)
        attended, _ = self.cross_attention(
            self.norm_latents(latents), kv, kv, key_padding_mask=padding_mask(lengths, x.shape[1]), need_weights=False
        )
        h = latents + attended
        h = h + self.cross_mlp(h)
        for _ in range(self.repeats):
            for layer in self.self_attention:
                h = layer(h)
        return h


class PerceiverFusion(nn.Module):
    """ALARM-P: [sep, latents of each conditional encoder, sep, main stream].

    Each encoder's latents have their own output projection to the RLM width, as the
    official ``MultiPerceiverFusion`` (one ``out_proj`` per conditional encoder).
    """

    num_separators = 2

    def __init__(self, config: FusionConfig, dims: dict[str, int], output_dim: int) -> None:
        super().__init__()
        self.main, self.conditional = config.main, config.conditional
        if dims[self.main] != output_dim:
            raise ValueError(f"main stream {self.main!r} must already have the RLM width {output_dim}")
        self.perceivers = nn.ModuleDict({n: PerceiverResampler(dims[n], config) for n in self.conditional})
        self.out_proj = nn.ModuleDict({n: nn.Linear(config.latent_size, output_dim) for n in self.conditional})
        self.separators = nn.Parameter(torch.randn(2, output_dim) * output_dim**-0.5)
        self.num_prefix = config.num_latents * len(self.conditional)

    def output_lengths(self, lengths: dict[str, torch.Tensor]) -> torch.Tensor:
        return lengths[self.main] + self.num_prefix + self.num_separators

    def forward(self, streams: Streams) -> tuple[torch.Tensor, torch.Tensor]:
        x, lengths = streams[self.main]
        batch = x.shape[0]
        # each encoder's latents (B, 20, C) -> its own projection (B, 20, H); joined (B, 60, H)
        latents = torch.cat([self.out_proj[n](self.perceivers[n](*streams[n])) for n in self.conditional], dim=1)
        start, end = self.separators.to(x.dtype).unsqueeze(1).unsqueeze(1).expand(2, batch, 1, -1)
        out = torch.cat([start, latents, end, x], dim=1)  # (B, 62 + T, H)
        return out, lengths + self.num_prefix + self.num_separators


FUSIONS: dict[str, type[nn.Module]] = {
    "none": SingleStream,
    "cross_attention": CrossAttentionFusion,
    "perceiver": PerceiverFusion,
}


def build_fusion(config: FusionConfig, dims: dict[str, int], output_dim: int) -> nn.Module:
    """Build the fusion module for streams of widths ``dims``."""
    missing = {config.main, *config.conditional} - set(dims)
    if missing:
        raise ValueError(f"fusion needs streams {sorted(missing)} that no encoder provides")
    return FUSIONS[config.type](config, dims, output_dim)
