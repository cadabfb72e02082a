"""Training data: corpus rows -> exact length plan -> length-grouped steps -> padded batches.

    corpus shards (JSONL / Parquet CorpusRecord rows, one split)
      -> plan_lengths     exact token count of every row (prompt + audio positions + target),
                          over-limit rows rejected here with a reason, once, before training
      -> StepPlan         the order of an epoch: (steps, micro-batches per step, micro-batch)
                          indices, a pure function of (seed, epoch); rank r of W takes its
                          share of each step, so the global order does not depend on W
      -> TrainingDataset  in DataLoader workers: read + resample the audio segment (or read
                          cached encoder states), render the chat, mask labels to the target
      -> collate_batch    pad into a TrainBatch (tokens, labels, audio per rate or states)

A sample that fails in a worker (unreadable audio, not in the feature cache, longer than
planned) becomes a :class:`Rejection` that travels with the batch to be counted and
written down; it is never silently dropped and a target is never cut.

Audio slot sizes come from the model's length rule (``model.length_rule()``: shells of the
encoders, adapters and fusion, no weights), so everything a worker holds pickles in a few
kilobytes plus the tokenizer and the rows: workers may start with ``fork`` (Linux default
here) or ``spawn`` (macOS) and produce the same batches.
"""

from __future__ import annotations

import glob
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from alarm.audio import AudioError, load_audio
from alarm.chat import IGNORE_INDEX, AudioSlot, ChatExample, build_example, without_think_open
from alarm.corpus.schema import CorpusRecord, read_records
from alarm.modeling.inputs import AudioBatch
from alarm.training.plan_cache import LengthCache, row_key

log = logging.getLogger(__name__)

# Reasons a sample is skipped; the counts are logged and every skip is written to rejects.jsonl.
OVER_TOKEN_LIMIT = "over_token_limit"
AUDIO_TOO_LONG = "audio_too_long"
UNREADABLE_AUDIO = "unreadable_audio"
NOT_IN_CACHE = "not_in_feature_cache"
TARGET_LENGTH = "target_length"
REASONS = (OVER_TOKEN_LIMIT, AUDIO_TOO_LONG, UNREADABLE_AUDIO, NOT_IN_CACHE, TARGET_LENGTH)
#: ``TrainConfig.system_prompt`` value that puts the model config's system prompt in every row.
MODEL_SYSTEM_PROMPT = "model"


@dataclass(frozen=True)
class Rejection:
    """A sample left out of training, and why."""

    id: str
    reason: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "reason": self.reason, "detail": self.detail}


def worker_context(method: str, num_workers: int) -> Any:
    """The multiprocessing context of DataLoader workers (``None`` without workers).

    ``auto`` is ``fork`` on Linux (workers start at once and share the rows copy-on-write)
    and the platform's default elsewhere (``spawn`` on macOS and Windows, where ``fork`` is
    unsafe or missing). Everything a worker needs pickles, so the batches do not depend on it.
    """
    if not num_workers:
        return None
    if method == "auto":
        method = "fork" if sys.platform.startswith("linux") else multiprocessing.get_start_method()
    return multiprocessing.get_context(method)


# -- corpus --------------------------------------------------------------------------------


def find_shards(corpus: str | os.PathLike[str]) -> list[str]:
    """The shard files of a corpus: the file itself, or every .jsonl/.parquet under a directory.

    ``rejects*.jsonl`` files (what ``alarm corpus merge`` writes next to the shards) are logs,
    not shards, and are left out.
    """
    corpus = os.fspath(corpus)
    if os.path.isfile(corpus):
        return [corpus]
    if not os.path.isdir(corpus):
        raise FileNotFoundError(f"corpus {corpus!r} is neither a shard file nor a directory")
    shards = sorted(
        p
        for ext in ("jsonl", "parquet")
        for p in glob.glob(os.path.join(corpus, "**", f"*.{ext}"), recursive=True)
        if not os.path.basename(p).startswith("rejects")
    )
    if not shards:
        raise FileNotFoundError(f"corpus directory {corpus!r} holds no .jsonl or .parquet shards")
    return shards


def load_corpus(corpus: str | os.PathLike[str], split: str) -> list[CorpusRecord]:
    """All corpus rows of one split, in shard order; ids must be unique."""
    records: list[CorpusRecord] = []
    for shard in find_shards(corpus):
        for record in read_records(shard):
            if not isinstance(record, CorpusRecord):
                raise ValueError(f"{shard}: row {record.id!r} is a source record, not a corpus row (no response)")
            if record.split == split:
                records.append(record)
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            raise ValueError(f"corpus {corpus}: id {record.id!r} appears more than once")
        seen.add(record.id)
    return records


