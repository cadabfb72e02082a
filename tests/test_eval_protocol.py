"""`alarm eval --protocol official` and `--official-texts`: every protocol value reaches the
model and the run file; the official texts are the ones asked; ours stays the default."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import alarm.generation as generation
from alarm.cli import main
from alarm.evaluation import protocol
from alarm.evaluation.answers import alarm_extract
from alarm.evaluation.benchmarks.base import Item
from alarm.evaluation.scoring import choose
from alarm.generation import SAMPLING_DEFAULTS, GenerationConfig, GenerationOutput, generate, model_sampling_defaults
from alarm.presets import build_model
from tests.fixtures.official_checkout import make_checkout
from tests.test_eval_support import build_airbench, build_mmsu
from tests.test_generation import ScriptedLM, tok  # noqa: F401 (fixture)

PRESET = "tiny-al-whisper-r"


def test_official_protocol_values():
    official = protocol.get("official")
    assert official.sampling and official.second_pass == "full" and official.max_model_len == 16384
    assert official.extraction == "alarm" and official.airbench_none_is_a
    assert official.crop_seconds("airbench") == 60.0 and official.crop_seconds("mmau") is None
    assert official.audio_rate == 16000
    ours = protocol.get("ours")
    assert (ours.sampling, ours.second_pass, ours.extraction, ours.audio_rate) == (False, "remaining", "strict", None)
    with pytest.raises(ValueError, match="protocol is one of"):
        protocol.get("paper")


def test_model_sampling_defaults_read_the_rlms_generation_config():
    model = build_model(PRESET)
    lm = model.language_model
    assert model_sampling_defaults(lm) == SAMPLING_DEFAULTS  # no sampling values set: vLLM's defaults
    lm.generation_config.temperature, lm.generation_config.top_p, lm.generation_config.top_k = 0.6, 0.95, 20
    got = model_sampling_defaults(lm)
    assert (got["temperature"], got["top_p"], got["top_k"], got["min_p"], got["repetition_penalty"]) == (
        0.6,
        0.95,
        20,
        0.0,
        1.0,
    )
    config = protocol.generation_config(protocol.OFFICIAL, got, seed=7)
    assert config.do_sample and config.seed == 7 and config.temperature == 0.6 and config.top_k == 20
    assert (config.max_new_tokens, config.thinking_budget, config.second_pass) == (16384, 8192, "full")


def test_second_pass_full_gets_max_new_tokens_capped_by_the_model_length(tok):  # noqa: F811
    eos = tok.eos_token
    written = "thinking and thinking"
    budget = len(tok(written, add_special_tokens=False).input_ids)
    prompts = torch.randn(2, 5, 4), torch.tensor([[0, 0, 0, 1, 1], [1, 1, 1, 1, 1]])  # prompt lengths 2 and 5
    long = " ".join(["word"] * 40) + eos

    def run(**settings):
        lm = ScriptedLM(tok, [[written, written], [long, long]])
        out = generate(lm, tok, *prompts, GenerationConfig(max_new_tokens=30, thinking_budget=budget, **settings))
        return lm, out

    lm, _ = run()
    assert lm.calls[1]["max_new_tokens"] == 30 - budget  # ours: what is left
    lm, out = run(second_pass="full")
    assert lm.calls[1]["max_new_tokens"] == 30  # official: the whole max_tokens again
    assert all(len(o.token_ids) > 30 for o in out)
    closing = tok(GenerationConfig().closing, add_special_tokens=False).input_ids
    lm, out = run(second_pass="full", max_model_len=2 + budget + len(closing) + 12)
    # sample 0 (prompt 2) may write 12 more; sample 1 (prompt 5) only 9: each is cut to its own cap
    assert [len(o.token_ids) - budget - len(closing) for o in out] == [12, 9]
    assert not any(o.finished for o in out)


def test_a_closing_text_holding_think_end_is_used_as_is(tok):  # noqa: F811
    closing_text = "\n\nSTAND-IN closing.\n</think>\n\n"
    lm = ScriptedLM(tok, [["hmm hmm"], ["B" + tok.eos_token]])
    budget = len(tok("hmm hmm", add_special_tokens=False).input_ids)
    config = GenerationConfig(max_new_tokens=40, thinking_budget=budget, closing_text=closing_text)
    out = generate(lm, tok, torch.randn(1, 3, 4), torch.ones(1, 3, dtype=torch.long), config)[0]
    assert out.text.count("</think>") == 1 and out.text.endswith("</think>\n\nB")
    assert out.budget_reached and out.num_reasoning_tokens == budget and out.answer == "B"


def _budgeted_run(tokenizer, passes, **settings):
    """budgeted_generate over scripted passes of ids; returns the ids the second pass was fed and the output."""
    fed = []

    def decode(prompts, max_new_tokens):
        return passes.pop(0)

    def embed_tokens(ids):
        fed.append(ids.tolist())
        return torch.zeros(len(ids), 4)

    out = generation.budgeted_generate(
        decode, embed_tokens, tokenizer, [torch.zeros(3, 4)], GenerationConfig(**settings)
    )
    return fed, out[0]


def test_official_continuation_retokenizes_the_first_pass_text_with_the_closing(tok):  # noqa: F811
    # The budget cuts the first pass inside a two-byte character: its text has a replacement
    # character where the ids have half a character, so re-tokenizing gives other ids.
    first = tok("ok ", add_special_tokens=False).input_ids + tok("é", add_special_tokens=False).input_ids[:1]
    second = tok("A", add_special_tokens=False).input_ids + [tok.eos_token_id]
    settings = {"max_new_tokens": 50, "thinking_budget": len(first)}
    closing_text = GenerationConfig().closing
    closing = tok(closing_text, add_special_tokens=False).input_ids

    fed, ours = _budgeted_run(tok, [[first], [second]], **settings)
    assert fed == [first + closing] and ours.token_ids == first + closing + second
    fed, official = _budgeted_run(tok, [[first], [second]], **settings, continue_from="text")
    retokenized = tok(tok.decode(first) + closing_text, add_special_tokens=False).input_ids
    assert fed == [retokenized] and retokenized != first + closing
    assert official.token_ids == retokenized + second and official.answer == "A"
    assert official.num_reasoning_tokens == ours.num_reasoning_tokens == len(first)
    assert protocol.generation_config(protocol.OFFICIAL, {}, seed=0).continue_from == "text"
    assert protocol.generation_config(protocol.OURS, {}, seed=None).continue_from == "ids"
    with pytest.raises(ValueError, match="continue_from"):
        GenerationConfig(continue_from="tokens")


def test_official_protocol_stops_at_im_end_and_endoftext(tok):  # noqa: F811
    endoftext = tok.convert_tokens_to_ids("<|endoftext|>")
    row = tok("A", add_special_tokens=False).input_ids + [endoftext] + tok("more", add_special_tokens=False).input_ids
    official = protocol.generation_config(protocol.OFFICIAL, {}, seed=0, max_new_tokens=20, thinking_budget=-1)
    assert generation.stop_ids(tok, official) == [tok.eos_token_id, endoftext]
    _, out = _budgeted_run(tok, [[row]], **{**official.__dict__, "do_sample": False})
    assert out.finished and out.text == "A"
    _, out = _budgeted_run(tok, [[row]], max_new_tokens=20)  # ours: <|endoftext|> does not end the answer
    assert not out.finished and out.text.endswith("more")

    class StopSpy(ScriptedLM):
        def generate(self, *args, eos_token_id=None, **kwargs):
            self.calls.append({"eos_token_id": eos_token_id})
            return super().generate(*args, **kwargs)

    lm = StopSpy(tok, [["A" + tok.eos_token]])
    generate(lm, tok, torch.randn(1, 3, 4), torch.ones(1, 3, dtype=torch.long), official)
    assert lm.calls[0]["eos_token_id"] == [tok.eos_token_id, endoftext]  # transformers stops at both too


def test_seeded_sampling_is_reproducible():
    model = build_model(PRESET)
    prompts = torch.randn(1, 4, model.language_model.config.hidden_size)
    mask = torch.ones(1, 4, dtype=torch.long)

    def sample(seed):
        config = GenerationConfig(max_new_tokens=12, do_sample=True, temperature=1.5, top_k=0, top_p=1.0, seed=seed)
        return generate(model.language_model, model.tokenizer, prompts, mask, config)[0].token_ids

    assert sample(1) == sample(1)
    assert any(sample(1) != sample(s) for s in (2, 3, 4))


def test_official_extraction_reads_numbers_as_option_text_and_airbench_none_as_a():
    assert alarm_extract("<answer>4</answer>", ["1", "2", "3", "4"]).index == 3  # out of range: "4" is option text
    assert alarm_extract("<answer>9</answer>", ["a", "b"]).index is None
    assert alarm_extract("no tags at all", ["a", "b"]).index == 0  # not a number: option 0
    entry = {"choice_a": "Male", "choice_b": "None"}
    item = Item("1", None, "Q?", ("Male", "None"), ("A", "B"), "Male", {}, entry)  # type: ignore[arg-type]
    assert choose(item, "<answer>1</answer>", "alarm").index == 1
    assert choose(item, "<answer>1</answer>", "alarm", none_is_first=True).index == 0


class _Spy:
    """Stands in for alarm.generation.answer: records what the engine was asked."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, waveforms, prompts, config, **chat):
        self.calls.append({"waveforms": waveforms, "prompts": prompts, "config": config, "chat": chat})
        return [
            GenerationOutput("<think>x</think><answer>1</answer>", "x", "<answer>1</answer>", [1], 1, False, True)
            for _ in prompts
        ]


