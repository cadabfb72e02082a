"""The self-generation pipeline: source records -> training records (paper, Section 2.1).

Stages, in order, each a :class:`Stage` run by one engine (:func:`run_stage`):

=========  =======  =============================================================================
stage      model    what it does
=========  =======  =============================================================================
audio      -        the audio file exists and the segment is inside it; the split is assigned
prompts    Q        ``num_candidates`` candidate prompts under rules I (multilingual share, forms)
filter     Q        lexical exposure detector, then Q judges the rest; one kept prompt, seeded
respond    RLM      R0: the RLM's reasoning and answer given (metadata, prompt)
rephrase   RLM      the same RLM rewrites R0 as heard, thinking budget B on its own reasoning
=========  =======  =============================================================================

Special cases (``spoken_query_datasets``, default HeySQuAD and InstructS2S): the audio *is*
the query. The prompt is the query's transcript (the record's ``metadata``), earlier turns
stay in ``context``, prompts/filter/rephrase make no LLM call and ``response = response_raw``.

**Split** (the audio stage): a dataset whose source records already hold ``validation``
records (an official split, or the collectors' hashed one) keeps them as given; otherwise
``floor(validation_fraction * n)`` of its records, chosen by a seeded hash of the id over the
whole input (not the shard), become ``validation``.

**Files.** Every stage writes chunks of records as ``<stage dir>/<shard tag>-<chunk>.parquet``
(the last stage's dir is ``corpus/``) and their rejects as
``rejects/<stage>/<shard tag>-<chunk>.jsonl``, each file atomically (temp + rename). A stage's
input is the previous stage's output minus the ids already in its own outputs or rejects,
so a killed build resumes where it stopped, with no id lost or repeated. Shards split the
input by a hash of the id (``--num-shards N --shard-index i``), so shard processes never
touch each other's files and can share one output directory. ``done-<tag>.json`` marks a
finished shard; :func:`merge` joins finished shards.

**Failures.** Unusable LLM output (see :mod:`alarm.corpus.prompts`) is retried up to
``max_attempts`` times with a new seed, then the record goes to the rejects with the stage,
a short reason and details. Bad audio is rejected at once. One record never stops the job;
a backend that fails ``max_backend_errors`` requests in a row does (nothing is committed for
the chunk in flight, so a rerun resumes cleanly).
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from alarm.corpus import instructions
from alarm.corpus.backends import Backend, BackendSpec, ChatRequest, Completion, SamplingParams, build_backend
from alarm.corpus.prompts import (
    Candidate,
    ParseError,
    choose,
    echoed_markup,
    exposure_hits,
    extract_block,
    is_refusal,
    numbered,
    parse_candidates,
    parse_rewritten_answer,
    parse_verdicts,
    rewriting_talk,
    screen_copies,
    screen_exposure,
    split_think,
    stable_seed,
    text_problem,
    think_text,
)
from alarm.corpus.schema import CorpusRecord, RecordError, SourceRecord, read_records, write_parquet
from alarm.io import atomic_open, write_text

log = logging.getLogger(__name__)

PIPELINE_VERSION = "alarm.corpus.pipeline/1"
STAGES = ("audio", "prompts", "filter", "respond", "rephrase")
CORPUS_DIR = "corpus"


# -- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``alarm corpus build`` needs; unknown keys are refused.

    Sampling defaults follow Qwen3's advice: instruct (Q) temperature 0.7 / top-p 0.8,
    thinking (RLM) 0.6 / 0.95, top-k 20. ``thinking_budget`` is B of the rephrasing pass
    (paper: 1536); ``respond_thinking_budget`` limits R0's reasoning (-1: none, as in the paper).
    ``rephrase_exposure_check`` retries a rephrasing whose target the lexical exposure detector
    still flags and rejects the record if no attempt passes (off: the paper keeps every rewrite).
    ``reply_openings`` starts the prompter's replies with the opening of their format
    (:data:`instructions.OPENINGS`), for small instruct models that drift out of it.
    """

    sources: tuple[str, ...]
    output: str
    audio_root: str = ""
    audio_check: str = "header"  # header | decode | none
    prompter: BackendSpec = BackendSpec("scripted")
    rlm: BackendSpec = BackendSpec("scripted")
    num_candidates: int = 20
    multilingual_share: float = 0.2
    languages: tuple[str, ...] = ("en", "de", "fr", "es", "it", "zh", "ru", "ja")
    max_prompt_chars: int = 400
    thinking_budget: int = 1536
    respond_thinking_budget: int = -1
    rlm_thinks: bool = True
    rephrase_exposure_check: bool = False
    reply_openings: bool = False
    max_attempts: int = 3
    max_backend_errors: int = 16
    validation_fraction: float = 0.1
    seed: int = 0
    spoken_query_datasets: tuple[str, ...] = ("heysquad_human", "instructs2s")  # the collectors' names
    prompter_sampling: SamplingParams = SamplingParams(max_tokens=4000, temperature=0.7, top_p=0.8, top_k=20)
    rlm_sampling: SamplingParams = SamplingParams(max_tokens=4096, temperature=0.6, top_p=0.95, top_k=20)
    chunk_size: int = 64
    num_shards: int = 1
    shard_index: int = 0
    limit: int | None = None
    stages: tuple[str, ...] = STAGES
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("give at least one source file (JSONL or Parquet of source records)")
        if self.audio_check not in ("header", "decode", "none"):
            raise ValueError(f"audio_check is header, decode or none, got {self.audio_check!r}")
        if self.audio_check != "none" and not self.audio_root:
            raise ValueError("audio_root is needed to check the audio (or set audio_check to 'none')")
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"shard_index {self.shard_index} is not in [0, {self.num_shards})")
        if unknown := set(self.stages) - set(STAGES):
            raise ValueError(f"unknown stages {sorted(unknown)}; stages are {STAGES}")
        if self.num_candidates < 1 or self.max_attempts < 1 or self.chunk_size < 1:
            raise ValueError("num_candidates, max_attempts and chunk_size must be positive")
        if not 0 <= self.validation_fraction < 1 or not 0 <= self.multilingual_share <= 1:
            raise ValueError("validation_fraction is in [0, 1) and multilingual_share in [0, 1]")
        if self.thinking_budget < -1 or self.respond_thinking_budget < -1:
            raise ValueError("thinking budgets are -1 (none) or a number of tokens >= 0")
        if "en" not in self.languages:
            raise ValueError("languages must include 'en'")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        if unknown := set(data) - names:
            raise ValueError(f"unknown build config keys {sorted(unknown)}; known: {sorted(names)}")
        data = dict(data)
        for key in ("sources", "languages", "spoken_query_datasets", "stages"):
            if key in data and not isinstance(data[key], tuple):
                data[key] = (data[key],) if isinstance(data[key], str) else tuple(data[key])
        for key in ("prompter", "rlm"):
            if key in data:
                data[key] = BackendSpec.parse(data[key])
        for key in ("prompter_sampling", "rlm_sampling"):
            if isinstance(data.get(key), dict):
                data[key] = SamplingParams.from_dict(data[key])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["prompter"], data["rlm"] = self.prompter.to_dict(), self.rlm.to_dict()
        return json.loads(json.dumps(data))  # tuples -> lists

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the records; a resumed output must have been built with them."""
        data = self.to_dict()
        # where things are, which models run, how work is cut and retried: free to change between runs
        for key in ("output", "audio_root", "prompter", "rlm", "chunk_size", "shard_index", "limit", "stages"):
            data.pop(key)
        for key in ("progress", "max_attempts", "max_backend_errors"):
            data.pop(key)
        data["sources"] = [os.path.abspath(s) for s in self.sources]
        data["instructions"] = instructions.refs()
        data["pipeline"] = PIPELINE_VERSION
        return data


def shard_of(record_id: str, num_shards: int) -> int:
    """The shard an id belongs to (stable across machines and runs)."""
    return stable_seed("shard", record_id) % num_shards


def shard_tag(index: int, num_shards: int) -> str:
    return f"s{index:05d}of{num_shards:05d}"


# -- sources and splits ------------------------------------------------------------------------------


def read_sources(paths: Sequence[str]) -> Iterator[SourceRecord]:
    """Source records from JSONL/Parquet files, in file order (streamed)."""
    for path in paths:
        yield from read_records(path)


def split_hash(seed: int, record_id: str) -> int:
    """The seeded 64-bit hash that ranks a dataset's ids for the validation split."""
    return stable_seed(seed, "split", record_id)