# -- chat layout ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatFormat:
    """How a corpus row becomes token ids: the model's tokenizer, length rules and layout.

    ``system``: the system prompt of every row (None: none, as the official training rows);
    ``eos``: whether the end-of-turn token after a finished target is trained (official: no).
    """

    tokenizer: Any
    audio_lengths: Callable[[dict[int, torch.Tensor]], torch.Tensor]
    user_parts: Callable[[str, Sequence[AudioSlot]], list[Any]]
    sample_rates: tuple[int, ...]
    system: str | None
    eos: bool = False

    @classmethod
    def from_model(cls, model: Any, system: str | None = None, *, eos: bool = False) -> ChatFormat:
        """The model's layout; holds its picklable length rule, not the model.

        ``system``: None or "" for no system prompt, :data:`MODEL_SYSTEM_PROMPT` for the model
        config's, any other text for itself.
        """
        system = model.config.system_prompt if system == MODEL_SYSTEM_PROMPT else system
        rule = model.length_rule()
        return cls(model.tokenizer, rule, model.user_parts, tuple(model.sample_rates), system or None, eos)

    @property
    def pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    def example(self, record: CorpusRecord, sample_lengths: dict[int, int]) -> ChatExample:
        """Token ids and labels (target only) for a row whose audio has these sample counts."""
        return self.prompt(record, sample_lengths, target=record.response)

    def prompt(self, record: CorpusRecord, sample_lengths: dict[int, int], target: str | None = None) -> ChatExample:
        """The row's conversation up to the generation prompt, with ``target`` appended when given."""
        (size,) = self.audio_lengths({r: torch.tensor([n]) for r, n in sample_lengths.items()}).tolist()
        parts = self.user_parts(record.prompt, [AudioSlot(int(size))])
        return build_example(
            self.tokenizer, parts, system=self.system, context=record.context, target=target, eos=self.eos
        )

    def nominal_lengths(self, seconds: float) -> dict[int, int]:
        """Sample counts per encoder rate for a segment of ``seconds``."""
        return {rate: max(1, int(round(seconds * rate))) for rate in self.sample_rates}


# -- length plan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LengthPlan:
    """Exact sizes of every row, and which rows train. Index i refers to ``records[i]``."""

    audio_seconds: np.ndarray  # (N,) float
    tokens: np.ndarray  # (N,) int: prompt + audio positions + target
    kept: np.ndarray  # (K,) int indices of rows within the limits
    rejections: tuple[Rejection, ...]


class _SizeDataset(Dataset):
    def __init__(self, records: Sequence[CorpusRecord], fmt: ChatFormat) -> None:
        self.records, self.fmt = records, fmt

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> int:
        record = self.records[i]
        return len(self.fmt.example(record, self.fmt.nominal_lengths(record.duration_s)).input_ids)


def plan_lengths(
    records: Sequence[CorpusRecord],
    fmt: ChatFormat,
    *,
    max_seq_len: int,
    max_audio_seconds: float,
    num_workers: int = 0,
    progress: bool = False,
    cache: LengthCache | None = None,
    start_method: str = "auto",
    target_tokens: tuple[int, int] | None = None,
) -> LengthPlan:
    """Tokenize every row once (audio sized from ``duration_s``) and apply the limits.

    The count is exact for the planned audio length; a worker re-checks it against the
    audio it actually reads. With ``cache`` only rows it does not hold are tokenized, and
    their counts are added to it. ``target_tokens`` = (low, high) keeps only rows whose
    target has that many tokens (:func:`target_length_problems`).
    """
    keys = [row_key(r) for r in records] if cache is not None else []
    tokens = cache.lookup(keys) if cache is not None else np.full(len(records), -1, dtype=np.int64)
    todo = np.flatnonzero(tokens < 0)
    if len(todo):
        loader = DataLoader(
            _SizeDataset([records[i] for i in todo], fmt),
            batch_size=256,
            num_workers=num_workers,
            collate_fn=list,
            multiprocessing_context=worker_context(start_method, num_workers),
            generator=torch.Generator().manual_seed(0),  # never draw from the global RNG (see make_loader)
        )
        bar = tqdm(loader, desc="planning", disable=not progress)
        tokens[todo] = np.fromiter((n for chunk in bar for n in chunk), dtype=np.int64, count=len(todo))
        if cache is not None:
            cache.add([keys[i] for i in todo], tokens[todo].tolist())
    if cache is not None:
        log.info("length plan: %d rows from %s, %d tokenized", len(records) - len(todo), cache.path, len(todo))
    seconds = np.array([r.duration_s for r in records], dtype=np.float64)
    rejections = []
    keep = np.ones(len(records), dtype=bool)
    short_or_long = target_length_problems(records, fmt.tokenizer, target_tokens) if target_tokens else {}
    for i, record in enumerate(records):
        if i in short_or_long:
            rejections.append(Rejection(record.id, TARGET_LENGTH, short_or_long[i]))
            keep[i] = False
        elif seconds[i] > max_audio_seconds:
            rejections.append(
                Rejection(record.id, AUDIO_TOO_LONG, f"{seconds[i]:.1f} s > max_audio_seconds {max_audio_seconds}")
            )
            keep[i] = False
        elif tokens[i] > max_seq_len:
            rejections.append(Rejection(record.id, OVER_TOKEN_LIMIT, f"{tokens[i]} tokens > max_seq_len {max_seq_len}"))
            keep[i] = False
    return LengthPlan(seconds, tokens, np.flatnonzero(keep), tuple(rejections))


