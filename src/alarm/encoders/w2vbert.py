"""W2V-BERT 2.0 encoder (frozen): 16 kHz in, 80-bin fbank stacked in pairs, ~50 Hz out.

The feature extractor (``SeamlessM4TFeatureExtractor``) computes Kaldi fbank frames every
10 ms (25 ms windows, no edge padding), normalises each utterance over its own frames and
stacks pairs of frames, so a window of ``n`` samples gives ``(1 + (n - 400) // 160) // 2``
frames (10 s -> 499). The Conformer's depthwise convolution is causal and masks padding, so
a padded batch gives every sample the frames it gets alone.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

from alarm.encoders.base import EncoderSpec, FrozenEncoder, hf_config, seeded, select_layers

WIN_LENGTH = 400  # 25 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms at 16 kHz
# Shorter windows (< 50 ms) are padded with silence so that they still yield one stacked
# frame instead of an empty sequence the model cannot attend over.
MIN_SAMPLES = 2 * WIN_LENGTH


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
        return (1 + (num_samples - WIN_LENGTH) // HOP_LENGTH) // self.feature_extractor.stride

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
