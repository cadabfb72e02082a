"""Official ALARM checkpoints load through the documented key mapping (fabricated, tiny)."""

import json

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from alarm.modeling.official import config_from_official, convert_state_dict, load_official
from alarm.presets import load_preset

torch.set_num_threads(1)

TINY = load_preset("tiny-alarm-ca")
TEXT = {"text_config": TINY["text_config"], "tokenizer_name": "tiny"}
SOURCES = {e["kind"]: {k: v for k, v in e.items() if k not in ("kind", "layers")} for e in TINY["encoders"]}
H, A, C = 32, 32, 32  # RLM width, adapter width, fusion width of the tiny twin
ENC_DIM = {"whisper": 32, "w2vbert": 32, "muq": 32, "sslam": 32}


def official_config(depth: int = 1) -> dict:
    """A config.json shaped like Qwen3AudioWrappedConfig of ALARM-CA, tiny sizes.

    ``depth``: cross-attention decoder layers per encoder (released alarm_ca.yaml: 1).
    """

    def conv(name, layers, norm):
        return {
            "encoder_name": name,
            "adapter_name": "downsampler_conformer",
            "audio_encoder_layers": layers,
            "norm_type": norm,
            "pre_average": True,
            "downsampler_depth": 1,
            "use_conformer": False,
            "encoder_embedding_dim": ENC_DIM[name],
            "adapter_embedding_dim": A,
            "llm_embedding_dim": H,
            "layer_fusion_config": {"layer_fusion_type": "weighted_average"},
        }

    return {
        "model_type": "qwen3_audio",
        "hidden_size": H,
        "use_explicit_audio_tokens": False,
        "audio_sep_d_embed": H,
        "audio_encoder_configs": [{"encoder_name": n} for n in ("whisper", "sslam", "muq", "w2vbert")],
        "audio_adapter_configs": [
            conv("whisper", [1, 2, 3, 4], "batch"),
            conv("sslam", [0, 1, 2], "layer"),
            {
                "encoder_name": "muq",
                "adapter_name": "mlp",
                "audio_encoder_layers": [1, 2, 3],
                "pre_average": True,
                "encoder_embedding_dim": 32,
                "hidden_dim": A,
                "adapter_embedding_dim": A,
                "llm_embedding_dim": H,
                "layer_fusion_config": {"layer_fusion_type": "weighted_average"},
            },
            conv("w2vbert", [1, 2, 3, 4, 5], "layer"),
        ],
        "audio_fusion_config": {
            "fusion_type": "crossattention",
            "llm_embedding_dim": H,
            "hidden_dim": C,
            "ffn_dims": 64,
            "dropout": 0.1,
            "num_attention_heads": 4,
            "num_hidden_layers": [depth] * 3,
            "main_encoder": "whisper",
            "conditional_encoders": ["w2vbert", "muq", "sslam"],
            "use_skip_connection": False,
        },
        "audio_postprocessing_config": {"postprocessing_type": "identity"},
    }