def target_length_problems(
    records: Sequence[CorpusRecord], tokenizer: Any, bounds: tuple[int, int], batch_size: int = 1024
) -> dict[int, str]:
    """``{row index: why}`` for rows whose target is outside ``bounds`` = (low, high) tokens, inclusive.

    The official ``validate_and_filter_answers.py`` keeps answers of 100 to 612 tokens,
    counted on the stored answer without special tokens; for Qwen3-Thinking-2507 that answer
    starts after the template's ``<think>``, so a leading ``<think>`` is not counted here
    either. It runs over the metadata datasets only (its ``ALL_DATASETS`` lists no spoken-query
    set), so rows marked ``special_case: spoken_query`` are not checked. Tokenized in batches
    (a fast tokenizer does a batch in parallel); nothing is cached, as a target is short.
    """
    low, high = bounds
    checked = [i for i, r in enumerate(records) if r.provenance.get("special_case") != "spoken_query"]
    problems: dict[int, str] = {}
    for start in range(0, len(checked), batch_size):
        chunk = checked[start : start + batch_size]
        texts = [without_think_open(records[i].response) for i in chunk]
        for i, ids in zip(chunk, tokenizer(texts, add_special_tokens=False).input_ids):
            if not low <= len(ids) <= high:
                problems[i] = f"target of {len(ids)} tokens is outside [{low}, {high}] (target_tokens)"
    return problems


# -- order of an epoch ---------------------------------------------------------------------


@dataclass(frozen=True)
class StepPlan:
    """The sample order of every epoch, as optimizer steps of micro-batches.

    ``epoch(e)`` is an int array (steps, micro_batches_per_step, micro_batch_size) of dataset
    indices, a pure function of ``(seed, e)`` and the lengths: resuming at any step replays
    exactly the same order. Samples that do not fill a last step are left out of that epoch
    (a different random few each epoch).

    With ``group_by_length`` the shuffled indices are cut into groups of ``group_size``
    micro-batches; each group is sorted by (tokens, audio seconds) and cut into micro-batches,
    and the micro-batches of the whole epoch are shuffled ("shuffled buckets"): a micro-batch
    holds samples of similar length, so little of it is padding.
    """

    tokens: np.ndarray  # (N,) sort key
    audio_seconds: np.ndarray  # (N,) tie-breaker
    micro_batch_size: int
    micro_batches_per_step: int
    seed: int
    group_by_length: bool = True
    group_size: int = 64

    @property
    def step_size(self) -> int:
        return self.micro_batch_size * self.micro_batches_per_step

    @property
    def steps_per_epoch(self) -> int:
        return len(self.tokens) // self.step_size

    def epoch(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.tokens))[: self.steps_per_epoch * self.step_size]
        micro = self.micro_batch_size
        if self.group_by_length:
            chunk = micro * self.group_size
            groups = []
            for start in range(0, len(order), chunk):
                idx = order[start : start + chunk]
                groups.append(idx[np.lexsort((self.audio_seconds[idx], self.tokens[idx]))])
            batches = np.concatenate(groups).reshape(-1, micro)
            batches = batches[rng.permutation(len(batches))]
        else:
            batches = order.reshape(-1, micro)
        return batches.reshape(self.steps_per_epoch, self.micro_batches_per_step, micro)

    def rank_batches(self, epoch: int, start_step: int, rank: int, world_size: int) -> list[list[int]]:
        """This rank's micro-batches from ``start_step`` to the end of the epoch, in order.

        Rank r takes micro-batches [r*A, (r+1)*A) of every step (A = per-rank accumulation),
        so W processes see exactly the micro-batches one process would, split between them.
        """
        if self.micro_batches_per_step % world_size:
            raise ValueError(f"{self.micro_batches_per_step} micro-batches per step do not split over {world_size}")
        share = self.micro_batches_per_step // world_size
        steps = self.epoch(epoch)[start_step:, rank * share : (rank + 1) * share]
        return [b.tolist() for b in steps.reshape(-1, self.micro_batch_size)]


