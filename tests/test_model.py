"""The ALM: token rates, batch invariance, frozen parts, splicing, labels, persistence."""

import os

import pytest
import torch

from alarm.chat import IGNORE_INDEX, AudioSlot, build_example, collate
from alarm.modeling.inputs import AudioBatch
from alarm.modeling.model import FROZEN_PREFIXES, WEIGHTS_NAME, AlarmForConditionalGeneration
from alarm.presets import build_model, list_presets, load_preset, preset_config
from tests.helpers import chirp_wave, noise_wave

torch.set_num_threads(1)

TINY = [p for p in list_presets() if p.startswith("tiny-")]
_CACHE: dict[str, object] = {}


def tiny(name: str):
    if name not in _CACHE:
        _CACHE[name] = build_model(name)
    return _CACHE[name]


def _batch(model, waves):
    return AudioBatch.from_waveforms(waves, model.sample_rates)


@pytest.mark.parametrize("name", TINY)
def test_token_rate(name):
    model = tiny(name)
    for seconds in (1.0, 4.0, 7.3):
        audio = _batch(model, [chirp_wave(seconds)])
        tokens = int(model.audio_token_counts(audio.lengths)[0])
        positions = int(model.audio_embeddings(audio)[1].sum())
        assert positions == int(model.audio_lengths(audio.lengths)[0])
        if name == "tiny-alarm-e":
            assert abs(tokens - 50 * seconds) <= 2
        elif name == "tiny-alarm-p":
            whisper = tiny("tiny-al-whisper-r")
            assert tokens == 60 + int(whisper.audio_token_counts(_batch(whisper, [chirp_wave(seconds)]).lengths)[0])
        else:
            assert abs(tokens - 25 * seconds) <= 1, (name, seconds, tokens)


@pytest.mark.parametrize("name", TINY)
def test_padded_batch_matches_alone(name):
    model = build_model(name)
    # The released cross-attention masks every conditional stream with Whisper's lengths
    # (memory_mask "main"), so a stream one frame shorter than Whisper's sees one padding
    # frame in a batch: batch invariance holds for each stream's own lengths.
    for module in model.modules():
        if hasattr(module, "memory_mask"):
            module.memory_mask = "own"
    waves = [noise_wave(s, seed=i) for i, s in enumerate((1.3, 3.0, 2.2))]
    full, valid = model.audio_embeddings(_batch(model, waves))
    for i, w in enumerate(waves):
        alone, alone_valid = model.audio_embeddings(_batch(model, [w]))
        n = int(alone_valid.sum())
        assert int(valid[i].sum()) == n
        torch.testing.assert_close(full[i][valid[i]], alone[0][:n], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", [n for n in TINY if n != "tiny-alarm-e"])
def test_only_trainable_parts_require_grad(name):
    model = tiny(name)
    for key, p in model.named_parameters():
        assert p.requires_grad == (not key.startswith(FROZEN_PREFIXES)), key
    model.train()
    assert not model.language_model.training and all(not e.training for e in model.encoders.values())
    assert model.branches.training
    model.eval()


def test_text_only_logits_bit_identical_to_bare_rlm():
    model = tiny("tiny-alarm-ca")
    example = build_example(model.tokenizer, ["What is 2 + 2?"], system="Be brief.")
    batch = collate([example], model.tokenizer.pad_token_id)
    with torch.no_grad():
        ours = model(batch.input_ids, batch.attention_mask).logits
        bare = model.language_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert torch.equal(ours, bare)


def test_loss_covers_target_tokens_only():
    model = tiny("tiny-al-whisper-r")
    audio = _batch(model, [noise_wave(1.0), noise_wave(2.0, seed=1)])
    slots = model.audio_slots(audio.lengths)
    examples = [
        build_example(model.tokenizer, model.user_parts(q, s), system="sys", target=t, eos=True)
        for q, s, t in zip(
            ["Describe it.", "Loud?"], slots, ["<think>\nnoise</think>\n\nNoise.", "<think>\nyes</think>\n\nYes."]
        )
    ]
    target_ids = model.tokenizer("noise</think>\n\nNoise.", add_special_tokens=False).input_ids + [
        model.tokenizer.eos_token_id
    ]
    assert [t for t in examples[0].labels if t != IGNORE_INDEX] == target_ids
    batch = collate(examples, model.tokenizer.pad_token_id)
    out = model(batch.input_ids, batch.attention_mask, audio=audio, labels=batch.labels)
    logits, labels = out.logits[:, :-1], batch.labels[:, 1:]
    keep = labels != IGNORE_INDEX
    manual = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, manual)
    # Changing what the prompt says changes logits but no prompt position is ever a label.
    assert not keep[batch.input_ids[:, 1:] == model.audio_token_id].any()
    out.loss.backward()
    assert model.audio_boundaries.grad is not None and model.branches["whisper"].layer_average.weights.grad is not None
    assert all(p.grad is None for p in model.language_model.parameters())
    model.zero_grad(set_to_none=True)


