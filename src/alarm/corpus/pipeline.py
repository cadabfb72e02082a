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
the query, and by default (``spoken_query_text="context"``, the official recipe) it exists
only as audio: the row's text prompt is the earlier text flattened (HeySQuAD's passage, or
InstructS2S's earlier turns as ``User:``/``Assistant:`` lines; empty for a first turn) and
``context`` is emptied; R0 answers the context and the transcript as one user message.
prompts/filter/rephrase make no LLM call and ``response = response_raw``.

**Target shape** (official defaults): R0 gets ``respond_max_tokens`` = 512 tokens in all,
reasoning included; an R0 cut there is kept as it stands (``keep_unfinished``), often inside
its reasoning, and its rephrasing rewrites only what is there. Segments of
``max_audio_seconds`` (60 s) or more are rejected by the audio stage. The official
100-612-token target filter needs the RLM's tokenizer and is applied when training reads the
corpus (``TrainConfig.target_tokens``).

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
import itertools
import json
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from alarm.corpus import instructions
from alarm.corpus.backends import Backend, BackendSpec, ChatRequest, Completion, SamplingParams, build_backend
from alarm.corpus.backends.base import SECOND_PASS
from alarm.corpus.prompts import (
    stable_seed,
)
from alarm.corpus.schema import CorpusRecord, RecordError, SourceRecord, read_records
from alarm.corpus.shards import (
    CORPUS_DIR,
    ShardFiles,
    corpus_files,
    iter_reject_rows,
    merge,
    read_jsonl,
    reject_rows,
    shard_of,
    shard_tag,
    utc_now,
)
from alarm.corpus.stages import (
    PIPELINE_VERSION,
    STAGES,
    AudioStage,
    BackendUnavailable,
    FilterStage,
    PromptsStage,
    RephraseStage,
    RespondStage,
    Stage,
    StageError,
    check_audio,
)
from alarm.io import write_text

# Names the build's users import from here (the stages and the shard files have their own modules).
__all__ = [
    "CORPUS_DIR",
    "PIPELINE_VERSION",
    "STAGES",
    "AudioStage",
    "BackendUnavailable",
    "BuildConfig",
    "BuildSummary",
    "FilterStage",
    "PromptsStage",
    "RephraseStage",
    "RespondStage",
    "ShardFiles",
    "SplitRule",
    "Stage",
    "StageError",
    "StageSummary",
    "build",
    "check_audio",
    "corpus_files",
    "iter_reject_rows",
    "make_backends",
    "merge",
    "plan_sources",
    "process_chunk",
    "read_jsonl",
    "read_sources",
    "reject_rows",
    "run_stage",
    "shard_of",
    "shard_tag",
]

log = logging.getLogger(__name__)


# -- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``alarm corpus build`` needs; unknown keys are refused.

    Sampling defaults follow Qwen3's advice: instruct (Q) temperature 0.7 / top-p 0.8,
    thinking (RLM) 0.6 / 0.95, top-k 20. ``thinking_budget`` is B of the rephrasing pass
    (paper: 1536); ``rephrase_second_pass`` is how long the rephrasing runs after reasoning
    cut at B: ``full`` (official ``get_rephrased_response``: all of ``rlm_sampling.max_tokens``,
    4096, again) or ``remaining`` (ours before: what B left of it, so 4096 caps the whole
    reply and a long rewrite after a cut is cut too). ``respond_thinking_budget`` limits R0's
    reasoning alone (-1: no separate limit; its second pass gets what is left).
    ``respond_max_tokens`` caps R0 as a whole, reasoning and answer together: 512 in the
    official ``generate_responses.py`` / ``generate_instruction_responses.py`` (None: the RLM's
    ``rlm_sampling.max_tokens``, 4096, which this project used before: fewer R0s end
    mid-thought, but the targets are longer than the ones the paper trained on).
    ``keep_unfinished`` (official: on) keeps an R0 cut at that cap as it stands, often inside
    its reasoning; rephrasing then rewrites only what is there (instruction
    ``rephrase_unfinished``). Off: a thinking RLM's cut R0 is retried and then rejected, and a
    plain answer keeps its complete sentences (for small RLMs whose cut answers are chatter).
    ``spoken_query_text``: what text a spoken query's row carries besides its audio:
    ``context`` (official: the passage or the earlier turns, never the question) or
    ``transcript`` (the question's transcript: the text gives the question away).
    ``max_audio_seconds``: segments this long or longer are rejected by the audio stage
    (official ``validate_and_filter_indexes.py``: under 60 s; None: no limit).
    ``rephrase_exposure_check`` retries a rephrasing whose target the lexical exposure detector
    still flags and rejects the record if no attempt passes (off: the paper keeps every rewrite).
    ``reply_openings`` starts the prompter's replies with the opening of their format
    (:data:`instructions.OPENINGS`), for small instruct models that drift out of it.
    ``grounding`` (off: None, as in the paper) rejects an R0 answer or a rewrite that says what
    the metadata and the request do not: a number they lack, or more than this share of its
    content words (:func:`prompts.grounding_problem`); a rejected R0 lets the next attempt
    answer the next kept prompt. For small RLMs that invent answers to unanswerable requests.
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
    rephrase_second_pass: str = "full"  # full (official) | remaining
    respond_thinking_budget: int = -1
    rlm_thinks: bool = True
    rephrase_exposure_check: bool = False
    reply_openings: bool = False
    grounding: float | None = None
    max_attempts: int = 3
    max_backend_errors: int = 16
    validation_fraction: float = 0.1
    seed: int = 0
    spoken_query_datasets: tuple[str, ...] = ("heysquad_human", "instructs2s")  # the collectors' names
    spoken_query_text: str = "context"  # context | transcript
    respond_max_tokens: int | None = 512
    keep_unfinished: bool = True
    max_audio_seconds: float | None = 60.0
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
        if self.grounding is not None and not 0 <= self.grounding <= 1:
            raise ValueError(f"grounding is a share in [0, 1] (or None: off), got {self.grounding}")
        if self.rephrase_second_pass not in SECOND_PASS:
            raise ValueError(f"rephrase_second_pass is one of {SECOND_PASS}, got {self.rephrase_second_pass!r}")
        if self.spoken_query_text not in ("context", "transcript"):
            raise ValueError(f"spoken_query_text is context or transcript, got {self.spoken_query_text!r}")
        if self.respond_max_tokens is not None and self.respond_max_tokens < 1:
            raise ValueError(f"respond_max_tokens is positive (or None: the RLM's cap), got {self.respond_max_tokens}")
        if self.max_audio_seconds is not None and not self.max_audio_seconds > 0:
            raise ValueError(f"max_audio_seconds is positive (or None: no limit), got {self.max_audio_seconds}")
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
                record = stage.apply(w.record, completion, max(0, w.attempts - 1))
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
    entry: dict[str, Any] = {"at": utc_now(), "attempts": w.attempts}
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
        "at": utc_now(),
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
        counts = {"records": len(plan.shard_ids), "corpus": files.output_rows(STAGES[-1]), "at": utc_now()}
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
