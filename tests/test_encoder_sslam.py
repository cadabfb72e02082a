"""SSLAM encoder: features, 50 Hz length rule, windowing, batch invariance, release key mapping."""

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from alarm.encoders import EncoderSpec, build_encoder
from alarm.encoders.sslam import (
    FBANK_MEAN,
    FBANK_STD,
    MAX_WINDOW_SAMPLES,
    SSLAMConfig,
    SSLAMEncoder,
    SSLAMNet,
    convert_released_state_dict,
    fbank_frames,
    log_mel_fbank,
    sincos_positions,
    sslam_features,
)

torch.set_num_threads(1)

SR = 16_000
WINDOW = 163_840  # 10.24 s
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}


def audio(num_samples: int, seed: int = 0) -> np.ndarray:
    """Noise plus a tone, float32, so that every mel band carries energy."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SR
    return (0.05 * rng.standard_normal(num_samples) + 0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


def tiny_spec(layers=(0, 1, 2), seed: int = 0, **kw) -> EncoderSpec:
    return EncoderSpec(kind="sslam", layers=layers, config=dict(TINY), seed=seed, **kw)


@pytest.fixture(scope="module")
def encoder() -> SSLAMEncoder:
    return build_encoder(tiny_spec())


def encode(enc: SSLAMEncoder, arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([a.size for a in arrays])
    waves = torch.zeros(len(arrays), int(lengths.max()))
    for i, a in enumerate(arrays):
        waves[i, : a.size] = torch.from_numpy(a)
    return enc.encode(waves, lengths)


# -- features -------------------------------------------------------------------------------
def test_fbank_matches_ast_feature_extractor_reference():
    """Our torch fbank equals transformers' Kaldi-compatible fbank on the official preprocessing."""
    from transformers import ASTFeatureExtractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its numpy path warns about an empty low mel filter
        raw = ASTFeatureExtractor(num_mel_bins=128, max_length=1024, do_normalize=False)
        norm = ASTFeatureExtractor(num_mel_bins=128, max_length=1024, mean=FBANK_MEAN, std=FBANK_STD)
    x = audio(40_000)
    official_input = np.pad(x - x.mean(), 160)  # mean removed, 160 samples of silence each side
    ref = raw(official_input, sampling_rate=SR, return_tensors="np").input_values[0]  # (1024, 128)
    ref_norm = norm(official_input, sampling_rate=SR, return_tensors="np").input_values[0]

    fbank, frames = log_mel_fbank([torch.from_numpy(x)])
    feats, _ = sslam_features([torch.from_numpy(x)])
    assert int(frames[0]) == fbank_frames(x.size) == 250
    assert fbank.shape == feats.shape == (1, 1024, 128)
    np.testing.assert_allclose(fbank[0].numpy(), ref, atol=1e-3)
    np.testing.assert_allclose(feats[0].numpy(), ref_norm, atol=1e-3)  # padding included
    # Zero-padded frames become (0 + 4.268) / 9.138 after normalisation, as in the official code.
    assert torch.allclose(feats[0, 250:], torch.full((774, 128), -FBANK_MEAN / (2 * FBANK_STD)))


