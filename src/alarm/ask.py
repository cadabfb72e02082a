"""`alarm ask`: questions about sounds, one streamed from the command line or many from a file.

One question: ``alarm ask A.wav [B.wav ...] "question"`` streams the reasoning and the answer
(``--hide-thinking``: the answer alone). Several clips go before the question, in order.

Many questions: ``alarm ask --batch requests.jsonl --out answers.jsonl`` reads one JSON object
per line::

    {"id": "q1", "audio": "clips/dog.wav", "question": "What animal is this?"}
    {"id": "q2", "audio": ["a.wav", "b.wav"], "question": "Which clip is louder?"}

``id`` is optional (default ``line-<n>``: stable while the file is not edited); audio paths
are relative to ``--audio-root`` (default: the requests file's folder). Questions are answered
in batches, and each batch's answers are appended to ``--out`` as whole JSON lines (one
write, flush, fsync: :class:`~alarm.evaluation.runner.PredictionStore`). A killed run leaves
at most a torn last line, which the next run cuts off; the next run skips every id already
answered, so nothing is lost or answered twice. A bad line (not JSON, no question, missing or
unreadable audio, a repeated id) goes to the rejects file with its reason and the job goes
on. The rejects file lists what the latest run could not answer: it starts empty each run,
and a fixed line is answered by the next run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alarm import official_texts
from alarm.audio import AudioError, Waveform, load_audio
from alarm.evaluation.runner import Engine, PredictionStore
from alarm.generation_vllm import add_vllm_arguments

if TYPE_CHECKING:  # torch and transformers load when a model runs, not to parse arguments
    from alarm.generation import GenerationConfig, GenerationOutput

log = logging.getLogger(__name__)

REQUEST_FIELDS = frozenset({"id", "audio", "question"})


@dataclass(frozen=True)
class AskRequest:
    """One question about one or more clips, from one line of a requests file."""

    id: str
    audio: tuple[str, ...]
    question: str
    line: int


@dataclass(frozen=True)
class Rejected:
    """A line that cannot be answered, and why."""

    id: str | None
    line: int
    reason: str

    def record(self) -> dict[str, Any]:
        return {"id": self.id if self.id is not None else f"line-{self.line}", "line": self.line, "reason": self.reason}


@dataclass
class BatchStats:
    total: int  # lines in the requests file
    skipped: int  # answered by an earlier run
    answered: int
    rejected: int
    seconds: float


def parse_request(text: str, line: int, audio_root: Path) -> AskRequest:
    """One requests-file line as an :class:`AskRequest`; a ``ValueError`` names what is wrong."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(row, dict):
        raise ValueError(f"a request is a JSON object, got {type(row).__name__}")
    if unknown := sorted(set(row) - REQUEST_FIELDS):
        raise ValueError(f"unknown field(s) {unknown}; a request has {sorted(REQUEST_FIELDS)}")
    rid = row.get("id", f"line-{line}")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid) == "":
        raise ValueError(f"id must be a non-empty string or an integer, got {rid!r}")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be non-empty text, got {question!r}")
    audio = row.get("audio")
    paths = [audio] if isinstance(audio, str) else audio
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise ValueError(f"audio must be a path or a non-empty list of paths, got {audio!r}")
    return AskRequest(str(rid), tuple(str(audio_root / p) for p in paths), question, line)


def read_requests(path: Path, audio_root: Path) -> Iterator[AskRequest | Rejected]:
    """Every non-blank line of a requests file, parsed; a repeated id is rejected (the first wins)."""
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                request = parse_request(text, number, audio_root)
            except ValueError as err:
                yield Rejected(_id_of(text), number, str(err))
                continue
            if request.id in first_line:
                yield Rejected(request.id, number, f"id {request.id!r} repeats line {first_line[request.id]}")
                continue
            first_line[request.id] = number
            yield request


def _id_of(text: str) -> str | None:
    """The id of a line that failed to parse, when it has a usable one (for the rejects file)."""
    try:
        rid = json.loads(text).get("id")
    except (json.JSONDecodeError, AttributeError):
        return None
    return str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None