def validation_batches(
    tokens: np.ndarray, micro_batch_size: int, limit: int, rank: int, world_size: int
) -> list[list[int]]:
    """Fixed validation micro-batches (sorted by length, at most ``limit``; 0 = all), rank's share."""
    order = np.argsort(tokens, kind="stable")
    batches = [order[i : i + micro_batch_size].tolist() for i in range(0, len(order), micro_batch_size)]
    if limit:
        # Spread the kept batches over the length range instead of keeping only the shortest.
        picks = np.linspace(0, len(batches) - 1, num=min(limit, len(batches))).round().astype(int)
        batches = [batches[i] for i in sorted(set(picks.tolist()))]
    return batches[rank::world_size]


def padding_fraction(batches: Sequence[Sequence[int]], tokens: np.ndarray) -> float:
    """Share of padded token positions when each batch is padded to its longest sample."""
    real = sum(int(tokens[b].sum()) for b in batches)
    padded = sum(int(tokens[b].max()) * len(b) for b in batches)
    return 1.0 - real / padded if padded else 0.0


# -- samples and batches -------------------------------------------------------------------


@dataclass
class Sample:
    """One tokenized training sample with its audio (waves per rate) or cached encoder states."""

    id: str
    input_ids: torch.Tensor  # (S,)
    labels: torch.Tensor  # (S,)
    sample_lengths: dict[int, int]
    waves: dict[int, torch.Tensor] = field(default_factory=dict)  # rate -> (samples,)
    states: dict[str, torch.Tensor] = field(default_factory=dict)  # kind -> (L, T, D)


class TrainingDataset(Dataset):
    """Corpus rows as :class:`Sample` s (or :class:`Rejection` s); runs in DataLoader workers."""

    def __init__(
        self,
        records: Sequence[CorpusRecord],
        fmt: ChatFormat,
        *,
        audio_root: str | None,
        max_seq_len: int,
        max_audio_seconds: float,
        features: Any | None = None,
        online_rates: Sequence[int] = (),
    ) -> None:
        """``features`` is a :class:`~alarm.training.cache.FeatureCache` or ``None`` (online).

        With a cache that lacks some encoders, ``online_rates`` are the sample rates those
        encoders read: the audio is loaded at them next to the cached states.
        """
        if audio_root is None and (features is None or online_rates):
            raise ValueError(
                "an audio root is needed"
                + (f" for the encoders the feature cache lacks (rates {list(online_rates)})" if features else "")
            )
        self.records = records
        self.fmt = fmt
        self.audio_root = audio_root
        self.max_seq_len = max_seq_len
        self.max_audio_seconds = max_audio_seconds
        self.features = features
        self.wave_rates = list(fmt.sample_rates) if features is None else list(online_rates)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample | Rejection:
        record = self.records[i]
        sample_lengths: dict[int, int] = {}
        states: dict[str, torch.Tensor] = {}
        waves: dict[int, torch.Tensor] = {}
        if self.features is not None:
            if not self.features.has(record):
                return Rejection(record.id, NOT_IN_CACHE, f"{record.id} is not in {self.features.directory}")
            sample_lengths, states = self.features.load(record.id)
        if self.wave_rates:
            try:
                wave = self.read_audio(record)
            except AudioError as err:
                return Rejection(record.id, UNREADABLE_AUDIO, str(err))
            waves = {rate: wave.resample(rate).to_tensor() for rate in self.wave_rates}
            read = {rate: int(w.numel()) for rate, w in waves.items()}
            if any(sample_lengths.get(rate, n) != n for rate, n in read.items()):  # the file changed since
                detail = f"{record.id}: the audio has {read} samples, the feature cache {sample_lengths}"
                return Rejection(record.id, NOT_IN_CACHE, detail)
            sample_lengths = {**sample_lengths, **read}
        example = self.fmt.example(record, sample_lengths)
        if len(example.input_ids) > self.max_seq_len:
            detail = f"{len(example.input_ids)} tokens > max_seq_len {self.max_seq_len} (audio longer than planned)"
            return Rejection(record.id, OVER_TOKEN_LIMIT, detail)
        ids = torch.tensor(example.input_ids, dtype=torch.long)
        return Sample(record.id, ids, torch.tensor(example.labels, dtype=torch.long), sample_lengths, waves, states)

    def read_audio(self, record: CorpusRecord):
        """The record's segment, mono, at the file's rate."""
        return load_audio(
            os.path.join(self.audio_root, record.audio_path),
            offset_s=record.offset_s,
            duration_s=record.duration_s,
            max_seconds=self.max_audio_seconds,
        )


