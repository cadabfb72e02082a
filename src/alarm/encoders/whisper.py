"""Whisper-large-v3 encoder (frozen): 16 kHz in, 128-bin log-mel at 100 Hz, 50 Hz hidden states.

Whisper was trained on zero-padded 30 s windows (its positional table has 1500 rows), so by
default every window is padded to 30 s by the feature extractor and the outputs are cut back to
the true length: ``ceil(samples / 160) // 2`` frames. With ``trim_to_audio`` (as whisper.cpp's
``audio_ctx``) a window is padded only to its next whole second and sees the first rows of the
positional table: a 2 s clip then costs a fifteenth of the work. The states differ from the
padded ones (the network never saw short windows), so the choice is part of the preset: an
adapter trained on one kind of state must be served the same kind. Rounding to whole seconds,
per window, keeps every clip's states independent of what it is batched with.

Only the encoder half of the released encoder-decoder checkpoint is read (keys
``model.encoder.*``); the decoder is never built.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisperEncoder

from alarm.encoders.base import EncoderSpec, FrozenEncoder, hf_config, read_checkpoint, seeded, select_layers

HOP_LENGTH = 160  # samples per mel frame at 16 kHz
MEL_FRAMES_PER_SECOND = 100


def quarter_depth_layers(num_blocks: int) -> list[int]:
    """The paper's Whisper layers scaled to a network of ``num_blocks`` blocks.

    The paper picks the hidden states at each quarter of the depth, counted 1-based over the
    ``num_blocks + 1`` states (large-v3, 32 blocks: paper 8/16/24/32 = indices 7, 15, 23, 31);
    the same rule gives base (6 blocks) 1, 2, 4, 5 and tiny (4 blocks) 0, 1, 2, 3.
    """
    return [math.floor(k * num_blocks / 4 + 0.5) - 1 for k in range(1, 5)]


class WhisperEncoder(FrozenEncoder):
    """Frozen Whisper encoder exposing selected hidden states at 50 Hz."""

    kind = "whisper"
    sample_rate = 16_000
    frame_rate = 50.0
    default_window_seconds = 30.0

    def __init__(self, spec: EncoderSpec, model: HFWhisperEncoder, feature_extractor: WhisperFeatureExtractor) -> None:
        super().__init__(spec)
        self.model = model
        self.feature_extractor = feature_extractor
        # Whisper cannot look past its positional table: windows longer than 30 s are impossible.
        max_seconds = 2 * model.config.max_source_positions * HOP_LENGTH / self.sample_rate
        if self.window_seconds > max_seconds:
            raise ValueError(f"whisper: window_seconds {self.window_seconds} exceeds the model's {max_seconds} s")

    @classmethod
    def from_spec(cls, spec: EncoderSpec) -> WhisperEncoder:
        if spec.pretrained is not None:
            config = WhisperConfig.from_pretrained(spec.pretrained)
            model = HFWhisperEncoder(config)
            # Released checkpoints are WhisperForConditionalGeneration ("model.encoder.*");
            # a saved bare WhisperModel has "encoder.*".
            state = read_checkpoint(spec.pretrained, prefix="model.encoder.") or read_checkpoint(
                spec.pretrained, prefix="encoder."
            )
            model.load_state_dict(state, strict=True)
            feature_extractor = WhisperFeatureExtractor.from_pretrained(spec.pretrained)
        else:
            config = hf_config(WhisperConfig, spec)
            with seeded(spec.seed):
                model = HFWhisperEncoder(config)
            feature_extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        model.float()
        return cls(spec, model, feature_extractor)

    @property
    def hidden_size(self) -> int:
        return self.model.config.d_model

    @property
    def num_hidden_states(self) -> int:
        return self.model.config.encoder_layers + 1

    def window_output_length(self, num_samples: int) -> int:
        # At least one frame: the encoder always produces 50 a second or more, so even a click has one.
        return max(1, math.ceil(num_samples / HOP_LENGTH) // 2)

    def mel_frames(self, num_samples: int) -> int:
        """Mel frames a window of ``num_samples`` is padded to: 3000 (30 s), or whole seconds when trimmed."""
        full = 2 * self.model.config.max_source_positions
        if not self.spec.trim_to_audio:
            return full
        seconds = max(1, math.ceil(num_samples / self.sample_rate))
        return min(full, seconds * MEL_FRAMES_PER_SECOND)

    def encode_windows(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([self.window_output_length(w.numel()) for w in waves], dtype=torch.long)
        groups: dict[int, list[int]] = {}  # padded length -> the waves padded to it
        for n, wave in enumerate(waves):
            groups.setdefault(self.mel_frames(wave.numel()), []).append(n)
        param = next(self.model.parameters())
        hidden = torch.zeros(
            len(self.layers), len(waves), int(lengths.max()), self.hidden_size, dtype=param.dtype, device=param.device
        )
        for frames, members in groups.items():
            features = self.feature_extractor(
                [waves[n].detach().cpu().numpy().astype(np.float32) for n in members],
                sampling_rate=self.sample_rate,
                padding="max_length",
                max_length=frames * HOP_LENGTH,
                return_tensors="pt",
            ).input_features  # (n, n_mels, frames)
            states = self._hidden_states(features.to(param.device, param.dtype))
            for i, n in enumerate(members):
                keep = int(lengths[n])
                hidden[:, n, :keep] = states[:, i, :keep]
        return hidden, lengths

    def _hidden_states(self, features: torch.Tensor) -> torch.Tensor:
        """The selected hidden states (L, n, frames / 2, D) of mel ``features`` of any length <= 30 s.

        The Hugging Face forward, unrolled: it insists on 3000 frames, and the blocks past the
        deepest selected layer need not run. The last state is the final layer norm's output,
        as in ``hidden_states`` of ``WhisperEncoder``.
        """
        m = self.model
        x = F.gelu(m.conv1(features))
        x = F.gelu(m.conv2(x)).transpose(1, 2)
        x = x + m.embed_positions.weight[: x.shape[1]]
        states = [x]
        for block in m.layers[: max(self.layers)]:
            x = block(x, None)
            states.append(x)
        if len(states) == self.num_hidden_states:
            states[-1] = m.layer_norm(x)
        return select_layers(states, self.layers)
