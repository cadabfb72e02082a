"""`alarm demo`: clips -> corpus -> alignment -> evaluation -> report, on this machine."""

from __future__ import annotations

import argparse
import json


def _demo(args: argparse.Namespace) -> int:
    from alarm.demo.run import DemoConfig, run_demo

    settings = dict(out=args.out, preset=args.preset, seed=args.seed, progress=not args.no_progress)
    if args.steps is not None:
        settings["train_steps"] = args.steps
    config = DemoConfig.quick(**settings) if args.quick else DemoConfig(**settings)
    summary = run_demo(config)
    print(json.dumps({k: summary[k] for k in ("accuracy_before", "accuracy_after", "test_questions")}))
    print(f"report: {config.out}/report.md")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``demo``."""
    p = sub.add_parser("demo", help="run the whole system end to end on this machine (no downloads)")
    p.add_argument("--out", default="alarm-demo", help="output directory (a rerun resumes it)")
    p.add_argument("--preset", default="tiny-al-sslam-r", help="tiny preset whose audio path is aligned")
    p.add_argument("--steps", type=int, default=None, help="training steps of the audio path")
    p.add_argument("--quick", action="store_true", help="a smaller run (well under a minute)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_demo)