@dataclass
class TrainBatch:
    """A padded micro-batch, plus what was rejected while building it."""

    ids: list[str]
    input_ids: torch.Tensor  # (B, S)
    attention_mask: torch.Tensor  # (B, S)
    labels: torch.Tensor  # (B, S)
    audio: AudioBatch | None
    rejections: list[Rejection]

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def num_target_tokens(self) -> int:
        """Tokens the loss is computed on (labels are shifted by one inside the loss)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) positions, audio positions included."""
        return int(self.attention_mask.sum())

    def to(self, device: torch.device | str) -> TrainBatch:
        return TrainBatch(
            self.ids,
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.labels.to(device),
            self.audio.to(device) if self.audio is not None else None,
            self.rejections,
        )

    def without_targets(self) -> TrainBatch:
        """The same inputs with every label ignored: a forward/backward that adds no gradient."""
        return TrainBatch(
            self.ids, self.input_ids, self.attention_mask, torch.full_like(self.labels, IGNORE_INDEX), self.audio, []
        )


def _pad_states(samples: Sequence[Sample]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Cached encoder states (L, T, D) per sample -> (L, B, T_max, D) and frames (B,) per kind."""
    out = {}
    for kind in samples[0].states:
        per_sample = [s.states[kind] for s in samples]
        frames = torch.tensor([h.shape[1] for h in per_sample], dtype=torch.long)
        padded = pad_sequence([h.transpose(0, 1) for h in per_sample], batch_first=True)  # (B, T, L, D)
        out[kind] = (padded.permute(2, 0, 1, 3).contiguous(), frames)
    return out


@dataclass(frozen=True)
class Collator:
    """Pads samples into a :class:`TrainBatch` (runs in DataLoader workers)."""

    pad_token_id: int

    def __call__(self, items: Sequence[Sample | Rejection]) -> TrainBatch:

        samples = [s for s in items if isinstance(s, Sample)]
        rejections = [r for r in items if isinstance(r, Rejection)]
        if not samples:
            empty = torch.zeros(0, 0, dtype=torch.long)
            return TrainBatch([], empty, empty, empty, None, rejections)
        input_ids = pad_sequence([s.input_ids for s in samples], batch_first=True, padding_value=self.pad_token_id)
        labels = pad_sequence([s.labels for s in samples], batch_first=True, padding_value=IGNORE_INDEX)
        lengths = torch.tensor([s.input_ids.numel() for s in samples])
        attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        sample_lengths = {
            rate: torch.tensor([s.sample_lengths[rate] for s in samples], dtype=torch.long)
            for rate in samples[0].sample_lengths
        }
        # Cached states for the encoders a feature cache holds, waves for those that run online.
        waves = {rate: pad_sequence([s.waves[rate] for s in samples], batch_first=True) for rate in samples[0].waves}
        audio = AudioBatch(waves, sample_lengths, _pad_states(samples))
        return TrainBatch([s.id for s in samples], input_ids, attention_mask, labels, audio, rejections)


def make_loader(
    dataset: TrainingDataset,
    batches: Sequence[Sequence[int]],
    pad_token_id: int,
    num_workers: int,
    start_method: str = "auto",
) -> DataLoader:
    """A DataLoader over fixed micro-batches (workers started with ``start_method``, see `worker_context`).

    It gets its own generator so creating it never draws from the global torch RNG (that
    RNG drives dropout; a resumed run must see the same stream as an uninterrupted one).
    """
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=Collator(pad_token_id),
        num_workers=num_workers,
        multiprocessing_context=worker_context(start_method, num_workers),
        persistent_workers=False,
        generator=torch.Generator().manual_seed(0),
        prefetch_factor=2 if num_workers else None,
    )
