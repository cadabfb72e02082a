"""MuQ (``OpenMuQ/MuQ-large-msd-iter``) as a frozen encoder, without the ``muq`` package.

The ``muq`` package cannot be installed here (it pulls a CUDA torch, librosa and numba, and its
conformer call breaks on transformers 5), so this module re-implements MuQ's feature path:

    24 kHz wave -> log-mel (n_fft 2048, hop 240, 128 HTK mels, power dB, (x - 6.768) / 18.418)
    -> two residual 2-D conv blocks, stride 2 in time and frequency (100 Hz -> 25 Hz)
    -> Linear(conv_dim * n_mels / 4 -> 1024)
    -> transformers' ``Wav2Vec2ConformerEncoder`` (12 blocks, width 1024, rotary positions)

Two front ends (``EncoderSpec.per_window_front_end``). Official (default, what the released
adapters were trained on): the clip is zero-padded to a whole number of 30 s windows, each
window's mel and conv front end run over its zeros too, the conformer input is zeroed and
its attention masked at frames past the audio (a sample mask taken every 960 samples, as
MuQ's ``attention_mask`` handling does), and ``n`` samples keep ``n // 960`` frames. Per
window (ours): each window is featurised at its own length, and padding is masked in the
conv front end and before every depthwise conv, so a 2 s clip costs 2 s and keeps
``ceil(n / 960)`` frames.

It exposes 13 hidden states in MuQ's convention: [0] the conv front end's output (the conformer
input), [k] the raw output of conformer block k for k < 12, and [12] the last block's output after
the conformer's final LayerNorm (the ``last_hidden_state`` of ``MuQ.forward``).

Weight names follow the released checkpoint (``MuQ`` wraps ``MuQModel`` as ``self.model``).
:func:`convert_released_state_dict` maps a released state dict onto this module:

=====================================================  ==============================================
released key                                           key here
=====================================================  ==============================================
``model.conv.*``                                       ``conv.*`` (same sub-names)
``model.conformer.*``                                  ``conformer.*`` (same sub-names)
``model.conformer.pos_conv_embed.conv.weight_g``       ``...conv.parametrizations.weight.original0``
``model.conformer.pos_conv_embed.conv.weight_v``       ``...conv.parametrizations.weight.original1``
``model.linear.*``, ``model.cls_token``,               dropped: pre-training heads (token logits, CLS,
``model.quantizer_*``, ``model.rvq.*``,                random-projection / RVQ targets, mel
``model.recon_proj.*``                                 reconstruction), unused for features
(absent) ``conformer.embed_positions.inv_freq``        filled in: it is a constant of the config
=====================================================  ==============================================

The weight_g/weight_v rename only applies to checkpoints saved with the old ``nn.utils.weight_norm``;
``pos_conv_embed`` is carried so the keys match, but MuQ's rotary conformer never calls it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from transformers import Wav2Vec2ConformerConfig
from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import Wav2Vec2ConformerEncoder

from alarm.encoders.base import (
    EncoderSpec,
    FrozenEncoder,
    join_windows,
    read_checkpoint,
    read_json,
    seeded,
    select_layers,
)

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
N_FFT = 2048
HOP_LENGTH = 240  # 100 mel frames per second; the conv front end divides by 4 -> 25 Hz
#: Shorter waves are zero-padded to this: the centred STFT reflect-pads n_fft // 2 samples,
#: which needs more samples than that (torchaudio would raise instead).
MIN_SAMPLES = N_FFT // 2 + 1
_DROPPED_PREFIXES = ("linear.", "cls_token", "quantizer_", "rvq.", "recon_proj.")


@dataclass(frozen=True)
class MuQArch:
    """MuQ's architecture; the defaults are the released MuQ-large model.

    ``mel_mean``/``mel_std`` are the MSD statistics of the dB mel (MuQ's ``stat`` config entry).
    """

    n_mels: int = 128
    mel_mean: float = 6.768444971712967
    mel_std: float = 18.417922652295623
    conv_dim: int = 512
    hidden_size: int = 1024
    num_hidden_layers: int = 12
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    conv_depthwise_kernel_size: int = 31
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    rotary_embedding_base: int = 10000
    hidden_act: str = "swish"
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.n_mels % 4:
            raise ValueError(f"muq: n_mels must be a multiple of 4 (two stride-2 conv blocks), got {self.n_mels}")
        heads = self.num_attention_heads
        if heads < 1 or self.hidden_size % heads or (self.hidden_size // heads) % 2:
            raise ValueError(f"muq: hidden_size {self.hidden_size} must split into {heads} heads of even size (rotary)")

    @classmethod
    def from_dict(cls, overrides: Mapping[str, Any]) -> MuQArch:
        """Defaults with ``overrides`` applied; unknown keys are an error, not silently ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"muq: unknown architecture keys {unknown}; known: {sorted(known)}")
        return cls(**dict(overrides))

    @classmethod
    def from_released_config(cls, config: Mapping[str, Any]) -> MuQArch:
        """Read a released MuQ ``config.json`` (the ``MuQConfig`` fields, with ``w2v2_config`` and ``stat``)."""
        checks = {"label_rate": 25, "hop_length": HOP_LENGTH, "features": ["melspec_2048"]}
        for key, expected in checks.items():
            if key in config and config[key] != expected:
                raise ValueError(f"muq: only {key}={expected!r} is supported, the checkpoint has {config[key]!r}")
        w2v2 = dict(config.get("w2v2_config") or {})
        if w2v2.get("position_embeddings_type", "rotary") != "rotary":
            raise ValueError("muq: only rotary position embeddings are supported")
        stat = dict(config.get("stat") or {})
        if "melspec_2048_mean" not in stat:
            logger.warning("muq: config has no mel statistics; using the MSD values of MuQ-large")
        d = cls()
        # As in MuQModel: encoder_dim / encoder_depth override the width and depth in w2v2_config.
        return cls(
            n_mels=int(config.get("n_mels", d.n_mels)),
            mel_mean=float(stat.get("melspec_2048_mean", d.mel_mean)),
            mel_std=float(stat.get("melspec_2048_std", d.mel_std)),
            conv_dim=int(config.get("conv_dim", d.conv_dim)),
            hidden_size=int(config.get("encoder_dim", d.hidden_size)),
            num_hidden_layers=int(config.get("encoder_depth", d.num_hidden_layers)),
            **{
                k: type(getattr(d, k))(w2v2[k])
                for k in (
                    "num_attention_heads",
                    "intermediate_size",
                    "conv_depthwise_kernel_size",
                    "num_conv_pos_embeddings",
                    "num_conv_pos_embedding_groups",
                    "rotary_embedding_base",
                    "hidden_act",
                    "layer_norm_eps",
                )
                if k in w2v2
            },
        )

    def conformer_config(self) -> Wav2Vec2ConformerConfig:
        """The transformers config of the conformer stack (dropouts are irrelevant: always eval)."""
        return Wav2Vec2ConformerConfig(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            conv_depthwise_kernel_size=self.conv_depthwise_kernel_size,
            num_conv_pos_embeddings=self.num_conv_pos_embeddings,
            num_conv_pos_embedding_groups=self.num_conv_pos_embedding_groups,
            position_embeddings_type="rotary",
            rotary_embedding_base=self.rotary_embedding_base,
            hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps,
            attn_implementation="sdpa",
        )


