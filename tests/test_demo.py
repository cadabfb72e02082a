"""`alarm demo` on the real packaged models, small: every stage's outputs, the report's numbers,
rerun and resume. Skipped (with the install line) where the packages or espeak-ng are missing."""

import json
import os

import pytest
import torch

from alarm import packaged
from alarm.cli import main
from alarm.corpus.schema import CorpusRecord
from alarm.demo import STAGES, DemoConfig, done_stages, run_demo
from alarm.demo.speech import espeak_available
from alarm.training.data import load_corpus

torch.set_num_threads(1)

# Minutes of real SmolLM2 generation and training: run by `python -m pytest -q -m slow` (CI runs both sets).
pytestmark = pytest.mark.slow

# About a quarter of the clips survive SmolLM2's corpus with the grounding check (docs/demo.md): 16 leave a few.
SMALL = dict(num_train=16, num_test=6, train_steps=3, batch_size=4, num_candidates=2, progress=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    for name in ("whisper-tiny.en", "smollm2-135m-instruct"):
        if packaged.missing_files(packaged.get(name)):
            pytest.skip(f"{name} not installed: {packaged.get(name).install_command}")
    if not espeak_available():
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    old = os.environ.get("ALARM_CACHE")
    os.environ["ALARM_CACHE"] = str(tmp_path_factory.mktemp("alarm-cache"))
    out = tmp_path_factory.mktemp("demo") / "run"
    config = DemoConfig.quick(out=str(out), **SMALL)
    lines: list[str] = []
    summary = run_demo(config, echo=lines.append)
    yield config, summary, lines
    if old is None:
        os.environ.pop("ALARM_CACHE")
    else:
        os.environ["ALARM_CACHE"] = old


def _json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_every_stage_leaves_its_outputs(demo):
    config, summary, lines = demo
    out = config.out
    assert done_stages(config) == list(STAGES)
    assert [line.split(":")[0] for line in lines if line.endswith(" s")] == [
        f"[{i}/{len(STAGES)}] {s}" for i, s in enumerate(STAGES, 1)
    ]
    # The corpus is the pipeline's contract format, written by the real SmolLM2; every source
    # clip is a record or a reject with its stage and reason.
    rows = load_corpus(os.path.join(out, "corpus"), "train") + load_corpus(os.path.join(out, "corpus"), "validation")
    rejects = [json.loads(line) for line in open(os.path.join(out, "corpus", "rejects.jsonl"))]
    assert rows and len(rows) + len(rejects) == config.num_train
    assert all(r["stage"] and r["reason"] for r in rejects)
    assert all(isinstance(r, CorpusRecord) and r.prompt and r.response for r in rows)
    assert all("<think>" not in r.response for r in rows)  # SmolLM2 has no thinking mode: plain targets
    assert all(r.provenance for r in rows)
    # Features were cached, training ran on them, evaluations wrote the scorer's files.
    # Each kept training record is trained on with every recording of its clip (the same facts).
    renderings = [json.loads(line) for line in open(os.path.join(out, "renderings.jsonl"))]
    assert len(renderings) == (config.renderings - 1) * config.num_train
    training = load_corpus(os.path.join(out, "corpus-train"), "train")
    train_rows = [r for r in rows if r.split == "train"]
    assert len(training) == config.renderings * len(train_rows)
    assert {r.audio_path for r in training} > {r.audio_path for r in train_rows}
    assert _json(os.path.join(out, ".done", "features.json"))["written"] == len(rows) + len(training) - len(train_rows)
    metrics = open(os.path.join(out, "train", "metrics.csv")).read().splitlines()[1:]
    assert len(metrics) == config.train_steps
    for condition in ("text", "metadata", "audio"):
        scores = _json(os.path.join(out, "eval", condition, "mmau", "scores.json"))
        assert scores["accuracies"]["total"] == summary["test_questions"]
        assert os.path.getsize(os.path.join(out, "transcripts", f"{condition}.jsonl")) > 0
    for name in ("report.md", "report.json", "accuracy.png", "train/curves.png", "corpus/report.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name


def test_report_numbers_are_the_scorers(demo):
    config, summary, _ = demo
    for key, condition in (("accuracy", "audio"), ("text_only_accuracy", "text"), ("metadata_accuracy", "metadata")):
        scores = _json(os.path.join(config.out, "eval", condition, "mmau", "scores.json"))
        assert summary[key] == scores["accuracies"]["overall"]
    report = _json(os.path.join(config.out, "report.json"))
    assert report["models"] == {
        "preset": "cpu-al-whisper-tiny-r",
        "rlm": "packaged:smollm2-135m-instruct",
        "encoders": ["packaged:whisper-tiny.en"],
    }
    assert 0 < report["chance"] < 100 and report["speech_wer"] is not None
    # the significance figures are the comparison's, on the same per-item outcomes
    sig = report["significance"]
    assert sig["audio_vs_text"]["difference"] == pytest.approx(summary["accuracy"] - summary["text_only_accuracy"])
    assert sig["audio_vs_metadata"]["difference"] == pytest.approx(summary["accuracy"] - summary["metadata_accuracy"])
    assert sig["audio_vs_text"]["paired_items"] == summary["test_questions"]
    low, high = sig["ci"]["audio"]
    assert 0 < sig["audio_vs_text"]["p_value"] <= 1 and low <= summary["accuracy"] <= high
    assert os.path.getsize(os.path.join(config.out, "comparison", "comparison.md")) > 0
    assert os.path.isfile(os.path.join(report["model_dir"], "model.safetensors"))
    # the model is the last step's (a few validation records do not choose well: docs/demo.md)
    training = report["training"]
    assert training["final_step"] == training["steps"] == config.train_steps
    # The saved model is loadable by `alarm ask --preset` and answers.
    clip = os.path.join(config.out, "bench", "test-mini-audios", "demo-0000.wav")
    assert (
        main(["ask", clip, "What does the speaker say?", "--preset", report["model_dir"], "--max-new-tokens", "8"]) == 0
    )
    text = open(os.path.join(config.out, "report.md"), encoding="utf-8").read()
    assert f"**{summary['accuracy']:.1f}**" in text and "accuracy.png" in text


def test_rerun_skips_and_resume_reruns_only_the_missing_stage(demo, capsys):
    config, _, _ = demo
    stamp = os.path.getmtime(os.path.join(config.out, "train", "metrics.csv"))
    lines: list[str] = []
    run_demo(config, echo=lines.append)
    assert all(line.endswith("done earlier, skipped") for line in lines)
    os.remove(os.path.join(config.out, ".done", "report.json"))
    lines.clear()
    run_demo(config, echo=lines.append)
    assert [line for line in lines if not line.endswith("skipped")] == ["[7/7] report ...", lines[-1]]
    assert os.path.getmtime(os.path.join(config.out, "train", "metrics.csv")) == stamp


def test_other_settings_in_the_same_directory_are_refused(demo):
    config, _, _ = demo
    with pytest.raises(ValueError, match="other settings"):
        run_demo(DemoConfig.quick(out=config.out, **{**SMALL, "train_steps": 4}))
    with pytest.raises(ValueError, match="num_train"):
        DemoConfig(num_train=4, batch_size=8)
