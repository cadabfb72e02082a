"""``alarm corpus filter-wer``: the official Whisper check of spoken questions (:mod:`alarm.corpus.whisper_check`)."""

from __future__ import annotations

import argparse
import json
import sys


def add_commands(corpus_sub: argparse._SubParsersAction) -> None:
    p = corpus_sub.add_parser(
        "filter-wer",
        help="transcribe spoken questions with Whisper and drop rows whose WER against the question is above "
        "--max-wer (official HeySQuAD filter; resumable)",
    )
    p.add_argument("--source", action="append", required=True, help="records (.jsonl/.parquet); repeat for several")
    p.add_argument("--audio-root", required=True, help="directory the records' audio_path are relative to")
    p.add_argument(
        "--whisper",
        required=True,
        help="a Whisper ForConditionalGeneration: hub id or local directory (official: openai/whisper-large-v3), or a "
        "packaged model by name (whisper-tiny.en, whisper-base; see `alarm models list`)",
    )
    p.add_argument("--out", required=True, help="kept rows (.jsonl or .parquet); a rerun with the same --out resumes")
    p.add_argument("--rejects", help="dropped rows with reason, WER and transcript (default <out stem>.rejects.jsonl)")
    p.add_argument("--max-wer", type=float, default=0.5, help="drop rows whose WER is above this (default 0.5)")
    p.add_argument(
        "--datasets",
        default="heysquad_human",
        help="datasets whose rows are checked, comma-separated; others pass through (default heysquad_human, "
        "as officially)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="clips per Whisper batch (default 16)")
    p.add_argument("--device", default="cpu", help="torch device of Whisper (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_filter_wer)


def _filter_wer(args: argparse.Namespace) -> int:
    from alarm.corpus.schema import RecordError
    from alarm.corpus.whisper_check import WhisperCheckConfig, run_whisper_check

    try:
        config = WhisperCheckConfig(
            sources=tuple(args.source),
            out=args.out,
            audio_root=args.audio_root,
            whisper=args.whisper,
            rejects=args.rejects,
            max_wer=args.max_wer,
            datasets=tuple(d.strip() for d in args.datasets.split(",") if d.strip()),
            batch_size=args.batch_size,
            device=args.device,
            progress=not args.no_progress,
        )
        summary = run_whisper_check(config)
    except (ValueError, RecordError, OSError) as err:
        print(f"alarm corpus filter-wer: {err}", file=sys.stderr)
        return 2
    print(json.dumps({**summary.to_dict(), "out": config.out, "rejects": str(config.rejects_path)}, indent=2))
    return 0
