"""Evaluation protocols: how a run decodes, reads answers and prepares the audio.

``ours`` (the default) is deterministic: greedy decoding, the second pass after the thinking
budget gets what is left of ``max_new_tokens``, strict answer extraction (an answer that names
no option counts wrong, and is listed), each encoder gets the clip resampled from its own rate,
clips are not cropped. Two runs of one model give the same predictions, and a difference
between two models is not sampling noise.

``official`` is what the official evaluation did (each value checked in the official code):

* decoding: ``generate_vllm_mcqa.py`` samples with ``llm.get_default_sampling_params()``,
  i.e. the RLM's ``generation_config.json`` (Qwen3-4B-Thinking-2507: temperature 0.6, top_p
  0.95, top_k 20), and ``sample.seed = seed`` (``run_eval.sh``: ``SEED`` defaults to null,
  vLLM's random seed; here a seed is always set and recorded);
* second pass: the same sampling parameters, ``max_tokens`` = the full ``max_tokens`` (16384
  in ``run_eval.sh``), capped by ``max_model_len`` (16384, ``src/configs/generate.yaml``);
* continuation: ``get_response`` decodes the first pass, appends the closing sentence and
  re-tokenizes the text for the second pass (``continue_from="text"``; ours keeps the ids);
* stop tokens: vLLM's defaults for Qwen3, ``<|im_end|>`` and ``<|endoftext|>`` (ours: the
  tokenizer's end of turn only), in both engines;
* answers: ``get_choice_from_id``: the text after the last ``<answer>``, an option ID, option 0
  when it is not a number (:func:`alarm.evaluation.answers.alarm_extract`);
* AIR-Bench: ``scripts/benchmarks/evaluation/airbench.py`` scores a "None" prediction as
  choice A; ``scripts/benchmarks/dataset_collection/airbench.py`` crops every clip to its
  first 60 s and lists a null choice as an option reading "None" (``str(choice)``), where
  ours drops it;
* audio: every benchmark's clips are decoded at 16 kHz (``datasets.Audio(sampling_rate=16000)``,
  ``SAMPLING_RATE`` in ``scripts/benchmarks/dataset_collection/utils.py``) before the feature
  extractors, which resample to their own rate: MuQ (24 kHz) hears 16 kHz audio upsampled,
  with nothing above 8 kHz.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alarm.generation import GenerationConfig

PROTOCOLS = ("ours", "official")


@dataclass(frozen=True)
class Protocol:
    """Every setting a protocol fixes (all recorded in ``run.json``)."""

    name: str
    sampling: bool  # False: greedy; True: the RLM's own sampling defaults and a seed
    second_pass: str  # ``remaining`` or ``full`` (alarm.generation.GenerationConfig)
    max_model_len: int | None  # prompt + output cap of the second pass (``full``)
    extraction: str  # ``strict`` or ``alarm`` (alarm.evaluation.scoring)
    airbench_none_is_a: bool  # a "None" AIR-Bench prediction scores as choice A
    airbench_crop_s: float | None  # AIR-Bench clips cut to their first N seconds
    audio_rate: int | None  # every clip resampled to this rate before the encoders (None: per encoder)
    airbench_null_choice: str | None  # the option a null AIR-Bench choice becomes (None: dropped)
    continue_from: str  # ``ids`` or ``text`` (alarm.generation.GenerationConfig)
    stop_tokens: tuple[str, ...]  # stop tokens besides the tokenizer's end of turn

    def crop_seconds(self, benchmark: str) -> float | None:
        return self.airbench_crop_s if benchmark == "airbench" else None

    def null_choice(self, benchmark: str) -> str | None:
        return self.airbench_null_choice if benchmark == "airbench" else None

    def none_is_first(self, benchmark: str) -> bool:
        return self.airbench_none_is_a and benchmark == "airbench"

    def settings(self) -> dict[str, Any]:
        return asdict(self)


OURS = Protocol("ours", False, "remaining", None, "strict", False, None, None, None, "ids", ())
OFFICIAL = Protocol(
    "official", True, "full", 16384, "alarm", True, 60.0, 16000, "None", "text", ("<|im_end|>", "<|endoftext|>")
)

_BY_NAME = {p.name: p for p in (OURS, OFFICIAL)}


def get(name: str) -> Protocol:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"evaluation protocol is one of {PROTOCOLS}, got {name!r}") from None


def generation_config(
    protocol: Protocol,
    model_sampling: Mapping[str, Any],
    *,
    seed: int | None,
    max_new_tokens: int = 16384,
    thinking_budget: int = 8192,
    do_sample: bool = False,
    closing_text: str | None = None,
) -> GenerationConfig:
    """The decoding settings of ``protocol``.

    ``model_sampling`` is the RLM's own sampling settings
    (:func:`alarm.generation.model_sampling_defaults`), used by the official protocol;
    ``do_sample`` asks ``ours`` to sample with its fixed values (Qwen3's advice) instead of greedy.
    """
    from alarm.generation import SAMPLING_DEFAULTS, GenerationConfig

    extra: dict[str, Any] = {} if closing_text is None else {"closing_text": closing_text}
    if protocol.sampling:
        unknown = set(model_sampling) - set(SAMPLING_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown sampling keys {sorted(unknown)}; known: {sorted(SAMPLING_DEFAULTS)}")
        extra.update({**SAMPLING_DEFAULTS, **model_sampling})
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        thinking_budget=thinking_budget,
        do_sample=protocol.sampling or do_sample,
        seed=seed if (protocol.sampling or do_sample) else None,
        second_pass=protocol.second_pass,
        max_model_len=protocol.max_model_len,
        continue_from=protocol.continue_from,
        stop_tokens=protocol.stop_tokens,
        **extra,
    )


def decoding_settings(config: GenerationConfig) -> dict[str, Any]:
    """What ``run.json`` records about decoding: every value that changes what is written."""
    out: dict[str, Any] = {
        "do_sample": config.do_sample,
        "second_pass": config.second_pass,
        "max_model_len": config.max_model_len,
        "continue_from": config.continue_from,
        "stop_tokens": list(config.stop_tokens),
    }
    if config.do_sample:
        out.update(
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            min_p=config.min_p,
            repetition_penalty=config.repetition_penalty,
            seed=config.seed,
        )
    return out
