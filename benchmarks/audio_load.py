"""Benchmark alarm.audio.load_audio: decode + mono mix, with and without resampling.

Generates ``--files`` clips of ``--seconds`` s at 44.1 kHz stereo (WAV PCM_16 and FLAC) in a
temporary directory, then times, per format and in the same run:

* ``load``      : decode + mix to mono at the native rate (no resampling);
* ``load->16k`` : the same plus soxr HQ resampling to 16 kHz (Whisper, W2V-BERT, SSLAM);
* ``load->24k`` : the same plus soxr HQ resampling to 24 kHz (MuQ).

Speed is reported as x real time (audio seconds / wall seconds of the best of ``--repeats``
passes over all files; higher is better), and the cost of resampling as each task's wall
time relative to ``load`` in the same pass (median over passes). Tasks take turns file by
file, so noise from other work on the machine hits them alike. One warm-up pass comes
first, so the files are in the page cache and disk speed is not what is measured.

The process is pinned to ``--cores`` CPU cores (default 2) and BLAS/OpenMP pools are held to
one thread, so the numbers match a 2-core data-loading worker budget. Run:

    python benchmarks/audio_load.py            # 20 files x 10 s, best of 5, 2 cores
"""

from __future__ import annotations

import argparse
import os

# Thread pools are sized at import time, so limit them before numpy/soxr are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from alarm.audio import load_audio  # noqa: E402

SOURCE_RATE = 44_100
TASKS: dict[str, int | None] = {"load": None, "load->16k": 16_000, "load->24k": 24_000}
FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}


@dataclass(frozen=True)
class Result:
    fmt: str
    task: str
    audio_s: float
    wall_s: float  # best pass
    vs_load: float  # median over passes of (this task's wall / load's wall in the same pass)

    @property
    def x_realtime(self) -> float:
        return self.audio_s / self.wall_s


def pin_cores(cores: int) -> list[int]:
    """Restrict this process (and workers it forks) to ``cores`` CPUs; returns the CPU ids."""
    if not hasattr(os, "sched_setaffinity"):
        return []
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    os.sched_setaffinity(0, allowed)
    return allowed


def make_files(directory: Path, files: int, seconds: float, ext: str) -> list[Path]:
    """Stereo 44.1 kHz clips: a few tones plus noise, so FLAC has realistic work to do."""
    fmt, subtype = FORMATS[ext]
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SOURCE_RATE)) / SOURCE_RATE
    paths = []
    for i in range(files):
        freqs = rng.uniform(100, 4000, size=(3, 2))
        clip = sum(0.15 * np.sin(2 * np.pi * f * t[:, None]) for f in freqs)
        clip = clip + 0.05 * rng.standard_normal(clip.shape)
        path = directory / f"clip{i:03d}.{ext}"
        sf.write(path, clip.astype(np.float32), SOURCE_RATE, format=fmt, subtype=subtype)
        paths.append(path)
    return paths


def _load_one(args: tuple[str, int | None]) -> float:
    path, rate = args
    return load_audio(path, target_rate=rate, max_seconds=None).seconds


def _timed_load(args: tuple[str, int | None]) -> float:
    """Wall seconds of one load (run in a worker when there is a pool)."""
    start = time.perf_counter()
    _load_one(args)
    return time.perf_counter() - start


def time_pass(paths: list[Path], pool: ProcessPoolExecutor | None) -> dict[str, float]:
    """Wall seconds per task to load every path once, the tasks taking turns file by file.

    Interleaving per file (not per pass) means a burst of load from elsewhere on a shared
    machine lands on all tasks alike, so the resample-vs-load ratio stays meaningful.
    """
    totals = dict.fromkeys(TASKS, 0.0)
    names = list(TASKS)
    if pool is None:
        for i, path in enumerate(paths):
            for k in range(len(names)):
                task = names[(i + k) % len(names)]  # rotate the order: no task always goes first
                totals[task] += _timed_load((str(path), TASKS[task]))
        return totals
    # With workers: each task is one parallel pass over all files, tasks in turn.
    for task in names:
        start = time.perf_counter()
        list(pool.map(_load_one, [(str(p), TASKS[task]) for p in paths]))
        totals[task] = time.perf_counter() - start
    return totals


def run(args: argparse.Namespace) -> list[Result]:
    results = []
    pool = ProcessPoolExecutor(args.workers) if args.workers > 1 else None
    try:
        with tempfile.TemporaryDirectory(prefix="alarm-audio-bench-") as tmp:
            for ext in args.formats:
                paths = make_files(Path(tmp), args.files, args.seconds, ext)
                audio_s = args.files * args.seconds
                time_pass(paths, pool)  # warm-up: page cache, soxr plans, worker start
                passes = [time_pass(paths, pool) for _ in range(args.repeats)]
                for task in TASKS:
                    walls = [p[task] for p in passes]
                    # Ratio paired within each pass, then the median: robust to noisy neighbours.
                    ratio = float(np.median([p[task] / p["load"] for p in passes]))
                    results.append(Result(ext, task, audio_s, min(walls), ratio))
    finally:
        if pool is not None:
            pool.shutdown()
    return results


def markdown(results: list[Result]) -> str:
    lines = [
        "| format | task | audio (s) | wall (s) | × real time | wall vs load |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.fmt} | {r.task} | {r.audio_s:.0f} | {r.wall_s:.3f} | {r.x_realtime:,.0f}× | {r.vs_load:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20, help="clips per format (default 20)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="passes per task; best is kept")
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to pin to (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="loader processes (default 1 = in-process, sequential)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    args = parser.parse_args()

    cpus = pin_cores(args.cores)
    results = run(args)
    print(
        f"alarm.audio.load_audio: {args.files} files x {args.seconds:g} s, 44.1 kHz stereo, "
        f"best of {args.repeats}; cores {cpus or 'unpinned'}, workers {args.workers}; "
        f"soundfile {sf.__version__} (libsndfile {sf.__libsndfile_version__}), "
        f"numpy {np.__version__}, Python {platform.python_version()}, {platform.processor() or platform.machine()}"
    )
    print()
    print(markdown(results))


if __name__ == "__main__":
    main()
