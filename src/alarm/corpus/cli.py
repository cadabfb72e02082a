"""`alarm corpus ...`: the corpus command group; each stage module adds its own commands."""

from __future__ import annotations

import argparse
import importlib

# Modules with `add_commands(corpus_subparsers)`: collectors, the generation pipeline, stats.
CORPUS_COMMAND_MODULES: tuple[str, ...] = (
    "alarm.corpus.collect_cli",
    "alarm.corpus.pipeline_cli",
    "alarm.corpus.whisper_check_cli",
    "alarm.corpus.released_cli",
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    corpus = sub.add_parser("corpus", help="collect sources, build, merge and report the training corpus")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True)
    for module in CORPUS_COMMAND_MODULES:
        importlib.import_module(module).add_commands(corpus_sub)