@dataclass(frozen=True)
class SplitRule:
    """The split of every record, decided from the whole input but stored in O(datasets).

    Datasets in ``given`` have validation records in the sources and keep every split as
    given. In the others the ``floor(fraction * n)`` ids with the smallest ``(split_hash,
    id)`` are validation: ``cutoffs[dataset]`` is the largest such key, as ``(hash, id)``
    where ``id`` is None unless another id of the dataset shares that hash (then the
    id breaks the tie, as in a sort by ``(hash, id)``).
    """

    seed: int
    fraction: float
    given: frozenset[str]
    cutoffs: dict[str, tuple[int, str | None]]

    def split_of(self, record: SourceRecord) -> str:
        if record.dataset in self.given:
            return record.split
        cutoff = self.cutoffs.get(record.dataset)
        if cutoff is None:
            return "train"
        key, tie_id = split_hash(self.seed, record.id), cutoff[1]
        below = key < cutoff[0] or (key == cutoff[0] and (tie_id is None or record.id <= tie_id))
        return "validation" if below else "train"

    def rule_name(self, dataset: str) -> str:
        return "source" if dataset in self.given else f"seeded {self.fraction}"


@dataclass(frozen=True)
class SourcePlan:
    """What one pass over the sources tells a shard: the split rule and the shard's ids, in order."""

    splits: SplitRule
    shard_ids: tuple[str, ...]


def plan_sources(
    paths: Sequence[str], fraction: float, seed: int, num_shards: int = 1, shard_index: int = 0
) -> SourcePlan:
    """Scan the sources once: split rule over the whole input, ids of this shard, duplicate ids.

    Memory is 8 bytes per source record (its split hash) plus the ids of this shard, never
    the records. A hash seen twice in a dataset means a duplicate id (an error) or, with
    odds of about n^2 / 2^65, two ids sharing a hash; only then is a second pass made, to
    tell which and to break ties by id.
    """
    from array import array

    import numpy as np

    hashes: dict[str, array] = defaultdict(lambda: array("Q"))
    given: set[str] = set()
    shard_ids: list[str] = []
    for r in read_sources(paths):
        hashes[r.dataset].append(split_hash(seed, r.id))
        if r.split == "validation":
            given.add(r.dataset)
        if shard_of(r.id, num_shards) == shard_index:
            shard_ids.append(r.id)
    arrays = {d: np.frombuffer(a, dtype=np.uint64) for d, a in hashes.items()}
    repeated: dict[str, set[int]] = {}
    for dataset, keys in arrays.items():
        values, counts = np.unique(keys, return_counts=True)
        if (counts > 1).any():
            repeated[dataset] = {int(v) for v in values[counts > 1]}
    tied = _ids_of_repeated_hashes(paths, seed, repeated) if repeated else {}
    cutoffs: dict[str, tuple[int, str | None]] = {}
    for dataset, keys in arrays.items():
        n_val = math.floor(fraction * len(keys))
        if dataset in given or n_val == 0:
            continue
        cut = int(np.partition(keys, n_val - 1)[n_val - 1])
        ids = sorted(tied.get((dataset, cut), []))
        if ids:  # several ids share the cutoff hash: take as many of them, by id, as the count needs
            cutoffs[dataset] = (cut, ids[n_val - int((keys < cut).sum()) - 1])
        else:
            cutoffs[dataset] = (cut, None)
    return SourcePlan(SplitRule(seed, fraction, frozenset(given), cutoffs), tuple(shard_ids))


