"""``alarm corpus merge-released``: records joined with the released ALARM-Corpora (:mod:`alarm.corpus.released`)."""

from __future__ import annotations

import argparse
import json
import sys


def add_commands(corpus_sub: argparse._SubParsersAction) -> None:
    p = corpus_sub.add_parser(
        "merge-released",
        help="join collected source records with a local copy of the released ALARM-Corpora prompts and responses "
        "by (dataset_name, unique_id_1, unique_id_2), as the official merge_with_online_alarm_corpora.py",
    )
    p.add_argument("--source", action="append", required=True, help="source records (.jsonl/.parquet); repeatable")
    p.add_argument(
        "--released",
        action="append",
        required=True,
        help="folder or files of the downloaded dataset (Parquet/JSONL named by split, e.g. "
        "data/raw_train-00000-of-00003.parquet); repeatable",
    )
    p.add_argument("--keys", required=True, help="JSONL: {id, unique_id_1, unique_id_2[, dataset_name]} per source id")
    p.add_argument("--out", required=True, help="merged corpus (.jsonl or .parquet)")
    p.add_argument("--rejects", help="unmatched rows of either side with reasons (default <out stem>.rejects.jsonl)")
    p.add_argument(
        "--splits",
        choices=("raw", "filtered"),
        default="raw",
        help="released splits: raw_train/raw_validation (default, as officially) or the filtered train/validation "
        "(official --merge-filtered)",
    )
    p.set_defaults(func=_merge_released)


def _merge_released(args: argparse.Namespace) -> int:
    from alarm.corpus.released import MergeConfig, merge_released
    from alarm.corpus.schema import RecordError

    try:
        config = MergeConfig(
            sources=tuple(args.source),
            released=tuple(args.released),
            keys=args.keys,
            out=args.out,
            rejects=args.rejects,
            splits=args.splits,
        )
        summary = merge_released(config)
    except (ValueError, RecordError, OSError) as err:
        print(f"alarm corpus merge-released: {err}", file=sys.stderr)
        return 2
    print(json.dumps({**summary.to_dict(), "out": config.out, "rejects": str(config.rejects_path)}, indent=2))
    return 0
