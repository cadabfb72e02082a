"""Start-up planning time with and without the length-plan cache, on a synthetic corpus.

Training plans every row's exact length before the first step (tokenize prompt + audio
positions + target). This writes a corpus of N rows (no audio is needed: planning sizes the
audio from ``duration_s``) with responses log-normal around 350 words, and times what a start
does before training: read the corpus shards, then plan, (a) with no cache, (b) the first
start with a cache (plans and writes it), (c) a second start (reads it). Each variant runs in
a fresh process so no tokenizer or file cache state carries over within Python.

    python benchmarks/train_plan_cache.py                          # 10k rows, tiny-al-sslam-r
    python benchmarks/train_plan_cache.py --rows 100000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

WORDS = "the a tone sound voice music speaker low high soft loud quiet clear noise pitch rhythm beat note".split()


def write_corpus(path: str, rows: int, seed: int = 0) -> None:
    from alarm.corpus.schema import CorpusRecord, write_jsonl

    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    records = []
    for i in range(rows):
        n = int(np.clip(rng.lognormal(np.log(350.0), 0.5), 30, 3000))
        reasoning = " ".join(words[rng.integers(0, len(words), n * 2 // 3)])
        answer = " ".join(words[rng.integers(0, len(words), n // 3)])
        records.append(
            CorpusRecord(
                id=f"synthetic/{i:07d}",
                dataset="synthetic",
                category="sound",
                split="train",
                audio_path=f"audio/{i:07d}.wav",
                offset_s=0.0,
                duration_s=float(np.clip(rng.lognormal(np.log(8.0), 0.6), 1.0, 30.0)),
                metadata="",
                prompt=f"Question {i}: what do you hear?",
                response=f"<think>{reasoning}</think>{answer}",
            )
        )
    write_jsonl(records, path)


def start(corpus: str, preset: str, cache: str | None, workers: int) -> dict[str, float]:
    """What a training start does before its first step (model build excluded), timed."""
    import torch

    from alarm.presets import build_model
    from alarm.training.data import ChatFormat, load_corpus, plan_lengths
    from alarm.training.plan_cache import LengthCache

    torch.set_num_threads(1)
    fmt = ChatFormat.from_model(build_model(preset))
    t0 = time.perf_counter()
    records = load_corpus(corpus, "train")
    t1 = time.perf_counter()
    plan = plan_lengths(
        records,
        fmt,
        max_seq_len=4096,
        max_audio_seconds=600,
        num_workers=workers,
        cache=LengthCache(cache, fmt) if cache else None,
    )
    t2 = time.perf_counter()
    return {"read_s": t1 - t0, "plan_s": t2 - t1, "rows": len(records), "tokens_mean": float(plan.tokens.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--preset", default="tiny-al-sslam-r")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the planner")
    parser.add_argument("--child", nargs=2, metavar=("CORPUS", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        corpus, cache = args.child
        print(json.dumps(start(corpus, args.preset, cache or None, args.workers)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        corpus, cache = os.path.join(tmp, "corpus.jsonl"), os.path.join(tmp, "plan-cache")
        write_corpus(corpus, args.rows)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        results = {}
        for name, cache_dir in (("no cache", ""), ("cache, first start", cache), ("cache, second start", cache)):
            command = [sys.executable, __file__, "--preset", args.preset, "--workers", str(args.workers)]
            done = subprocess.run([*command, "--child", corpus, cache_dir], env=env, capture_output=True, text=True)
            if done.returncode:
                sys.exit(done.stderr)
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        size = os.path.getsize(corpus) / 2**20
        first = results["no cache"]
        print(
            f"{first['rows']} rows, {size:.0f} MB JSONL, {first['tokens_mean']:.0f} tokens mean per row, "
            f"preset {args.preset}, {args.workers} planner workers\n"
        )
        print("| start | read corpus (s) | plan (s) | start-up (s) | vs no cache |")
        print("|---|---:|---:|---:|---:|")
        base = first["read_s"] + first["plan_s"]
        for name, r in results.items():
            total = r["read_s"] + r["plan_s"]
            print(f"| {name} | {r['read_s']:.2f} | {r['plan_s']:.2f} | {total:.2f} | {base / total:.1f}x |")
        cached = results["cache, second start"]
        print(f"\nplanning: {first['plan_s'] / cached['plan_s']:.0f}x faster from the cache")


if __name__ == "__main__":
    main()