def _ids_of_repeated_hashes(
    paths: Sequence[str], seed: int, repeated: dict[str, set[int]]
) -> dict[tuple[str, int], list[str]]:
    """``{(dataset, hash): ids}`` for hashes seen twice; a repeated id is an error."""
    found: dict[tuple[str, int], list[str]] = defaultdict(list)
    for r in read_sources(paths):
        key = split_hash(seed, r.id)
        if key in repeated.get(r.dataset, ()):
            if r.id in found[(r.dataset, key)]:
                raise RecordError(f"record {r.id!r}: id appears twice in the sources")
            found[(r.dataset, key)].append(r.id)
    return found


# -- stage errors and the stage protocol --------------------------------------------------------------


class StageError(Exception):
    """A record that fails a stage: ``reason`` is a short category; ``retry`` says if trying again may help."""

    def __init__(self, reason: str, detail: str = "", *, retry: bool = True) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail, self.retry = reason, detail, retry


class BackendUnavailable(RuntimeError):
    """The backend failed too many requests in a row; rerun the build to resume."""


class Stage:
    """One step over records. ``request`` returns None when a record needs no LLM call."""

    name: str = ""
    role: str | None = None  # "prompter" | "rlm" | None

    def __init__(self, config: BuildConfig) -> None:
        self.config = config

    def request(self, record: CorpusRecord, attempt: int) -> ChatRequest | None:
        return None

    def apply(self, record: Any, completion: Completion | None) -> CorpusRecord:
        raise NotImplementedError

    # helpers shared by the stages
    def spoken(self, record: SourceRecord) -> bool:
        return record.dataset in self.config.spoken_query_datasets

    def opening(self) -> str:
        """The start of this stage's reply sent as the assistant's first words (empty when off)."""
        return instructions.OPENINGS.get(self.name, "") if self.config.reply_openings else ""

    def params(self, base: SamplingParams, record: CorpusRecord, attempt: int, **over: Any) -> SamplingParams:
        seed = stable_seed(self.config.seed, self.name, record.id, attempt) % 2**31
        return replace(base, seed=seed, **over)


def _usable(completion: Completion | None, expects_thinking: bool, allow_length: bool = False) -> tuple[str, str]:
    """(reasoning, answer) of a completion that ended normally, else :class:`StageError`.

    ``allow_length``: a completion cut at ``max_tokens`` may still be used (Q's lists, where a
    small model's chatter after a complete list is what hits the limit); the caller then checks
    what was cut and raises :func:`_over_length` when nothing usable is left.
    """
    if completion is None:
        raise StageError("no completion")
    if completion.error:
        raise StageError("backend error", completion.error)
    if completion.finish_reason == "length" and not allow_length:
        raise _over_length(completion)
    reason, detail = text_problem(completion.text)
    if reason:
        raise StageError(reason, detail)
    try:
        return split_think(completion.text, expects_thinking)
    except ParseError as err:
        raise StageError(err.reason, err.detail) from None


def _over_length(completion: Completion) -> StageError:
    return StageError("over-length", f"hit max_tokens after {completion.num_tokens} tokens")


def _truncated(completion: Completion | None) -> bool:
    return bool(completion and completion.finish_reason == "length")


class AudioStage(Stage):
    """The audio exists and holds the segment; the record becomes a CorpusRecord with its split."""

    name = "audio"

    def __init__(self, config: BuildConfig, splits: SplitRule) -> None:
        super().__init__(config)
        self.splits = splits

    def apply(self, record: SourceRecord, completion: Completion | None) -> CorpusRecord:
        check_audio(record, self.config.audio_root, self.config.audio_check)
        rule = self.splits.rule_name(record.dataset)
        provenance = {
            "pipeline": PIPELINE_VERSION,
            "instructions": instructions.refs(),
            "seed": self.config.seed,
            "thinking_budget": self.config.thinking_budget,
            "respond_thinking_budget": self.config.respond_thinking_budget,
            "split_rule": rule,
            "special_case": "spoken_query" if self.spoken(record) else None,
            "stages": {},
        }
        fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(SourceRecord)}
        fields["split"] = self.splits.split_of(record)
        return CorpusRecord(**fields, provenance=provenance)


def check_audio(record: SourceRecord, root: str, mode: str) -> None:
    """Raise StageError (no retry) unless the record's segment can be read."""
    if mode == "none":
        return
    import soundfile as sf

    from alarm.audio import AudioError, load_audio

    path = os.path.join(root, record.audio_path)
    if not os.path.isfile(path):
        raise StageError("audio missing", f"{record.audio_path} does not exist under the audio root", retry=False)
    try:
        if mode == "decode":
            wave = load_audio(path, offset_s=record.offset_s, duration_s=record.duration_s)
            seconds = record.offset_s + wave.seconds
        else:
            info = sf.info(path)
            if info.frames <= 0:
                raise AudioError(f"{path}: audio is empty (0 frames)")
            seconds = info.frames / info.samplerate
    except (AudioError, RuntimeError, OSError) as err:  # soundfile's LibsndfileError is a RuntimeError
        raise StageError("audio unreadable", str(err), retry=False) from None
    end = record.offset_s + record.duration_s
    if record.offset_s >= seconds or end > seconds + max(0.05, 0.01 * record.duration_s):
        raise StageError(
            "segment outside the audio",
            f"[{record.offset_s:.2f}, {end:.2f}] s asked, {record.audio_path} has {seconds:.2f} s",
            retry=False,
        )


