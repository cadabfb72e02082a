"""End to end on a tiny preset: answers, scores, plots and official files; interrupted runs resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from alarm.cli import main
from alarm.evaluation.benchmarks import get_benchmark, load_items
from alarm.evaluation.evaluate import evaluate
from alarm.evaluation.runner import PredictionStore, run_inference
from alarm.generation import GenerationConfig
from alarm.presets import build_model
from tests.test_eval_support import MMAU_ENTRIES, build_mmau, build_mmsu

PRESET = "tiny-al-whisper-r"
TINY = GenerationConfig(max_new_tokens=8, thinking_budget=4)


@pytest.fixture(scope="module")
def model():
    return build_model(PRESET)


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_cli_end_to_end_writes_everything_and_reruns_as_a_no_op(tmp_path, capsys):
    data, out = tmp_path / "MMSU", tmp_path / "out"
    build_mmsu(data)
    args = [
        "eval",
        "mmsu",
        "--data",
        str(data),
        "--preset",
        PRESET,
        "--out",
        str(out),
        "--max-new-tokens",
        "8",
        "--thinking-budget",
        "4",
        "--batch-size",
        "2",
        "--limit",
        "3",
        "--no-progress",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["generated"], summary["resumed"], summary["total"]) == (3, 0, 3)
    run = out / "mmsu"
    predictions = _lines(run / "predictions.jsonl")
    assert [p["id"] for p in predictions] == ["s1", "s2", "s3"]
    assert all(p["style"] == "alarm" and p["reasoning_tokens"] <= 4 for p in predictions)
    assert all(p["engine"] == "transformers" for p in predictions)
    scores = json.loads((run / "scores.json").read_text())
    assert scores["scores"]["overall"]["total"] == 3 and scores["paper_model"] == "AL-Whisper-R"
    assert scores["settings"]["thinking_budget"] == 4 and scores["settings"]["limit"] == 3
    for name in ("scores.md", "categories.png", "mmsu_predictions.jsonl", "mmsu_predictions_alarm.json", "run.json"):
        assert (run / name).is_file(), name
    assert (out / "summary.md").is_file() and (out / "summary.png").is_file()
    official = [json.loads(line) for line in (run / "mmsu_predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in official] == ["s1", "s2", "s3"] and all("response" in row for row in official)
    # the same command again: nothing to generate, same predictions
    before = (run / "predictions.jsonl").read_bytes()
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["generated"], again["resumed"]) == (0, 3)
    assert (run / "predictions.jsonl").read_bytes() == before
    # other settings into the same folder are refused
    assert main([*args[:-1], "--max-new-tokens", "16", "--no-progress"]) == 2


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path, model):
    spec = get_benchmark("mmau")
    build_mmau(tmp_path / "data")
    items = load_items(spec, tmp_path / "data")[:5]
    out = tmp_path / "out"
    store = PredictionStore(out / "mmau" / "predictions.jsonl")

    def crash(done: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_inference(model, items, store, TINY, batch_size=2, progress=False, after_batch=crash)
    first = store.path.read_text(encoding="utf-8")
    assert [r["id"] for r in _lines(store.path)] == ["m1", "m2"]
    with open(store.path, "ab") as f:
        f.write(b'{"id": "m3", "output": "torn by a ki')  # a write cut short by a kill
    result, stats = evaluate(
        spec, tmp_path / "data", PRESET, out, config=TINY, batch_size=2, limit=5, progress=False, model=model
    )
    assert (stats.skipped, stats.generated) == (2, 3)
    text = store.path.read_text(encoding="utf-8")
    assert text.startswith(first) and "torn by a ki" not in text
    assert [r["id"] for r in _lines(store.path)] == ["m1", "m2", "m3", "m4", "m5"]
    assert result["scores"]["overall"]["total"] == 5


def test_bad_clip_is_rejected_counted_and_retried(tmp_path, model):
    spec = get_benchmark("mmau")
    build_mmau(tmp_path / "data", MMAU_ENTRIES[:3])
    (tmp_path / "data" / "test-mini-audios" / "m2.wav").write_text("not audio")
    result, stats = evaluate(
        spec, tmp_path / "data", PRESET, tmp_path / "out", config=TINY, progress=False, model=model
    )
    assert (stats.generated, stats.rejected) == (2, 1)
    rejects = _lines(tmp_path / "out" / "mmau" / "rejects.jsonl")
    assert rejects[0]["id"] == "m2" and "not a readable audio file" in rejects[0]["reason"]
    assert {"id": "m2", "status": "missing", "final": ""} in result["scores"]["unparsed"]
    assert result["scores"]["overall"]["total"] == 3


def test_killed_process_resumes(tmp_path, capsys):
    """A real kill -9 in the middle of a run, then the same command to completion."""
    data, out = tmp_path / "data", tmp_path / "out"
    build_mmau(data)
    cmd = [
        sys.executable,
        "-m",
        "alarm.cli",
        "eval",
        "mmau",
        "--data",
        str(data),
        "--preset",
        PRESET,
        "--out",
        str(out),
        "--max-new-tokens",
        "24",
        "--thinking-budget",
        "12",
        "--batch-size",
        "1",
        "--no-progress",
    ]
    predictions = out / "mmau" / "predictions.jsonl"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if predictions.exists() and predictions.read_bytes().count(b"\n") >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    done_before = [r["id"] for r in _lines(predictions)] if predictions.exists() else []
    assert 2 <= len(done_before) < len(MMAU_ENTRIES), "the run was not interrupted mid-way"
    assert main(cmd[3:]) == 0  # the same command, run in this process to completion
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed"] >= len(done_before) and summary["total"] == len(MMAU_ENTRIES)
    ids = [r["id"] for r in _lines(predictions)]
    assert sorted(ids) == sorted(e["id"] for e in MMAU_ENTRIES) and len(ids) == len(set(ids))
    assert ids[: len(done_before)] == done_before


def test_engine_is_built_only_when_there_is_work_and_named_in_each_record(tmp_path, model):
    """A rerun with nothing left does not start the engine (vLLM takes a minute to start)."""
    from alarm.evaluation.runner import TransformersEngine

    spec = get_benchmark("mmau")
    build_mmau(tmp_path / "data", MMAU_ENTRIES[:3])
    items = load_items(spec, tmp_path / "data")
    store = PredictionStore(tmp_path / "predictions.jsonl")
    built: list[TransformersEngine] = []

    def make() -> TransformersEngine:
        built.append(TransformersEngine(model, name="renamed"))
        return built[-1]

    stats = run_inference(model, items, store, TINY, batch_size=2, progress=False, engine=make)
    assert stats.generated == 3 and len(built) == 1  # one engine for all batches
    assert [r["engine"] for r in _lines(store.path)] == ["renamed"] * 3
    again = run_inference(model, items, store, TINY, progress=False, engine=make)
    assert (again.generated, again.skipped, len(built)) == (0, 3, 1)


def test_baseline_conditions_answer_from_text_and_metadata_only(tmp_path, model, monkeypatch):
    """`condition=text` gives the RLM the question alone, `metadata` the item's metadata in the
    audio's place; neither runs the audio path; both are pinned in run.json."""
    from alarm.evaluation.benchmarks.base import BenchmarkError

    entries = [dict(e, metadata=f"a tone number {i}") for i, e in enumerate(MMAU_ENTRIES[:3])]
    build_mmau(tmp_path / "data", entries)
    seen: list[list[str]] = []
    import alarm.generation as generation

    real = generation.answer_text

    def spy(m, prompts, config, **chat):
        seen.append(list(prompts))
        return real(m, prompts, config, **chat)

    monkeypatch.setattr(generation, "answer_text", spy)
    monkeypatch.setattr(model, "audio_embeddings", lambda *_: pytest.fail("the audio path ran"))
    spec = get_benchmark("mmau")
    for condition in ("text", "metadata"):
        result, stats = evaluate(
            spec, tmp_path / "data", PRESET, tmp_path / condition, config=TINY, progress=False, model=model,
            style="options", condition=condition,
        )  # fmt: skip
        assert stats.generated == 3 and result["scores"]["overall"]["total"] == 3
        run = json.loads((tmp_path / condition / "mmau" / "run.json").read_text())
        assert run["condition"] == condition
    text_prompts, metadata_prompts = seen
    assert all("<audio>" not in p for p in text_prompts)
    assert [p.startswith(f"<audio>a tone number {i}</audio>") for i, p in enumerate(metadata_prompts)] == [True] * 3
    assert "Options:\n- " in text_prompts[0]
    with pytest.raises(BenchmarkError, match="other settings"):  # same folder, other condition
        evaluate(spec, tmp_path / "data", PRESET, tmp_path / "text", config=TINY, progress=False, model=model)
    with pytest.raises(BenchmarkError, match="no 'metadata'"):
        build_mmau(tmp_path / "bare", MMAU_ENTRIES[:1])
        evaluate(spec, tmp_path / "bare", PRESET, tmp_path / "m2", config=TINY, progress=False, model=model,
                 condition="metadata")  # fmt: skip