def _airbench_long(root):
    meta = build_airbench(root)
    clip = meta.parent / "Speaker_Gender_Recognition_VoxCeleb1" / "id1.wav"
    sf.write(clip, np.full(44_100 * 61, 0.01, dtype=np.float32), 44_100)  # 61 s at 44.1 kHz
    return root


def _eval(tmp_path, bench, data, *extra):
    out = tmp_path / f"out-{bench}"
    args = ["eval", bench, "--data", str(data), "--preset", PRESET, "--out", str(out), "--no-progress"]
    args += ["--max-new-tokens", "8", "--thinking-budget", "4", "--limit", "3", *extra]
    assert main(args) == 0
    return out / bench


def test_official_protocol_and_texts_reach_the_model_and_run_json(tmp_path, monkeypatch, capsys):
    spy = _Spy()
    monkeypatch.setattr(generation, "answer", spy)
    checkout = make_checkout(tmp_path / "ALARM", git=True)
    data = _airbench_long(tmp_path / "AIR")
    run = _eval(tmp_path, "airbench", data, "--protocol", "official", "--seed", "5", "--official-texts", str(checkout))
    call = spy.calls[0]
    clip = call["waveforms"][0]
    assert clip.sample_rate == 16000 and len(clip.samples) == 60 * 16000  # resampled to 16 kHz, cropped to 60 s
    assert call["chat"]["system"].startswith("STAND-IN system.")
    assert call["prompts"][0] == "STAND-IN instruction.\nQ: Question 1?\nO: [opt 0] Male\n[opt 1] Female\nend\n"
    config = call["config"]
    assert config.do_sample and config.seed == 5 and config.second_pass == "full" and config.max_model_len == 16384
    assert config.closing_text == "\n\nSTAND-IN closing.\n</think>\n\n"
    settings = json.loads((run / "run.json").read_text())
    assert settings["protocol"]["name"] == "official" and settings["protocol"]["airbench_crop_s"] == 60.0
    assert settings["protocol"]["audio_rate"] == 16000 and settings["extraction"] == "alarm"
    decoding = settings["decoding"]
    assert decoding["do_sample"] and decoding["seed"] == 5 and decoding["second_pass"] == "full"
    assert decoding["continue_from"] == "text" and decoding["stop_tokens"] == ["<|im_end|>", "<|endoftext|>"]
    assert config.continue_from == "text" and config.stop_tokens == ("<|im_end|>", "<|endoftext|>")
    assert {"temperature", "top_p", "top_k", "min_p", "repetition_penalty"} <= set(decoding)
    texts = settings["texts"]
    assert texts["source"] == "official" and len(texts["commit"]) == 40
    assert {"eval.system", "eval.instruction", "thinking.closing", "ensemble.header"} <= set(texts["texts"])
    # every answer is <answer>1</answer>: option 1 under the official extraction
    assert json.loads(capsys.readouterr().out)["total"] == 3


