"""`alarm train` and `alarm features extract` end to end: outputs, skipped samples with reasons, workers."""

import dataclasses
import json
import logging
import math
import os
import re
import subprocess
import sys

import torch
from safetensors.torch import load_file

from alarm.cli import main
from alarm.corpus.schema import write_jsonl
from alarm.presets import build_model
from alarm.training.data import OVER_TOKEN_LIMIT, UNREADABLE_AUDIO
from alarm.training.report import read_metrics
from alarm.training.synthetic import make_tone_corpus

torch.set_num_threads(1)

PRESET = "tiny-al-sslam-r"


def _corpus(root) -> str:
    """8 usable rows (one whose audio is missing) + 1 over the token limit + 2 validation rows."""
    records = make_tone_corpus(root, 7, num_validation=2, durations=(0.5, 1.0))
    train, validation = records[:7], records[7:]
    missing = dataclasses.replace(train[0], id="tones/missing", audio_path="audio/gone.wav")
    too_long = dataclasses.replace(train[1], id="tones/too-long", response="<think>" + "hm " * 300 + "</think>ok")
    path = os.path.join(root, "mixed.jsonl")
    write_jsonl([*train, missing, too_long, *validation], path)
    return path


def test_train_command_writes_a_complete_run(tmp_path, capsys):
    corpus = _corpus(tmp_path)
    config = tmp_path / "run.json"
    settings = {"preset": PRESET, "learning_rate": 1e-3, "warmup_steps": 1, "max_seq_len": 512, "target_tokens": None}
    config.write_text(json.dumps(settings))
    out = tmp_path / "run"
    code = main(
        ["train", "--config", str(config), "--corpus", corpus, "--audio-root", str(tmp_path), "--output", str(out)]
        + ["--max-steps", "2", "--effective-batch-size", "4", "--micro-batch-size", "2", "--num-workers", "2"]
        + [
            "--eval-every",
            "2",
            "--log-every",
            "1",
            "--num-samples",
            "1",
            "--sample-max-new-tokens",
            "8",
            "--no-progress",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps"] == 2
    assert result["skipped"] == {OVER_TOKEN_LIMIT: 1, UNREADABLE_AUDIO: 1}
    rejects = {json.loads(line)["id"]: json.loads(line)["reason"] for line in open(out / "rejects.jsonl")}
    assert rejects == {"tones/too-long": OVER_TOKEN_LIMIT, "tones/missing": UNREADABLE_AUDIO}
    rows = read_metrics(out / "metrics.csv")
    assert [r["step"] for r in rows] == ["1", "2"]
    assert rows[-1]["val_loss"] and float(rows[-1]["tokens_per_s"]) > 0 and rows[-1]["skipped"] == "2"
    assert int(rows[-1]["samples"]) == 7  # 8 drawn, the unreadable one skipped and counted
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "checkpoints/step-0000002/curves.png").is_file()
    sample = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    assert sample["step"] == 2 and sample["budget_reached"] in (True, False)
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["learning_rate"] == 1e-3 and saved["max_steps"] == 2  # file and flags merged
    build_model(str(out / "final"))  # the final model loads like any saved model


def test_features_extract_then_train_from_the_cache(tmp_path, capsys):
    corpus = _corpus(tmp_path)
    cache = tmp_path / "cache"
    args = ["features", "extract", "--preset", PRESET, "--corpus", corpus, "--audio-root", str(tmp_path)]
    assert main([*args, "--out", str(cache), "--num-workers", "0", "--no-progress"]) == 0
    extracted = json.loads(capsys.readouterr().out)
    assert (extracted["written"], extracted["rejected"]) == (10, 1)  # 9 readable train rows + 2 validation - 1
    assert main([*args, "--out", str(cache), "--num-workers", "0", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["already_cached"] == 10
    code = main(
        ["train", "--preset", PRESET, "--corpus", corpus, "--features", str(cache), "--output", str(tmp_path / "r")]
        + ["--max-steps", "1", "--effective-batch-size", "4", "--micro-batch-size", "4", "--num-workers", "0"]
        + ["--max-seq-len", "512", "--target-tokens", "none", "--no-progress"]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps"] == 1


def test_bad_settings_fail_with_a_message(tmp_path, capsys):
    code = main(["train", "--preset", PRESET, "--corpus", "c", "--output", "o", "--audio-root", ".", "--epochs", "0"])
    assert code == 2
    assert "epochs must be positive" in capsys.readouterr().err


def test_bf16_autocast_with_bf16_frozen_parts_runs_in_its_own_process(tmp_path):
    """The GPU recipe's precision (bf16 autocast + bf16 frozen parts) on CPU autocast.

    A subprocess: accelerate's precision is process-wide, the other tests run in fp32.
    """
    corpus = _corpus(tmp_path)
    out = tmp_path / "run"
    args = ["train", "--preset", PRESET, "--corpus", corpus, "--audio-root", str(tmp_path), "--output", str(out)]
    args += ["--max-steps", "2", "--effective-batch-size", "4", "--micro-batch-size", "2", "--num-workers", "0"]
    args += ["--max-seq-len", "512", "--mixed-precision", "bf16", "--frozen-dtype", "bfloat16", "--log-every", "1"]
    args += ["--eval-every", "2", "--num-samples", "1", "--sample-max-new-tokens", "4", "--no-progress"]
    args += ["--target-tokens", "none"]  # synthetic targets are a sentence
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "alarm.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_metrics(out / "metrics.csv")
    assert [r["step"] for r in rows] == ["1", "2"]
    assert all(math.isfinite(float(r[k])) and float(r[k]) > 0 for r in rows for k in ("loss", "grad_norm"))
    assert math.isfinite(float(rows[-1]["val_loss"]))
    saved = load_file(out / "final/model.safetensors")
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {torch.float32}


def _spoken_corpus(root) -> str:
    """Two tone rows and a HeySQuAD-shaped row as the official corpus writes it (passage as text)."""
    tones = make_tone_corpus(root, 2, num_validation=0, durations=(0.5,))
    question = "Where does Stella keep her bicycle?"
    spoken = dataclasses.replace(
        tones[0],
        id="heysquad_human/train/q1/context",
        dataset="heysquad_human",
        category="instruction",
        metadata=question,
        prompt="Stella lives in Paris and works at a bakery.",
        response="<think>\nThe passage does not say.\n</think>\n\nIt is not stated.",
        provenance={"special_case": "spoken_query", "spoken_query_text": "context"},
    )
    path = os.path.join(root, "spoken.jsonl")
    write_jsonl([*tones, spoken], path)
    return path


def _preview(tmp_path, capsys, *flags):
    args = ["train", "--preset", PRESET, "--corpus", _spoken_corpus(tmp_path), "--audio-root", str(tmp_path)]
    assert main([*args, "--preview", "5", *flags]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_preview_shows_rows_as_the_rlm_reads_them_under_the_official_defaults(tmp_path, capsys):
    rows = _preview(tmp_path, capsys)
    # the tone rows' targets are under 100 tokens: skipped; the spoken-query row is not length-checked
    (row,) = rows
    assert row["id"] == "heysquad_human/train/q1/context" and set(row) >= {"input", "target"}
    assert re.search(r"<\|audio:\d+\|>Stella lives in Paris", row["input"])  # one marker, then the passage
    question_words = {"where", "keep", "her", "bicycle"}
    assert not question_words & set(re.findall(r"[a-z]+", row["input"].lower()))  # heard only as audio
    assert "system" not in row["input"]  # no system prompt in training rows
    assert row["target"] == "The passage does not say.\n</think>\n\nIt is not stated."  # no EOS trained
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_preview_names_the_rows_the_filters_left_out(tmp_path, capsys, caplog):
    with caplog.at_level(logging.WARNING, logger="alarm.training.preview"):
        _preview(tmp_path, capsys)
    # the two tone rows, under the 100-token floor, are named with their reason and the way out
    (message,) = [r.getMessage() for r in caplog.records if r.name == "alarm.training.preview"]
    assert "2 of the first 3 rows left out" in message and "target_length 2" in message
    assert "--target-tokens none" in message


def test_preview_shows_our_settings_when_asked(tmp_path, capsys):
    rows = _preview(tmp_path, capsys, "--target-tokens", "none", "--train-eos", "--system-prompt", "model")
    assert len(rows) == 3
    tokenizer = build_model(PRESET).tokenizer
    assert all(r["target"].endswith(tokenizer.eos_token) for r in rows)
    assert all("<|im_start|>system" in r["input"] for r in rows)