def answer_record(request: AskRequest, out: GenerationOutput, *, hide_thinking: bool) -> dict[str, Any]:
    """The line written for one answer."""
    record: dict[str, Any] = {"id": request.id, "audio": list(request.audio), "question": request.question}
    if not hide_thinking:
        record["reasoning"] = out.reasoning
    return {
        **record,
        "answer": out.answer,
        "reasoning_tokens": out.num_reasoning_tokens,
        "output_tokens": len(out.token_ids),
        "budget_reached": out.budget_reached,
        "finished": out.finished,
    }


def _batches(items: Sequence[AskRequest], size: int) -> Iterator[list[AskRequest]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def ask_batch(
    engine: Engine,
    requests_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    config: GenerationConfig,
    *,
    rejects_path: str | os.PathLike[str] | None = None,
    audio_root: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    hide_thinking: bool = False,
    system: str | None = None,
    max_seconds: float | None = 3600.0,
    progress: bool = True,
) -> BatchStats:
    """Answer every request of a JSONL file not yet in ``out_path`` (see the module docstring)."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    requests_path = Path(requests_path)
    if not requests_path.is_file():
        raise FileNotFoundError(f"{requests_path}: no such requests file")
    root = Path(audio_root) if audio_root is not None else requests_path.parent
    store = PredictionStore(out_path)
    rejects = PredictionStore(rejects_path if rejects_path is not None else f"{out_path}.rejects.jsonl")
    done = store.load()  # also cuts a torn last line left by a killed run
    rejects.path.unlink(missing_ok=True)  # it lists what this run could not answer

    todo: list[AskRequest] = []
    stats = BatchStats(0, 0, 0, 0, 0.0)
    for item in read_requests(requests_path, root):
        stats.total += 1
        if isinstance(item, Rejected):
            _reject(rejects, stats, item)
        elif item.id in done:
            stats.skipped += 1
        else:
            todo.append(item)
    chat = {"system": system} if system is not None else {}
    start = time.perf_counter()
    with tqdm(total=len(todo), disable=not progress, unit="q", desc="answering") as bar:
        for batch in _batches(todo, batch_size):
            ready, clips = [], []
            for request in batch:
                try:
                    clips.append([load_audio(p, max_seconds=max_seconds) for p in request.audio])
                    ready.append(request)
                except AudioError as err:
                    _reject(rejects, stats, Rejected(request.id, request.line, str(err)))
            if ready:
                outs = engine.answer(clips, [r.question for r in ready], config, **chat)
                store.append([answer_record(r, o, hide_thinking=hide_thinking) for r, o in zip(ready, outs)])
                stats.answered += len(ready)
            bar.update(len(batch))
    stats.seconds = time.perf_counter() - start
    return stats


def _reject(rejects: PredictionStore, stats: BatchStats, item: Rejected) -> None:
    stats.rejected += 1
    log.warning("line %d rejected: %s", item.line, item.reason)
    rejects.append([item.record()])


def answer_only(pieces: Iterable[str]) -> Iterator[str]:
    """The streamed text after ``</think>``: the answer without the reasoning before it."""
    from alarm.generation import THINK_END

    seen, answering, leading = "", False, True
    for piece in pieces:
        if not answering:
            seen += piece
            _, sep, piece = seen.partition(THINK_END)
            if not sep:
                continue
            answering = True
        if leading:  # the blank lines after </think> belong to neither part
            piece = piece.lstrip()
            leading = not piece
        if piece:
            yield piece


def ask_one(
    model: Any,
    clips: Sequence[Waveform],
    question: str,
    config: GenerationConfig,
    *,
    system: str | None = None,
    hide_thinking: bool = False,
) -> Iterator[str]:
    """Stream one answer (reasoning and answer, or the answer alone) about one or more clips."""
    from alarm.generation import has_thinking_mode, stream

    pieces = stream(model, clips, question, config, system=system)
    return answer_only(pieces) if hide_thinking and has_thinking_mode(model.tokenizer) else pieces


def _ask(args: argparse.Namespace) -> int:
    from alarm.generation import GenerationConfig
    from alarm.presets import build_model

    try:
        texts = official_texts.resolve(args.official_texts, ["ensemble", "thinking"])
    except official_texts.OfficialTextError as err:
        return _usage(str(err))
    closing = {"closing_text": texts.text("thinking.closing")} if texts is not None else {}
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens, thinking_budget=args.thinking_budget, do_sample=args.sample, **closing
    )
    if args.batch is not None:
        return _ask_batch(args, config, texts)
    if args.out is not None:
        return _usage("--out goes with --batch")
    if len(args.inputs) < 2:
        return _usage("give one or more audio files and then the question (or --batch FILE --out FILE)")
    *paths, question = args.inputs
    if not question.strip():
        return _usage("the question is empty")
    try:
        clips = [load_audio(path, max_seconds=args.max_seconds) for path in paths]
    except AudioError as err:
        return _usage(str(err))
    model = official_texts.apply_to_model(build_model(args.preset), texts)
    if args.engine == "vllm":  # no streaming: the whole answer is printed when both passes end
        engine = _engine(args, model)
        if engine is None:
            return 2
        (out,) = engine.answer([clips], [question], config, system=args.system)
        print(out.answer if args.hide_thinking else out.text)
        return 0
    pieces = ask_one(model, clips, question, config, system=args.system, hide_thinking=args.hide_thinking)
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _usage(problem: str) -> int:
    print(f"alarm ask: {problem}", file=sys.stderr)
    return 2


def _engine(args: argparse.Namespace, model: Any) -> Engine | None:
    """The engine ``--engine`` names; ``None`` (with the reason on stderr) when vLLM is missing."""
    from alarm.evaluation.runner import build_engine
    from alarm.generation_vllm import VLLMNotInstalled, settings_from_args

    try:
        return build_engine(args.engine, model, settings_from_args(args) if args.engine == "vllm" else None)
    except VLLMNotInstalled as err:
        _usage(str(err))
        return None


def _ask_batch(args: argparse.Namespace, config: GenerationConfig, texts: Any = None) -> int:
    from alarm.presets import build_model

    if args.inputs:
        return _usage("with --batch, audio and questions come from the file, not the command line")
    if args.out is None:
        return _usage("--batch needs --out answers.jsonl")
    if not Path(args.batch).is_file():
        return _usage(f"{args.batch}: no such requests file")
    engine = _engine(args, official_texts.apply_to_model(build_model(args.preset), texts))
    if engine is None:
        return 2
    stats = ask_batch(
        engine,
        args.batch,
        args.out,
        config,
        rejects_path=args.rejects,
        audio_root=args.audio_root,
        batch_size=args.batch_size,
        hide_thinking=args.hide_thinking,
        system=args.system,
        max_seconds=args.max_seconds,
        progress=not args.no_progress,
    )
    rejects = args.rejects or f"{args.out}.rejects.jsonl"
    print(
        f"{stats.answered} answered, {stats.skipped} already in {args.out}, {stats.rejected} rejected"
        + (f" (reasons in {rejects})" if stats.rejected else "")
        + f", {stats.seconds:.1f} s",
        file=sys.stderr,
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ask``."""
    p = sub.add_parser(
        "ask",
        help="ask about sounds: one question streamed, or a JSONL file of them (--batch)",
        description="alarm ask A.wav [B.wav ...] QUESTION   |   alarm ask --batch requests.jsonl --out answers.jsonl",
    )
    p.add_argument("inputs", nargs="*", metavar="AUDIO... QUESTION", help="audio files, then the question")
    p.add_argument(
        "--preset",
        required=True,
        help="preset name, preset JSON file, saved model directory, or official:<hub id or dir>",
    )
    p.add_argument("--batch", default=None, metavar="REQUESTS.jsonl", help="answer every line of this file")
    p.add_argument("--out", default=None, metavar="ANSWERS.jsonl", help="answers, appended (a rerun resumes)")
    p.add_argument("--rejects", default=None, help="bad lines and why (default: OUT.rejects.jsonl)")
    p.add_argument("--audio-root", default=None, help="audio paths are relative to this (default: the file's folder)")
    p.add_argument("--batch-size", type=int, default=8, help="questions per batch with --batch (default 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--hide-thinking", action="store_true", help="show or store the answer only, not the reasoning")
    p.add_argument("--thinking-budget", type=int, default=-1, help="max reasoning tokens (default -1: unlimited)")
    p.add_argument("--max-new-tokens", type=int, default=2048, help="max generated tokens (default 2048)")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--system", default=None, help="system prompt (default: the model's)")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="refuse longer audio (default 3600)")
    official_texts.add_argument(p)
    add_vllm_arguments(p)
    p.set_defaults(func=_ask)
