"""W2V-BERT 2.0 encoder (frozen): 16 kHz in, 80-bin fbank stacked in pairs, ~50 Hz out.

The feature extractor (``SeamlessM4TFeatureExtractor``) computes Kaldi fbank frames every
10 ms (25 ms windows), normalises each utterance over its own frames and stacks pairs of
frames, so ``n`` samples give ``(1 + (n - 400) // 160) // 2`` frames.

Two front ends (``EncoderSpec.per_window_front_end``):

- official (default; the released adapters were trained on it): the clip gets 160 zero
  samples at each edge, its fbank is normalised over the whole clip, and the stacked
  features are cut into 30 s windows (1500 frames) for the network: ``n`` samples give
  ``(1 + (n - 80) // 160) // 2`` frames (10 s -> 500).
- per window (ours): each 30 s window of samples is featurised and normalised alone, no edge
  padding (10 s -> 499).

The Conformer's depthwise convolution is causal and masks padding, so a padded batch gives
every sample the frames it gets alone, with either front end.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

from alarm.encoders.base import EncoderSpec, FrozenEncoder, hf_config, join_windows, seeded, select_layers

WIN_LENGTH = 400  # 25 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms at 16 kHz
# Shorter windows (< 50 ms) are padded with silence so that they still yield one stacked
# frame instead of an empty sequence the model cannot attend over.
MIN_SAMPLES = 2 * WIN_LENGTH
EDGE_PADDING = 160  # official front end: zero samples added at each edge of the clip
STACK = 2  # fbank frames per stacked feature frame (100 Hz -> 50 Hz)


class W2VBertEncoder(FrozenEncoder):
    """Frozen W2V-BERT 2.0 exposing selected hidden states at ~50 Hz."""

    kind = "w2vbert"
    sample_rate = 16_000
    frame_rate = 50.0
    default_window_seconds = 30.0

    def __init__(
        self, spec: EncoderSpec, model: Wav2Vec2BertModel, feature_extractor: SeamlessM4TFeatureExtractor
    ) -> None:
        super().__init__(spec)
        self.model = model
        self.feature_extractor = feature_extractor

    @classmethod
    def from_spec(cls, spec: EncoderSpec) -> W2VBertEncoder:
        if spec.pretrained is not None:
            model = Wav2Vec2BertModel.from_pretrained(spec.pretrained, dtype=torch.float32)
            feature_extractor = SeamlessM4TFeatureExtractor.from_pretrained(spec.pretrained)
        else:
            config = hf_config(Wav2Vec2BertConfig, spec)
            with seeded(spec.seed):
                model = Wav2Vec2BertModel(config)
            feature_extractor = SeamlessM4TFeatureExtractor(
                feature_size=config.feature_projection_input_dim // 2, stride=2
            )
        return cls(spec, model.float(), feature_extractor)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def num_hidden_states(self) -> int:
        return self.model.config.num_hidden_layers + 1

    def window_output_length(self, num_samples: int) -> int:
        num_samples = max(num_samples, MIN_SAMPLES)
        return (1 + (num_samples - WIN_LENGTH) // HOP_LENGTH) // STACK

    def output_length(self, num_samples: int) -> int:
        if self.spec.per_window_front_end:
            return super().output_length(num_samples)
        # official: one featurisation of the edge-padded clip; cutting features into windows keeps the count
        return self.window_output_length(int(num_samples) + 2 * EDGE_PADDING)

    @property
    def window_frames(self) -> int:
        """Stacked feature frames per window of the official front end (30 s -> 1500)."""
        return int(round(self.window_seconds * self.frame_rate))

    def _encode(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.per_window_front_end:
            return super()._encode(waves, lengths)
        pieces: list[torch.Tensor] = []
        owner: list[int] = []
        for b in range(waves.shape[0]):
            clip = waves[b, : int(lengths[b])].detach().cpu().numpy().astype(np.float32)
            clip = _at_least(np.pad(clip, (EDGE_PADDING, EDGE_PADDING)), MIN_SAMPLES)
            features = self.feature_extractor([clip], sampling_rate=self.sample_rate, return_tensors="pt")
            windows = features.input_features[0].split(self.window_frames)  # each (T_w, 160)
            pieces.extend(windows)
            owner.extend([b] * len(windows))
        hidden, frames = self._run_features(pieces)
        return join_windows(hidden, frames, owner, waves.shape[0])

    def _run_features(self, pieces: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked feature windows (each (T_w, 160)) through the network as one padded batch."""
        param = next(self.model.parameters())
        frames = torch.tensor([p.shape[0] for p in pieces], dtype=torch.long)
        features = pad_sequence(pieces, batch_first=True).to(param.device, param.dtype)  # (N, T, 160)
        mask = (torch.arange(features.shape[1])[None, :] < frames[:, None]).long().to(param.device)
        out = self.model(features, attention_mask=mask, output_hidden_states=True)
        return select_layers(out.hidden_states, self.layers), frames  # (L, N, T, D)

    def encode_windows(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        arrays = [_at_least(w.detach().cpu().numpy().astype(np.float32), MIN_SAMPLES) for w in waves]
        batch = self.feature_extractor(
            arrays, sampling_rate=self.sample_rate, padding=True, return_attention_mask=True, return_tensors="pt"
        )
        param = next(self.model.parameters())
        out = self.model(
            batch.input_features.to(param.device, param.dtype),
            attention_mask=batch.attention_mask.to(param.device),
            output_hidden_states=True,
        )
        lengths = batch.attention_mask.sum(-1).long()  # (N,)
        hidden = select_layers(out.hidden_states, self.layers)  # (L, N, T, D)
        return hidden[:, :, : int(lengths.max())], lengths


def _at_least(wave: np.ndarray, num_samples: int) -> np.ndarray:
    return wave if wave.size >= num_samples else np.pad(wave, (0, num_samples - wave.size))
