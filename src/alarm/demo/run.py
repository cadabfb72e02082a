"""``alarm demo``: the whole system on a laptop CPU, no downloads, in a few minutes.

Stages (each writes ``.done/<stage>.json`` atomically after its outputs; a rerun skips
finished stages, and the stages that resume by themselves, corpus and training, pick up a
killed run where it stopped):

    clips     labelled tones (4 pitch classes) -> sources.jsonl; held-out MMAU-format test
    corpus    the real self-generation pipeline (prompts, filter, respond, rephrase, split)
              with the scripted instruction LLM / RLM -> merged corpus + report (PNG)
    rlm       the stand-in RLM learns, text only, to answer from metadata (see rlm.py)
    before    the benchmark scored with the audio path untrained
    train     the audio path aligned on the corpus (frozen RLM and encoder) -> curves.png
    after     the benchmark scored with the trained audio path
    report    report.md / report.json / accuracy.png, with examples

Everything runs through the library's own entry points (``corpus.pipeline.build``,
``training.train``, ``evaluation.evaluate``): the demo adds only the data and the glue.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from alarm.io import write_text

log = logging.getLogger(__name__)

STAGES = ("clips", "corpus", "rlm", "before", "train", "after", "report")
DONE_DIR = ".done"


@dataclass(frozen=True)
class DemoConfig:
    """The demo's knobs; the defaults finish in a few minutes on 2 CPU cores."""

    out: str = "alarm-demo"
    preset: str = "tiny-al-sslam-r"
    num_train: int = 64
    num_test: int = 32
    num_candidates: int = 6
    rlm_steps: int = 300
    train_steps: int = 600
    learning_rate: float = 1e-2
    batch_size: int = 8
    max_new_tokens: int = 160
    thinking_budget: int = 96
    seed: int = 0
    progress: bool = True

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """A smaller run for tests and a first look (well under a minute)."""
        settings = dict(num_train=16, num_test=8, num_candidates=4, rlm_steps=60, train_steps=12, max_new_tokens=96)
        return cls(**{**settings, **overrides})

    def __post_init__(self) -> None:
        for name in ("num_train", "num_test", "num_candidates", "rlm_steps", "train_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_train < self.batch_size:
            raise ValueError(f"num_train ({self.num_train}) must fill one batch of {self.batch_size}")


def _path(config: DemoConfig, *parts: str) -> str:
    return os.path.join(os.path.abspath(config.out), *parts)


def _marker(config: DemoConfig, stage: str) -> str:
    return _path(config, DONE_DIR, f"{stage}.json")


def done_stages(config: DemoConfig) -> list[str]:
    """The stages already finished in ``config.out``."""
    return [s for s in STAGES if os.path.exists(_marker(config, s))]


# -- the stages ------------------------------------------------------------------------------


def stage_clips(config: DemoConfig) -> dict[str, Any]:
    from alarm.demo.data import make_clips

    clips = make_clips(_path(config), config.num_train, config.num_test, seed=config.seed)
    return asdict(clips)


def stage_corpus(config: DemoConfig) -> dict[str, Any]:
    from alarm.corpus.backends import ScriptedBackend
    from alarm.corpus.pipeline import BuildConfig, build, merge
    from alarm.corpus.report import write_report
    from alarm.demo.data import DemoResponder

    build_dir, corpus_dir = _path(config, "corpus-build"), _path(config, "corpus")
    settings = BuildConfig(
        sources=(_path(config, "sources.jsonl"),),
        output=build_dir,
        audio_root=_path(config),
        num_candidates=config.num_candidates,
        validation_fraction=0.1,
        seed=config.seed,
        progress=config.progress,
    )
    # The pipeline's own rules play the instruction LLM; the RLM's answers are the demo's (concise).
    summary = build(settings, {"prompter": ScriptedBackend(), "rlm": ScriptedBackend(DemoResponder())})
    if not summary.complete:
        raise RuntimeError(f"the corpus build did not finish: {summary.to_dict()}")
    info = merge([build_dir], corpus_dir)
    report = write_report(corpus_dir)
    return {"records": info["records"], "rejects": info["rejects"], "stages": report.get("stages")}


def _lessons(config: DemoConfig) -> list[Any]:
    """Text-only lessons: every training row of the corpus, plus the benchmark's question format.

    The format lessons take one benchmark item's layout (options, instruction) with each demo
    question and pair it with a training row's metadata and response: no test answer is used.
    """
    import dataclasses

    from alarm.demo.data import QUESTIONS
    from alarm.demo.rlm import Lesson
    from alarm.evaluation import prompts
    from alarm.evaluation.benchmarks import get_benchmark, load_items
    from alarm.training.data import load_corpus

    rows = load_corpus(_path(config, "corpus"), "train")
    lessons = [Lesson(r.metadata, r.prompt, r.response) for r in rows]
    layout = load_items(get_benchmark("mmau"), _path(config, "bench"), "test-mini")[0]
    by_metadata = {r.metadata: r.response for r in rows}  # one response per pitch class
    for described, response in sorted(by_metadata.items()):
        for question in QUESTIONS:
            asked = prompts.user_prompt(dataclasses.replace(layout, question=question), "letters")
            lessons.append(Lesson(described, asked, response))
    return lessons


def stage_rlm(config: DemoConfig) -> dict[str, Any]:
    from alarm.demo.rlm import teach_rlm, write_preset
    from alarm.presets import preset_config

    system = preset_config(config.preset).system_prompt
    lessons = _lessons(config)
    losses = teach_rlm(lessons, _path(config, "rlm"), system=system, steps=config.rlm_steps, progress=config.progress)
    write_preset(config.preset, _path(config, "rlm"), _path(config, "preset.json"))
    return {"lessons": len(lessons), "loss_first": losses[0], "loss_last": losses[-1]}


def _evaluate(config: DemoConfig, model_ref: str, out: str) -> dict[str, Any]:
    from alarm.evaluation.benchmarks import get_benchmark
    from alarm.evaluation.evaluate import evaluate
    from alarm.generation import GenerationConfig

    generation = GenerationConfig(max_new_tokens=config.max_new_tokens, thinking_budget=config.thinking_budget)
    result, _ = evaluate(
        get_benchmark("mmau"),
        _path(config, "bench"),
        model_ref,
        out,
        config=generation,
        style="letters",
        batch_size=config.batch_size,
        progress=config.progress,
    )
    return result["accuracies"]


def stage_before(config: DemoConfig) -> dict[str, Any]:
    return _evaluate(config, _path(config, "preset.json"), _path(config, "eval-before"))


def stage_train(config: DemoConfig) -> dict[str, Any]:
    from alarm.training.config import TrainConfig
    from alarm.training.trainer import latest_checkpoint, train

    output = _path(config, "train")
    settings = TrainConfig(
        preset=_path(config, "preset.json"),
        corpus=_path(config, "corpus"),
        audio_root=_path(config),
        output=output,
        max_steps=config.train_steps,
        learning_rate=config.learning_rate,
        warmup_steps=max(1, config.train_steps // 15),
        effective_batch_size=config.batch_size,
        micro_batch_size=config.batch_size,
        num_workers=0,
        log_every=1,
        eval_every=max(1, config.train_steps // 5),
        save_every=max(1, config.train_steps // 3),
        num_samples=2,
        sample_max_new_tokens=config.max_new_tokens,
        sample_thinking_budget=config.thinking_budget,
        seed=config.seed,
        progress=config.progress,
        report_to=(),
    )
    result = train(settings, resume=latest_checkpoint(output) is not None)
    return {"steps": result.steps, "last_loss": result.last_loss, "final_model": result.final_model}


def stage_after(config: DemoConfig) -> dict[str, Any]:
    return _evaluate(config, _path(config, "train", "final"), _path(config, "eval-after"))


def stage_report(config: DemoConfig) -> dict[str, Any]:
    from alarm.demo.report import write_demo_report

    return write_demo_report(config, {s: read_marker(config, s) for s in STAGES if s != "report"})


STAGE_FUNCTIONS: dict[str, Callable[[DemoConfig], dict[str, Any]]] = {
    "clips": stage_clips,
    "corpus": stage_corpus,
    "rlm": stage_rlm,
    "before": stage_before,
    "train": stage_train,
    "after": stage_after,
    "report": stage_report,
}


def read_marker(config: DemoConfig, stage: str) -> dict[str, Any]:
    with open(_marker(config, stage), encoding="utf-8") as f:
        return json.load(f)


def _check_settings(config: DemoConfig) -> None:
    """A demo directory holds one setting: refuse to mix its stages with another one's."""
    path = _path(config, "demo_config.json")
    ours = {k: v for k, v in asdict(config).items() if k not in ("out", "progress")}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved != ours:
            changed = sorted(k for k in ours if saved.get(k) != ours[k])
            raise ValueError(f"{config.out} holds a demo run with other settings {changed}; use another --out")
    else:
        write_text(path, json.dumps(ours, indent=2) + "\n")


def run_demo(config: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every unfinished stage in order; return the report's summary."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    os.makedirs(_path(config, DONE_DIR), exist_ok=True)
    _check_settings(config)
    for number, stage in enumerate(STAGES, start=1):
        header = f"[{number}/{len(STAGES)}] {stage}"
        if os.path.exists(_marker(config, stage)):
            echo(f"{header}: done earlier, skipped")
            continue
        echo(f"{header} ...")
        started = time.perf_counter()
        result = STAGE_FUNCTIONS[stage](config)
        result = {**result, "seconds": round(time.perf_counter() - started, 2)}
        write_text(_marker(config, stage), json.dumps(result, indent=2, default=str) + "\n")
        echo(f"{header}: {result['seconds']:.1f} s")
    return read_marker(config, "report")
