"""SSLAM encoder (frozen): 16 kHz in, 128-bin Kaldi fbank, 16x16 patches, 50 Hz token stream out.

SSLAM is EAT (the data2vec 2.0 audio ViT) retrained on audio mixtures. No package carries it,
so the network is written here and the released weights (``ta012/SSLAM_AS2M_Finetuned``, the
checkpoint the official ALARM code loads with ``trust_remote_code``) load through the key
mapping of :func:`convert_released_state_dict`.

Pipeline of one window (at most 10.24 s = 163,840 samples):

1. features (as the official ALARM/EAT code): remove the wave's mean, pad 160 zero samples
   each side, Kaldi fbank (25 ms Hanning frames every 10 ms, 512-point FFT, pre-emphasis 0.97,
   frame DC removal, 128 triangular mel bins 20 Hz-8 kHz, natural log, no energy, no dither),
   zero-pad to 1024 frames, normalise as ``(fbank + 4.268) / (4.569 * 2)``;
2. ``Conv2d(1, D, 16, stride 16)`` over (1024 time x 128 freq) -> 64 x 8 patches, flattened
   time-major (token ``p`` = time patch ``p // 8``, mel patch ``p % 8``) so that the 512 tokens
   move forward in time: ALARM uses them as a 50 Hz sequence;
3. fixed 2-D sin-cos positions, one CLS ("extra") token in front, LayerNorm (``pre_norm``);
4. ``depth`` post-LN blocks ``x = norm1(x + attn(x)); x = norm2(x + mlp(x))``, no final norm.

Hidden state 0 is the ``pre_norm`` output and ``k`` the output of block ``k``, CLS removed, so
the paper's layers {4, 8, 12} are blocks 4, 8 and 12. A window of ``n`` samples has
``fbank_frames(n) // 2`` valid tokens (the official ``lengths // 2``), at least one.

Difference from the official code: it computes one fbank over the whole clip (mean removed
over the whole clip) and cuts it into 1024-frame chunks; here each 10.24 s window of the
shared windowing protocol gets its own fbank. Only the frames at window edges differ.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alarm.encoders.base import EncoderSpec, FrozenEncoder, read_checkpoint, read_json, seeded

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
FFT_SIZE = 512  # Kaldi rounds the 400-sample frame up to a power of two
EDGE_PAD = 160  # samples of silence the official code adds on each side before the fbank
NUM_MEL_BINS = 128
LOW_FREQ = 20.0
PREEMPHASIS = 0.97
LOG_FLOOR = torch.finfo(torch.float32).eps  # Kaldi/torchaudio clamp before the log
TARGET_FRAMES = 1024  # fbank frames per window (10.24 s)
FBANK_MEAN = -4.268
FBANK_STD = 4.569
PATCH = 16
FREQ_PATCHES = NUM_MEL_BINS // PATCH  # 8
TIME_PATCHES = TARGET_FRAMES // PATCH  # 64
# Longest window whose edge-padded wave still gives 1024 frames: 163,919 samples (10.24 s + 79).
MAX_WINDOW_SAMPLES = FRAME_SHIFT * TARGET_FRAMES + (FRAME_LENGTH - 2 * EDGE_PAD) - 1

# Key mapping of the released checkpoint (transformers remote code ``EATModel``; all keys under
# ``model.``) onto SSLAMNet. Everything not listed keeps its name once the prefix is removed:
#   model.local_encoder.proj.{weight,bias}        -> local_encoder.proj.*        (D,1,16,16), (D,)
#   model.extra_tokens                            -> extra_tokens                (1,1,D)
#   model.fixed_positional_encoder.positions      -> pos_embed                   (1,max_length*8,D)
#   model.pre_norm.{weight,bias}                  -> pre_norm.*
#   model.blocks.{i}.norm1|norm2.{weight,bias}    -> blocks.{i}.norm1|norm2.*
#   model.blocks.{i}.attn.qkv|proj.{weight,bias}  -> blocks.{i}.attn.qkv|proj.*  (3D,D) | (D,D)
#   model.blocks.{i}.mlp.fc1|fc2.{weight,bias}    -> blocks.{i}.mlp.fc1|fc2.*
#   model.fc_norm.*, model.head.*                 -> dropped (AudioSet classifier on the CLS token)
RELEASED_PREFIX = "model."
RENAMED_KEYS = {"fixed_positional_encoder.positions": "pos_embed"}
DROPPED_PREFIXES = ("fc_norm.", "head.")


@dataclass(frozen=True)
class SSLAMConfig:
    """Architecture of the SSLAM/EAT ViT; defaults are the released base model.

    The patch geometry (16x16 over 1024 x 128) is fixed: the 50 Hz length rule depends on it.
    """

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    #: time patches in the fixed position table (the release stores 768 x 8 rows; 64 are used).
    max_length: int = 768

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads or self.embed_dim % 4:
            raise ValueError(f"sslam: embed_dim {self.embed_dim} must divide by num_heads and by 4")
        if self.max_length < TIME_PATCHES:
            raise ValueError(f"sslam: max_length must be >= {TIME_PATCHES} time patches")

    @classmethod
    def from_dict(cls, overrides: Mapping[str, Any]) -> SSLAMConfig:
        """Build from architecture overrides, rejecting unknown keys (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"sslam: unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**overrides)


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------
def fbank_frames(num_samples: int) -> int:
    """Kaldi fbank frames (snip_edges) of a wave of ``num_samples`` after the 160-sample edge padding."""
    padded = num_samples + 2 * EDGE_PAD
    return 0 if padded < FRAME_LENGTH else 1 + (padded - FRAME_LENGTH) // FRAME_SHIFT


@functools.cache
def _mel_banks() -> torch.Tensor:
    """Kaldi's triangular mel filters, (257, 128) float32: triangles in mel space, Nyquist bin zero."""
    mel = lambda hz: 1127.0 * torch.log1p(hz / 700.0)  # noqa: E731 - Kaldi mel scale
    lo, hi = mel(torch.tensor(LOW_FREQ, dtype=torch.float64)), mel(torch.tensor(SAMPLE_RATE / 2, dtype=torch.float64))
    delta = (hi - lo) / (NUM_MEL_BINS + 1)
    k = torch.arange(NUM_MEL_BINS, dtype=torch.float64)
    left, center, right = lo + k * delta, lo + (k + 1) * delta, lo + (k + 2) * delta  # (M,)
    bins = mel(torch.arange(FFT_SIZE // 2, dtype=torch.float64) * SAMPLE_RATE / FFT_SIZE)[:, None]  # (256, 1)
    up = (bins - left) / (center - left)
    down = (right - bins) / (right - center)
    weights = torch.clamp(torch.minimum(up, down), min=0.0)  # (256, M)
    return F.pad(weights, (0, 0, 0, 1)).float()  # Kaldi gives the Nyquist bin no weight: (257, M)


def log_mel_fbank(waves: Sequence[torch.Tensor], num_frames: int = TARGET_FRAMES) -> tuple[torch.Tensor, torch.Tensor]:
    """Kaldi-compatible log-mel fbank of each wave, zero-padded to ``num_frames`` frames.

    Matches ``torchaudio.compliance.kaldi.fbank(wave - mean, htk_compat=True, use_energy=False,
    window_type="hanning", num_mel_bins=128, dither=0.0)`` on the wave padded by 160 samples each
    side, computed in float32 on the waves' device without torchaudio.

    Returns:
        fbank: (N, num_frames, 128) log-mel, 0 beyond each wave's frames (as the official padding).
        frames: (N,) valid frames per wave.
    """
    device = waves[0].device
    frames = torch.tensor([fbank_frames(w.numel()) for w in waves], dtype=torch.long)
    if int(frames.max()) > num_frames:
        raise ValueError(f"sslam: a window of {max(w.numel() for w in waves)} samples exceeds {num_frames} frames")
    # One zero buffer holds every wave at offset EDGE_PAD: the zeros around a wave are exactly the
    # official edge padding, and a valid frame never reaches past its own wave's padding.
    total = FRAME_SHIFT * (num_frames - 1) + FRAME_LENGTH
    buf = torch.zeros(len(waves), total, dtype=torch.float32, device=device)
    for i, wave in enumerate(waves):
        wave = wave.to(device=device, dtype=torch.float32)
        buf[i, EDGE_PAD : EDGE_PAD + wave.numel()] = wave - wave.mean()
    x = buf.unfold(1, FRAME_LENGTH, FRAME_SHIFT)  # (N, T, 400)
    x = x - x.mean(dim=-1, keepdim=True)  # per-frame DC removal
    # Pre-emphasis with Kaldi's edge rule: the first sample is scaled by (1 - 0.97).
    x = torch.cat([x[..., :1] * (1.0 - PREEMPHASIS), x[..., 1:] - PREEMPHASIS * x[..., :-1]], dim=-1)
    x = x * torch.hann_window(FRAME_LENGTH, periodic=False, dtype=torch.float32, device=device)
    power = torch.fft.rfft(x, n=FFT_SIZE).abs().pow(2)  # (N, T, 257)
    fbank = (power @ _mel_banks().to(device)).clamp_min(LOG_FLOOR).log()  # (N, T, 128)
    valid = torch.arange(num_frames, device=device)[None, :] < frames.to(device)[:, None]  # (N, T)
    return fbank.masked_fill(~valid[..., None], 0.0), frames


def sslam_features(waves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised SSLAM input: (N, 1024, 128) features and (N,) valid fbank frames per wave."""
    fbank, frames = log_mel_fbank(waves)
    return (fbank - FBANK_MEAN) / (FBANK_STD * 2), frames


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------
def sincos_positions(embed_dim: int, time_patches: int, freq_patches: int = FREQ_PATCHES) -> torch.Tensor:
    """EAT's fixed 2-D sin-cos table, (1, time_patches * freq_patches, D).

    Row ``p`` is time patch ``p // freq_patches``, mel patch ``p % freq_patches``. As in MAE's
    ``get_2d_sincos_pos_embed`` (whose meshgrid puts the column first), the first D/2 channels
    encode the mel index and the last D/2 the time index, each as [sin(pos*w), cos(pos*w)] with
    ``w_i = 10000 ** (-i / (D/4))``.
    """
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (D/4,)
    t = torch.arange(time_patches, dtype=torch.float64).repeat_interleave(freq_patches)  # (P,)
    f = torch.arange(freq_patches, dtype=torch.float64).repeat(time_patches)  # (P,)

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angle = pos[:, None] * omega[None, :]  # (P, D/4)
        return torch.cat([angle.sin(), angle.cos()], dim=1)

    return torch.cat([encode(f), encode(t)], dim=1).float().unsqueeze(0)


class _PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=PATCH, stride=PATCH)


class _Attention(nn.Module):
    def __init__(self, cfg: SSLAMConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)  # (B, N, 3, H, d/H)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, H, N, d/H)
        # No mask: like the official model, every window is a full 1024-frame image.
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, d/H), scale d_head ** -0.5
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _Mlp(nn.Module):
    def __init__(self, cfg: SSLAMConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio))
        self.act = nn.GELU()
        self.fc2 = nn.Linear(int(cfg.embed_dim * cfg.mlp_ratio), cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    """data2vec 2.0 ``AltBlock`` with ``layer_norm_first=False`` (post-LN)."""

    def __init__(self, cfg: SSLAMConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.attn = _Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.mlp = _Mlp(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class SSLAMNet(nn.Module):
    """The SSLAM/EAT ViT; parameter names follow the release (see the key mapping above)."""

    def __init__(self, cfg: SSLAMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.local_encoder = _PatchEmbed(cfg.embed_dim)
        self.extra_tokens = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        # Persistent so that the released table loads as is (it is the same sin-cos, float32).
        self.register_buffer("pos_embed", sincos_positions(cfg.embed_dim, cfg.max_length))
        self.pre_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.depth))
        # Random init as EAT's: truncated normal for linears and the CLS token.
        nn.init.trunc_normal_(self.extra_tokens, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
        """Hidden states of ``layers`` for normalised features (N, 1024, 128) -> (L, N, 512, D)."""
        x = self.local_encoder.proj(features.unsqueeze(1))  # (N, D, 64, 8)
        x = x.flatten(2).transpose(1, 2)  # (N, 512, D), time-major: token t*8 + f
        x = x + self.pos_embed[:, : x.shape[1]]
        x = torch.cat([self.extra_tokens.expand(x.shape[0], -1, -1), x], dim=1)  # (N, 513, D)
        x = self.pre_norm(x)
        wanted = set(layers)
        kept = {0: x[:, 1:]} if 0 in wanted else {}
        for k, block in enumerate(self.blocks[: max(layers)], start=1):  # later blocks are never needed
            x = block(x)
            if k in wanted:
                kept[k] = x[:, 1:]  # drop the CLS token
        return torch.stack([kept[i] for i in layers], dim=0)


# ---------------------------------------------------------------------------------------------
# Released weights
# ---------------------------------------------------------------------------------------------
def convert_released_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a released ``EATModel`` state dict (keys ``model.*``) onto :class:`SSLAMNet` names.

    Also accepts keys already stripped of ``model.``. Drops the AudioSet classifier.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key[len(RELEASED_PREFIX) :] if key.startswith(RELEASED_PREFIX) else key
        if key.startswith(DROPPED_PREFIXES):
            continue
        out[RENAMED_KEYS.get(key, key)] = value.float() if value.is_floating_point() else value
    return out


def config_from_release(state: Mapping[str, torch.Tensor], hub_config: Mapping[str, Any]) -> SSLAMConfig:
    """Architecture of converted weights: sizes from the tensors, heads/eps from ``config.json``."""
    required = {
        "patch_size": 16,
        "stride": 16,
        "in_chans": 1,
        "mel_bins": 128,
        "layer_norm_first": False,
        "fixed_positions": True,
        "norm_affine": True,
    }
    bad = {k: hub_config[k] for k, v in required.items() if k in hub_config and hub_config[k] != v}
    if bad:
        raise ValueError(f"sslam: released config {bad} differs from the supported EAT layout {required}")
    embed_dim = state["extra_tokens"].shape[-1]
    positions = state.get("pos_embed")  # (1, max_length * 8, D) when exported
    max_length = positions.shape[1] // FREQ_PATCHES if positions is not None else hub_config.get("max_length", 768)
    return SSLAMConfig(
        embed_dim=embed_dim,
        depth=len({k.split(".")[1] for k in state if k.startswith("blocks.")}),
        # Heads cannot be read off the weights; EAT uses 64-channel heads.
        num_heads=int(hub_config.get("num_heads", embed_dim // 64)),
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        norm_eps=float(hub_config.get("norm_eps", 1e-6)),
        max_length=int(max_length),
    )


def load_released(pretrained: str) -> SSLAMNet:
    """Build :class:`SSLAMNet` from released weights (local directory or hub id), strictly."""
    state = convert_released_state_dict(read_checkpoint(pretrained))
    hub_config = read_json(pretrained) or {}
    cfg = config_from_release(state, hub_config)
    table = sincos_positions(cfg.embed_dim, cfg.max_length)  # (1, max_length * 8, D)
    if "pos_embed" not in state:
        state["pos_embed"] = table  # an export may leave the fixed table out
    else:
        used = TIME_PATCHES * FREQ_PATCHES  # rows a 1024-frame window reads
        gap = float((state["pos_embed"][:, :used] - table[:, :used]).abs().max())
        if gap > 1e-4:
            logger.warning("sslam: released position table differs from sin-cos by %.3g; using the released one", gap)
    with torch.device("meta"):  # no throwaway random init of 86 M parameters
        net = SSLAMNet(cfg)
    net.load_state_dict(state, strict=True, assign=True)
    logger.info("sslam: loaded %s (%d blocks, width %d)", pretrained, cfg.depth, cfg.embed_dim)
    return net


# ---------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------
class SSLAMEncoder(FrozenEncoder):
    """Frozen SSLAM exposing selected hidden states as a 50 Hz token stream (512 per 10.24 s)."""

    kind = "sslam"
    sample_rate = SAMPLE_RATE
    frame_rate = 50.0
    default_window_seconds = 10.24

    def __init__(self, spec: EncoderSpec, net: SSLAMNet) -> None:
        super().__init__(spec)
        self.net = net
        if self.window_samples > MAX_WINDOW_SAMPLES:
            raise ValueError(f"sslam: window_seconds {self.window_seconds} exceeds the model's 10.24 s (1024 frames)")
        self._check_layers()

    @classmethod
    def from_spec(cls, spec: EncoderSpec) -> SSLAMEncoder:
        """Released weights when ``spec.pretrained`` is set, else seeded random init from ``spec.config``."""
        if spec.pretrained is not None:
            return cls(spec, load_released(spec.pretrained))
        cfg = SSLAMConfig.from_dict(spec.config)
        with seeded(spec.seed):
            net = SSLAMNet(cfg)
        return cls(spec, net)

    @property
    def hidden_size(self) -> int:
        return self.net.cfg.embed_dim

    @property
    def num_hidden_states(self) -> int:
        return self.net.cfg.depth + 1

    def window_output_length(self, num_samples: int) -> int:
        # Official rule: fbank frames // 2 (token 8t..8t+7 covers frames 16t..16t+15). At least
        # one token for a non-empty wave: the network always runs, and an empty sample breaks masks.
        return max(1, fbank_frames(num_samples) // 2) if num_samples > 0 else 0

    @torch.no_grad()
    def encode_windows(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        param = self.net.extra_tokens
        features, _ = sslam_features([w.to(param.device) for w in waves])  # (N, 1024, 128)
        hidden = self.net(features.to(param.dtype), self.layers)  # (L, N, 512, D)
        lengths = torch.tensor([self.window_output_length(w.numel()) for w in waves], dtype=torch.long)
        return hidden[:, :, : int(lengths.max())], lengths
