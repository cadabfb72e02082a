"""`alarm train` and `alarm features extract`: flags map one to one onto TrainConfig fields.

Settings come from, lowest to highest precedence: the paper-recipe defaults, ``--config
FILE.json`` and the flags actually given. Multi-process runs use the usual launchers, e.g.
``accelerate launch --num_processes 4 -m alarm.cli train ...`` or ``torchrun
--nproc_per_node 4 -m alarm.cli train ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from typing import Any

from alarm.training.config import TrainConfig

log = logging.getLogger(__name__)

_HELP = {
    "preset": "preset name, preset JSON, saved model directory or official:<checkpoint>",
    "corpus": "corpus shard (.jsonl/.parquet) or a directory of shards",
    "output": "run directory: checkpoints, metrics.csv, curves.png, samples.jsonl, final/",
    "audio_root": "directory the corpus audio_path values are relative to",
    "features": "feature cache from `alarm features extract` (frozen encoders read from disk)",
    "init_from": "saved model dir / official:<ckpt> whose trainable weights initialise matching modules",
    "init_branches": "KIND=CHECKPOINT pairs: copy an encoder's branch from a single-encoder checkpoint",
    "train_modules": "prefixes of trainable parameters that train (e.g. fusion); none given: all train",
    "frozen_batchnorm": "BatchNorm of frozen adapters in a train_modules run: train (official: batch statistics, "
    "running statistics updated) or eval (kept as trained)",
    "max_steps": "stop after N optimizer steps (the schedule spans them)",
    "report_to": "tensorboard and/or wandb (used when installed; metrics.csv is always written)",
    "final_weights": "what final/ holds: last (the last step) or best (the checkpoint with the lowest val loss)",
}


def _flag_type(annotation: str) -> dict[str, Any]:
    """argparse options for a TrainConfig field's (string) annotation."""
    base = annotation.replace(" | None", "")
    if base == "bool":
        return {"action": argparse.BooleanOptionalAction}
    if base.startswith("tuple["):
        return {"nargs": "*"}
    if base.startswith("dict["):
        return {"nargs": "*", "type": _key_value, "metavar": "KEY=VALUE"}
    return {"type": {"int": int, "float": float, "str": str}[base]}


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge ``--config`` (if any) with the flags that were given on the command line."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if isinstance(given.get("init_branches"), list):
        given["init_branches"] = dict(given["init_branches"])
    if args.config:
        return TrainConfig.from_json(args.config, **given)
    required = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in given]
    if missing:
        raise ValueError(f"missing settings: {', '.join('--' + n.replace('_', '-') for n in missing)}")
    return TrainConfig.from_dict(given)


def _train(args: argparse.Namespace) -> int:
    from alarm.training.trainer import train

    if args.preview is not None and not hasattr(args, "output"):
        args.output = ""  # a preview writes nothing, so it needs no run directory
    try:
        config = config_from_args(args)
    except (TypeError, ValueError) as err:  # missing or bad settings: say which, no traceback
        print(f"alarm train: {err}", file=sys.stderr)
        return 2
    if args.preview is not None:
        from alarm.training.preview import preview_rows

        for row in preview_rows(config, args.preview):
            print(json.dumps(row, ensure_ascii=False))
        return 0
    result = train(config, resume=args.resume)
    print(json.dumps(dataclasses.asdict(result)))
    return 0


def _extract(args: argparse.Namespace) -> int:
    import torch

    from alarm.presets import resolve
    from alarm.training.cache import extract_features
    from alarm.training.data import load_corpus

    records = [r for split in args.split for r in load_corpus(args.corpus, split)]
    _, build = resolve(args.preset)
    model = build().eval()
    if torch.cuda.is_available():
        rank = int(os.environ.get("LOCAL_RANK", 0))
        model.encoders.to(f"cuda:{rank}")  # only the encoders run here
    result = extract_features(
        model,
        records,
        audio_root=args.audio_root,
        out=args.out,
        dtype=args.dtype,
        batch_size=args.batch_size,
        shard_megabytes=args.shard_mb,
        num_workers=args.num_workers,
        max_audio_seconds=args.max_audio_seconds,
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        progress=not args.no_progress,
        encoders=args.encoders,
    )
    print(json.dumps({"out": args.out, **dataclasses.asdict(result)}))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``features extract``."""
    p = sub.add_parser(
        "train",
        help="train the audio path of a preset on a corpus (frozen RLM and encoders)",
        description="Defaults are the paper's recipe (AdamW 1e-4, 1500 warm-up, cosine, batch 64, 2 epochs). "
        "Every TrainConfig field is a flag; see docs/training.md.",
        argument_default=argparse.SUPPRESS,  # only flags actually given override the config file
    )
    p.add_argument("--config", default=None, help="JSON file of TrainConfig settings; flags override it")
    p.add_argument("--resume", action="store_true", default=False, help="continue from the newest checkpoint")
    p.add_argument(
        "--preview",
        type=int,
        default=None,
        metavar="N",
        help="print the first N training rows as the RLM reads them (JSON lines: input with audio markers, "
        "target as trained) and exit without training",
    )
    for f in dataclasses.fields(TrainConfig):
        text = _HELP.get(f.name, "")
        if f.default is not dataclasses.MISSING:
            shown = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default  # as typed on the line
            text = f"{text} (default: {shown if shown not in ('', None) else 'none'})"
        elif f.default_factory is not dataclasses.MISSING:  # an empty dict or tuple: nothing unless given
            text = f"{text} (default: {f.default_factory() or 'none'})"
        else:
            text = f"{text} (required unless --config gives it)"
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, help=text.strip(), **_flag_type(str(f.type)))
    p.set_defaults(func=_train)

    features = sub.add_parser("features", help="frozen-encoder feature cache")
    fsub = features.add_subparsers(dest="features_command", required=True)
    e = fsub.add_parser("extract", help="store the selected encoder layers of every corpus row (resumable)")
    e.add_argument(
        "--preset",
        required=True,
        help="preset name, preset JSON, saved model directory or official:<checkpoint>; its encoders and layers "
        "define the cache",
    )
    e.add_argument("--corpus", required=True)
    e.add_argument("--audio-root", required=True)
    e.add_argument("--out", required=True, help="cache directory (created; an existing one is completed)")
    e.add_argument("--split", nargs="+", default=["train", "validation"], help="corpus splits to extract")
    e.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    e.add_argument(
        "--encoders",
        nargs="+",
        default=None,
        metavar="KIND",
        help="cache only these encoders (e.g. whisper); training runs the others online (default: all)",
    )
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--shard-mb", type=int, default=1024, help="approximate shard size in MiB")
    e.add_argument("--num-workers", type=int, default=2, help="audio loading processes")
    e.add_argument("--max-audio-seconds", type=float, default=600.0)
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=_extract)