def test_ours_stays_the_default_and_is_recorded(tmp_path, monkeypatch, capsys):
    spy = _Spy()
    monkeypatch.setattr(generation, "answer", spy)
    monkeypatch.delenv("ALARM_OFFICIAL_TEXTS", raising=False)
    run = _eval(tmp_path, "airbench", _airbench_long(tmp_path / "AIR"))
    call = spy.calls[0]
    assert call["waveforms"][0].sample_rate == 44_100 and len(call["waveforms"][0].samples) == 61 * 44_100
    assert not call["config"].do_sample and call["config"].second_pass == "remaining"
    assert "STAND-IN" not in call["chat"]["system"]
    settings = json.loads((run / "run.json").read_text())
    assert settings["protocol"]["name"] == "ours" and settings["texts"] == {"source": "ours"}
    assert settings["extraction"] == "strict" and settings["decoding"] == {
        "do_sample": False,
        "second_pass": "remaining",
        "max_model_len": None,
        "continue_from": "ids",
        "stop_tokens": [],
    }
    capsys.readouterr()


def test_official_texts_from_the_environment_and_a_broken_checkout_fails_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(generation, "answer", _Spy())
    checkout = make_checkout(tmp_path / "ALARM")
    monkeypatch.setenv("ALARM_OFFICIAL_TEXTS", str(checkout))
    data = build_mmsu(tmp_path / "MMSU")
    run = _eval(tmp_path, "mmsu", data)
    assert json.loads((run / "run.json").read_text())["texts"]["source"] == "official"
    (checkout / "generate_vllm_mcqa.py").unlink()
    args = ["eval", "mmsu", "--data", str(data), "--preset", PRESET, "--out", str(tmp_path / "o2"), "--no-progress"]
    assert main(args) == 2
    assert "generate_vllm_mcqa.py: missing" in capsys.readouterr().err


