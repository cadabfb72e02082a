"""Peak memory of one shard's ``alarm corpus build`` for N vs 10N records (scripted backend).

Each size runs in a fresh Python process (so peaks do not carry over) that builds a corpus of
synthetic records with long metadata (about the size of real records: the metadata, 20
candidates, R0 and the target are kilobytes each) through all five stages, and reports

* ``tracemalloc`` peak: the largest Python heap seen during the build (what the pipeline holds),
* ``ru_maxrss``: the process's peak resident set (interpreter, torch, pyarrow included),
* the ``tracemalloc`` peak of ``alarm corpus merge`` of that build (``--rows-per-file``),
  above what the process held before the merge.

A stage that keeps its whole input in memory grows ~10x from N to 10N; one that streams in
chunks stays flat apart from the per-id bookkeeping (a set of done ids per stage).

    python benchmarks/corpus_memory.py                     # N = 400 and 4000
    python benchmarks/corpus_memory.py --records 1000 --factor 10 --chunk-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

_CHILD = r"""
import json, resource, sys, time, tracemalloc
from alarm.corpus.backends import ScriptedBackend
from alarm.corpus.pipeline import BuildConfig, build, merge

source, output, chunk_size, candidates = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows_per_file = int(sys.argv[5])
config = BuildConfig(sources=(source,), output=output, audio_check="none", num_candidates=candidates,
                     chunk_size=chunk_size, progress=False)
backend = ScriptedBackend()
tracemalloc.start()
start = time.perf_counter()
summary = build(config, {"prompter": backend, "rlm": backend})
seconds = time.perf_counter() - start
_, peak = tracemalloc.get_traced_memory()
assert summary.complete
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
# the scripted backend counts every request digest it saw (its call_index): not the pipeline's memory
backend_bytes = sys.getsizeof(backend._seen) + sum(sys.getsizeof(k) for k in backend._seen)
before, _ = tracemalloc.get_traced_memory()
tracemalloc.reset_peak()
merge([output], output + "-merged", rows_per_file=rows_per_file)
_, merge_peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"traced_peak": peak, "maxrss_kb": rss, "seconds": seconds, "backend_bytes": backend_bytes,
                  "merge_traced_peak": merge_peak - before}))
"""


def write_sources(path: str, n: int, metadata_words: int) -> None:
    """``n`` source records of one sound dataset, each with ``metadata_words`` words of metadata."""
    from alarm.corpus.schema import SourceRecord, write_jsonl

    words = "a dog barks twice near a busy road while rain falls on a tin roof".split()
    records = (
        SourceRecord(
            f"bench/{i:07d}",
            "bench",
            "sound",
            "train",
            f"clip{i}.wav",
            0.0,
            10.0,
            f"clip {i}: " + " ".join(words[(i + k) % len(words)] for k in range(metadata_words)),
        )
        for i in range(n)
    )
    write_jsonl(records, path)


def measure(n: int, chunk_size: int, candidates: int, metadata_words: int, rows_per_file: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "sources.jsonl")
        write_sources(source, n, metadata_words)
        out = os.path.join(tmp, "out")
        cmd = [sys.executable, "-c", _CHILD, source, out, str(chunk_size), str(candidates), str(rows_per_file)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=400, help="N (the small build)")
    parser.add_argument("--factor", type=int, default=10, help="the large build has factor * N records")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--metadata-words", type=int, default=150, help="about 1 KB of metadata per record")
    parser.add_argument("--rows-per-file", type=int, default=256, help="merge: records per output file")
    args = parser.parse_args()

    sizes = [args.records, args.records * args.factor]
    rows = []
    for n in sizes:
        start = time.perf_counter()
        got = measure(n, args.chunk_size, args.candidates, args.metadata_words, args.rows_per_file)
        rows.append((n, got))
        print(f"  {n} records: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    (n1, small), (n2, large) = rows
    print(f"Python {platform.python_version()}, {platform.machine()}, chunk size {args.chunk_size}, ")
    print(f"{args.candidates} candidates, {args.metadata_words} words of metadata per record, ")
    print(f"merge with {args.rows_per_file} rows per output file\n")
    print("| records | build (s) | build: traced peak (MiB) | build: peak RSS (MiB) | merge: traced peak (MiB) |")
    print("|---:|---:|---:|---:|---:|")
    for n, got in rows:
        print(
            f"| {n} | {got['seconds']:.1f} | {got['traced_peak'] / 2**20:.1f} | {got['maxrss_kb'] / 1024:.0f} "
            f"| {got['merge_traced_peak'] / 2**20:.1f} |"
        )
    traced = large["traced_peak"] / small["traced_peak"]
    rss = large["maxrss_kb"] / small["maxrss_kb"]
    per_record = (large["traced_peak"] - small["traced_peak"]) / (n2 - n1)
    backend = (large["backend_bytes"] - small["backend_bytes"]) / (n2 - n1)
    print(f"\n{n2 // n1}x the records: tracemalloc peak x{traced:.2f}, peak RSS x{rss:.2f}, ")
    print(f"{per_record:.0f} bytes of traced peak per extra record, {backend:.0f} of them the scripted ")
    print("backend's own request counter; ")
    print(f"merge tracemalloc peak x{large['merge_traced_peak'] / small['merge_traced_peak']:.2f}")


if __name__ == "__main__":
    main()
