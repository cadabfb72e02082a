"""Softmax-weighted average of an encoder's selected hidden states (trainable)."""

from __future__ import annotations

import torch
from torch import nn


class LayerAverage(nn.Module):
    """``sum_l softmax(w)_l * h_l`` over the selected layers.

    Weights start at zero, i.e. a plain mean, so no layer is preferred before training.
    """

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # hidden: (L, B, T, D) -> (B, T, D)
        if hidden.shape[0] != self.weights.shape[0]:
            raise ValueError(f"expected {self.weights.shape[0]} layers, got {hidden.shape[0]}")
        weights = torch.softmax(self.weights, dim=0).to(hidden.dtype)
        return torch.einsum("l,lbtd->btd", weights, hidden)
