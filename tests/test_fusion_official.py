"""The paper presets' fusion follows the released ALARM code (alarm_ca.yaml, MultiPerceiverFusion)."""

import json

import pytest
import torch

from alarm.modeling.fusion import CrossAttentionFusion, FusionConfig, PerceiverFusion
from alarm.presets import build_model, preset_config

torch.set_num_threads(1)


@pytest.mark.parametrize("name", ["alarm-ca", "tiny-alarm-ca"])
def test_ca_presets_have_one_decoder_layer_per_encoder_as_released(name):
    assert preset_config(name).fusion_config().layers_per_encoder == 1
    assert FusionConfig(type="cross_attention", conditional=("muq",)).layers_per_encoder == 1


def test_ca_depth_stays_a_setting():
    model = build_model("tiny-alarm-ca")
    assert all(len(model.fusion.blocks[n]) == 1 for n in ("w2vbert", "muq", "sslam"))
    config = preset_config("tiny-alarm-ca")
    config.fusion = {**config.fusion, "layers_per_encoder": 2}
    deeper = type(model)(config)
    assert all(len(deeper.fusion.blocks[n]) == 2 for n in ("w2vbert", "muq", "sslam"))
    with pytest.raises(ValueError, match="at least 1"):
        FusionConfig(type="cross_attention", conditional=("muq",), layers_per_encoder=0)


def test_perceiver_latents_get_one_output_projection_per_encoder():
    config = FusionConfig(
        type="perceiver",
        conditional=("w2vbert", "muq"),
        num_latents=3,
        latent_size=8,
        cross_attention_heads=2,
        self_attention_heads=2,
        self_attention_layers=1,
        self_attention_repeats=1,
    )
    fusion = PerceiverFusion(config, {"whisper": 16, "w2vbert": 12, "muq": 10}, 16).eval()
    assert set(fusion.out_proj) == {"w2vbert", "muq"}
    streams = {
        "whisper": (torch.randn(2, 5, 16), torch.tensor([5, 4])),
        "w2vbert": (torch.randn(2, 6, 12), torch.tensor([6, 3])),
        "muq": (torch.randn(2, 6, 10), torch.tensor([6, 5])),
    }
    with torch.no_grad():
        before, lengths = fusion(streams)
        fusion.out_proj["muq"].bias.add_(1.0)  # moves the MuQ latents only
        after, _ = fusion(streams)
    assert before.shape == (2, 1 + 6 + 1 + 5, 16) and lengths.tolist() == [13, 12]
    torch.testing.assert_close(after[:, 1:4], before[:, 1:4])  # W2V-BERT's latents: unchanged
    torch.testing.assert_close(after[:, 4:7], before[:, 4:7] + 1.0)  # MuQ's: shifted by its own projection
    torch.testing.assert_close(after[:, 7:], before[:, 7:])


@pytest.mark.parametrize("name", ["tiny-alarm-ca", "tiny-alarm-p", "tiny-al-whisper-r"])
def test_audio_boundaries_are_trainable_and_saved(name):
    """Officially ``audio_start_emb`` / ``audio_end_emb`` train in every stage, fusion stages included."""
    model = build_model(name)
    assert model.audio_boundaries.requires_grad and model.audio_boundaries.shape[0] == 2
    assert "audio_boundaries" in model.trainable_state_dict()


def _memory_masks(memory_mask):
    """The memory padding mask each conditional stream's cross-attention layer receives."""
    config = FusionConfig(
        type="cross_attention",
        conditional=("w2vbert", "muq"),
        hidden_size=8,
        ffn_size=16,
        num_heads=2,
        memory_mask=memory_mask,
    )
    fusion = CrossAttentionFusion(config, {"whisper": 6, "w2vbert": 5, "muq": 4}, 8).eval()
    seen = {}

    def keep(name):
        def hook(_module, _args, kwargs):
            seen[name] = kwargs["memory_key_padding_mask"].clone()

        return hook

    for name in config.conditional:
        fusion.blocks[name][0].register_forward_pre_hook(keep(name), with_kwargs=True)
    # Each conditional stream is a frame longer or shorter than Whisper's, as at 25 Hz.
    streams = {
        "whisper": (torch.randn(2, 6, 6), torch.tensor([6, 3])),
        "w2vbert": (torch.randn(2, 7, 5), torch.tensor([7, 4])),
        "muq": (torch.randn(2, 5, 4), torch.tensor([5, 2])),
    }
    with torch.no_grad():
        fusion(streams)
    return seen


def test_official_memory_mask_comes_from_the_whisper_lengths():
    assert FusionConfig().memory_mask == "main"
    assert preset_config("alarm-ca").fusion_config().memory_mask == "main"
    masks = _memory_masks("main")
    # True = padding; every stream's width, Whisper's lengths [6, 3].
    assert masks["w2vbert"].tolist() == [[False] * 6 + [True], [False] * 3 + [True] * 4]
    assert masks["muq"].tolist() == [[False] * 5, [False] * 3 + [True] * 2]


def test_own_memory_mask_uses_each_streams_lengths():
    masks = _memory_masks("own")
    assert masks["w2vbert"].tolist() == [[False] * 7, [False] * 4 + [True] * 3]
    assert masks["muq"].tolist() == [[False] * 5, [False] * 2 + [True] * 3]
    with pytest.raises(ValueError, match="memory_mask"):
        FusionConfig(type="cross_attention", conditional=("muq",), memory_mask="theirs")


def test_a_saved_config_without_memory_mask_loads_the_official_default(tmp_path):
    model = build_model("tiny-alarm-ca")
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["fusion"]["memory_mask"] == "main"
    del saved["fusion"]["memory_mask"]  # a config saved before the setting existed
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = type(model).from_pretrained(tmp_path)
    assert loaded.config.fusion_config().memory_mask == "main" and loaded.fusion.memory_mask == "main"
