"""Resumable, batched inference over a benchmark: one JSON line per finished item.

Predictions are appended to a JSONL file, one complete line per item written with a single
``write`` + flush + fsync, so a killed run leaves at most one torn last line. Opening the
store repairs that (the torn tail is cut off, with a warning) and a rerun skips every id
already there: nothing is lost or duplicated. A clip that cannot be decoded is written to
``rejects.jsonl`` with its reason and skipped (the scorer lists it as missing); a rerun
tries it again.

Answers come from an :class:`Engine`: :class:`TransformersEngine` (the default) or
:class:`alarm.generation_vllm.VLLMEngine`; both run the same thinking-budget logic, and each
record names the engine that wrote it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tqdm.auto import tqdm

from alarm.audio import AudioError, load_audio
from alarm.evaluation import prompts
from alarm.evaluation.benchmarks.base import BenchmarkError, Item
from alarm.generation_vllm import ENGINES
from alarm.io import JsonlStore

if TYPE_CHECKING:  # torch and transformers load only when a model runs, not to score a file
    from alarm.audio import Waveform
    from alarm.generation import Clips, GenerationConfig, GenerationOutput
    from alarm.generation_vllm import VLLMSettings

log = logging.getLogger(__name__)


# The append-only store moved to the base layer so corpus jobs (the Whisper check) resume alike.
PredictionStore = JsonlStore


class Engine(Protocol):
    """Answers a batch of (audio, question) pairs with one model and the thinking budget; a
    question's audio is one clip or the list of its clips."""

    name: str

    def answer(
        self, waveforms: Sequence[Clips], prompts: Sequence[str], config: GenerationConfig, **chat: Any
    ) -> list[GenerationOutput]: ...


@dataclass
class TransformersEngine:
    """:func:`alarm.generation.answer` bound to a model."""

    model: Any
    name: str = "transformers"

    def answer(
        self, waveforms: Sequence[Clips], prompts: Sequence[str], config: GenerationConfig, **chat: Any
    ) -> list[GenerationOutput]:
        from alarm.generation import answer

        return answer(self.model, waveforms, prompts, config, **chat)


@dataclass
class TextEngine:
    """The model's frozen RLM alone, audio ignored (:func:`alarm.generation.answer_text`).

    For the baselines every aligned model is compared with: the question with no audio at all
    (``text``), and the clip's metadata in place of the audio (``metadata``, the bound the
    alignment aims for).
    """

    model: Any
    name: str = "transformers-text"

    def answer(
        self, waveforms: Sequence[Waveform], prompts: Sequence[str], config: GenerationConfig, **chat: Any
    ) -> list[GenerationOutput]:
        from alarm.generation import answer_text

        return answer_text(self.model, prompts, config, **chat)


#: What the RLM is given about the clip: the audio (the aligned model), nothing, or the metadata.
CONDITIONS = ("audio", "text", "metadata")


def metadata_prompt(item: Item, question: str) -> str:
    """The question with the clip's metadata where the audio would be, laid out as the corpus
    pipeline's respond stage shows metadata to the RLM (``<audio>...</audio>``)."""
    text = item.record.get("metadata")
    if not isinstance(text, str) or not text.strip():
        raise BenchmarkError(f"item {item.id!r} has no 'metadata' text: the metadata condition needs one per item")
    return prompts.with_metadata(text, question)


def engine_settings(name: str, vllm: VLLMSettings | None = None) -> dict[str, Any]:
    """What a run records about its engine (``run.json``); an unknown engine is an error.

    Not a pinned setting: both engines run one budget logic (same ids in fp32 greedy) and each
    prediction record names its engine, so a run resumed with the other one says so.
    """
    if name not in ENGINES:
        raise BenchmarkError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    if name != "vllm":
        return {"engine": name}
    return {"engine": name, "vllm": asdict(vllm) if vllm is not None else None}