def test_placeholder_count_mismatch_is_loud():
    model = tiny("tiny-al-whisper-r")
    audio = _batch(model, [noise_wave(1.0)])
    wrong = [AudioSlot(int(model.audio_lengths(audio.lengths)[0]) + 1), "hi"]
    batch = collate([build_example(model.tokenizer, wrong)], model.tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="disagree"):
        model(batch.input_ids, batch.attention_mask, audio=audio)


@pytest.mark.parametrize("name", ["tiny-alarm-ca", "tiny-alarm-p"])
def test_save_and_load_round_trip(tmp_path, name):
    model = tiny(name)
    with torch.no_grad():  # make trainable weights differ from a fresh init
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01)
    model.save_pretrained(tmp_path)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(v.numel() for k, v in model.trainable_state_dict().items()) - trainable
    size = os.path.getsize(tmp_path / WEIGHTS_NAME)
    assert 4 * (trainable + buffers) <= size <= 4 * (trainable + buffers) + 64 * 1024  # fp32 + safetensors header
    loaded = AlarmForConditionalGeneration.from_pretrained(tmp_path)
    audio = _batch(model, [chirp_wave(2.0)])
    slots = model.audio_slots(audio.lengths)
    batch = collate([build_example(model.tokenizer, model.user_parts("What?", slots[0]))], model.tokenizer.pad_token_id)
    with torch.no_grad():
        a = model(batch.input_ids, batch.attention_mask, audio=audio).logits
        b = loaded(batch.input_ids, batch.attention_mask, audio=audio).logits
    assert torch.equal(a, b)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.sub_(0.01)


def test_paper_presets_mirror_their_tiny_twins():
    for name in list_presets():
        if name.startswith(("tiny-", "cpu-")):  # cpu-*: real packaged weights (tests/test_packaged.py)
            continue
        paper, small = load_preset(name), load_preset("tiny-" + name)
        if "ensemble" in paper:
            assert ["tiny-" + m for m in paper["ensemble"]["members"]] == small["ensemble"]["members"]
            continue
        big, little = preset_config(name), preset_config("tiny-" + name)
        assert big.text_model == "Qwen/Qwen3-4B-Thinking-2507" and little.text_model is None
        assert [(s.kind, len(s.layers)) for s in big.encoder_specs()] == [
            (s.kind, len(s.layers)) for s in little.encoder_specs()
        ]
        assert all(s.pretrained for s in big.encoder_specs())
        assert {k: v["adapter"] for k, v in big.branches.items()} == {
            k: v["adapter"] for k, v in little.branches.items()
        }
        for key in ("type", "main", "conditional", "num_latents", "layers_per_encoder"):
            assert big.fusion[key] == little.fusion[key]