class PromptsStage(Stage):
    """Q writes candidate prompts (spoken queries: the transcript is the prompt)."""

    name, role = "prompts", "prompter"

    def request(self, record: CorpusRecord, attempt: int) -> ChatRequest | None:
        if self.spoken(record):
            return None
        cfg = self.config
        messages = instructions.get("prompts").messages(
            metadata=record.metadata,
            num_candidates=str(cfg.num_candidates),
            language_rule=instructions.language_rule(cfg.num_candidates, cfg.multilingual_share, cfg.languages),
        )
        return ChatRequest(tuple(messages), self.params(cfg.prompter_sampling, record, attempt), opening=self.opening())

    def apply(self, record: CorpusRecord, completion: Completion | None) -> CorpusRecord:
        if self.spoken(record):
            if not record.metadata.strip():
                raise StageError("empty transcript", "a spoken query needs its transcript in metadata", retry=False)
            return replace(record, prompt=record.metadata.strip())
        cfg = self.config
        _, answer = _usable(completion, expects_thinking=False, allow_length=True)
        answer = self.opening() + answer
        truncated = _truncated(completion)
        # untagged items are English when every candidate was asked for in English
        all_english = instructions.num_other_languages(cfg.num_candidates, cfg.multilingual_share, cfg.languages) == 0
        try:
            candidates = parse_candidates(
                answer,
                cfg.languages,
                cfg.max_prompt_chars,
                default_language="en" if all_english else "",
                truncated=truncated,
            )
        except ParseError as err:
            if err.reason == "no candidate list" and is_refusal(answer):
                raise StageError("refusal", answer[:200]) from None
            if truncated and err.reason in ("no candidate list", "no usable candidate"):
                raise _over_length(completion) from None  # type: ignore[arg-type]
            raise StageError(err.reason, err.detail) from None
        candidates = screen_copies(candidates, record.metadata)
        if not any(c.kept for c in candidates):
            raise StageError("no usable candidate", "every candidate is dropped or copies the written account")
        provenance = {
            **record.provenance,
            "candidate_languages": [c.language for c in candidates],
            "candidate_format": "block" if extract_block(answer, "prompts") is not None else "numbered list",
        }
        return replace(record, prompt_candidates=tuple(c.as_record() for c in candidates), provenance=provenance)


def _candidates(record: CorpusRecord) -> list[Candidate]:
    languages = record.provenance.get("candidate_languages", [])
    return [
        Candidate(c["text"], languages[i] if i < len(languages) else "", bool(c["kept"]), c["reason"])
        for i, c in enumerate(record.prompt_candidates)
    ]


class FilterStage(Stage):
    """Lexical exposure detector, then Q's verdicts; one kept prompt chosen uniformly (seeded)."""

    name, role = "filter", "prompter"

    def screened(self, record: CorpusRecord) -> list[Candidate]:
        return screen_exposure(_candidates(record))

    def request(self, record: CorpusRecord, attempt: int) -> ChatRequest | None:
        if self.spoken(record):
            return None
        kept = [c.text for c in self.screened(record) if c.kept]
        if not kept:
            return None  # nothing for the judge: apply() rejects
        messages = instructions.get("filter").messages(metadata=record.metadata, candidates=numbered(kept))
        params = self.params(self.config.prompter_sampling, record, attempt)
        return ChatRequest(tuple(messages), params, opening=self.opening())

    def apply(self, record: CorpusRecord, completion: Completion | None) -> CorpusRecord:
        if self.spoken(record):
            return record
        candidates = self.screened(record)
        judged = [i for i, c in enumerate(candidates) if c.kept]
        verdict_format = None
        if judged:
            _, answer = _usable(completion, expects_thinking=False, allow_length=True)
            answer = self.opening() + answer
            try:
                verdicts = parse_verdicts(answer, count=len(judged))
            except ParseError as err:
                if is_refusal(answer):
                    raise StageError("refusal", answer[:200]) from None
                if _truncated(completion):
                    raise _over_length(completion) from None  # type: ignore[arg-type]
                raise StageError(err.reason, err.detail) from None
            verdict_format = "block" if extract_block(answer, "verdicts") is not None else "bare lines"
            for number, i in enumerate(judged, 1):
                kept, why = verdicts.get(number, (False, "no verdict from the judge"))
                if not kept:
                    candidates[i] = candidates[i].dropped(f"judge: {why}" if number in verdicts else why)
        kept = [c for c in candidates if c.kept]
        provenance = {**record.provenance, "verdict_format": verdict_format}
        out = replace(record, prompt_candidates=tuple(c.as_record() for c in candidates), provenance=provenance)
        if not kept:
            raise StageError("no prompt kept", f"{len(candidates)} candidates, none kept", retry=False)
        chosen = kept[choose([c.text for c in kept], self.config.seed, record.id)]
        return replace(out, prompt=chosen.text, provenance={**out.provenance, "prompt_language": chosen.language})


class RespondStage(Stage):
    """R0: the RLM's reasoning and answer given the metadata and the prompt."""

    name, role = "respond", "rlm"

    def request(self, record: CorpusRecord, attempt: int) -> ChatRequest:
        cfg = self.config
        if self.spoken(record):  # the query is the audio: the RLM answers it as a text chat
            messages = [*record.context, {"role": "user", "content": record.prompt}]
        else:
            system, user = instructions.get("respond").messages(metadata=record.metadata, prompt=record.prompt)
            messages = [system, *record.context, user]
        params = self.params(cfg.rlm_sampling, record, attempt, thinking_budget=cfg.respond_thinking_budget)
        return ChatRequest(tuple(messages), params)

    def apply(self, record: CorpusRecord, completion: Completion | None) -> CorpusRecord:
        reasoning, answer = _usable(completion, expects_thinking=self.config.rlm_thinks)
        if not answer:
            raise StageError("empty answer", "nothing after </think>")
        if is_refusal(answer):
            raise StageError("refusal", answer[:200])
        if tag := echoed_markup(f"{reasoning}\n{answer}"):
            raise StageError("echoed the request", f"{tag} in the response")
        raw = think_text(reasoning, answer) if (reasoning or self.config.rlm_thinks) else answer
        provenance = {**record.provenance, "respond_budget_reached": bool(completion and completion.budget_reached)}
        return replace(record, response_raw=raw, provenance=provenance)