def build_engine(name: str, model: Any, vllm: VLLMSettings | None = None) -> Engine:
    """The engine called ``name`` (``transformers`` or ``vllm``) over ``model``."""
    if name == "transformers":
        return TransformersEngine(model)
    if name == "vllm":
        from alarm.generation_vllm import VLLMEngine, VLLMSettings

        return VLLMEngine(model, vllm or VLLMSettings())
    raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")


@dataclass
class RunStats:
    total: int
    skipped: int  # already in the store
    generated: int
    rejected: int
    seconds: float


def _styled(item: Item, style: str) -> str:
    return prompts.user_prompt(item, style)


def _batches(items: Sequence[Item], size: int) -> Iterator[list[Item]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def run_inference(
    model: Any,
    items: Sequence[Item],
    store: PredictionStore,
    config: GenerationConfig,
    *,
    style: str = "alarm",
    system: str | None = None,
    batch_size: int = 8,
    max_seconds: float = 3600.0,
    rejects: PredictionStore | None = None,
    progress: bool = True,
    after_batch: Callable[[int], None] | None = None,
    prompt: Callable[[Item], str] | None = None,
    engine: Callable[[], Engine] | None = None,
    crop_seconds: float | None = None,
    audio_rate: int | None = None,
) -> RunStats:
    """Generate an answer for every item not yet in ``store`` and append it there.

    ``system`` overrides the style's system prompt; ``prompt`` replaces the style's question
    format (open questions: AIR-Bench chat). ``after_batch`` (tests, hooks) is called with the
    number of items generated so far after each batch is stored. ``engine`` builds what answers
    (default: transformers on ``model``); it is called when the first batch is ready, not on a
    rerun with nothing left to answer (starting vLLM on a real RLM takes a minute).
    ``crop_seconds`` keeps the first seconds of each clip; ``audio_rate`` resamples every clip
    to that rate before the model resamples it for each encoder (the official protocol: 16 kHz).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    done = store.load()
    todo = [item for item in items if item.id not in done]
    if prompt is None:
        system_text = system if system is not None else prompts.system_prompt(style)
        question = functools.partial(_styled, style=style)
    else:
        system_text, question = system, prompt
    stats = RunStats(len(items), len(items) - len(todo), 0, 0, 0.0)
    answerer: Engine | None = None  # built when the first batch is ready
    start = time.perf_counter()
    bar = tqdm(total=len(items), initial=stats.skipped, disable=not progress, unit="q", desc="answering")
    try:
        for batch in _batches(todo, batch_size):
            ready, waves = [], []
            for item in batch:
                try:
                    clips = [
                        load_audio(path, max_seconds=max_seconds, duration_s=crop_seconds, target_rate=audio_rate)
                        for path in item.audio_files
                    ]
                except AudioError as err:
                    stats.rejected += 1
                    log.warning("skipping %s: %s", item.id, err)
                    if rejects is not None:
                        rejects.append([{"id": item.id, "audio": str(item.audio), "reason": str(err)}])
                    continue
                # a question about several clips gets them all, in order, before its text
                waves.append(clips[0] if len(clips) == 1 else clips)
                ready.append(item)
            if ready:
                if answerer is None:
                    answerer = engine() if engine is not None else TransformersEngine(model)
                t0 = time.perf_counter()
                chat = {"system": system_text} if system_text is not None else {}
                outs = answerer.answer(waves, [question(it) for it in ready], config, **chat)
                per_item = (time.perf_counter() - t0) / len(ready)
                store.append(
                    [
                        {
                            "id": it.id,
                            "output": out.text,
                            "answer": out.answer,
                            "reasoning_tokens": out.num_reasoning_tokens,
                            "output_tokens": len(out.token_ids),
                            "budget_reached": out.budget_reached,
                            "finished": out.finished,
                            "style": style,
                            "engine": answerer.name,
                            "seconds": round(per_item, 4),
                        }
                        for it, out in zip(ready, outs)
                    ]
                )
                stats.generated += len(ready)
            bar.update(len(batch))
            if after_batch is not None:
                after_batch(stats.generated)
    finally:
        bar.close()
        stats.seconds = time.perf_counter() - start
    return stats
