"""`alarm corpus collect` and `alarm corpus stats`: thin wrappers over :mod:`alarm.corpus.collection`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from alarm.corpus.collection import (
    CollectError,
    CollectOptions,
    DatasetSpec,
    SpecError,
    collect_to_file,
    corpus_stats,
    default_rejects_path,
    spec_from_dict,
)
from alarm.corpus.schema import RecordError


def add_commands(sub: argparse._SubParsersAction) -> None:
    collect = sub.add_parser(
        "collect",
        help="turn one source dataset (as downloaded) into source records",
        description="Read a dataset in its official on-disk layout and write source records "
        "(id, dataset, category, split, audio_path, offset_s, duration_s, metadata, context). "
        "Bad entries are skipped and written to a rejects file with their reason.",
    )
    collect.add_argument("name", nargs="?", help="collector name (see --list)")
    collect.add_argument("--list", action="store_true", help="list collectors: category, licence, layout, metadata")
    collect.add_argument("--spec", type=Path, help="a JSON dataset spec to use instead of a built-in collector")
    collect.add_argument("--root", type=Path, help="the dataset folder (audio paths are relative to it)")
    collect.add_argument("--out", type=Path, help="output records: .jsonl or .parquet")
    collect.add_argument("--rejects", type=Path, help="rejects file (default: <out stem>.rejects.jsonl)")
    collect.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="share of records put in validation by a stable hash of the id, for sources without their own split",
    )
    collect.add_argument(
        "--check",
        choices=("header", "decode"),
        default="header",
        help="header: read each file's header (fast); decode: also decode every segment (catches truncation)",
    )
    collect.add_argument(
        "--metadata-layout",
        choices=("ours", "official"),
        default="ours",
        help="official: the official repository's one-line metadata layout, '[00:00-00:02] text (duration: 2s, "
        "k: v)', captions between bars (docs/corpus.md)",
    )
    collect.add_argument("--workers", type=int, default=4, help="threads reading audio headers")
    collect.add_argument("--limit", type=int, help="stop after this many records (a quick look)")
    collect.add_argument("--no-progress", action="store_true", help="no progress bar")
    collect.set_defaults(func=_collect)

    stats = sub.add_parser(
        "stats",
        help="the paper's Table 1 for record files: instances, hours, unique audio/prompts per category",
    )
    stats.add_argument("files", nargs="+", type=Path, help=".jsonl or .parquet record files")
    stats.add_argument("--by", choices=("category", "dataset"), default="category", help="rows of the table")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=_stats)


def _fail(message: str) -> int:
    print(f"alarm corpus: {message}", file=sys.stderr)
    return 2


def _load_spec(args: argparse.Namespace) -> DatasetSpec:
    from alarm.corpus.collectors import get_spec

    if args.spec is not None:
        try:
            data = json.loads(args.spec.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise SpecError(f"{args.spec}: cannot read a JSON spec ({err})") from None
        return spec_from_dict(data)
    try:
        return get_spec(args.name)
    except KeyError as err:
        raise SpecError(err.args[0]) from None


def _collect(args: argparse.Namespace) -> int:
    from alarm.corpus.collectors import all_specs

    if args.list:
        specs = [_load_spec(args)] if (args.name or args.spec) else list(all_specs().values())
        print("\n\n".join(spec.describe() for spec in specs))
        return 0
    if not args.name and args.spec is None:
        return _fail("collect needs a collector NAME (or --spec FILE), or --list")
    if args.root is None or args.out is None:
        return _fail("collect needs --root DIR and --out FILE")
    try:
        spec = _load_spec(args)
        options = CollectOptions(
            validation_fraction=args.validation_fraction,
            check=args.check,
            workers=args.workers,
            progress=not args.no_progress,
            limit=args.limit,
            metadata_layout=args.metadata_layout,
        )
        summary = collect_to_file(spec, args.root, args.out, rejects=args.rejects, options=options)
    except (SpecError, CollectError, ValueError) as err:
        return _fail(str(err))
    print(summary.format())
    print(f"records: {args.out}")
    print(f"rejects: {args.rejects or default_rejects_path(args.out)}")
    return 0


def _fraction(values: dict[str, Any], fmt: str) -> str:
    return " / ".join(format(values[s], fmt) for s in ("total", "train", "validation"))


def _stats(args: argparse.Namespace) -> int:
    # `stats manifests/*.jsonl` also matches the rejects files written next to the records.
    files = [f for f in args.files if not f.name.endswith(".rejects.jsonl")]
    for skipped in sorted(set(args.files) - set(files)):
        print(f"alarm corpus stats: skipping {skipped} (a rejects file)", file=sys.stderr)
    if not files:
        return _fail("stats needs at least one record file")
    try:
        table = corpus_stats(files, by=args.by).table()
    except (RecordError, OSError) as err:
        return _fail(str(err))
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    columns = [("instances", ",d"), ("hours", ",.2f"), ("unique_audio", ",d")]
    if any("unique_prompts" in row for row in table):
        columns.append(("unique_prompts", ",d"))
    header = [args.by] + [f"{name.replace('_', ' ')} (total / train / validation)" for name, _ in columns]
    lines = [[row["name"]] + [_fraction(row[name], fmt) for name, fmt in columns] for row in table]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    for r in [header, *lines]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))))
    return 0
