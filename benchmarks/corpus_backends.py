"""Corpus pipeline throughput: HTTP concurrency vs sequential, and pipeline overhead vs raw calls.

1. The OpenAI-compatible HTTP backend against one local server (``ChatServer``), with 1 and
   with N requests in flight, on the same requests:
   * a server that answers each request after a fixed latency and serves requests in
     parallel (what vLLM/SGLang do with continuous batching), and
   * the tiny transformers model served one request at a time (CPU bound on this machine).
2. ``alarm corpus build`` (all stages, scripted backend) vs replaying the very requests the
   build made straight to the same backend, in the same batches: the difference is the
   pipeline's own cost (parsing, checks, Parquet/JSONL writes, resume bookkeeping).

All ratios come from one run on one machine. Run:

    python benchmarks/corpus_backends.py
    python benchmarks/corpus_backends.py --requests 256 --latency-ms 50 --concurrency 32
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import torch

from alarm.corpus.backends import (
    ChatRequest,
    ChatServer,
    OpenAIHTTPBackend,
    RulesResponder,
    SamplingParams,
    ScriptedBackend,
    TransformersBackend,
)
from alarm.corpus.pipeline import BuildConfig, build
from alarm.corpus.schema import SourceRecord, write_jsonl


def _requests(n: int, max_tokens: int) -> list[ChatRequest]:
    return [
        ChatRequest(({"role": "user", "content": f"question {i}: what do you hear?"},), SamplingParams(max_tokens))
        for i in range(n)
    ]


def _http_rate(server_backend, requests, concurrency: int) -> float:
    with ChatServer(server_backend) as server:
        client = OpenAIHTTPBackend(server.url, "local", concurrency=concurrency)
        client.complete(requests[:2])  # warm the connection pool
        start = time.perf_counter()
        out = client.complete(requests)
        seconds = time.perf_counter() - start
        client.close()
    assert not any(c.error for c in out)
    return len(requests) / seconds


def http_table(n: int, latency_ms: float, concurrency: int) -> list[str]:
    rows = ["| server | requests | in flight | requests/s | vs sequential |", "|---|---:|---:|---:|---:|"]
    answer = ScriptedBackend(lambda r, i: "I hear a dog barking. " * 20, delay_s=latency_ms / 1000)
    tiny = TransformersBackend.from_name("tiny-al-whisper-r")
    for name, backend, reqs in (
        (f"fixed latency {latency_ms:g} ms, parallel", answer, _requests(n, 64)),
        ("tiny transformers RLM, one at a time", tiny, _requests(max(8, n // 8), 8)),
    ):
        base = _http_rate(backend, reqs, 1)
        rows.append(f"| {name} | {len(reqs)} | 1 | {base:.1f} | 1.00 |")
        rate = _http_rate(backend, reqs, concurrency)
        rows.append(f"| {name} | {len(reqs)} | {concurrency} | {rate:.1f} | {rate / base:.2f} |")
    return rows


class _Recorder:
    def __init__(self) -> None:
        self.rules = RulesResponder()
        self.seen: list[ChatRequest] = []

    def __call__(self, request: ChatRequest, index: int) -> str:
        self.seen.append(request)
        return self.rules(request, index)


def overhead_table(n_records: int, chunk: int, latencies_ms: tuple[float, ...]) -> list[str]:
    rows = [
        "| latency | records | LLM calls | pipeline (s) | raw calls (s) | pipeline / raw | overhead ms/record |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        records = [
            SourceRecord(f"bench/{i:06d}", "bench", "sound", "train", f"{i}.wav", 0.0, 2.0, f"clip {i}: a dog barks")
            for i in range(n_records)
        ]
        write_jsonl(records, os.path.join(tmp, "sources.jsonl"))
        for latency in latencies_ms:
            recorder = _Recorder()
            backend = ScriptedBackend(recorder, delay_s=latency / 1000)
            config = BuildConfig(
                sources=(os.path.join(tmp, "sources.jsonl"),),
                output=os.path.join(tmp, f"out-{latency}"),
                audio_check="none",
                chunk_size=chunk,
                progress=False,
            )
            start = time.perf_counter()
            build(config, {"prompter": backend, "rlm": backend})
            pipeline = time.perf_counter() - start
            replay = ScriptedBackend(RulesResponder(), delay_s=latency / 1000)
            calls = recorder.seen
            start = time.perf_counter()
            for begin in range(0, len(calls), chunk):
                replay.complete(calls[begin : begin + chunk])
            raw = time.perf_counter() - start
            rows.append(
                f"| {latency:g} ms | {n_records} | {len(calls)} | {pipeline:.2f} | {raw:.2f} | {pipeline / raw:.2f} | "
                f"{1000 * (pipeline - raw) / n_records:.2f} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--chunk-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# corpus backends; Python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs\n")
    print("## HTTP backend: concurrency vs sequential (same server, same requests)\n")
    print("\n".join(http_table(args.requests, args.latency_ms, args.concurrency)))
    print("\n## Pipeline overhead vs raw backend calls (all five stages, scripted backend)\n")
    print("\n".join(overhead_table(args.records, args.chunk_size, (0.0, 2.0))))


if __name__ == "__main__":
    main()
