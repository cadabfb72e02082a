"""`alarm demo --quick` end to end: every stage's outputs, the report's numbers, rerun and resume."""

import json
import os

import pytest
import torch

from alarm.cli import main
from alarm.corpus.schema import CorpusRecord
from alarm.demo import STAGES, DemoConfig, done_stages, run_demo
from alarm.training.data import load_corpus

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    config = DemoConfig.quick(out=str(out), progress=False)
    lines: list[str] = []
    summary = run_demo(config, echo=lines.append)
    return config, summary, lines


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
    # The corpus is the pipeline's contract format, self-generated prompts and rephrased targets included.
    rows = load_corpus(os.path.join(out, "corpus"), "train")
    assert len(rows) + len(load_corpus(os.path.join(out, "corpus"), "validation")) == config.num_train
    assert all(isinstance(r, CorpusRecord) and r.prompt and r.response_raw and r.rephrase_reasoning for r in rows)
    assert all(r.response.startswith("<think>") and "I heard:" in r.response for r in rows)
    assert all("description" not in r.response for r in rows)  # the rephrasing removed the written references
    assert len(rows[0].prompt_candidates) == config.num_candidates
    # Training ran and lowered the loss; evaluations wrote the scorer's files.
    metrics = (open(os.path.join(out, "train", "metrics.csv")).read().splitlines())[1:]
    losses = [float(line.split(",")[2]) for line in metrics]
    assert len(losses) == config.train_steps and losses[-1] < losses[0]
    for stage in ("before", "after"):
        scores = _json(os.path.join(out, f"eval-{stage}", "mmau", "scores.json"))
        assert scores["accuracies"]["total"] == config.num_test
    for name in ("report.md", "report.json", "accuracy.png", "train/curves.png", "corpus/report.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name


def test_report_numbers_are_the_scorers(demo):
    config, summary, _ = demo
    before = _json(os.path.join(config.out, "eval-before", "mmau", "scores.json"))["accuracies"]["overall"]
    after = _json(os.path.join(config.out, "eval-after", "mmau", "scores.json"))["accuracies"]["overall"]
    assert (summary["accuracy_before"], summary["accuracy_after"]) == (before, after)
    report = open(os.path.join(config.out, "report.md"), encoding="utf-8").read()
    assert f"accuracy {after:.1f}%" in report and f"accuracy {before:.1f}%" in report
    assert len(_json(os.path.join(config.out, "report.json"))["examples"]) == 4


def test_rerun_skips_and_resume_reruns_only_the_missing_stage(demo, capsys):
    config, _, _ = demo
    corpus_files = sorted(os.listdir(os.path.join(config.out, "corpus", "data")))
    stamp = os.path.getmtime(os.path.join(config.out, "train", "metrics.csv"))
    lines: list[str] = []
    run_demo(config, echo=lines.append)
    assert all(line.endswith("done earlier, skipped") for line in lines)
    os.remove(os.path.join(config.out, ".done", "report.json"))
    lines.clear()
    run_demo(config, echo=lines.append)
    assert [line for line in lines if not line.endswith("skipped")] == ["[7/7] report ...", lines[-1]]
    assert sorted(os.listdir(os.path.join(config.out, "corpus", "data"))) == corpus_files
    assert os.path.getmtime(os.path.join(config.out, "train", "metrics.csv")) == stamp
    # Through the CLI, the finished run prints its summary and the report's path.
    assert main(["demo", "--quick", "--out", config.out, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert '"accuracy_after"' in printed and "report.md" in printed


def test_other_settings_in_the_same_directory_are_refused(demo):
    config, _, _ = demo
    with pytest.raises(ValueError, match="other settings"):
        run_demo(DemoConfig.quick(out=config.out, progress=False, train_steps=13))
    with pytest.raises(ValueError, match="num_train"):
        DemoConfig(num_train=4, batch_size=8)