def test_fbank_frame_rule():
    for n in (1, 79, 80, 239, 240, 16_000, WINDOW, MAX_WINDOW_SAMPLES):
        expected = max(0, 1 + (n + 320 - 400) // 160) if n + 320 >= 400 else 0
        assert fbank_frames(n) == expected
    assert fbank_frames(WINDOW) == 1024
    assert fbank_frames(MAX_WINDOW_SAMPLES) == 1024 and fbank_frames(MAX_WINDOW_SAMPLES + 1) == 1025


# -- shapes and length rule -----------------------------------------------------------------
def test_shapes_and_50hz_rate(encoder):
    hidden, lengths = encode(encoder, [audio(WINDOW), audio(3 * SR, seed=1)])
    assert hidden.shape == (3, 2, 512, 32)
    assert lengths.tolist() == [512, fbank_frames(3 * SR) // 2] == [512, 150]
    assert abs(150 / 3.0 - encoder.frame_rate) < 1.0
    assert torch.all(hidden[:, 1, 150:] == 0)  # zero beyond the valid frames
    assert encoder.hidden_size == 32 and encoder.num_hidden_states == 3


@pytest.mark.parametrize("n", [1, 50, 80, 240, 400, 1_000, 8_000, 16_001, WINDOW - 1, WINDOW])
def test_window_output_length_is_what_encode_gives(encoder, n):
    hidden, lengths = encoder.encode_windows([torch.from_numpy(audio(n))])
    assert int(lengths[0]) == encoder.window_output_length(n) == hidden.shape[2]
    assert int(lengths[0]) == max(1, fbank_frames(n) // 2)


def test_long_audio_is_windowed_and_concatenated(encoder):
    x = audio(25 * SR)
    hidden, lengths = encode(encoder, [x])
    rest = 25 * SR - 2 * WINDOW
    expected = 512 + 512 + fbank_frames(rest) // 2
    assert int(lengths[0]) == encoder.output_length(x.size) == expected == 1250
    first, _ = encoder.encode_windows([torch.from_numpy(x[:WINDOW])])
    last, last_len = encoder.encode_windows([torch.from_numpy(x[2 * WINDOW :])])
    torch.testing.assert_close(hidden[:, 0, :512], first[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden[:, 0, 1024:], last[:, 0, : int(last_len[0])], atol=1e-5, rtol=0)


def test_tokens_are_time_major(encoder):
    """Changing audio after 5 s leaves layer-0 tokens of earlier time patches untouched.

    (Up to rounding: the wave mean changes, which the per-frame DC removal cancels.)
    """
    x = audio(WINDOW)
    y = x.copy()
    y[5 * SR :] = audio(WINDOW - 5 * SR, seed=9)
    hx, _ = encoder.encode_windows([torch.from_numpy(x)])
    hy, _ = encoder.encode_windows([torch.from_numpy(y)])
    # Sample 80000 lands in fbank frame ~498 -> time patch 31 -> tokens from 8 * 31 = 248 on.
    unchanged = 8 * ((5 * SR + 160 - 400) // 160 // 16)
    torch.testing.assert_close(hx[0, 0, :unchanged], hy[0, 0, :unchanged], atol=1e-3, rtol=0)
    changed = (hx[0, 0, unchanged + 8 :] - hy[0, 0, unchanged + 8 :]).abs().amax(-1)  # (tokens,)
    assert bool((changed > 0.05).all())


def test_forward_matches_official_formulas(encoder):
    """The official ALARM forward, written out with explicit attention (softmax in float32)."""
    net = encoder.net
    feats, _ = sslam_features([torch.from_numpy(audio(2 * SR))])
    x = net.local_encoder.proj(feats.unsqueeze(1)).flatten(2).transpose(1, 2)
    x = x + net.pos_embed[:, : x.size(1), :]
    x = net.pre_norm(torch.cat((net.extra_tokens.expand(1, -1, -1), x), dim=1))
    ref = [x[:, 1:]]
    for blk in net.blocks:
        b, n, c = x.shape
        h = blk.attn.num_heads
        q, k, v = blk.attn.qkv(x).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        attn = ((q * (c // h) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1, dtype=torch.float32)
        x = x + blk.attn.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        r = blk.norm1(x)
        x = blk.norm2(r + blk.mlp.fc2(torch.nn.functional.gelu(blk.mlp.fc1(r))))
        ref.append(x[:, 1:])
    with torch.no_grad():
        ours = net(feats, (0, 1, 2))
    torch.testing.assert_close(ours, torch.stack(ref).detach(), atol=1e-5, rtol=0)


def test_sincos_table_matches_mae_layout():
    """Independent rebuild of EAT's numpy table (meshgrid over (w, h), mel channels first)."""
    d, h, w = 16, 70, 8
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), 0).reshape(2, -1)

    def one_d(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.outer(pos, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    ref = np.concatenate([one_d(d // 2, grid[0]), one_d(d // 2, grid[1])], axis=1)  # (h*w, d)
    np.testing.assert_allclose(sincos_positions(d, h, w)[0].numpy(), ref, atol=1e-6)


# -- construction -----------------------------------------------------------------------------


def test_bad_specs_raise():
    for layers in [(3,), (-1,), (0, 5)]:
        with pytest.raises(ValueError, match="out of range"):
            build_encoder(tiny_spec(layers=layers))
    with pytest.raises(ValueError, match="unknown config keys"):
        SSLAMEncoder.from_spec(EncoderSpec(kind="sslam", layers=(1,), config={**TINY, "embed_dimm": 8}))
    with pytest.raises(ValueError, match="10.24"):
        build_encoder(tiny_spec(window_seconds=20.0))


# -- released checkpoint ------------------------------------------------------------------------
def released_layout(embed_dim=768, depth=12, mlp=3072, max_length=768, classes=527) -> dict[str, tuple]:
    """Names and shapes of the hub ``EATModel`` state dict (finetuned variant, with its classifier)."""
    d = embed_dim
    layout = {
        "model.extra_tokens": (1, 1, d),
        "model.local_encoder.proj.weight": (d, 1, 16, 16),
        "model.local_encoder.proj.bias": (d,),
        "model.fixed_positional_encoder.positions": (1, max_length * 8, d),
        "model.pre_norm.weight": (d,),
        "model.pre_norm.bias": (d,),
        "model.fc_norm.weight": (d,),
        "model.fc_norm.bias": (d,),
        "model.head.weight": (classes, d),
        "model.head.bias": (classes,),
    }
    for i in range(depth):
        p = f"model.blocks.{i}."
        layout.update(
            {
                p + "norm1.weight": (d,),
                p + "norm1.bias": (d,),
                p + "attn.qkv.weight": (3 * d, d),
                p + "attn.qkv.bias": (3 * d,),
                p + "attn.proj.weight": (d, d),
                p + "attn.proj.bias": (d,),
                p + "norm2.weight": (d,),
                p + "norm2.bias": (d,),
                p + "mlp.fc1.weight": (mlp, d),
                p + "mlp.fc1.bias": (mlp,),
                p + "mlp.fc2.weight": (d, mlp),
                p + "mlp.fc2.bias": (d,),
            }
        )
    return layout


def test_full_size_keys_and_shapes_match_release():
    layout = released_layout()
    # The released safetensors holds 90,379,535 values (independently reported size of the file).
    assert sum(int(np.prod(s)) for s in layout.values()) == 90_379_535
    fabricated = {k: torch.empty(s, device="meta") for k, s in layout.items()}
    converted = convert_released_state_dict(fabricated)
    with torch.device("meta"):
        net = SSLAMNet(SSLAMConfig())
    ours = net.state_dict()
    assert set(converted) == set(ours)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours.items()}


def to_release(net: SSLAMNet, classes: int = 5) -> dict[str, torch.Tensor]:
    """Write a net's weights under the released names (inverse mapping, classifier added)."""
    d = net.cfg.embed_dim
    state = {}
    for k, v in net.state_dict().items():
        k = "fixed_positional_encoder.positions" if k == "pos_embed" else k
        state["model." + k] = v.clone()
    state["model.fc_norm.weight"], state["model.fc_norm.bias"] = torch.ones(d), torch.zeros(d)
    state["model.head.weight"], state["model.head.bias"] = torch.randn(classes, d), torch.zeros(classes)
    return state


def hub_config(**over) -> dict:
    cfg = {
        "model_type": "eat",
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "patch_size": 16,
        "stride": 16,
        "in_chans": 1,
        "mel_bins": 128,
        "max_length": 768,
        "num_classes": 5,
        "model_variant": "finetune",
        "mlp_ratio": 2.0,
        "qkv_bias": True,
        "layer_norm_first": False,
        "norm_eps": 1e-6,
        "norm_affine": True,
        "fixed_positions": True,
        "img_size": [1024, 128],
    }
    cfg.update(over)
    return cfg


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_tiny_release_loads_strictly_and_matches(tmp_path, encoder, fmt):
    state = to_release(encoder.net)
    if fmt == "safetensors":
        save_file(state, str(tmp_path / "model.safetensors"))
    else:
        torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(hub_config()))
    loaded = build_encoder(EncoderSpec(kind="sslam", layers=(0, 1, 2), pretrained=str(tmp_path)))
    assert loaded.net.cfg == encoder.net.cfg
    assert not any(t.is_meta for t in loaded.state_dict().values())
    x = [audio(4 * SR)]
    torch.testing.assert_close(encode(loaded, x)[0], encode(encoder, x)[0], atol=0, rtol=0)


def test_release_with_missing_key_or_other_layout_fails(tmp_path, encoder):
    state = to_release(encoder.net)
    del state["model.blocks.1.mlp.fc2.bias"]
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(hub_config()))
    with pytest.raises(RuntimeError, match="fc2.bias"):
        SSLAMEncoder.from_spec(EncoderSpec(kind="sslam", layers=(1,), pretrained=str(tmp_path)))
    save_file(to_release(encoder.net), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(hub_config(layer_norm_first=True)))
    with pytest.raises(ValueError, match="layer_norm_first"):
        SSLAMEncoder.from_spec(EncoderSpec(kind="sslam", layers=(1,), pretrained=str(tmp_path)))