def test_unknown_preset_keys_are_rejected():
    from alarm.modeling.configuration import AlarmConfig

    data = load_preset("tiny-al-whisper-r")
    with pytest.raises(ValueError, match="unknown preset keys"):
        AlarmConfig.from_preset_dict({**data, "fusoin": {}})
    with pytest.raises(ValueError, match="unknown fusion options"):
        AlarmConfig.from_preset_dict({**data, "fusion": {"type": "none", "main": "whisper", "heads": 3}})
    with pytest.raises(ValueError, match="unknown branch config keys"):
        AlarmConfig.from_preset_dict({**data, "branches": {"whisper": {"adaptor": "conv"}}})
    with pytest.raises(KeyError, match="unknown preset"):
        load_preset("alarm-x")


def test_rlm_and_tokenizer_load_from_a_directory(tmp_path):
    """The real-id path (AutoModelForCausalLM / AutoTokenizer) on a tiny RLM saved to disk."""
    from alarm.modeling.configuration import AlarmConfig
    from alarm.modeling.tokenizer import tiny_tokenizer

    reference = tiny("tiny-al-whisper-r")
    reference.language_model.save_pretrained(tmp_path / "rlm")
    tiny_tokenizer().save_pretrained(tmp_path / "rlm")
    data = {k: v for k, v in load_preset("tiny-al-whisper-r").items() if k not in ("text_config", "tokenizer_name")}
    model = AlarmForConditionalGeneration(AlarmConfig.from_preset_dict({**data, "text_model": str(tmp_path / "rlm")}))
    assert model.tokenizer.get_vocab() == reference.tokenizer.get_vocab()
    assert model.audio_token_id == reference.audio_token_id
    example = build_example(model.tokenizer, ["Hello there"], system="S")
    ids = collate([example], model.tokenizer.pad_token_id).input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)


def test_ensemble_of_saved_members_shares_frozen_parts_and_matches_preset(tmp_path):
    from alarm.presets import build_ensemble

    reference = tiny("tiny-alarm-e")
    for member, name in zip(reference.members, ("ca", "whisper")):
        member.save_pretrained(tmp_path / name)
    ensemble = build_ensemble([str(tmp_path / "ca"), str(tmp_path / "whisper")])
    ca, wh = ensemble.members
    assert wh.language_model is ca.language_model and wh.encoders["whisper"] is ca.encoders["whisper"]
    audio = _batch(ensemble, [chirp_wave(1.5)])
    with torch.no_grad():
        ours, valid = ensemble.audio_embeddings(audio)
        theirs, valid_ref = reference.audio_embeddings(audio)
    assert torch.equal(valid, valid_ref) and torch.equal(ours, theirs)
    parts = ensemble.user_parts("Q?", ensemble.audio_slots(audio.lengths)[0])
    assert [type(p).__name__ for p in parts] == ["str", "str", "AudioSlot", "str", "AudioSlot", "str"]
    assert parts[-1].endswith("Q?")


@pytest.mark.parametrize("stride", [2, 4])
def test_conv_adapter_divides_the_rate_by_its_stride_whatever_the_padding(stride):
    from alarm.modeling.adapters import BranchConfig, ConvAdapter

    torch.manual_seed(0)
    adapter = ConvAdapter(6, 8, norm="layer", stride=stride).eval()
    lengths = torch.tensor([13, 4, 9])
    x = torch.randn(3, 16, 6)
    y, out_lengths = adapter(x, lengths)
    assert out_lengths.tolist() == [-(-n // stride) for n in lengths.tolist()] and y.shape[1] == 16 // stride
    for i, n in enumerate(lengths.tolist()):
        alone, _ = adapter(x[i : i + 1, :n], lengths[i : i + 1])
        torch.testing.assert_close(y[i, : int(out_lengths[i])], alone[0])
    with pytest.raises(ValueError, match="even"):
        ConvAdapter(6, 8, stride=3)
    with pytest.raises(ValueError, match="conv adapter's"):
        BranchConfig(adapter="mlp", stride=4)
