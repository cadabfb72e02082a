"""`alarm demo`: clips -> corpus -> features -> alignment -> evaluation -> report, on real models."""

from __future__ import annotations

import argparse
import json
import sys


def _demo(args: argparse.Namespace) -> int:
    from alarm.demo.run import DemoConfig, run_demo

    settings = dict(out=args.out, seed=args.seed, progress=not args.no_progress)
    for flag, key in (("preset", "preset"), ("steps", "train_steps"), ("clips", "num_train")):
        if getattr(args, flag) is not None:
            settings[key] = getattr(args, flag)
    if args.train_mix:
        settings["train_mix"] = tuple(k.strip() for k in args.train_mix.split(","))
    if args.quick and args.digits:
        print("alarm demo: --quick and --digits are two different runs; choose one", file=sys.stderr)
        return 2
    profile = DemoConfig.quick if args.quick else DemoConfig.digits if args.digits else DemoConfig
    config = profile(**settings)
    summary = run_demo(config)
    keys = ("chance", "text_only_accuracy", "metadata_accuracy", "accuracy", "speech_wer", "test_questions")
    print(json.dumps({k: summary[k] for k in keys}))
    print(f"report: {config.out}/report.md")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``demo``."""
    p = sub.add_parser(
        "demo", help="the whole system end to end on real packaged models (Whisper, SmolLM2), on this machine"
    )
    p.add_argument("--out", default="alarm-demo", help="output directory (a rerun resumes it)")
    p.add_argument(
        "--preset", default=None, help="preset to align (default cpu-al-whisper-r; --quick: cpu-al-whisper-tiny-r)"
    )
    p.add_argument("--steps", type=int, default=None, help="training steps of the audio path")
    p.add_argument("--clips", type=int, default=None, help="training clips (each recorded 5 times; default 240)")
    p.add_argument(
        "--train-mix",
        default=None,
        help="the training clips' kinds in turn, comma-separated (default: digits,word,digits,sentence,digits,"
        "clicks,noise,tone); kinds: digits, word, sentence, tone, noise, clicks",
    )
    p.add_argument("--quick", action="store_true", help="a smaller run (a few minutes)")
    p.add_argument(
        "--digits",
        action="store_true",
        help="a longer run (about an hour): 420 clips, half of them digit strings, 500 steps: the recipe "
        "for saying the digits of new clips (benchmarks/ask_digits.py)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_demo)