def test_official_protocol_runs_on_the_tiny_model_reproducibly(tmp_path, capsys):
    data = build_mmsu(tmp_path / "MMSU")
    first = _eval(tmp_path / "a", "mmsu", data, "--protocol", "official", "--seed", "3")
    second = _eval(tmp_path / "b", "mmsu", data, "--protocol", "official", "--seed", "3")
    read = [
        [json.loads(line)["output"] for line in (r / "predictions.jsonl").read_text().splitlines()]
        for r in (first, second)
    ]
    assert read[0] == read[1] and len(read[0]) == 3
    capsys.readouterr()


def test_airbench_null_choices_become_none_options_under_the_official_protocol(tmp_path):
    # official dataset_collection/airbench.py: str(choice) of every choice_<x> key, so a null
    # choice is an option reading "None"; ours drops it (and letters skip it)
    from alarm.evaluation.benchmarks import get_benchmark
    from alarm.evaluation.benchmarks.base import load_items
    from tests.test_eval_support import SPEAKER, air_entry

    entries = [
        air_entry(1, *SPEAKER, "id1.wav", {"a": "Male", "b": "Female", "c": None}, "Male"),
        air_entry(2, *SPEAKER, "id2.wav", {"a": "Male", "b": "Female"}, "Female"),
    ]
    build_airbench(tmp_path, entries, audio=False)
    spec = get_benchmark("airbench")
    ours = load_items(spec, tmp_path, check_audio=False)
    official = load_items(spec, tmp_path, check_audio=False, null_choice=protocol.OFFICIAL.null_choice("airbench"))
    assert (ours[0].choices, ours[0].letters) == (("Male", "Female"), ("A", "B"))
    assert (official[0].choices, official[0].letters) == (("Male", "Female", "None"), ("A", "B", "C"))
    assert official[0].record["choice_c"] is None  # the entry itself stays as released
    assert official[1].choices == ours[1].choices  # absent keys stay absent
    assert protocol.OURS.null_choice("airbench") is None and protocol.OFFICIAL.null_choice("mmsu") is None
    assert protocol.OFFICIAL.settings()["airbench_null_choice"] == "None"  # run.json records it


def _score_airbench_with_a_null_choice(tmp_path, capsys, predictions_dir):
    """``(overall, argv)``: ``overall(*flags)`` runs ``alarm eval score airbench`` (``argv``) on two
    answers by option number, one naming item 1's null choice C, in ``predictions_dir/predictions.jsonl``."""
    from tests.test_eval_support import SPEAKER, air_entry

    entries = [
        air_entry(1, *SPEAKER, "id1.wav", {"a": "Male", "b": "Female", "c": None}, "Male"),
        air_entry(2, *SPEAKER, "id2.wav", {"a": "Male", "b": "Female"}, "Female"),
    ]
    build_airbench(tmp_path / "AIR", entries, audio=False)
    predictions_dir.mkdir(parents=True, exist_ok=True)
    predictions = predictions_dir / "predictions.jsonl"
    rows = [{"id": "1", "output": "<answer>2</answer>"}, {"id": "2", "output": "<answer>1</answer>"}]
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    base = ["eval", "score", "airbench", "--predictions", str(predictions), "--data", str(tmp_path / "AIR")]

    def overall(*extra):
        assert main([*base, *extra]) == 0
        return json.loads(capsys.readouterr().out)["overall"]

    return overall, base


def test_eval_score_official_protocol_applies_the_airbench_none_rule(tmp_path, capsys):
    overall, _ = _score_airbench_with_a_null_choice(tmp_path, capsys, tmp_path)
    # option 2 of item 1 is the "None" option, which the official scorer reads as choice A (Male)
    assert overall("--protocol", "official") == 100.0
    # the same extraction without the official AIR-Bench rules: item 1 has no option 2
    assert overall("--protocol", "ours", "--extraction", "alarm") == 50.0


def test_eval_score_takes_the_protocol_from_the_runs_run_json_and_the_flag_wins(tmp_path, capsys):
    run = tmp_path / "out" / "airbench"
    overall, base = _score_airbench_with_a_null_choice(tmp_path, capsys, run)
    assert overall() == 0.0  # no run.json: ours (strict extraction reads no letter in "<answer>2</answer>")
    (run / "run.json").write_text(json.dumps({"protocol": protocol.OFFICIAL.settings(), "limit": None}))
    assert overall() == 100.0  # the run was made under the official protocol: scored as it was
    assert overall("--protocol", "ours") == 0.0  # an explicit flag wins
    (run / "run.json").write_text(json.dumps({"protocol": {"name": "paper"}}))
    assert main(base) == 2 and "protocol is one of" in capsys.readouterr().err
