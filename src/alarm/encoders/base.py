"""The frozen-encoder protocol shared by Whisper, W2V-BERT 2.0, MuQ and SSLAM.

Every encoder takes mono waveforms at its own sample rate, runs on windows no longer than
its own maximum (long audio is split into windows, each encoded alone, and the outputs are
concatenated along time, as the official ALARM code does) and returns the hidden states of
its selected layers plus the number of valid output frames per sample:

    encode(waves (B, S), lengths (B,)) -> hidden (L, B, T, D), out_lengths (B,)

Layer numbers index the encoder's full stack of hidden states where 0 is the embedding
(input) output and k the output of block k, the Hugging Face ``hidden_states`` convention.

An encoder is built from an :class:`EncoderSpec` either from real weights (a hub id or a
local directory; no download happens unless the user's environment allows it) or from a
small architecture dict with random weights (tiny presets and tests). Frozen is decided once,
here: parameters never require grad and the module never leaves eval mode.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence


@dataclass(frozen=True)
class EncoderSpec:
    """Which frozen encoder to build and which of its layers to expose.

    Attributes:
        kind: registry name: ``whisper``, ``w2vbert``, ``muq`` or ``sslam``.
        layers: indices into the encoder's hidden states (0 = embedding output).
        pretrained: hub id or local directory of released weights; ``None`` for random init.
        config: architecture overrides for random init (tiny twins); ignored with ``pretrained``.
        seed: seed of the random init, so a tiny encoder is rebuilt bit-identically.
        window_seconds: longest audio the encoder sees at once; ``None`` = the kind's default.
        trim_to_audio: Whisper only: encode each window padded to its next whole second instead
            of the full 30 s it was trained on (much faster on short clips; other states).
        per_window_front_end: W2V-BERT and MuQ only. False (the official front end, which the
            released adapters were trained on): W2V-BERT pads the clip with 160 zero samples at
            each edge, normalises its fbank over the whole clip and cuts 30 s windows from the
            features; MuQ zero-pads the clip to a whole number of 30 s windows and masks the
            padding in the conformer only. True (ours): each window is featurised alone at its
            own length, so a 2 s clip costs 2 s and no frame depends on another window.
        input_rate: resample each wave to this rate and back before encoding. The official
            corpus stored audio at 16 kHz, so MuQ (24 kHz) only ever heard 16 kHz audio
            upsampled; the paper presets set 16000 for MuQ. ``None``: the wave as given.
    """

    kind: str
    layers: tuple[int, ...]
    pretrained: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    window_seconds: float | None = None
    trim_to_audio: bool = False
    per_window_front_end: bool = False
    input_rate: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        if not self.layers:
            raise ValueError(f"encoder {self.kind!r}: at least one layer must be selected")
        if self.trim_to_audio and self.kind != "whisper":
            raise ValueError(f"encoder {self.kind!r}: trim_to_audio is a Whisper setting (the others encode the audio)")
        if self.per_window_front_end and self.kind not in ("w2vbert", "muq"):
            raise ValueError(f"encoder {self.kind!r}: per_window_front_end is a W2V-BERT / MuQ setting")
        if self.input_rate is not None and self.input_rate <= 0:
            raise ValueError(f"encoder {self.kind!r}: input_rate must be a positive rate, got {self.input_rate}")
        if self.pretrained is None and not self.config:
            raise ValueError(f"encoder {self.kind!r}: give `pretrained` (hub id or path) or a `config` for random init")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown encoder spec keys: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "layers": list(self.layers),
            "pretrained": self.pretrained,
            "config": dict(self.config),
            "seed": self.seed,
            "window_seconds": self.window_seconds,
            "trim_to_audio": self.trim_to_audio,
            "per_window_front_end": self.per_window_front_end,
            "input_rate": self.input_rate,
        }


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under a fixed torch seed without disturbing the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def module_shell(module: nn.Module, keep: Sequence[str] = ()) -> nn.Module:
    """A copy of ``module`` with its class and plain attributes but no weights, buffers or hooks.

    Length rules are structural: they read sizes kept as plain attributes (windows, strides,
    the feature extractor's settings), never weights. A shell therefore computes them exactly
    while holding no network, so it costs no memory and pickles in a few kilobytes (DataLoader
    workers started with ``spawn`` receive it). Submodules are dropped, except the children
    named in ``keep``, which become shells themselves.
    """
    shell = object.__new__(type(module))
    nn.Module.__init__(shell)  # fresh, empty parameter/buffer/module/hook tables
    fresh = set(shell.__dict__)
    for name, value in module.__dict__.items():
        if name not in fresh:
            shell.__dict__[name] = value
    shell.training = module.training
    for name in keep:
        child = module._modules.get(name)
        shell._modules[name] = None if child is None else module_shell(child)
    return shell


def split_into_windows(wave: torch.Tensor, window: int) -> list[torch.Tensor]:
    """Split a 1-D wave into consecutive pieces of at most ``window`` samples (last may be short)."""
    if wave.numel() <= window:
        return [wave]
    return list(wave.split(window))


class FrozenEncoder(nn.Module, ABC):
    """Base class: windowing, layer selection, freezing. Subclasses run one window batch.

    Subclasses set the class attributes and implement :meth:`encode_windows`.
    """

    kind: ClassVar[str]
    sample_rate: ClassVar[int]
    #: True for a shell without its network (see `without_weights`): lengths only, no encoding.
    released: bool = False
    #: nominal output frames per second (the true count comes from `encode`).
    frame_rate: ClassVar[float]
    default_window_seconds: ClassVar[float]

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = spec.layers
        self.window_seconds = spec.window_seconds or self.default_window_seconds

    # -- what a subclass provides -------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_spec(cls, spec: EncoderSpec) -> FrozenEncoder:
        """Build from released weights (``spec.pretrained``) or seeded random init (``spec.config``)."""

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """Width D of the hidden states."""

    @property
    @abstractmethod
    def num_hidden_states(self) -> int:
        """Number of hidden states the network exposes (blocks + 1 for the embedding output)."""

    @abstractmethod
    def encode_windows(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode waves no longer than one window each.

        Args:
            waves: N 1-D float tensors at ``sample_rate``, each of its true length.
        Returns:
            hidden: (L, N, T, D) hidden states of ``self.layers`` (padded along T).
            lengths: (N,) valid output frames per wave.
        """

    # -- shared mechanism ---------------------------------------------------------------
    def freeze(self) -> FrozenEncoder:
        """Declare the encoder frozen: no grads, eval mode forever (see `train`)."""
        self.requires_grad_(False)
        self.eval()
        self._check_layers()
        return self

    def _check_layers(self) -> None:
        bad = [i for i in self.layers if not 0 <= i < self.num_hidden_states]
        if bad:
            raise ValueError(
                f"{self.kind}: layers {bad} out of range; this network has hidden states "
                f"0..{self.num_hidden_states - 1}"
            )

    def train(self, mode: bool = True) -> FrozenEncoder:
        # Frozen encoders stay in eval mode (dropout off) even inside a model in train mode.
        return super().train(False)

    def without_weights(self) -> FrozenEncoder:
        """This encoder without its network: spec, layers, sizes, sample rate and length rule only.

        Used when its output comes from elsewhere (the feature cache) and as the picklable
        length rule of DataLoader workers. The length rule (`window_output_length`) must
        therefore not touch the network; a shell's `encode` raises.
        """
        # Direct children stay as shells: their plain attributes (a Hugging Face config) give
        # `hidden_size` and `num_hidden_states`; their own children (the layers) are dropped.
        shell = module_shell(self, keep=tuple(self._modules))
        shell.released = True
        return shell

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    def output_length(self, num_samples: int) -> int:
        """Output frames for a wave of ``num_samples`` samples, windows included.

        Computed by encoding nothing: it sums the per-window rule of the subclass.
        """
        full, rest = divmod(int(num_samples), self.window_samples)
        total = full * self.window_output_length(self.window_samples)
        return total + (self.window_output_length(rest) if rest else 0)

    @abstractmethod
    def window_output_length(self, num_samples: int) -> int:
        """Output frames for one window of ``num_samples`` samples (the length rule)."""

    @torch.no_grad()
    def encode(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch of waves, splitting long ones into windows.

        Args:
            waves: (B, S) float waves at ``sample_rate``, right-padded.
            lengths: (B,) true lengths in samples.
        Returns:
            hidden: (L, B, T, D) selected hidden states, zero beyond each sample's length.
            out_lengths: (B,) valid frames per sample.
        """
        if self.released:
            raise RuntimeError(
                f"the {self.kind} encoder was released (its states come from a feature cache); "
                "pass them in AudioBatch.encoder_states or build the model with its encoders"
            )
        if waves.dim() != 2 or lengths.dim() != 1 or waves.shape[0] != lengths.shape[0]:
            raise ValueError(
                f"expected waves (B, S) and lengths (B,), got {tuple(waves.shape)} and {tuple(lengths.shape)}"
            )
        if bool((lengths <= 0).any()):
            raise ValueError("every wave must have at least one sample")
        # Frozen encoders must not touch the caller's RNG (some transformers versions draw
        # LayerDrop numbers even in eval): training dropout then sees the same stream whether
        # encoder states come from the encoders or from the feature cache.
        devices = [waves.device] if waves.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if self.spec.input_rate is not None and self.spec.input_rate != self.sample_rate:
                waves = self._through_rate(waves, lengths, self.spec.input_rate)
            return self._encode(waves, lengths)

    def _through_rate(self, waves: torch.Tensor, lengths: torch.Tensor, rate: int) -> torch.Tensor:
        """Each wave resampled to ``rate`` and back, same length (what a ``rate`` corpus gave the encoder)."""
        from alarm.audio import resample

        out = torch.zeros_like(waves)
        for b in range(waves.shape[0]):
            n = int(lengths[b])
            wave = waves[b, :n].detach().float().cpu().numpy()
            back = resample(resample(wave, self.sample_rate, rate), rate, self.sample_rate)[:n]
            out[b, : back.shape[0]] = torch.from_numpy(back).to(waves.device, waves.dtype)
        return out

    def _encode(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pieces: list[torch.Tensor] = []
        owner: list[int] = []
        for b in range(waves.shape[0]):
            wins = split_into_windows(waves[b, : int(lengths[b])], self.window_samples)
            pieces.extend(wins)
            owner.extend([b] * len(wins))
        hidden, win_lengths = self.encode_windows(pieces)  # (L, N, T, D), (N,)
        return join_windows(hidden, win_lengths, owner, waves.shape[0])


def join_windows(
    hidden: torch.Tensor, win_lengths: torch.Tensor, owner: Sequence[int], batch: int, keep: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the valid frames of each sample's windows: (L, N, T, D) -> (L, B, T', D), (B,).

    ``owner[n]`` is the sample window ``n`` belongs to; ``keep[b]``, when given, cuts sample
    ``b`` to its first frames (a length rule over the whole clip, e.g. MuQ's official one).
    """
    per_sample: list[list[torch.Tensor]] = [[] for _ in range(batch)]
    for n, b in enumerate(owner):
        per_sample[b].append(hidden[:, n, : int(win_lengths[n])].transpose(0, 1))  # (T_n, L, D)
    joined = [torch.cat(chunks, dim=0) for chunks in per_sample]
    if keep is not None:
        joined = [j[: int(k)] for j, k in zip(joined, keep, strict=True)]
    out_lengths = torch.tensor([j.shape[0] for j in joined], dtype=torch.long)
    out = pad_sequence(joined, batch_first=True)  # (B, T, L, D)
    return out.permute(2, 0, 1, 3).contiguous(), out_lengths


def frames_after_conv(length: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Output length of a 1-D convolution (floor rule)."""
    return math.floor((length + 2 * padding - kernel) / stride) + 1


def select_layers(hidden_states: Sequence[torch.Tensor], layers: Sequence[int]) -> torch.Tensor:
    """Stack the chosen hidden states into (L, N, T, D)."""
    return torch.stack([hidden_states[i] for i in layers], dim=0)


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def read_checkpoint(pretrained: str, prefix: str = "", exclude: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Read the weights of a released checkpoint (local directory or hub id) into a state dict.

    Handles a single safetensors file, a sharded safetensors index, or a legacy
    ``pytorch_model.bin``. Only keys starting with ``prefix`` are kept, with the prefix removed,
    so one encoder can be read out of a larger checkpoint (e.g. Whisper's encoder out of the
    encoder-decoder) without building the rest; keys starting with any of ``exclude`` are
    skipped (e.g. the frozen encoders stored inside an official ALARM checkpoint).
    """
    import json
    import os

    from safetensors import safe_open
    from transformers.utils import cached_file

    def wanted(key: str) -> bool:
        return key.startswith(prefix) and not (exclude and key.startswith(exclude))

    def read_safetensors(path: str) -> dict[str, torch.Tensor]:
        # Only the wanted tensors are read: Whisper's decoder never leaves the disk.
        with safe_open(path, framework="pt") as f:
            return {k[len(prefix) :]: f.get_tensor(k) for k in f.keys() if wanted(k)}

    for name in _WEIGHT_FILES:
        path = cached_file(
            pretrained, name, _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False
        )
        if path is None:
            continue
        if name.endswith(".index.json"):
            with open(path) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(read_safetensors(cached_file(pretrained, shard)))
            return state
        if name.endswith(".safetensors"):
            return read_safetensors(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k[len(prefix) :]: v for k, v in state.items() if wanted(k)}
    where = "directory" if os.path.isdir(pretrained) else "repository"
    raise FileNotFoundError(f"no weights ({', '.join(_WEIGHT_FILES)}) found in {where} {pretrained!r}")


def read_json(pretrained: str, name: str = "config.json") -> dict[str, Any] | None:
    """A JSON file of a released checkpoint (local directory or hub id); ``None`` if absent."""
    import json

    from transformers.utils import cached_file

    path = cached_file(
        pretrained, name, _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False
    )
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def hf_config(config_cls: type, spec: EncoderSpec):
    """Build a transformers config from a spec's overrides, rejecting unknown keys.

    transformers configs keep unknown keyword arguments as attributes; a typo in a preset
    would then silently fall back to a default, so unknown keys are an error here.
    """
    unknown = set(spec.config) - set(config_cls().to_dict())
    if unknown:
        raise ValueError(f"{spec.kind}: unknown config keys {sorted(unknown)}")
    return config_cls(**spec.config)
