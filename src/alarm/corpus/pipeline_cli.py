"""``alarm corpus build | merge | report``: the self-generation pipeline from the command line.

Settings come from ``--config FILE.json`` (keys of :class:`~alarm.corpus.pipeline.BuildConfig`)
and are overridden by the flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


# flag -> BuildConfig key (flags whose values map one to one)
_DIRECT = {
    "source": "sources",
    "output": "output",
    "audio_root": "audio_root",
    "audio_check": "audio_check",
    "prompter": "prompter",
    "rlm": "rlm",
    "num_candidates": "num_candidates",
    "multilingual_share": "multilingual_share",
    "languages": "languages",
    "thinking_budget": "thinking_budget",
    "rephrase_second_pass": "rephrase_second_pass",
    "respond_thinking_budget": "respond_thinking_budget",
    "max_attempts": "max_attempts",
    "validation_fraction": "validation_fraction",
    "seed": "seed",
    "spoken_query_datasets": "spoken_query_datasets",
    "chunk_size": "chunk_size",
    "num_shards": "num_shards",
    "shard_index": "shard_index",
    "limit": "limit",
    "stages": "stages",
    "rephrase_exposure_check": "rephrase_exposure_check",
    "grounding": "grounding",
    "spoken_query_text": "spoken_query_text",
    "respond_max_tokens": "respond_max_tokens",
    "keep_unfinished": "keep_unfinished",
    "max_audio_seconds": "max_audio_seconds",
}


def config_from_args(args: argparse.Namespace) -> Any:
    """A BuildConfig from ``--config`` plus the flags that were given."""
    from alarm.corpus.pipeline import BuildConfig

    data: dict[str, Any] = {}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            data = json.load(f)
    for flag, key in _DIRECT.items():
        value = getattr(args, flag)
        if value is not None:
            data[key] = value
    overrides: dict[str, Any] = {}
    if args.max_tokens is not None:  # one cap for every stage: handy for quick trials with small models
        overrides["max_tokens"] = args.max_tokens
        data.setdefault("respond_max_tokens", args.max_tokens)
    if args.greedy:
        overrides["temperature"] = 0.0
    for key in ("prompter_sampling", "rlm_sampling") if overrides else ():
        base = data.get(key, BuildConfig.__dataclass_fields__[key].default)
        data[key] = {**(base if isinstance(base, dict) else dataclasses.asdict(base)), **overrides}
    if args.no_progress:
        data["progress"] = False
    return BuildConfig.from_dict(data)


def _build(args: argparse.Namespace) -> int:
    from alarm.corpus.pipeline import BackendUnavailable, build

    try:
        config = config_from_args(args)
    except (ValueError, OSError) as err:
        print(f"alarm corpus build: {err}", file=sys.stderr)
        return 2
    from alarm import official_texts
    from alarm.corpus import instructions

    try:  # official R0 and rephrasing texts and exchange (docs/fidelity.md); ours by default
        instructions.use_official_texts(official_texts.resolve(args.official_texts, ["corpus"]))
    except official_texts.OfficialTextError as err:
        print(f"alarm corpus build: {err}", file=sys.stderr)
        return 2
    try:
        summary = build(config)
    except BackendUnavailable as err:
        print(f"alarm corpus build: {err}", file=sys.stderr)
        return 3
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from alarm.corpus.pipeline import merge
    from alarm.corpus.schema import RecordError

    try:
        info = merge(args.inputs, args.output, rows_per_file=args.rows_per_file, allow_partial=args.allow_partial)
    except (ValueError, RecordError) as err:
        print(f"alarm corpus merge: {err}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    from alarm.corpus.report import write_report

    report = write_report(args.directory, args.out)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def add_commands(corpus_sub: argparse._SubParsersAction) -> None:
    p = corpus_sub.add_parser(
        "build",
        help="self-generate prompts, responses and rephrased targets for source records (resumable, sharded)",
    )
    p.add_argument("--config", help="JSON file with build settings (flags override it)")
    p.add_argument("--source", action="append", help="source records (.jsonl/.parquet); repeat for several")
    p.add_argument("--output", help="output directory (resumed when it exists)")
    p.add_argument("--audio-root", help="directory the records' audio_path are relative to")
    p.add_argument(
        "--official-texts",
        default=None,
        metavar="PATH",
        help="a checkout of the official ALARM repository: R0's and rephrasing's texts word for word, the official "
        "rephrasing exchange and its closing sentence (also $ALARM_OFFICIAL_TEXTS)",
    )
    p.add_argument("--audio-check", choices=("header", "decode", "none"), help="how to check audio (default header)")
    p.add_argument(
        "--prompter",
        help="backend of the prompt generator Q: kind[:target][?k=v&...], e.g. "
        "openai:http://127.0.0.1:8000/v1?model=Qwen/Qwen3-30B-A3B-Instruct-2507 (default scripted)",
    )
    p.add_argument(
        "--rlm", help="backend of the RLM, e.g. transformers:tiny-al-whisper-r, vllm:MODEL (default scripted)"
    )
    p.add_argument("--num-candidates", type=int, help="candidate prompts per record (default 20)")
    p.add_argument("--multilingual-share", type=float, help="share of non-English candidates (default 0.2)")
    p.add_argument("--languages", type=_csv, help="allowed language tags, comma-separated (must include en)")
    p.add_argument("--thinking-budget", type=int, help="B of the rephrasing pass (default 1536; -1 none)")
    p.add_argument(
        "--rephrase-second-pass",
        choices=("full", "remaining"),
        help="after reasoning cut at the budget, the rephrasing runs for all of max_tokens again (full, official) or "
        "for what the budget left of it (remaining) (default full)",
    )
    p.add_argument("--respond-thinking-budget", type=int, help="budget of R0's reasoning (default -1: none)")
    p.add_argument(
        "--rephrase-exposure-check",
        action=argparse.BooleanOptionalAction,
        help="retry a rephrased target the lexical exposure detector flags, reject it if no attempt passes "
        "(default off, as in the paper)",
    )
    p.add_argument(
        "--grounding",
        type=float,
        help="reject an R0 answer or rewrite that says what the metadata (and, for a rewrite, R0) does not: a "
        "number it lacks, or more than this share of content words; the request is no evidence; a rejected R0 tries "
        "the next kept prompt (default off, as in the paper; alarm demo uses 0.2)",
    )
    p.add_argument("--max-tokens", type=int, help="max new tokens of every LLM call (overrides the config)")
    p.add_argument("--greedy", action="store_true", help="greedy decoding everywhere (temperature 0)")
    p.add_argument("--max-attempts", type=int, help="tries per record and stage before rejecting (default 3)")
    p.add_argument("--validation-fraction", type=float, help="validation share per dataset (default 0.1)")
    p.add_argument("--seed", type=int, help="seed of sampling, prompt choice and split (default 0)")
    p.add_argument("--spoken-query-datasets", type=_csv, help="datasets whose audio is the query (comma-separated)")
    p.add_argument(
        "--spoken-query-text",
        choices=("context", "transcript"),
        help="the text beside a spoken query's audio: context (official: passage or earlier turns, never the "
        "question) or transcript (the question as text: gives it away) (default context)",
    )
    p.add_argument(
        "--respond-max-tokens", type=int, help="cap of R0, reasoning and answer together (default 512, official)"
    )
    p.add_argument(
        "--keep-unfinished",
        action=argparse.BooleanOptionalAction,
        help="keep an R0 cut at its cap as it stands, as the official corpus does (default on); off: retry, then "
        "reject it (a plain answer keeps its complete sentences)",
    )
    p.add_argument("--max-audio-seconds", type=float, help="reject segments this long or longer (default 60, official)")
    p.add_argument("--chunk-size", type=int, help="records per committed chunk and backend batch (default 64)")
    p.add_argument("--num-shards", type=int, help="split the work into N shards by id (default 1)")
    p.add_argument("--shard-index", type=int, help="the shard this process runs (0-based)")
    p.add_argument("--limit", type=int, help="process only the first N records of the shard (quick trials)")
    p.add_argument("--stages", type=_csv, help="run only these stages (comma-separated), e.g. audio,prompts,filter")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_build)

    p = corpus_sub.add_parser("merge", help="join finished shards of build directories into one corpus")
    p.add_argument("inputs", nargs="+", help="build directories")
    p.add_argument("--output", required=True, help="merged corpus directory (data/<split>-*.parquet)")
    p.add_argument("--rows-per-file", type=int, default=100_000)
    p.add_argument("--allow-partial", action="store_true", help="merge even if some shards are not finished")
    p.set_defaults(func=_merge)

    p = corpus_sub.add_parser(
        "report", help="counts, rejects, Table-1 shape, languages, exposure, lengths (JSON/MD/PNG)"
    )
    p.add_argument("directory", help="a build or merged corpus directory")
    p.add_argument("--out", help="where to write report.{json,md,png} (default: the directory)")
    p.set_defaults(func=_report)