def official_state(depth: int = 1) -> dict[str, torch.Tensor]:
    """Official key names and shapes (from the official module code), random values."""
    shapes: dict[str, tuple] = {"model.audio_start_emb": (1, H), "model.audio_end_emb": (1, H)}
    for name, layers, norm in (("whisper", 4, "batch"), ("w2vbert", 5, "layer"), ("sslam", 3, "layer")):
        p = f"model.audio_adapter.adapters.{name}."
        shapes[p + "layer_fusion.layer_weights"] = (layers,)
        shapes[p + "llm_proj.weight"], shapes[p + "llm_proj.bias"] = (H, A), (H,)
        shapes[p + "adapter.downsampler.0.0.weight"], shapes[p + "adapter.downsampler.0.0.bias"] = (
            (2 * A, A, 3),
            (2 * A,),
        )
        shapes[p + "adapter.downsampler.1.0.weight"], shapes[p + "adapter.downsampler.1.0.bias"] = (A, 2 * A, 4), (A,)
        for i, width in ((0, 2 * A), (1, A)):
            n = f"{p}adapter.downsampler.{i}.2."
            if norm == "batch":
                for leaf in ("weight", "bias", "running_mean", "running_var"):
                    shapes[n + leaf] = (width,)
                shapes[n + "num_batches_tracked"] = ()
            else:
                shapes[n + "norm.weight"], shapes[n + "norm.bias"] = (width,), (width,)
    p = "model.audio_adapter.adapters.muq."
    shapes |= {
        p + "layer_fusion.layer_weights": (3,),
        p + "adapter.model.0.weight": (A, 32),
        p + "adapter.model.0.bias": (A,),
        p + "adapter.model.2.weight": (A, A),
        p + "adapter.model.2.bias": (A,),
        p + "llm_proj.weight": (H, A),
        p + "llm_proj.bias": (H,),
    }
    f = "model.audio_fusion.fusion_model."
    shapes |= {f + "out_proj.weight": (H, C), f + "out_proj.bias": (H,)}
    for name in ("whisper", "w2vbert", "muq", "sslam"):
        shapes |= {f + f"in_proj.{name}.weight": (C, H), f + f"in_proj.{name}.bias": (C,)}
    for name in ("w2vbert", "muq", "sslam"):
        for i in range(depth):
            b = f"{f}condition_modules.{name}.{i}."
            for att in ("self_attn", "multihead_attn"):
                shapes |= {
                    b + f"{att}.in_proj_weight": (3 * C, C),
                    b + f"{att}.in_proj_bias": (3 * C,),
                    b + f"{att}.out_proj.weight": (C, C),
                    b + f"{att}.out_proj.bias": (C,),
                }
            shapes |= {
                b + "linear1.weight": (64, C),
                b + "linear1.bias": (64,),
                b + "linear2.weight": (C, 64),
                b + "linear2.bias": (C,),
            }
            for k in (1, 2, 3):
                shapes |= {b + f"norm{k}.weight": (C,), b + f"norm{k}.bias": (C,)}
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.rand(s, generator=g) + 0.5) if s else torch.tensor(7) for k, s in shapes.items()}
    # what the official export also carries, and we must not read
    state["model.embed_tokens.weight"] = torch.zeros(4, H)
    state["model.audio_encoder.encoders.whisper.encoder.conv1.weight"] = torch.zeros(2, 2, 3)
    state["lm_head.weight"] = torch.zeros(4, H)
    return state


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("official")
    (path / "config.json").write_text(json.dumps(official_config()))
    state = official_state()
    save_file(state, str(path / "model.safetensors"))
    return path, state


def test_config_maps_layers_adapters_and_fusion():
    config = config_from_official(official_config(), text=TEXT, encoders=SOURCES)
    specs = {s.kind: s.layers for s in config.encoder_specs()}
    assert specs == {"whisper": (1, 2, 3, 4), "w2vbert": (1, 2, 3, 4, 5), "muq": (1, 2, 3), "sslam": (1, 2, 3)}
    assert config.branches["whisper"]["norm"] == "batch" and config.branches["muq"]["adapter"] == "mlp"
    assert config.fusion["conditional"] == ["w2vbert", "muq", "sslam"] and config.fusion["layers_per_encoder"] == 1
    assert config.fusion["memory_mask"] == "main"  # crossattention.py: Whisper's lengths mask every stream
    paper = config_from_official(
        {**official_config(), "audio_adapter_configs": official_config()["audio_adapter_configs"]}
    )
    assert paper.text_model == "Qwen/Qwen3-4B-Thinking-2507"
    assert {s.kind: s.pretrained for s in paper.encoder_specs()}["muq"] == "OpenMuQ/MuQ-large-msd-iter"


def test_every_trainable_tensor_comes_from_the_checkpoint(checkpoint):
    path, state = checkpoint
    model = load_official(str(path), text=TEXT, encoders=SOURCES)
    ours = model.trainable_state_dict()
    a = "model.audio_adapter.adapters."
    assert torch.equal(
        ours["branches.whisper.adapter.conv1.weight"], state[a + "whisper.adapter.downsampler.0.0.weight"]
    )
    assert torch.equal(
        ours["branches.whisper.adapter.norm2.running_var"], state[a + "whisper.adapter.downsampler.1.2.running_var"]
    )
    assert torch.equal(
        ours["branches.sslam.adapter.norm1.weight"], state[a + "sslam.adapter.downsampler.0.2.norm.weight"]
    )
    assert torch.equal(ours["branches.muq.adapter.fc2.bias"], state[a + "muq.adapter.model.2.bias"])
    assert torch.equal(
        ours["fusion.blocks.sslam.0.multihead_attn.in_proj_weight"],
        state["model.audio_fusion.fusion_model.condition_modules.sslam.0.multihead_attn.in_proj_weight"],
    )
    assert torch.equal(ours["audio_boundaries"][1], state["model.audio_end_emb"][0])
    # every official audio-path tensor landed somewhere, and every trainable tensor was filled
    audio_keys = [k for k in state if k.startswith("model.audio_") and not k.startswith("model.audio_encoder.")]
    assert len(convert_state_dict({k[len("model.") :]: state[k] for k in audio_keys})) == len(ours)


