"""MuQ encoder re-implementation: tiny random twins, length rule, batching, released-key layout."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from alarm.encoders import EncoderSpec, build_encoder
from alarm.encoders.muq import (
    MIN_SAMPLES,
    MuQArch,
    MuQEncoder,
    convert_released_state_dict,
    htk_mel_filterbank,
)

torch.set_num_threads(1)

RATE = 24000
TINY_CONFIG = dict(
    n_mels=32,
    conv_dim=16,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_depthwise_kernel_size=7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


def tiny_spec(**kw) -> EncoderSpec:
    return EncoderSpec(**{"kind": "muq", "layers": (0, 1, 2), "config": TINY_CONFIG, **kw})


def _batch(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in waves])
    out = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.from_numpy(w)
    return out, lengths


@pytest.fixture(scope="module")
def encoder() -> MuQEncoder:
    return build_encoder(tiny_spec())


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.standard_normal(n) * 0.1).astype(np.float32)


# -- architecture ------------------------------------------------------------------------------
def test_arch_defaults_are_muq_large_and_unknown_keys_rejected():
    arch = MuQArch()
    assert (arch.n_mels, arch.conv_dim, arch.hidden_size, arch.num_hidden_layers) == (128, 512, 1024, 12)
    assert (arch.num_attention_heads, arch.intermediate_size, arch.conv_depthwise_kernel_size) == (16, 4096, 31)
    assert arch.mel_mean == pytest.approx(6.768, abs=1e-3) and arch.mel_std == pytest.approx(18.418, abs=1e-3)
    with pytest.raises(ValueError, match="unknown architecture keys.*hiden_size"):
        MuQArch.from_dict({"hiden_size": 32})
    with pytest.raises(ValueError, match="multiple of 4"):
        MuQArch.from_dict({"n_mels": 30})


def test_layers_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        build_encoder(tiny_spec(layers=(3,)))
    assert build_encoder(tiny_spec(layers=(2,))).num_hidden_states == 3


# -- mel front end -----------------------------------------------------------------------------
def test_mel_filterbank_and_db_normalisation(encoder):
    N = 1025  # n_fft // 2 + 1 frequency bins
    fb = htk_mel_filterbank(N, 128, RATE)
    assert fb.shape == (N, 128) and float(fb.min()) == 0.0 and float(fb.max()) <= 1.0
    assert bool((fb.max(dim=0).values > 0).all())  # no empty filter at 128 mels
    # silence: power 0 -> clamped to 1e-10 -> -100 dB, then MuQ's normalisation
    silent = encoder.log_mel(torch.zeros(RATE))
    assert silent.shape == (32, RATE // 240)
    torch.testing.assert_close(silent, torch.full_like(silent, (-100.0 - encoder.arch.mel_mean) / encoder.arch.mel_std))
    # a 1 kHz tone peaks in the filter that covers the 1 kHz FFT bin most
    tone = torch.sin(2 * torch.pi * 1000.0 * torch.arange(RATE) / RATE)
    peak = int(encoder.log_mel(tone).mean(dim=1).argmax())
    assert peak == int(htk_mel_filterbank(N, 32, RATE)[round(1000 * 2048 / RATE)].argmax())


def test_log_mel_matches_numpy_reference(encoder, rng):
    """transformers' numpy `audio_utils` re-implements torchaudio's MelSpectrogram + AmplitudeToDB;
    with MuQ's settings (htk, no norm, periodic hann, centred reflect STFT, power 2) it must agree."""
    from transformers import audio_utils

    fb_ref = audio_utils.mel_filter_bank(1025, 32, 0.0, RATE / 2, RATE, norm=None, mel_scale="htk")
    np.testing.assert_allclose(htk_mel_filterbank(1025, 32, RATE).numpy(), fb_ref, atol=1e-6)
    wave = _noise(rng, 12345)
    ref = audio_utils.spectrogram(
        wave.astype(np.float64),
        audio_utils.window_function(2048, "hann"),
        frame_length=2048,
        hop_length=240,
        power=2.0,
        center=True,
        pad_mode="reflect",
        mel_filters=fb_ref,
        log_mel="dB",
        reference=1.0,
        min_value=1e-10,
    )  # (32, 1 + S // 240) in dB
    ref = (ref[:, :-1] - encoder.arch.mel_mean) / encoder.arch.mel_std
    np.testing.assert_allclose(encoder.log_mel(torch.from_numpy(wave)).numpy(), ref, atol=1e-5)


# -- shapes and lengths --------------------------------------------------------------------------


