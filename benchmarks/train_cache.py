"""Training step time with the frozen-encoder feature cache vs running the encoders online.

Same corpus, same config, same steps; the only difference is ``--features``. Each variant
runs in its own process so its peak memory (RSS; GPU peak where there is one) is its own.
Also reports the one-off extraction time, tokens per second and peak memory per step, for
the tiny ALARM-CA twin and the benchmark-only ``mid-alarm-ca`` of forward_stages.py.

    python benchmarks/train_cache.py                        # tiny and mid, 16 tones of 2-10 s
    python benchmarks/train_cache.py --configs tiny --steps 12 --samples 32
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DURATIONS = (2.0, 4.0, 6.0, 8.0, 10.0)


def preset_for(name: str, workdir: str) -> str:
    """A preset reference: the shipped tiny twin, or the mid-size twin saved as a model directory."""
    if name == "tiny":
        return "tiny-alarm-ca"
    from forward_stages import mid_config

    from alarm.modeling.model import AlarmForConditionalGeneration

    path = os.path.join(workdir, "mid-alarm-ca")
    AlarmForConditionalGeneration(mid_config()).save_pretrained(path)
    return path


def run_one(args: argparse.Namespace) -> None:
    """Child process: train ``--steps`` steps and print step times, throughput and peak memory as JSON."""
    torch.set_num_threads(args.threads)
    from alarm.training.config import TrainConfig
    from alarm.training.report import read_metrics
    from alarm.training.trainer import train

    stamps = [time.perf_counter()]
    config = TrainConfig(
        preset=args.preset,
        corpus=os.path.join(args.root, "corpus.jsonl"),
        audio_root=args.root,
        features=args.features,
        output=args.output,
        max_steps=args.steps,
        effective_batch_size=args.batch,
        micro_batch_size=args.batch,
        warmup_steps=1,
        num_workers=1,
        log_every=1,
        eval_every=10**9,
        save_every=0,
        val_split="",
        progress=False,
        report_to=(),
        target_tokens=None,  # synthetic targets are a sentence, under the official 100-token floor
    )
    train(config, callbacks=[lambda _: stamps.append(time.perf_counter())])
    steps = [b - a for a, b in zip(stamps[1:], stamps[2:])]  # from the 2nd step: no start-up in it
    rows = read_metrics(os.path.join(args.output, "metrics.csv"))
    peak = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        peak["gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    result = {
        "step_s": statistics.median(steps),
        "tokens_per_s": statistics.median(float(r["tokens_per_s"]) for r in rows[1:]),
        **peak,
    }
    print(json.dumps(result))


def measure(args: argparse.Namespace, preset: str, root: str, features: str | None, output: str) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--run-one", "--preset", preset, "--root", root]
    command += ["--output", output, "--steps", str(args.steps), "--batch", str(args.batch)]
    command += ["--threads", str(args.threads)] + (["--features", features] if features else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "mid"], choices=("tiny", "mid"))
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--features", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        run_one(args)
        return

    torch.set_num_threads(args.threads)
    from alarm.presets import build_model
    from alarm.training.cache import extract_features
    from alarm.training.data import load_corpus
    from alarm.training.synthetic import make_tone_corpus

    print(
        f"{args.samples} tones of {'/'.join(f'{d:g}' for d in DURATIONS)} s, micro-batch = effective batch = "
        f"{args.batch}, median of steps 2..{args.steps}, {args.threads} thread(s), torch {torch.__version__}\n"
    )
    print("| config | variant | step (s) | tokens/s | peak RSS (MB) | extraction (s/sample) | speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as workdir:
        root = os.path.join(workdir, "tones")
        make_tone_corpus(root, args.samples, durations=DURATIONS)
        for name in args.configs:
            preset = preset_for(name, workdir)
            cache = os.path.join(workdir, f"cache-{name}")
            start = time.perf_counter()
            extract_features(
                build_model(preset), load_corpus(root, "train"), audio_root=root, out=cache, num_workers=1,
                progress=False,
            )  # fmt: skip
            extraction = (time.perf_counter() - start) / args.samples
            online = measure(args, preset, root, None, os.path.join(workdir, f"{name}-online"))
            cached = measure(args, preset, root, cache, os.path.join(workdir, f"{name}-cached"))
            label = "tiny-alarm-ca" if name == "tiny" else "mid-alarm-ca"
            for variant, r in (("online encoders", online), ("feature cache", cached)):
                speedup = f"{online['step_s'] / r['step_s']:.1f}x" if r is cached else "1.0x"
                extra = f"{extraction:.2f}" if r is cached else ""
                print(
                    f"| {label} | {variant} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | {r['rss_mb']:.0f} "
                    f"| {extra} | {speedup} |"
                )


if __name__ == "__main__":
    main()