def htk_mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """(n_freqs, n_mels) triangular filters, HTK mel scale, 0 Hz to Nyquist, no area normalisation.

    This is torchaudio's ``melscale_fbanks`` with the ``MelSpectrogram`` defaults that MuQ uses
    (``mel_scale="htk"``, ``norm=None``, ``f_min=0``, ``f_max=sample_rate // 2``).
    """
    f64 = torch.float64
    freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=f64)  # (n_freqs,) STFT bin centres
    top_mel = 2595.0 * torch.log10(torch.tensor(1.0 + (sample_rate // 2) / 700.0, dtype=f64))
    edges = 700.0 * (10.0 ** (torch.linspace(0, float(top_mel), n_mels + 2, dtype=f64) / 2595.0) - 1.0)
    width = edges[1:] - edges[:-1]  # (n_mels + 1,)
    to_edge = edges[None, :] - freqs[:, None]  # (n_freqs, n_mels + 2)
    rising = -to_edge[:, :-2] / width[:-1]
    falling = to_edge[:, 2:] / width[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


class Res2dBlock(nn.Module):
    """MuQ's ``Res2dModule`` with stride (2, 2), masked so zero-padded frames stay zero.

    Each 3x3 conv sees one frame past a wave's end: alone, that frame is the conv's zero padding;
    in a padded batch it would be the next frames' activations. Zeroing frames past each wave's
    length before every conv makes a batched wave see exactly what it sees alone.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv3 = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)  # strided residual path
        self.bn3 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, F, T), valid (B, T) -> (B, C', F/2, ceil(T/2)), valid (B, ceil(T/2))."""
        x = x * valid[:, None, None, :]
        valid = valid[:, ::2]  # output frame j is centred on input frame 2j
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h * valid[:, None, None, :]))
        return torch.relu(h + self.bn3(self.conv3(x))), valid


class ConvFrontEnd(nn.Module):
    """MuQ's ``Conv2dSubsampling``: two residual blocks (time / 4, mel / 4), then a linear projection."""

    def __init__(self, n_mels: int, conv_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(Res2dBlock(1, conv_dim), Res2dBlock(conv_dim, conv_dim))
        self.linear = nn.Linear(conv_dim * (n_mels // 4), hidden_size)

    def forward(self, mel: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, F, T), valid (B, T) -> (B, T4, D), valid (B, T4) with T4 = ceil(T / 4)."""
        x = mel.unsqueeze(1)  # (B, 1, F, T)
        for block in self.conv:
            x, valid = block(x, valid)
        b, c, f, t = x.shape
        x = x.permute(0, 3, 1, 2).reshape(b, t, c * f)  # (B, T4, C*F4), channel-major as in MuQ
        return self.linear(x), valid


def convert_released_state_dict(state: Mapping[str, torch.Tensor], arch: MuQArch) -> dict[str, torch.Tensor]:
    """Map a released MuQ state dict onto :class:`MuQEncoder`'s keys (table in the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    dropped: set[str] = set()
    for key, value in state.items():
        key = key.removeprefix("model.")
        if key.startswith(_DROPPED_PREFIXES):
            dropped.add(key.split(".")[0])
            continue
        if key.startswith("conformer.pos_conv_embed.conv.weight_"):  # legacy nn.utils.weight_norm names
            key = "conformer.pos_conv_embed.conv.parametrizations.weight." + (
                "original0" if key.endswith("_g") else "original1"
            )
        out[key] = value
    if "conformer.embed_positions.inv_freq" not in out:
        dim = arch.hidden_size // arch.num_attention_heads
        out["conformer.embed_positions.inv_freq"] = 1.0 / (
            arch.rotary_embedding_base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)
        )
    if dropped:
        logger.info("muq: ignoring pre-training heads %s", sorted(dropped))
    return out


def load_released(source: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, state dict) of a released MuQ from a local directory or a Hugging Face hub id."""
    config = read_json(source)
    if config is None:
        raise FileNotFoundError(f"muq: no config.json in {source!r}")
    return config, read_checkpoint(source)


class MuQEncoder(FrozenEncoder):
    """Frozen MuQ: 24 kHz waves in, 25 Hz hidden states of the selected layers out (0..12 for MuQ-large)."""

    kind = "muq"
    sample_rate = SAMPLE_RATE
    frame_rate = 25.0
    default_window_seconds = 30.0

    def __init__(self, spec: EncoderSpec, arch: MuQArch) -> None:
        super().__init__(spec)
        self.arch = arch
        self.conv = ConvFrontEnd(arch.n_mels, arch.conv_dim, arch.hidden_size)
        self.conformer = Wav2Vec2ConformerEncoder(arch.conformer_config())
        # transformers' conformer convolution module does not mask padding: its depthwise conv
        # (kernel 31) would mix the activations of padded frames into the last 15 valid frames of
        # every shorter wave in a batch. Alone, a wave is zero-padded by that conv, so zeroing the
        # padded frames of the depthwise conv's input restores exactly the unbatched result (the
        # LayerNorm and pointwise conv before it map zeros to non-zeros, hence this precise spot).
        self._frame_mask: torch.Tensor | None = None  # (N, 1, T) while a padded batch runs
        for layer in self.conformer.layers:
            layer.conv_module.depthwise_conv.register_forward_pre_hook(self._zero_padded_frames)
        self._mel_consts: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._check_layers()

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: EncoderSpec) -> MuQEncoder:
        """Released weights from ``spec.pretrained`` (directory or hub id), else seeded random init."""
        if spec.pretrained:
            return cls.from_released(spec)
        arch = MuQArch.from_dict(spec.config)
        with seeded(spec.seed):
            return cls(spec, arch)

    @classmethod
    def from_released(cls, spec: EncoderSpec) -> MuQEncoder:
        """Build from a released checkpoint (``config.json`` + ``model.safetensors``/``pytorch_model.bin``)."""
        if spec.config:
            logger.warning("muq: `config` is ignored when loading pretrained weights")
        config, state = load_released(str(spec.pretrained))
        arch = MuQArch.from_released_config(config)
        with torch.device("meta"):  # no 300M-parameter random init that would be overwritten anyway
            model = cls(spec, arch)
        model.load_state_dict(convert_released_state_dict(state, arch), strict=True, assign=True)
        logger.info("muq: loaded %s (%d layers, width %d)", spec.pretrained, arch.num_hidden_layers, arch.hidden_size)
        return model

    # -- protocol -------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.arch.hidden_size

    @property
    def num_hidden_states(self) -> int:
        return self.arch.num_hidden_layers + 1

    def window_output_length(self, num_samples: int) -> int:
        """Frames for one window; waves shorter than ``MIN_SAMPLES`` are zero-padded to it first."""
        mel_frames = max(int(num_samples), MIN_SAMPLES) // HOP_LENGTH  # centred STFT minus MuQ's dropped last frame
        return (mel_frames + 3) // 4  # ceil(ceil(T / 2) / 2) after two stride-2 convs

    @property
    def samples_per_frame(self) -> int:
        return SAMPLE_RATE // int(self.frame_rate)  # 960

    def output_length(self, num_samples: int) -> int:
        if self.spec.per_window_front_end:
            return super().output_length(num_samples)
        return max(1, int(num_samples) // self.samples_per_frame)  # official: samples // 960 over the clip

    def _encode(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.per_window_front_end:
            return super()._encode(waves, lengths)
        window = self.window_samples
        pieces, valid_samples, owner = [], [], []
        for b in range(waves.shape[0]):
            n = int(lengths[b])
            clip = nn.functional.pad(waves[b, :n], (0, -n % window))  # whole 30 s windows
            for start in range(0, clip.numel(), window):
                pieces.append(clip[start : start + window])
                valid_samples.append(min(window, n - start))
                owner.append(b)
        hidden, frames = self._encode_padded_windows(pieces, valid_samples)
        keep = [self.output_length(int(n)) for n in lengths]
        return join_windows(hidden, frames, owner, waves.shape[0], keep=keep)

    @torch.no_grad()
    def _encode_padded_windows(self, waves: list[torch.Tensor], valid_samples: list[int]):
        """Full windows with their zero padding: the front end sees the zeros, the conformer masks them."""
        param = self.conv.linear.weight
        mel = torch.stack([self.log_mel(w.to(param.device)) for w in waves]).to(param.dtype)  # (N, F, T)
        everything = torch.ones(mel.shape[0], mel.shape[-1], dtype=torch.bool, device=param.device)
        hidden, frames_valid = self.conv(mel, everything)  # (N, T4, D): no masking in the front end
        positions = torch.arange(hidden.shape[1], device=param.device) * self.samples_per_frame
        valid = positions[None, :] < torch.tensor(valid_samples, device=param.device)[:, None]  # (N, T4)
        states = self._conformer_states(hidden * valid[..., None].to(hidden.dtype), valid, mask_convs=False)
        return select_layers(states, self.layers), frames_valid.sum(dim=1).cpu()

    @torch.no_grad()
    def encode_windows(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        param = self.conv.linear.weight
        mels = [self.log_mel(w.to(param.device)).T for w in waves]  # each (T_i, F)
        mel_len = torch.tensor([m.shape[0] for m in mels], device=param.device)
        mel = pad_sequence(mels, batch_first=True).transpose(1, 2).to(param.dtype)  # (N, F, T)
        valid = torch.arange(mel.shape[-1], device=param.device)[None, :] < mel_len[:, None]  # (N, T)
        hidden, valid = self.conv(mel, valid)  # (N, T4, D), (N, T4)
        states = self._conformer_states(hidden, valid)
        out = select_layers(states, self.layers) * valid[None, :, :, None].to(hidden.dtype)  # (L, N, T4, D)
        return out, valid.sum(dim=1).cpu()

    # -- internals ------------------------------------------------------------------------
    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Normalised dB mel of one wave: (S,) -> (n_mels, max(S, MIN_SAMPLES) // 240), in float32.

        One wave at a time because the centred STFT reflects the wave's own last samples; in a
        zero-padded batch it would reflect (and window) padding instead.
        """
        wave = wave.float()
        if wave.numel() < MIN_SAMPLES:
            wave = nn.functional.pad(wave, (0, MIN_SAMPLES - wave.numel()))
        if wave.device not in self._mel_consts:
            self._mel_consts[wave.device] = (
                torch.hann_window(N_FFT, device=wave.device),  # periodic, as torchaudio
                htk_mel_filterbank(N_FFT // 2 + 1, self.arch.n_mels, SAMPLE_RATE).to(wave.device),
            )
        window, fbank = self._mel_consts[wave.device]
        spec = torch.stft(wave, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True)
        power = spec.abs().pow(2)  # (n_fft/2 + 1, S // hop + 1)
        db = 10.0 * torch.log10(torch.clamp(fbank.T @ power, min=1e-10))  # AmplitudeToDB, ref 1, no top_db
        return (db[:, :-1] - self.arch.mel_mean) / self.arch.mel_std  # MuQ drops the last frame

    def _zero_padded_frames(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
        if self._frame_mask is None:
            return None
        return (args[0] * self._frame_mask,) + tuple(args[1:])  # (N, D, T) * (N, 1, T)

    def _conformer_states(
        self, hidden: torch.Tensor, valid: torch.Tensor, mask_convs: bool = True
    ) -> list[torch.Tensor]:
        """Hidden states 0..max(layers) in MuQ's convention (the final LayerNorm only on the last block).

        The blocks are driven one by one: transformers 5 no longer returns ``hidden_states`` from
        the bare encoder, and blocks past the highest selected layer need not run at all.
        ``mask_convs`` off: padding is masked in attention only, as transformers' conformer does.
        """
        enc = self.conformer
        padded = not bool(valid.all())
        mask = None
        if padded:  # additive key mask (N, 1, 1, T): works with the eager and the SDPA attention
            mask = torch.zeros(valid.shape, dtype=hidden.dtype, device=hidden.device)
            mask = mask.masked_fill(~valid, torch.finfo(hidden.dtype).min)[:, None, None, :]
            self._frame_mask = valid[:, None, :].to(hidden.dtype) if mask_convs else None
        hidden = enc.dropout(hidden)
        positions = enc.embed_positions(hidden)  # rotary (2, T, 1, 1, head_dim)
        states = [hidden]
        try:
            for layer in enc.layers[: max(self.layers)]:
                out = layer(hidden, attention_mask=mask, relative_position_embeddings=positions)
                hidden = out[0] if isinstance(out, tuple) else out  # older transformers return a tuple
                states.append(hidden)
        finally:
            self._frame_mask = None
        if len(states) == self.num_hidden_states:
            states[-1] = enc.layer_norm(states[-1])
        return states