class RephraseStage(Stage):
    """The RLM rewrites R0 as heard; its own reasoning (budget B) goes to ``rephrase_reasoning``."""

    name, role = "rephrase", "rlm"

    def answer_only(self, r0_reasoning: str) -> bool:
        """A non-thinking RLM's R0 is a plain answer: it is rewritten alone and the target stays plain."""
        return not self.config.rlm_thinks and not r0_reasoning

    def request(self, record: CorpusRecord, attempt: int) -> ChatRequest | None:
        if self.spoken(record):
            return None
        reasoning, answer = split_think(record.response_raw, expects_thinking=False)
        if self.answer_only(reasoning):
            messages = instructions.get("rephrase_answer").messages(prompt=record.prompt, answer=answer)
        else:
            messages = instructions.get("rephrase").messages(prompt=record.prompt, reasoning=reasoning, answer=answer)
        params = self.params(self.config.rlm_sampling, record, attempt, thinking_budget=self.config.thinking_budget)
        return ChatRequest(tuple(messages), params)

    def apply(self, record: CorpusRecord, completion: Completion | None) -> CorpusRecord:
        if self.spoken(record):
            return replace(record, response=record.response_raw, rephrase_reasoning="")
        own, rest = _usable(completion, expects_thinking=self.config.rlm_thinks)
        old_reasoning, _ = split_think(record.response_raw, expects_thinking=False)
        if self.answer_only(old_reasoning):
            if is_refusal(rest):
                raise StageError("refusal", rest[:200])
            try:
                target = parse_rewritten_answer(rest)
            except ParseError as err:
                raise StageError(err.reason, err.detail) from None
            rewrite_format = "block" if extract_block(rest, "rewritten_answer") is not None else "plain"
        else:
            target = self.rewritten_blocks(rest, old_reasoning)
            rewrite_format = "blocks"
        if tag := echoed_markup(target):
            raise StageError("echoed the request", f"{tag} in the rewrite")
        if is_refusal(target):
            raise StageError("refusal", target[:200])
        if phrase := rewriting_talk(target, f"{record.prompt}\n{record.response_raw}"):
            raise StageError("talks about the rewriting", repr(phrase))
        if self.config.rephrase_exposure_check and (hits := exposure_hits(target)):
            # the same detector the report measures targets with; a new seed may rewrite it cleanly
            raise StageError("target exposes the text", ", ".join(repr(h) for h in dict.fromkeys(hits)))
        provenance = {
            **record.provenance,
            "rephrase_budget_reached": bool(completion and completion.budget_reached),
            "rewrite_format": rewrite_format,
        }
        return replace(record, response=target, rephrase_reasoning=own, provenance=provenance)

    @staticmethod
    def rewritten_blocks(rest: str, old_reasoning: str) -> str:
        """The ``<think>`` target from the two rewritten blocks of a thinking RLM (both required)."""
        new_reasoning = extract_block(rest, "rewritten_reasoning")
        new_answer = extract_block(rest, "rewritten_answer")
        if new_reasoning is None or new_answer is None:
            if is_refusal(rest):
                raise StageError("refusal", rest[:200])
            missing = [t for t, b in (("reasoning", new_reasoning), ("answer", new_answer)) if b is None]
            raise StageError("no rewrite block", f"missing <rewritten_{'> and <rewritten_'.join(missing)}>")
        if not new_answer.strip() or (old_reasoning and not new_reasoning.strip()):
            raise StageError("empty rewrite", "a rewritten block is empty")
        return think_text(new_reasoning, new_answer)


# -- files ------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_jsonl(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class ShardFiles:
    """The files one shard owns in an output directory (see the module docstring)."""

    def __init__(self, root: str, num_shards: int, shard_index: int) -> None:
        self.root = root
        self.num_shards = num_shards
        self.tag = shard_tag(shard_index, num_shards)

    def stage_dir(self, stage: str) -> str:
        return os.path.join(self.root, CORPUS_DIR if stage == STAGES[-1] else os.path.join("stages", stage))

    def reject_dir(self, stage: str) -> str:
        return os.path.join(self.root, "rejects", stage)

    def outputs(self, stage: str) -> list[str]:
        return sorted(glob.glob(os.path.join(self.stage_dir(stage), f"{self.tag}-*.parquet")))

    def rejects(self, stage: str) -> list[str]:
        return sorted(glob.glob(os.path.join(self.reject_dir(stage), f"{self.tag}-*.jsonl")))

    def read_outputs(self, stage: str) -> Iterator[CorpusRecord]:
        for path in self.outputs(stage):
            yield from read_records(path)  # type: ignore[misc]

    def output_ids(self, stage: str) -> Iterator[str]:
        """Ids of a stage's outputs, file by file (only the id column is read)."""
        import pyarrow.parquet as pq

        for path in self.outputs(stage):
            yield from pq.read_table(path, columns=["id"]).column("id").to_pylist()

    def output_rows(self, stage: str) -> int:
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.outputs(stage))

    def done_ids(self, stage: str) -> set[str]:
        ids = set(self.output_ids(stage))
        ids.update(row["id"] for p in self.rejects(stage) for row in read_jsonl(p))
        return ids

    def commit(self, stage: str, accepted: Sequence[CorpusRecord], rejected: Sequence[dict[str, Any]]) -> None:
        """Write one chunk's records and rejects, each file atomically."""
        names = [os.path.basename(p).rsplit(".", 1)[0] for p in self.outputs(stage) + self.rejects(stage)]
        index = 1 + max((int(n.rsplit("-", 1)[1]) for n in names), default=-1)
        name = f"{self.tag}-{index:05d}"
        if accepted:
            write_parquet(accepted, os.path.join(self.stage_dir(stage), f"{name}.parquet"))
        if rejected:
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejected)
            write_text(os.path.join(self.reject_dir(stage), f"{name}.jsonl"), lines)

    def clean_temp(self) -> int:
        """Remove temp files a killed run of this shard left behind (never another shard's)."""
        stale = glob.glob(os.path.join(self.root, "**", f".tmp-*{self.tag}*"), recursive=True)
        for path in stale:
            os.unlink(path)
        return len(stale)

    @property
    def done_marker(self) -> str:
        return os.path.join(self.root, f"done-{self.tag}.json")

    def check_config(self, config: BuildConfig) -> None:
        """Refuse to resume an output built with other settings (or another shard count)."""
        path = os.path.join(self.root, "build.json")
        mine = config.fingerprint()
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                theirs = json.load(f)
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if diff:
                raise ValueError(
                    f"{self.root} was built with other settings ({', '.join(diff)} differ); "
                    "use a new output directory or the original settings"
                )
        else:
            write_text(path, json.dumps(mine, indent=2, ensure_ascii=False) + "\n")