def test_window_output_length_is_the_true_count(rng):
    encoder = build_encoder(tiny_spec(per_window_front_end=True))  # the official front end: test_encoder_front_end.py
    sizes = [1, 100, 239, 960, MIN_SAMPLES - 1, MIN_SAMPLES, 1500, 4799, 4800, 24000, 24001, 24239, 24240, 30000]
    waves = [_noise(rng, n) for n in sizes]
    for w in waves:
        _, lengths = encoder.encode(*_batch([w]))
        assert int(lengths[0]) == encoder.window_output_length(len(w)) >= 1, len(w)
    _, lengths = encoder.encode(*_batch(waves))
    assert lengths.tolist() == [encoder.window_output_length(n) for n in sizes]


def test_only_last_state_gets_the_conformer_layer_norm(rng):
    # MuQ's convention: hidden_states[-1] passes through the conformer's final LayerNorm, the
    # others are raw block outputs. Mark that LayerNorm with bias 3 and see where it shows up.
    enc = build_encoder(tiny_spec())
    with torch.no_grad():
        enc.conformer.layer_norm.bias.fill_(3.0)
    hidden, _ = enc.encode(*_batch([_noise(rng, RATE)]))  # layers (0, 1, 2) of 2 blocks
    frames = hidden.shape[2]
    torch.testing.assert_close(hidden[2, 0].mean(-1), torch.full((frames,), 3.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden[1, 0].mean(-1), torch.zeros(frames), atol=1e-5, rtol=0)  # block's own LN


# -- batching and windowing ------------------------------------------------------------------------


# -- construction --------------------------------------------------------------------------------


# -- released checkpoint layout --------------------------------------------------------------------
def released_shapes(
    n_mels=128,
    conv=512,
    dim=1024,
    depth=12,
    heads=16,
    inner=4096,
    kernel=31,
    pos_kernel=128,
    pos_groups=16,
    codebook=4096,
    legacy_weight_norm=False,
) -> dict[str, tuple]:
    """Names and shapes of the released MuQ checkpoint (``MuQ`` -> ``self.model = MuQModel``), written
    out from the original code: conv/Conv2dSubsampling, transformers' Wav2Vec2ConformerEncoder, heads."""
    shapes: dict[str, tuple] = {}

    def bn(prefix: str, ch: int) -> None:
        shapes.update(
            {
                f"{prefix}.weight": (ch,),
                f"{prefix}.bias": (ch,),
                f"{prefix}.running_mean": (ch,),
                f"{prefix}.running_var": (ch,),
                f"{prefix}.num_batches_tracked": (),
            }
        )

    for b, cin in enumerate((1, conv)):  # Res2dModule(1, conv), Res2dModule(conv, conv); stride > 1 -> conv3
        p = f"model.conv.conv.{b}"
        for name, c_in in (("conv1", cin), ("conv2", conv), ("conv3", cin)):
            shapes[f"{p}.{name}.weight"] = (conv, c_in, 3, 3)
            shapes[f"{p}.{name}.bias"] = (conv,)
        for name in ("bn1", "bn2", "bn3"):
            bn(f"{p}.{name}", conv)
    shapes["model.conv.linear.weight"] = (dim, conv * n_mels // 4)
    shapes["model.conv.linear.bias"] = (dim,)

    c = "model.conformer"
    shapes[f"{c}.embed_positions.inv_freq"] = (dim // heads // 2,)
    if legacy_weight_norm:
        shapes[f"{c}.pos_conv_embed.conv.weight_g"] = (1, 1, pos_kernel)
        shapes[f"{c}.pos_conv_embed.conv.weight_v"] = (dim, dim // pos_groups, pos_kernel)
    else:
        shapes[f"{c}.pos_conv_embed.conv.parametrizations.weight.original0"] = (1, 1, pos_kernel)
        shapes[f"{c}.pos_conv_embed.conv.parametrizations.weight.original1"] = (dim, dim // pos_groups, pos_kernel)
    shapes[f"{c}.pos_conv_embed.conv.bias"] = (dim,)
    shapes[f"{c}.layer_norm.weight"] = shapes[f"{c}.layer_norm.bias"] = (dim,)
    for i in range(depth):
        p = f"{c}.layers.{i}"
        for ln in (
            "ffn1_layer_norm",
            "self_attn_layer_norm",
            "conv_module.layer_norm",
            "ffn2_layer_norm",
            "final_layer_norm",
        ):
            shapes[f"{p}.{ln}.weight"] = shapes[f"{p}.{ln}.bias"] = (dim,)
        for ffn in ("ffn1", "ffn2"):
            shapes.update(
                {
                    f"{p}.{ffn}.intermediate_dense.weight": (inner, dim),
                    f"{p}.{ffn}.intermediate_dense.bias": (inner,),
                    f"{p}.{ffn}.output_dense.weight": (dim, inner),
                    f"{p}.{ffn}.output_dense.bias": (dim,),
                }
            )
        for lin in ("linear_q", "linear_k", "linear_v", "linear_out"):
            shapes[f"{p}.self_attn.{lin}.weight"] = (dim, dim)
            shapes[f"{p}.self_attn.{lin}.bias"] = (dim,)
        shapes[f"{p}.conv_module.pointwise_conv1.weight"] = (2 * dim, dim, 1)
        shapes[f"{p}.conv_module.depthwise_conv.weight"] = (dim, 1, kernel)
        bn(f"{p}.conv_module.batch_norm", dim)
        shapes[f"{p}.conv_module.pointwise_conv2.weight"] = (dim, dim, 1)

    # pre-training heads: token logits, CLS token, random-projection quantizer buffers
    shapes.update(
        {
            "model.linear.weight": (codebook, dim),
            "model.linear.bias": (codebook,),
            "model.cls_token": (dim,),
            "model.quantizer_melspec_2048.random_projection": (n_mels * 4, 16),
            "model.quantizer_melspec_2048.codebook": (codebook, 16),
        }
    )
    return shapes


def _fabricate(shapes: dict[str, tuple], device: str = "cpu") -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = {}
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.zeros(s, dtype=torch.long, device=device)
        elif device == "meta":
            out[k] = torch.empty(s, device="meta")
        else:
            out[k] = torch.randn(s, generator=gen)
    return out


@pytest.mark.parametrize("legacy", [False, True])
def test_full_size_keys_match_released_checkpoint(legacy):
    with torch.device("meta"):  # 300M parameters, never allocated
        model = MuQEncoder.from_spec(EncoderSpec(kind="muq", layers=(12,), config={"num_hidden_layers": 12}))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    released = _fabricate(released_shapes(legacy_weight_norm=legacy), device="meta")
    mapped = {k: tuple(v.shape) for k, v in convert_released_state_dict(released, model.arch).items()}
    assert mapped == ours
    assert model.num_hidden_states == 13 and model.hidden_size == 1024


def _tiny_released_state(legacy: bool) -> dict[str, torch.Tensor]:
    shapes = released_shapes(
        n_mels=32,
        conv=16,
        dim=32,
        depth=2,
        heads=2,
        inner=64,
        kernel=7,
        pos_kernel=16,
        pos_groups=2,
        codebook=64,
        legacy_weight_norm=legacy,
    )
    state = _fabricate(shapes)
    for k in state:  # keep BatchNorm variances positive, as trained ones are
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 0.5
    return state


def test_tiny_fabricated_checkpoint_loads_strict():
    state = _tiny_released_state(legacy=True)
    del state["model.conformer.embed_positions.inv_freq"]  # older checkpoints may lack the constant
    model = build_encoder(tiny_spec())
    model.load_state_dict(convert_released_state_dict(state, model.arch), strict=True)
    torch.testing.assert_close(model.conv.linear.weight, state["model.conv.linear.weight"], rtol=0, atol=0)
    torch.testing.assert_close(
        model.conformer.pos_conv_embed.conv.parametrizations.weight.original1,
        state["model.conformer.pos_conv_embed.conv.weight_v"],
        rtol=0,
        atol=0,
    )


def test_from_released_directory(tmp_path, rng):
    """The real loading path (config.json + model.safetensors in MuQ's format) on a tiny checkpoint."""
    state = _tiny_released_state(legacy=False)
    save_file(state, str(tmp_path / "model.safetensors"))
    config = {
        "label_rate": 25,
        "num_codebooks": 1,
        "codebook_dim": 16,
        "codebook_size": 64,
        "features": ["melspec_2048"],
        "hop_length": 240,
        "n_mels": 32,
        "conv_dim": 16,
        "encoder_dim": 32,
        "encoder_depth": 2,
        "stat": {"melspec_2048_cnt": 1, "melspec_2048_mean": 6.768444971712967, "melspec_2048_std": 18.417922652295623},
        "w2v2_config": {
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "conv_depthwise_kernel_size": 7,
            "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 2,
            "position_embeddings_type": "rotary",
            "rotary_embedding_base": 10000,
            "hidden_act": "swish",
            "layer_norm_eps": 1e-5,
        },
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = build_encoder(EncoderSpec(kind="muq", layers=(0, 1, 2), pretrained=str(tmp_path)))
    assert loaded.arch == MuQArch.from_dict(TINY_CONFIG)
    assert not any(p.requires_grad or p.is_meta for p in loaded.parameters())
    assert not any(b.is_meta for b in loaded.buffers())
    reference = build_encoder(tiny_spec())
    reference.load_state_dict(convert_released_state_dict(state, reference.arch), strict=True)
    wave = _batch([_noise(rng, RATE)])
    torch.testing.assert_close(loaded.encode(*wave)[0], reference.encode(*wave)[0], rtol=0, atol=0)
