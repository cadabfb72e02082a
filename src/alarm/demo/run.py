"""``alarm demo``: the whole system on real pretrained models, on a laptop CPU, nothing downloaded.

The frozen RLM is the real SmolLM2-135M-Instruct and the frozen encoder the real Whisper
(``cpu-al-whisper-r``: base; ``--quick``: ``cpu-al-whisper-tiny-r``, tiny.en), both from
registry packages (``alarm models``). Stages (each writes ``.done/<stage>.json`` atomically
after its outputs; a rerun skips finished stages, and the stages that resume by themselves,
corpus, features, training and evaluation, pick up a killed run where it stopped):

    clips       espeak-ng speech and numpy sounds with known facts (demo/world.py)
                -> sources.jsonl; held-out clips -> an MMAU-format test + open questions
    corpus      the real self-generation pipeline with SmolLM2 as instruction LLM and RLM
                (prompts, filter, R0 from metadata, self-rephrasing, split) -> corpus/
    features    the frozen Whisper's selected layers for every training clip (feature cache)
    train       the audio path aligned on the corpus (frozen RLM and encoder) -> train/final
    evaluate    the MMAU-format test under three conditions: the RLM with the question alone
                (text), with the clip's metadata instead of the audio (metadata, the bound),
                and the aligned model with the audio; the real loader, extraction and scorer
    transcripts "What does the speaker say?" under the same three conditions, scored by WER
    report      report.md / report.json / accuracy.png, with examples and their reasoning

Everything runs through the library's own entry points (``corpus.pipeline.build``,
``training.cache.extract_features``, ``training.train``, ``evaluation.evaluate``): the demo
adds only the data and the glue.
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

from alarm.demo.world import EVEN_MIX
from alarm.io import write_text

log = logging.getLogger(__name__)

STAGES = ("clips", "corpus", "features", "train", "evaluate", "transcripts", "report")
CONDITIONS = ("text", "metadata", "audio")
DONE_DIR = ".done"


@dataclass(frozen=True)
class DemoConfig:
    """The demo's knobs; the defaults take about 20 minutes on 2 CPU cores."""

    out: str = "alarm-demo"
    preset: str = "cpu-al-whisper-r"
    num_train: int = 240
    num_test: int = 48
    num_candidates: int = 3
    train_steps: int = 240
    learning_rate: float = 2e-3
    batch_size: int = 8
    generation_batch_size: int = 32
    # five recordings of each training clip's facts (other voices and pitches): the adapter
    # overfits a few hundred rows, and the same targets heard anew delay that (docs/demo.md)
    renderings: int = 5
    # the training clips' kinds in turn: digit strings three times in eight, since what is said
    # is what a self-generated corpus of a 135M model teaches least (docs/demo.md)
    train_mix: tuple[str, ...] = ("digits", "word", "digits", "sentence", "digits", "clicks", "noise", "tone")
    max_new_tokens: int = 40
    corpus_max_tokens: int = 56
    thinking_budget: int = 64
    seed: int = 0
    progress: bool = True

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """A smaller run (a few minutes): the tiny.en encoder, fewer clips and steps."""
        # 20 held-out clips (59 questions): with 12 (34), a 20-point lead over text only was p = 0.08
        settings = dict(preset="cpu-al-whisper-tiny-r", num_train=32, num_test=20, train_steps=32)
        return cls(**{**settings, **overrides})

    @classmethod
    def digits(cls, **overrides: Any) -> DemoConfig:
        """A longer run (about an hour): the recipe for a model that says the digits of new clips (``alarm ask``).

        Half the training clips are digit strings and there are more of them: a 135M model's
        corpus quotes what was said in few records, and the digits come with about forty
        quoted digit strings (docs/demo.md, "What is said, on new clips").
        """
        mix = ("digits", "word", "digits", "tone", "digits", "sentence", "digits", "noise", "digits", "clicks")
        return cls(**{**dict(num_train=420, train_steps=500, train_mix=mix), **overrides})

    def __post_init__(self) -> None:
        for name in ("num_train", "num_test", "num_candidates", "train_steps", "batch_size", "generation_batch_size",
                     "renderings", "max_new_tokens"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        object.__setattr__(self, "train_mix", tuple(self.train_mix))  # a list read from JSON works too
        if not self.train_mix or set(self.train_mix) - set(EVEN_MIX):
            raise ValueError(f"train_mix lists kinds of {EVEN_MIX}, got {self.train_mix}")
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
    from alarm.demo.data import write_world

    return write_world(_path(config), config.num_train, config.num_test, seed=config.seed, progress=config.progress,
                       renderings=config.renderings, train_mix=config.train_mix)  # fmt: skip


def _backend(config: DemoConfig) -> Any:
    from alarm.corpus.backends import TransformersBackend

    # 32 rows a batch: decoding a 135M model on a CPU reads every weight per step whatever the
    # rows, so 32 rows cost little more than 8 (0.86 s a row instead of 1.26: docs/benchmarks.md)
    return TransformersBackend.from_name(config.preset, batch_size=config.generation_batch_size)


def stage_corpus(config: DemoConfig) -> dict[str, Any]:
    from alarm.corpus.backends import SamplingParams
    from alarm.corpus.pipeline import BuildConfig, build, merge
    from alarm.corpus.report import write_report
    from alarm.demo.data import RENDERINGS_FILE, expand_corpus

    build_dir, corpus_dir = _path(config, "corpus-build"), _path(config, "corpus")
    backend = _backend(config)  # the real SmolLM2 plays both roles, as the one RLM of the preset
    limit = config.corpus_max_tokens
    settings = BuildConfig(
        sources=(_path(config, "sources.jsonl"),),
        output=build_dir,
        audio_root=_path(config),
        num_candidates=config.num_candidates,
        multilingual_share=0.0,  # a 135M model writes English only
        thinking_budget=config.thinking_budget,
        rlm_thinks=backend.thinks,
        validation_fraction=0.1,
        seed=config.seed,
        # Short limits: a 135M model that rambles past them rarely recovers, and each over-length
        # try costs the whole limit (rejects keep the reason).
        max_attempts=3,
        reply_openings=True,  # SmolLM2 keeps a list format it is already writing in (instructions.OPENINGS)
        # SmolLM2 asks about what the metadata does not say ("What is the man's age?"), its judge
        # keeps that, and its R0 then invents ("The man's age is 42."): the grounding check rejects
        # such answers and lets the next attempt answer the next kept prompt (docs/demo.md).
        grounding=0.2,
        prompter_sampling=SamplingParams(max_tokens=limit, temperature=0.7, top_p=0.8, top_k=20),
        rlm_sampling=SamplingParams(max_tokens=limit, temperature=0.6, top_p=0.95, top_k=20),
        # Not the official 512-token R0 kept even when cut: SmolLM2 answers in a sentence and then
        # chatters to any limit, so its R0 keeps its complete sentences within the short limit.
        respond_max_tokens=limit,
        keep_unfinished=False,
        chunk_size=2 * config.generation_batch_size,
        progress=config.progress,
    )
    summary = build(settings, {"prompter": backend, "rlm": backend})
    if not summary.complete:
        raise RuntimeError(f"the corpus build did not finish: {summary.to_dict()}")
    info = merge([build_dir], corpus_dir)
    if not info["records"].get("train"):
        raise RuntimeError(
            f"the corpus build kept no training record ({info['records']}); see {corpus_dir}/rejects.jsonl "
            "for each clip's stage and reason, and use more clips (about a quarter of them become records)"
        )
    report = write_report(corpus_dir)
    # The other recordings of each clip share its facts, so they share its prompt and target too.
    training = expand_corpus(corpus_dir, _path(config, RENDERINGS_FILE), _path(config, "corpus-train"))
    return {"records": info["records"], "rejects": info["rejects"], "stages": report.get("stages"),
            "training_rows": training}  # fmt: skip


def stage_features(config: DemoConfig) -> dict[str, Any]:
    from alarm.presets import build_model
    from alarm.training.cache import extract_features
    from alarm.training.data import load_corpus

    model = build_model(config.preset)
    rows = [r for split in ("train", "validation") for r in load_corpus(_path(config, "corpus-train"), split)]
    result = extract_features(
        model,
        rows,
        audio_root=_path(config),
        out=_path(config, "features"),
        dtype="float32",
        batch_size=config.batch_size,
        num_workers=0,
        progress=config.progress,
    )
    return asdict(result)


def stage_train(config: DemoConfig) -> dict[str, Any]:
    from alarm.training.config import TrainConfig
    from alarm.training.data import MODEL_SYSTEM_PROMPT
    from alarm.training.trainer import latest_checkpoint, train

    output = _path(config, "train")
    settings = TrainConfig(
        preset=config.preset,
        corpus=_path(config, "corpus-train"),
        audio_root=_path(config),
        features=_path(config, "features"),
        output=output,
        max_steps=config.train_steps,
        learning_rate=config.learning_rate,
        warmup_steps=max(1, config.train_steps // 10),
        effective_batch_size=config.batch_size,
        micro_batch_size=config.batch_size,
        num_workers=0,
        log_every=1,
        # The last step's weights, not the lowest validation loss: the demo's validation split
        # is a few records, too few to choose by (the default run's best-loss checkpoint, step
        # 120, scored 32.4% on the held-out questions, its last 39.7%: docs/demo.md).
        eval_every=max(1, config.train_steps // 4),
        save_every=max(1, config.train_steps // 4),
        num_samples=2,
        sample_max_new_tokens=config.max_new_tokens,
        sample_thinking_budget=config.thinking_budget,
        seed=config.seed,
        progress=config.progress,
        report_to=(),
        # Not the official target shape, on purpose: SmolLM2-135M's targets are a sentence (under
        # the official 100-token floor), and the aligned model must learn to stop after it (EOS
        # trained) under the system prompt its answers are generated with (the model's).
        target_tokens=None,
        train_eos=True,
        system_prompt=MODEL_SYSTEM_PROMPT,
    )
    result = train(settings, resume=latest_checkpoint(output) is not None)
    return {"steps": result.steps, "last_loss": result.last_loss, "final_model": result.final_model,
            "final_step": result.final_step}  # fmt: skip


def _generation(config: DemoConfig) -> Any:
    from alarm.generation import GenerationConfig

    return GenerationConfig(max_new_tokens=config.max_new_tokens, thinking_budget=config.thinking_budget)


def _model(config: DemoConfig, condition: str) -> tuple[str, Any]:
    """The reference and the built model a condition answers with (the baselines use the RLM alone)."""
    from alarm.presets import build_model

    ref = _path(config, "train", "final") if condition == "audio" else config.preset
    return ref, build_model(ref)


def stage_evaluate(config: DemoConfig) -> dict[str, Any]:
    from alarm.evaluation.benchmarks import get_benchmark
    from alarm.evaluation.evaluate import evaluate

    results = {}
    for condition in CONDITIONS:
        ref, model = _model(config, condition)
        result, _ = evaluate(
            get_benchmark("mmau"),
            _path(config, "bench"),
            ref,
            _path(config, "eval", condition),
            config=_generation(config),
            style="options",  # a 135M model mislabels letters but copies option texts (prompts.py)
            batch_size=config.generation_batch_size,
            progress=config.progress,
            model=model,
            condition=condition,
        )
        results[condition] = result["accuracies"]
    return results


def stage_transcripts(config: DemoConfig) -> dict[str, Any]:
    from alarm.demo.transcripts import answer_open_questions

    results = {}
    for condition in CONDITIONS:
        _, model = _model(config, condition)
        results[condition] = answer_open_questions(
            model,
            _path(config, "bench", "open_questions.jsonl"),
            _path(config, "bench"),
            _path(config, "transcripts", f"{condition}.jsonl"),
            condition=condition,
            config=_generation(config),
            batch_size=config.generation_batch_size,
            progress=config.progress,
        )
    return results


def stage_report(config: DemoConfig) -> dict[str, Any]:
    from alarm.demo.report import write_demo_report

    return write_demo_report(config, {s: read_marker(config, s) for s in STAGES if s != "report"})


STAGE_FUNCTIONS: dict[str, Callable[[DemoConfig], dict[str, Any]]] = {
    "clips": stage_clips,
    "corpus": stage_corpus,
    "features": stage_features,
    "train": stage_train,
    "evaluate": stage_evaluate,
    "transcripts": stage_transcripts,
    "report": stage_report,
}


def read_marker(config: DemoConfig, stage: str) -> dict[str, Any]:
    with open(_marker(config, stage), encoding="utf-8") as f:
        return json.load(f)


def _check_settings(config: DemoConfig) -> None:
    """A demo directory holds one setting: refuse to mix its stages with another one's."""
    path = _path(config, "demo_config.json")
    # through JSON, as saved: a tuple setting reads back as a list
    ours = json.loads(json.dumps({k: v for k, v in asdict(config).items() if k not in ("out", "progress")}))
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved != ours:
            changed = sorted(k for k in ours if saved.get(k) != ours[k])
            raise ValueError(f"{config.out} holds a demo run with other settings {changed}; use another --out")
    else:
        write_text(path, json.dumps(ours, indent=2) + "\n")


def check_requirements(config: DemoConfig) -> None:
    """Fail early, with the fix, when the preset's packaged weights or espeak-ng are missing."""
    from alarm.demo.speech import INSTALL_HINT, SpeechUnavailable, espeak_available
    from alarm.presets import weights_status

    state = weights_status(config.preset)
    if state.startswith("missing"):
        raise RuntimeError(f"preset {config.preset} {state}; run `alarm models install`")
    if not espeak_available():
        raise SpeechUnavailable(f"the demo's speech clips need espeak-ng: {INSTALL_HINT}")


def run_demo(config: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every unfinished stage in order; return the report's summary."""
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    os.makedirs(_path(config, DONE_DIR), exist_ok=True)
    _check_settings(config)
    if not os.path.exists(_marker(config, "report")):
        check_requirements(config)
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