# -- the engine -----------------------------------------------------------------------------------------


@dataclass
class _Work:
    record: Any
    attempts: int = 0  # LLM calls made for this record in this stage
    params: SamplingParams | None = None  # of the last call
    transport_retries: int = 0
    last_output: str = ""


@dataclass
class StageSummary:
    """What one stage did in this run."""

    stage: str
    pending: int = 0
    accepted: int = 0
    rejected: int = 0
    llm_calls: int = 0
    retries: int = 0
    transport_retries: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


class _BackendHealth:
    """Counts backend errors in a row; too many means the backend is down, not the records."""

    def __init__(self, limit: int) -> None:
        self.limit, self.in_a_row = limit, 0

    def see(self, completions: Sequence[Completion]) -> None:
        for c in completions:
            self.in_a_row = self.in_a_row + 1 if c.error else 0
        if self.in_a_row >= self.limit:
            last = next((c.error for c in reversed(completions) if c.error), "")
            raise BackendUnavailable(
                f"{self.in_a_row} backend requests failed in a row (last: {last}); "
                "nothing of the chunk in flight was written: rerun the same command to resume"
            )


def process_chunk(
    stage: Stage, records: Sequence[Any], backend: Backend | None, config: BuildConfig, health: _BackendHealth
) -> tuple[list[CorpusRecord], list[dict[str, Any]], StageSummary]:
    """Run one stage over a chunk: batched LLM calls, retries, rejects with reasons."""
    summary = StageSummary(stage.name)
    accepted: list[CorpusRecord] = []
    rejected: list[dict[str, Any]] = []
    works = [_Work(r) for r in records]
    todo = list(works)
    while todo:
        calls = [(w, _safe_request(stage, w)) for w in todo]
        llm = [(w, req) for w, req in calls if isinstance(req, ChatRequest)]
        completions = _safe_complete(backend, [req for _, req in llm]) if llm else []
        health.see(completions)
        summary.llm_calls += len(llm)
        by_work = {id(w): c for (w, _), c in zip(llm, completions)}
        todo = []
        for w, req in calls:
            completion = by_work.get(id(w))
            if completion is not None:
                w.attempts += 1
                w.params = req.params
                w.transport_retries += completion.transport_retries
                w.last_output = completion.text or completion.error
            try:
                if isinstance(req, StageError):
                    raise req
                record = stage.apply(w.record, completion)
            except StageError as err:
                if err.retry and isinstance(req, ChatRequest) and w.attempts < config.max_attempts:
                    todo.append(w)
                    continue
                rejected.append(_reject(stage, w, err))
                summary.reasons[err.reason] = summary.reasons.get(err.reason, 0) + 1
                continue
            except Exception as err:  # a bug or data we did not foresee: log it, reject the record, go on
                log.exception("stage %s failed on %s", stage.name, getattr(w.record, "id", "?"))
                rejected.append(_reject(stage, w, StageError("internal error", f"{type(err).__name__}: {err}")))
                summary.reasons["internal error"] = summary.reasons.get("internal error", 0) + 1
                continue
            accepted.append(_stamp(record, stage, w, backend))
    summary.accepted, summary.rejected = len(accepted), len(rejected)
    summary.retries = sum(max(0, w.attempts - 1) for w in works)
    return accepted, rejected, summary


def _safe_request(stage: Stage, w: _Work) -> ChatRequest | StageError | None:
    try:
        return stage.request(w.record, w.attempts)
    except Exception as err:  # building the request failed for this record only
        log.exception("stage %s could not build a request for %s", stage.name, getattr(w.record, "id", "?"))
        return StageError("internal error", f"{type(err).__name__}: {err}", retry=False)


def _safe_complete(backend: Backend | None, requests: list[ChatRequest]) -> list[Completion]:
    if backend is None:
        raise RuntimeError("this stage needs a backend")
    try:
        completions = backend.complete(requests)
    except Exception as err:  # a local backend crashed on this batch: every request of it failed
        log.warning("backend failed on a batch of %d: %s: %s", len(requests), type(err).__name__, err)
        return [Completion(finish_reason="error", error=f"{type(err).__name__}: {err}") for _ in requests]
    if len(completions) != len(requests):
        raise RuntimeError(f"backend returned {len(completions)} completions for {len(requests)} requests")
    return completions


def _stamp(record: CorpusRecord, stage: Stage, w: _Work, backend: Backend | None) -> CorpusRecord:
    stages = dict(record.provenance.get("stages", {}))
    entry: dict[str, Any] = {"at": _now(), "attempts": w.attempts}
    if w.attempts and w.params is not None:  # an LLM was called for this record
        entry.update(
            transport_retries=w.transport_retries,
            backend=backend.describe() if backend else None,
            sampling=dataclasses.asdict(w.params),  # the seed is the last attempt's
        )
    stages[stage.name] = entry
    return replace(record, provenance={**record.provenance, "stages": stages})


