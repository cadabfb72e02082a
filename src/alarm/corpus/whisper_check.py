"""``alarm corpus filter-wer``: drop spoken questions whose audio does not say their transcript.

Some HeySQuAD recordings do not match the question text they come with. The official recipe
(``scripts/alarm/filter_dataset.py``, run on ``heysquad_human`` only) transcribes every spoken
question with Whisper-large-v3 and drops the rows whose word error rate against the given
question exceeds 0.5, both sides normalised by :func:`official_normalize`. This step does the
same on source or corpus records: rows of the checked datasets (default ``heysquad_human``)
are transcribed in batches; rows of other datasets pass through unchecked.

Files (``KEPT`` is ``--out``, ``.jsonl`` or ``.parquet``):

    KEPT                     the kept rows, in source order (written atomically at the end)
    <stem>.rejects.jsonl     dropped rows: id, reason, detail, wer, hypothesis, question
    <stem>.whisper.jsonl     one verdict per checked row (WER and transcript), appended per
                             batch: a killed run resumes from it, nothing lost or repeated

The verdicts keep the measured WER rather than the decision, so a rerun with another
``--max-wer`` decides again without transcribing again; another Whisper model is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alarm import io as atomic
from alarm.corpus.collection.rejects import default_rejects_path
from alarm.corpus.schema import SourceRecord, read_records, write_jsonl, write_parquet
from alarm.wer import edit_distance

log = logging.getLogger(__name__)

WHISPER_RATE = 16_000  # Whisper's feature extractor takes 16 kHz only

# Reasons a row is dropped; the rejects file and the summary use exactly these strings.
WER_TOO_HIGH = "transcript mismatch"
MISSING_AUDIO = "missing audio"
UNREADABLE_AUDIO = "unreadable audio"
NO_WORDS = "no words to check"
DUPLICATE_ID = "duplicate id"

#: A batch of 16 kHz mono clips -> one transcript each.
Transcriber = Callable[[Sequence[np.ndarray]], list[str]]


def official_normalize(text: str) -> str:
    """The official filter's normalisation: lower case, then every character that is not a
    to z or a space removed. Digits, apostrophes and hyphens vanish without a space, so
    "it's" reads "its" and "1990" disappears; the WER then splits on whitespace."""
    return re.sub(r"[^a-z ]", "", text.lower())


def official_wer(question: str, transcript: str) -> float:
    """WER of one transcript against its question, both normalised the official way.

    Raises ValueError for a question with no words left (the official metric cannot score it).
    """
    reference = official_normalize(question).split()
    if not reference:
        raise ValueError(f"the question {question!r} has no words after normalisation")
    return edit_distance(reference, official_normalize(transcript.strip()).split()) / len(reference)


@dataclass(frozen=True)
class WhisperCheckConfig:
    """Settings of one check; unknown keys are refused.

    ``max_wer``: rows above it are dropped (official 0.5; a row at exactly 0.5 is kept).
    ``datasets``: the datasets whose rows are checked (official: HeySQuAD only; the question
    is the row's ``metadata``, the verbatim transcript of a transcript-style source).
    """

    sources: tuple[str, ...]
    out: str
    audio_root: str
    whisper: str
    rejects: str | None = None
    max_wer: float = 0.5
    datasets: tuple[str, ...] = ("heysquad_human",)
    batch_size: int = 16
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("give at least one source file (JSONL or Parquet records)")
        if not self.out.endswith((".jsonl", ".parquet")):
            raise ValueError(f"--out is a .jsonl or .parquet file, got {self.out!r}")
        if not self.max_wer >= 0 or self.batch_size < 1:
            raise ValueError(f"max_wer is >= 0 and batch_size positive, got {self.max_wer} and {self.batch_size}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WhisperCheckConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        if unknown := set(data) - names:
            raise ValueError(f"unknown whisper check keys {sorted(unknown)}; known: {sorted(names)}")
        data = dict(data)
        for key in ("sources", "datasets"):
            if isinstance(data.get(key), (list, str)):
                data[key] = (data[key],) if isinstance(data[key], str) else tuple(data[key])
        return cls(**data)

    @property
    def rejects_path(self) -> Path:
        return Path(self.rejects) if self.rejects else default_rejects_path(self.out)

    @property
    def verdicts_path(self) -> Path:
        """``kept.jsonl`` -> ``kept.whisper.jsonl``, beside the rejects file of the same stem."""
        rejects = default_rejects_path(self.out)
        return rejects.with_name(rejects.name.replace(".rejects.jsonl", ".whisper.jsonl"))


@dataclass
class WhisperCheckSummary:
    """What one check kept and dropped (by reason), and how many rows it transcribed now."""

    kept: int = 0
    passed_through: int = 0
    transcribed: int = 0
    resumed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "dropped": dict(self.dropped)}


# -- the model --------------------------------------------------------------------------------------


def whisper_location(reference: str) -> str:
    """A loadable directory or hub id: a packaged model by name (``whisper-tiny.en``) or as
    ``packaged:<name>`` is converted once into the cache; anything else passes through."""
    from alarm import packaged

    if not packaged.is_packaged(reference) and reference in packaged.registry():
        reference = packaged.PACKAGED_PREFIX + reference
    return str(packaged.resolve_weights(reference))


class WhisperTranscriber:
    """Batched greedy transcription with a transformers ``WhisperForConditionalGeneration``.

    Multilingual checkpoints are told English and transcription, as the official filter does;
    English-only ones (``*.en``, vocabulary under 51865 tokens) take no language token.
    """

    def __init__(self, reference: str, device: str = "cpu") -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        location = whisper_location(reference)
        self.processor = WhisperProcessor.from_pretrained(location)
        self.model = WhisperForConditionalGeneration.from_pretrained(location).to(device).eval()
        self.device = device
        multilingual = self.model.config.vocab_size >= 51865  # transformers' own rule
        self.options = {"language": "english", "task": "transcribe"} if multilingual else {}

    def __call__(self, clips: Sequence[np.ndarray]) -> list[str]:
        import torch

        inputs = self.processor(
            list(clips), sampling_rate=WHISPER_RATE, return_tensors="pt", return_attention_mask=True
        )
        with torch.no_grad():
            ids = self.model.generate(
                inputs.input_features.to(self.device),
                attention_mask=inputs.attention_mask.to(self.device),
                **self.options,
            )
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]


# -- the check ----------------------------------------------------------------------------------------


def segment_key(record: SourceRecord) -> str:
    """Rows that share a segment (HeySQuAD's question with and without its passage) share one transcript."""
    return f"{record.audio_path}@{record.offset_s:g}+{record.duration_s:g}"


def load_clip(record: SourceRecord, audio_root: str) -> np.ndarray:
    """The row's segment as 16 kHz mono samples; ``_BadAudio`` names why it cannot be read."""
    from alarm.audio import AudioError, load_audio

    path = os.path.join(audio_root, record.audio_path)
    if not os.path.isfile(path):
        raise _BadAudio(MISSING_AUDIO, f"{record.audio_path} does not exist under {audio_root}")
    try:
        wave = load_audio(
            path, offset_s=record.offset_s, duration_s=record.duration_s, target_rate=WHISPER_RATE, max_seconds=None
        )
    except (AudioError, RuntimeError, OSError) as err:  # soundfile's LibsndfileError is a RuntimeError
        raise _BadAudio(UNREADABLE_AUDIO, str(err)) from None
    return wave.samples


class _BadAudio(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _checked_rows(config: WhisperCheckConfig) -> Iterator[SourceRecord]:
    """The rows to check, each id once (a repeated id is dropped when the outputs are written)."""
    seen: set[str] = set()
    for path in config.sources:
        for record in read_records(path):
            if record.dataset in config.datasets and record.id not in seen:
                seen.add(record.id)
                yield record


def _batches(rows: Iterator[SourceRecord], size: int) -> Iterator[list[SourceRecord]]:
    batch: list[SourceRecord] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _verdict(record: SourceRecord, whisper: str, hypothesis: str | None, bad: _BadAudio | None) -> dict[str, Any]:
    """One line of the verdicts file: the WER and transcript, or why the row could not be checked."""
    out: dict[str, Any] = {"id": record.id, "segment": segment_key(record), "whisper": whisper}
    if bad is not None:
        return {**out, "reason": bad.reason, "detail": bad.detail}
    assert hypothesis is not None
    try:
        return {**out, "wer": official_wer(record.metadata, hypothesis), "hypothesis": hypothesis}
    except ValueError as err:
        return {**out, "reason": NO_WORDS, "detail": str(err), "hypothesis": hypothesis}


def transcribe_batch(
    batch: Sequence[SourceRecord], config: WhisperCheckConfig, transcriber: Transcriber, known: dict[str, str]
) -> list[dict[str, Any]]:
    """Verdicts of one batch; segments already transcribed (``known``) are not transcribed again."""
    bad: dict[str, _BadAudio] = {}
    clips: dict[str, np.ndarray] = {}
    for record in batch:
        key = segment_key(record)
        if key in known or key in clips:
            continue
        try:
            clips[key] = load_clip(record, config.audio_root)
        except _BadAudio as err:
            bad[record.id] = err
    if clips:
        known.update(zip(clips, transcriber(list(clips.values()))))
    return [_verdict(r, config.whisper, known.get(segment_key(r)), bad.get(r.id)) for r in batch]


def _load_verdicts(config: WhisperCheckConfig) -> dict[str, dict[str, Any]]:
    verdicts = atomic.JsonlStore(config.verdicts_path).load()
    other = {v.get("whisper") for v in verdicts.values()} - {config.whisper}
    if other:
        raise ValueError(
            f"{config.verdicts_path}: transcripts of another Whisper model ({', '.join(map(str, sorted(other)))}); "
            "give another --out or delete that file to start over"
        )
    return verdicts


def run_whisper_check(config: WhisperCheckConfig, transcriber: Transcriber | None = None) -> WhisperCheckSummary:
    """Transcribe every checked row not transcribed yet (resumable), then write the kept rows and the rejects."""
    from tqdm.auto import tqdm

    store = atomic.JsonlStore(config.verdicts_path)
    verdicts = _load_verdicts(config)
    summary = WhisperCheckSummary(resumed=len(verdicts))
    known = {v["segment"]: v["hypothesis"] for v in verdicts.values() if "hypothesis" in v}
    todo = (r for r in _checked_rows(config) if r.id not in verdicts)
    bar = tqdm(desc="whisper check", unit="row", disable=not config.progress)
    for batch in _batches(todo, config.batch_size):
        if transcriber is None:  # loaded only when there is something to transcribe
            transcriber = WhisperTranscriber(config.whisper, config.device)
        new = transcribe_batch(batch, config, transcriber, known)
        store.append(new)  # one write per batch: a kill loses at most the batch in flight
        verdicts.update((v["id"], v) for v in new)
        summary.transcribed += len(new)
        bar.update(len(new))
    bar.close()
    _write_outputs(config, verdicts, summary)
    return summary


def _reject(record: SourceRecord, verdict: dict[str, Any] | None, reason: str, detail: str) -> dict[str, Any]:
    verdict = verdict or {}
    return {
        "id": record.id,
        "reason": reason,
        "detail": detail,
        "audio_path": record.audio_path,
        "question": record.metadata,
        "wer": verdict.get("wer"),
        "hypothesis": verdict.get("hypothesis"),
    }


def _decide(record: SourceRecord, verdict: dict[str, Any], max_wer: float) -> dict[str, Any] | None:
    """The reject line of a checked row, or None to keep it."""
    if "reason" in verdict:
        return _reject(record, verdict, verdict["reason"], verdict["detail"])
    if verdict["wer"] > max_wer:  # the official rule: strictly above the threshold is dropped
        return _reject(record, verdict, WER_TOO_HIGH, f"WER {verdict['wer']:.3f} > {max_wer:g}")
    return None


def _write_outputs(
    config: WhisperCheckConfig, verdicts: dict[str, dict[str, Any]], summary: WhisperCheckSummary
) -> None:
    """Kept rows and rejects, each file written whole and atomically (a rerun rewrites them alike)."""
    kept: list[SourceRecord] = []
    rejects: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in config.sources:
        for record in read_records(path):
            if record.id in seen:
                rejects.append(_reject(record, None, DUPLICATE_ID, "an earlier row has this id"))
                summary.dropped[DUPLICATE_ID] += 1
                continue
            seen.add(record.id)
            if record.dataset not in config.datasets:
                summary.passed_through += 1
                kept.append(record)
                continue
            reject = _decide(record, verdicts[record.id], config.max_wer)
            if reject is None:
                kept.append(record)
            else:
                rejects.append(reject)
                summary.dropped[reject["reason"]] += 1
    (write_parquet if config.out.endswith(".parquet") else write_jsonl)(kept, config.out)
    atomic.write_jsonl(config.rejects_path, rejects)
    summary.kept = len(kept)
