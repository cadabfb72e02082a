"""Long audio end to end: a 10-minute clip through `alarm ask` and `alarm serve`, wall time and peak RSS.

Encoders window long audio to their own maximum (Whisper: 30 s), so a 10-minute clip is 20
Whisper windows and, at 25 Hz, about 15,000 audio positions in the RLM's prompt. This checks
that it runs through both front doors and what it costs, against a 30 s clip in the same run:

* ``ask``: ``alarm ask CLIP QUESTION --preset P --max-new-tokens N`` in a fresh process each
  (model load included); wall time, CPU time and peak RSS from ``wait4``;
* ``serve``: ``alarm serve --preset S`` started fresh per clip (default limits: 600 s of audio,
  64 MiB bodies), the clip POSTed as a base64 WAV ``input_audio`` part; the request's wall
  time, the server's CPU time during it and its peak RSS (``VmHWM``) after it.

CPU time is the steadier figure on a shared machine: wall time grows with the load of others.

Clips are 16 kHz mono PCM-16 WAV (a 10-minute one is 19.2 MB, 25.6 MB in base64): a sweep
under a slow vibrato plus noise, the same signal for both lengths. Processes run with one
thread (``OMP_NUM_THREADS=1``). Prints one row per (front door, clip) and the 600 s / 30 s
ratios. Run:

    python benchmarks/long_audio.py          # ask: cpu-al-whisper-tiny-r, serve: tiny-al-whisper-r
    python benchmarks/long_audio.py --serve-preset cpu-al-whisper-tiny-r --lengths 30 600
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTION = "What do you hear?"
RATE = 16_000


def make_clip(path: Path, seconds: float) -> None:
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * RATE)) / RATE
    sweep = 0.3 * np.sin(2 * np.pi * (300 + 200 * np.sin(2 * np.pi * t / 7)) * t)
    noise = 0.05 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(path, (sweep + noise).astype(np.float32), RATE, subtype="PCM_16")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_ask(clip: Path, preset: str, max_new_tokens: int) -> dict:
    """One ``alarm ask`` process: wall and CPU seconds, peak RSS (GiB)."""
    command = [sys.executable, "-m", "alarm.cli", "ask", str(clip), QUESTION, "--preset", preset]
    command += ["--max-new-tokens", str(max_new_tokens)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (ru_maxrss in KiB on Linux)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"alarm ask failed on {clip}:\n{err[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_gib": usage.ru_maxrss / 2**20, "answer": out.strip()[:80]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vm_hwm_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc status")


def run_serve(clip: Path, preset: str, max_new_tokens: int) -> dict:
    """A fresh ``alarm serve``: the request's wall and CPU seconds, the server's peak RSS (GiB)."""
    import httpx

    port = _free_port()
    command = [sys.executable, "-m", "alarm.cli", "serve", "--preset", preset, "--port", str(port)]
    server = subprocess.Popen([*command, "--log-level", "warning"], env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{server.stderr.read()[-2000:]}")
            time.sleep(0.5)
        data = base64.b64encode(clip.read_bytes()).decode()
        content = [{"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]
        body = {"messages": [{"role": "user", "content": [*content, {"type": "text", "text": QUESTION}]}]}
        body["max_tokens"] = max_new_tokens
        start, cpu = time.perf_counter(), _cpu_seconds(server.pid)
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=3600)
        wall, cpu = time.perf_counter() - start, _cpu_seconds(server.pid) - cpu
        if reply.status_code != 200:
            raise RuntimeError(f"server answered {reply.status_code}: {reply.text[:500]}")
        usage = reply.json()["usage"]
        peak = _vm_hwm_gib(server.pid)
        return {"wall_s": wall, "cpu_s": cpu, "peak_rss_gib": peak, "prompt_tokens": usage["prompt_tokens"]}
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ask-preset", default="cpu-al-whisper-tiny-r")
    parser.add_argument("--serve-preset", default="tiny-al-whisper-r")
    parser.add_argument("--lengths", type=float, nargs="+", default=[30.0, 600.0], help="clip lengths in seconds")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--skip", choices=("ask", "serve"), default=None)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread per process")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.lengths:
            clip = Path(tmp) / f"clip_{int(seconds)}s.wav"
            make_clip(clip, seconds)
            if args.skip != "ask":
                rows.append({"door": "ask", "preset": args.ask_preset, "seconds": seconds,
                             **run_ask(clip, args.ask_preset, args.max_new_tokens)})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
            if args.skip != "serve":
                rows.append({"door": "serve", "preset": args.serve_preset, "seconds": seconds,
                             **run_serve(clip, args.serve_preset, args.max_new_tokens)})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'door':6s} {'preset':24s} {'audio s':>8s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS GiB':>13s}")
    for r in rows:
        print(
            f"{r['door']:6s} {r['preset']:24s} {r['seconds']:8.0f} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} "
            f"{r['peak_rss_gib']:13.2f}"
        )
    short, long = min(args.lengths), max(args.lengths)
    for door in ("ask", "serve"):
        pair = {r["seconds"]: r for r in rows if r["door"] == door}
        if short in pair and long in pair and short != long:
            a, b = pair[short], pair[long]
            print(
                f"{door}: {long:.0f} s vs {short:.0f} s audio: wall x{b['wall_s'] / a['wall_s']:.2f}, "
                f"CPU x{b['cpu_s'] / a['cpu_s']:.2f}, peak RSS x{b['peak_rss_gib'] / a['peak_rss_gib']:.2f}"
            )


if __name__ == "__main__":
    main()