def test_whisper_branch_computes_the_official_adapter(checkpoint):
    """Official math: weighted layer average, conv k3, GELU, BN, conv k4/2, GELU, BN, llm_proj."""
    path, state = checkpoint
    model = load_official(str(path), text=TEXT, encoders=SOURCES)
    p = "model.audio_adapter.adapters.whisper."
    hidden = torch.randn(4, 1, 10, 32)  # (L, B, T even, D); no padding, so no masking differences

    def bn(x, i):
        n = f"{p}adapter.downsampler.{i}.2."
        return F.batch_norm(
            x, state[n + "running_mean"], state[n + "running_var"], state[n + "weight"], state[n + "bias"]
        )

    x = (torch.softmax(state[p + "layer_fusion.layer_weights"], 0)[:, None, None, None] * hidden).sum(0).transpose(1, 2)
    x = bn(
        F.gelu(
            F.conv1d(
                x, state[p + "adapter.downsampler.0.0.weight"], state[p + "adapter.downsampler.0.0.bias"], padding=1
            )
        ),
        0,
    )
    x = bn(
        F.gelu(
            F.conv1d(
                x,
                state[p + "adapter.downsampler.1.0.weight"],
                state[p + "adapter.downsampler.1.0.bias"],
                stride=2,
                padding=1,
            )
        ),
        1,
    )
    expected = F.linear(x.transpose(1, 2), state[p + "llm_proj.weight"], state[p + "llm_proj.bias"])
    with torch.no_grad():
        ours, lengths = model.branches["whisper"](hidden, torch.tensor([10]))
    assert int(lengths[0]) == 5
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_unknown_official_keys_are_loud():
    with pytest.raises(KeyError, match="no counterpart"):
        convert_state_dict({"audio_adapter.adapters.whisper.adapter.encoder.conformer_layers.0.x": torch.zeros(1)})
    with pytest.raises(ValueError, match="not supported"):
        config_from_official({**official_config(), "audio_fusion_config": {"fusion_type": "multiperceiver"}})


def _write(path, config: dict, state: dict) -> str:
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    save_file(state, str(path / "model.safetensors"))
    return str(path)


@pytest.mark.parametrize("depth", [1, 2])
def test_cross_attention_depth_and_projections_come_from_the_checkpoint(tmp_path, depth):
    """The released ALARM-CA has one decoder layer per encoder; a 2-layer export loads as 2 layers."""
    state = official_state(depth)
    f = "model.audio_fusion.fusion_model."
    state[f + "out_proj.weight"], state[f + "out_proj.bias"] = torch.full((H, C), 0.25), torch.full((H,), -1.0)
    model = load_official(_write(tmp_path / "ckpt", official_config(depth), state), text=TEXT, encoders=SOURCES)
    assert model.config.fusion["layers_per_encoder"] == depth
    assert all(len(model.fusion.blocks[n]) == depth for n in ("w2vbert", "muq", "sslam"))
    last = f"condition_modules.muq.{depth - 1}.linear1.weight"
    assert torch.equal(model.fusion.blocks["muq"][depth - 1].linear1.weight, state[f + last])
    assert torch.equal(model.fusion.out_proj.weight, state[f + "out_proj.weight"])
    assert torch.equal(model.fusion.in_proj["whisper"].bias, state[f + "in_proj.whisper.bias"])


def test_a_config_that_disagrees_with_the_weights_on_depth_is_refused(tmp_path):
    # weights of one layer per encoder, a config of two (or no num_hidden_layers: the class default, 2)
    config = official_config(2)
    with pytest.raises(ValueError, match="cross-attention layers per encoder"):
        load_official(_write(tmp_path / "a", config, official_state(1)), text=TEXT, encoders=SOURCES)
    del config["audio_fusion_config"]["num_hidden_layers"]
    with pytest.raises(ValueError, match="cross-attention layers per encoder"):
        load_official(_write(tmp_path / "b", config, official_state(1)), text=TEXT, encoders=SOURCES)