def _reject(stage: Stage, w: _Work, err: StageError) -> dict[str, Any]:
    r = w.record
    return {
        "id": r.id,
        "dataset": r.dataset,
        "category": r.category,
        "duration_s": r.duration_s,
        "stage": stage.name,
        "reason": err.reason,
        "detail": err.detail[:500],
        "attempts": w.attempts,
        "transport_retries": w.transport_retries,
        "last_output": w.last_output[:1000],
        "at": _now(),
    }


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` items (the last may be shorter), pulled lazily from ``items``."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def run_stage(
    stage: Stage,
    pending: Iterable[Any],
    total: int,
    backend: Backend | None,
    files: ShardFiles,
    config: BuildConfig,
    health: _BackendHealth,
) -> StageSummary:
    """Process ``total`` pending records chunk by chunk, committing each chunk atomically.

    ``pending`` is consumed lazily: a stage holds one chunk of records at a time, so its
    memory does not grow with the size of the shard.
    """
    from tqdm import tqdm

    summary = StageSummary(stage.name, pending=total)
    start = time.perf_counter()
    with tqdm(total=total, desc=f"{stage.name:>8}", unit="rec", disable=not config.progress) as bar:
        for chunk in chunked(pending, config.chunk_size):
            accepted, rejected, s = process_chunk(stage, chunk, backend, config, health)
            files.commit(stage.name, accepted, rejected)
            for key in ("accepted", "rejected", "llm_calls", "retries"):
                setattr(summary, key, getattr(summary, key) + getattr(s, key))
            summary.transport_retries += sum(r["transport_retries"] for r in rejected)
            summary.transport_retries += sum(
                a.provenance["stages"][stage.name].get("transport_retries", 0) for a in accepted
            )
            for reason, n in s.reasons.items():
                summary.reasons[reason] = summary.reasons.get(reason, 0) + n
            bar.update(len(chunk))
            bar.set_postfix(kept=summary.accepted, rejected=summary.rejected, calls=summary.llm_calls)
    summary.seconds = time.perf_counter() - start
    log.info(
        "stage %s: %d pending, %d kept, %d rejected, %d LLM calls (%d retries), %.1f rec/s",
        stage.name,
        summary.pending,
        summary.accepted,
        summary.rejected,
        summary.llm_calls,
        summary.retries,
        summary.pending / summary.seconds if summary.seconds > 0 else 0.0,
    )
    return summary


# -- the build -----------------------------------------------------------------------------------------


@dataclass
class BuildSummary:
    """What a build run did, stage by stage; ``complete`` when the shard has nothing left."""

    output: str
    shard: str
    stages: list[StageSummary]
    complete: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_backends(config: BuildConfig, roles: Iterable[str] = ("prompter", "rlm")) -> dict[str, Backend]:
    """Build the backends the roles need (Q: prompter, the RLM: rlm); one object for equal specs."""
    specs = {"prompter": config.prompter, "rlm": config.rlm}
    built: dict[str, Backend] = {}
    for role in sorted(set(roles)):
        same = next((b for r, b in built.items() if specs[r] == specs[role]), None)
        built[role] = same or build_backend(specs[role])
    return built


def build(config: BuildConfig, backends: dict[str, Backend] | None = None) -> BuildSummary:
    """Run the configured stages for one shard, resuming whatever an earlier run left.

    Records stream through: the sources are scanned once for the split and the shard's ids,
    then each stage reads its input (the sources, or the previous stage's files) lazily and
    holds one chunk at a time. What grows with the shard is only sets of ids.
    """
    files = ShardFiles(config.output, config.num_shards, config.shard_index)
    os.makedirs(config.output, exist_ok=True)
    files.check_config(config)
    if removed := files.clean_temp():
        log.info("removed %d temp files left by a killed run", removed)

    plan = plan_sources(config.sources, config.validation_fraction, config.seed, config.num_shards, config.shard_index)
    limited = plan.shard_ids if config.limit is None else plan.shard_ids[: config.limit]

    def shard_sources() -> Iterator[SourceRecord]:
        mine = (r for r in read_sources(config.sources) if shard_of(r.id, config.num_shards) == config.shard_index)
        return itertools.islice(mine, len(limited))

    stages: list[Stage] = [
        AudioStage(config, plan.splits),
        PromptsStage(config),
        FilterStage(config),
        RespondStage(config),
        RephraseStage(config),
    ]
    own_backends = backends is None
    if backends is None:
        roles = {s.role for s in stages if s.name in config.stages and s.role}
        backends = make_backends(config, roles)
    health = _BackendHealth(config.max_backend_errors)
    summaries = []
    try:
        previous = ""
        for stage in stages:
            if stage.name in config.stages:
                done = files.done_ids(stage.name)
                ids = files.output_ids(previous) if previous else iter(limited)
                total = sum(1 for i in ids if i not in done)
                source = files.read_outputs(previous) if previous else shard_sources()
                pending = (r for r in source if r.id not in done)
                backend = backends.get(stage.role) if stage.role else None
                summaries.append(run_stage(stage, pending, total, backend, files, config, health))
            previous = stage.name
    finally:
        if own_backends:
            for b in {id(b): b for b in backends.values()}.values():
                b.close()
    complete = _shard_complete(files, set(plan.shard_ids))
    if complete:
        counts = {"records": len(plan.shard_ids), "corpus": files.output_rows(STAGES[-1]), "at": _now()}
        write_text(files.done_marker, json.dumps(counts) + "\n")
    return BuildSummary(config.output, files.tag, summaries, complete)


def _shard_complete(files: ShardFiles, ids: set[str]) -> bool:
    """Every id of the shard has gone through every stage (or was rejected on the way)."""
    remaining = set(ids)
    for stage in STAGES:
        rejected = {row["id"] for p in files.rejects(stage) for row in read_jsonl(p)}
        passed = files.done_ids(stage) - rejected
        if not remaining <= passed | rejected:
            return False
        remaining -= rejected
    return True


# -- merging shards ---------------------------------------------------------------------------------------


def corpus_files(directory: str) -> list[str]:
    """The corpus Parquet files of a build directory (``corpus/``) or a merged one (``data/``)."""
    for sub in (CORPUS_DIR, "data"):
        found = sorted(glob.glob(os.path.join(directory, sub, "*.parquet")))
        if found:
            return found
    return []


def iter_reject_rows(directory: str) -> Iterator[dict[str, Any]]:
    """Every reject of a build directory (``rejects/<stage>/``) or a merged one (``rejects.jsonl``), streamed."""
    merged = os.path.join(directory, "rejects.jsonl")
    paths = sorted(glob.glob(os.path.join(directory, "rejects", "*", "*.jsonl")))
    paths = [merged] if os.path.exists(merged) else paths
    for path in paths:
        with open(path, encoding="utf-8") as f:
            yield from (json.loads(line) for line in f if line.strip())


def reject_rows(directory: str) -> list[dict[str, Any]]:
    """Every reject of a build directory or a merged one, as a list."""
    return list(iter_reject_rows(directory))


def merge(
    inputs: Sequence[str], output: str, *, rows_per_file: int = 100_000, allow_partial: bool = False
) -> dict[str, Any]:
    """Join the corpus shards of build directories into ``output/data/<split>-NNNNN-of-NNNNN.parquet``.

    Every input must hold all its shards finished (``done-*.json``) unless ``allow_partial``;
    an id present twice is an error. Rows are sorted by id; rejects go to ``rejects.jsonl``
    (in input order). Memory is bounded by one output file of records plus the ids: pass 1
    reads only ids and splits (sorted, they give each output file's id range); pass 2 reads
    each input file once and appends its rows to the temp file of their output file; pass 3
    sorts one output file at a time and writes it.
    """
    import shutil
    import tempfile

    paths = []
    for directory in inputs:
        _check_finished(directory, allow_partial)
        paths.extend(corpus_files(directory))
    starts, counts = _output_ranges(paths, rows_per_file, inputs)
    data_dir = os.path.join(output, "data")
    os.makedirs(data_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(data_dir, "*.parquet")):
        os.unlink(stale)
    for stale in glob.glob(os.path.join(output, ".tmp-merge-*")):  # a killed merge's temp files
        shutil.rmtree(stale, ignore_errors=True)
    spill_dir = tempfile.mkdtemp(prefix=".tmp-merge-", dir=output)
    try:
        _spill(paths, starts, spill_dir)
        for split, first_ids in starts.items():
            for k in range(len(first_ids)):
                part = sorted(read_records(os.path.join(spill_dir, f"{split}-{k}.jsonl")), key=lambda r: r.id)
                write_parquet(part, os.path.join(data_dir, f"{split}-{k:05d}-of-{len(first_ids):05d}.parquet"))
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)

    n_rejects = 0
    with atomic_open(os.path.join(output, "rejects.jsonl")) as f:
        for directory in inputs:
            for row in iter_reject_rows(directory):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n_rejects += 1
    info = {"inputs": [os.path.abspath(d) for d in inputs], "records": counts, "rejects": n_rejects, "at": _now()}
    for directory in inputs:  # the settings travel with the merged corpus
        build_json = os.path.join(directory, "build.json")
        if os.path.exists(build_json):
            with open(build_json, encoding="utf-8") as f:
                info.setdefault("build", json.load(f))
    write_text(os.path.join(output, "merge.json"), json.dumps(info, indent=2) + "\n")
    return info


def _output_ranges(
    paths: Sequence[str], rows_per_file: int, inputs: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """(first id of each output file per split, records per split), from the id and split columns only."""
    import pyarrow.parquet as pq

    ids: dict[str, list[str]] = {"train": [], "validation": []}
    for path in paths:
        table = pq.read_table(path, columns=["id", "split"])
        for rid, split in zip(table.column("id").to_pylist(), table.column("split").to_pylist()):
            ids[split].append(rid)
    starts: dict[str, list[str]] = {}
    for split, rows in ids.items():
        rows.sort()
        for a, b in zip(rows, rows[1:]):
            if a == b:
                raise RecordError(f"record {a!r} appears twice in {', '.join(inputs)}")
        starts[split] = rows[::rows_per_file]
    return starts, {split: len(rows) for split, rows in ids.items()}


def _spill(paths: Sequence[str], starts: dict[str, list[str]], spill_dir: str) -> None:
    """Append every record to ``<spill_dir>/<split>-<k>.jsonl`` of the output file its id falls in."""
    import bisect

    spills: dict[tuple[str, int], Any] = {}
    try:
        for path in paths:
            for r in read_records(path):
                part = (r.split, bisect.bisect_right(starts[r.split], r.id) - 1)
                if part not in spills:
                    spills[part] = open(os.path.join(spill_dir, f"{part[0]}-{part[1]}.jsonl"), "w", encoding="utf-8")
                spills[part].write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    finally:
        for f in spills.values():
            f.close()


def _check_finished(directory: str, allow_partial: bool) -> None:
    markers = glob.glob(os.path.join(directory, "done-s*of*.json"))
    build_json = os.path.join(directory, "build.json")
    if not os.path.exists(build_json):
        raise ValueError(f"{directory} is not a corpus build directory (no build.json)")
    with open(build_json, encoding="utf-8") as f:
        num_shards = int(json.load(f)["num_shards"])
    done = {os.path.basename(m)[len("done-") : -len(".json")] for m in markers}
    missing = [shard_tag(i, num_shards) for i in range(num_shards) if shard_tag(i, num_shards) not in done]
    if missing and not allow_partial:
        raise ValueError(
            f"{directory}: shards not finished: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''} "
            "(run them, or merge with --allow-partial)"
        )
