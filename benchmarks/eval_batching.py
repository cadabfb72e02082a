"""Evaluation throughput by batch size: questions per second through `alarm eval`'s runner.

Builds a small MMAU-layout release (clips of 2-8 s), then answers all its questions with the
runner (audio loading, prompt, thinking-budget generation, appending predictions) at each batch
size, on a fresh predictions file each time. Reports questions/s and the speed-up over batch
size 1, measured in the same run on the same machine; each batch size is repeated and the best
time kept. Run:

    python benchmarks/eval_batching.py                         # tiny-al-whisper-r, 16 questions
    python benchmarks/eval_batching.py --preset tiny-alarm-ca --questions 32 --sizes 1 8 32
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from alarm.evaluation.benchmarks import get_benchmark, load_items
from alarm.evaluation.runner import PredictionStore, run_inference
from alarm.generation import GenerationConfig
from alarm.presets import build_model


def make_release(root: Path, n: int, rng: np.random.Generator) -> None:
    entries = []
    for i in range(n):
        seconds = float(rng.uniform(2, 8))
        t = np.arange(int(seconds * 16_000)) / 16_000
        clip = root / "test-mini-audios" / f"q{i}.wav"
        clip.parent.mkdir(parents=True, exist_ok=True)
        sf.write(clip, (0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t)).astype(np.float32), 16_000)
        entries.append(
            {
                "id": f"q{i}",
                "audio_id": f"./test-mini-audios/q{i}.wav",
                "question": "Which sound is it?",
                "choices": ["a tone", "speech", "music", "silence"],
                "answer": "a tone",
                "task": "sound",
                "difficulty": "easy",
            }
        )
    (root / "mmau-test-mini.json").write_text(json.dumps(entries))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny-al-whisper-r")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--thinking-budget", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = build_model(args.preset)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, thinking_budget=args.thinking_budget)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_release(root / "data", args.questions, np.random.default_rng(0))
        items = load_items(get_benchmark("mmau"), root / "data")
        run_inference(model, items[:2], PredictionStore(root / "warm.jsonl"), config, progress=False)  # warm-up
        best: dict[int, float] = {}
        for repeat in range(args.repeats):
            for size in args.sizes:  # sizes take turns so machine noise hits them alike
                store = PredictionStore(root / f"p{size}-{repeat}.jsonl")
                start = time.perf_counter()
                run_inference(model, items, store, config, batch_size=size, progress=False)
                elapsed = time.perf_counter() - start
                best[size] = min(best.get(size, float("inf")), elapsed)
                assert len(store.load()) == len(items)
    print(
        f"{args.preset}: {args.questions} questions, 2-8 s clips, max_new_tokens {args.max_new_tokens}, "
        f"thinking budget {args.thinking_budget}, best of {args.repeats}; torch {torch.__version__}, "
        f"{args.threads} thread(s), Python {platform.python_version()}, {platform.machine()}"
    )
    print()
    print("| batch size | wall (s) | questions/s | vs batch 1 |")
    print("|---:|---:|---:|---:|")
    base = best[args.sizes[0]]
    for size in args.sizes:
        print(f"| {size} | {best[size]:.2f} | {args.questions / best[size]:.2f} | {base / best[size]:.2f}x |")


if __name__ == "__main__":
    main()
