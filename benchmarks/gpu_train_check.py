"""GPU validation of the training loop: precision, memory, NCCL DDP, DeepSpeed ZeRO-2, resume.

NOT YET RUN ON A GPU (written on CPU-only machines against the accelerate/DeepSpeed docs).
The next session with a GPU runs it and records the results in docs/training.md:

    python benchmarks/gpu_train_check.py                     # everything that applies, ~5-8 min on one H100
    python benchmarks/gpu_train_check.py --stages precision cache
    OUT=/some/dir python benchmarks/gpu_train_check.py       # logs and a summary into $OUT

Stages (each runs ``alarm train`` in its own process(es), as a user would):

  precision  one GPU, tiny-alarm-ca: the default (bf16 autocast + bf16 frozen parts) vs fp32;
             an in-process check that the frozen RLM/encoders are bf16 and bit-identical after
             training while trainable weights and AdamW moments are fp32
  mid        one GPU, the benchmark-only mid-alarm-ca (forward_stages.py): tokens/s and peak
             memory with bf16 vs fp32 frozen parts (the bf16 saving of the memory plan)
  cache      features extracted on the GPU, training from them: the encoders never reach the
             GPU (lower peak memory), first-step loss close to online training
  resume     10 steps straight vs the same run cut back to its step-5 checkpoint and resumed
  ddp        (2+ GPUs) torchrun --nproc_per_node 2, NCCL, fp32: equals 1 process with accumulation
  deepspeed  (deepspeed installed) accelerate launch with configs/deepspeed_zero2.json, bf16: trains,
             writes per-rank optimizer state, resumes, the final model loads

Prints a Markdown table (loss first -> last, tokens/s, peak GPU memory, verdict per check)
and writes it with every run's log to ``$OUT`` (or a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEEPSPEED_CONFIG = os.path.join(REPO, "configs", "deepspeed_zero2.json")
STAGES = ("precision", "mid", "cache", "resume", "ddp", "deepspeed")
# Optimizer steps per run; --quick (plumbing on a CPU) uses QUICK_STEPS. A resume run saves at half.
STEPS = {"precision": 40, "mid": 15, "cache": 10, "resume": 10, "ddp": 5}
QUICK_STEPS = {"precision": 2, "mid": 2, "cache": 2, "resume": 4, "ddp": 2}


class Check:
    """Runs, their metrics and pass/fail verdicts, collected into one report."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.rows: list[dict[str, Any]] = []
        self.verdicts: list[tuple[str, bool, str]] = []
        os.makedirs(os.path.join(out, "logs"), exist_ok=True)

    def run(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        """Run a command, its output into logs/NAME.log; a failure is a failed check, not a crash."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        log_path = os.path.join(self.out, "logs", f"{safe}.log")
        started = time.perf_counter()
        with open(log_path, "w") as log:
            log.write(" ".join(command) + "\n\n")
            log.flush()
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.expect(
            f"{name}: exit status 0", done.returncode == 0, f"{time.perf_counter() - started:.0f} s, {log_path}"
        )
        if done.returncode:
            with open(log_path) as log:
                print(log.read()[-3000:], file=sys.stderr)
            raise StageFailed(name)

    def record(self, name: str, run_dir: str) -> list[dict[str, str]]:
        from alarm.training.report import read_metrics

        rows = read_metrics(os.path.join(run_dir, "metrics.csv"))
        steady = rows[1:] or rows  # the first row carries start-up
        self.rows.append(
            {
                "run": name,
                "steps": rows[-1]["step"],
                "loss": f"{float(rows[0]['loss']):.4f} -> {float(rows[-1]['loss']):.4f}",
                "tokens/s": f"{sum(float(r['tokens_per_s']) for r in steady) / len(steady):.0f}",
                "peak MB": f"{float(rows[-1]['peak_mem_mb']):.0f}",
            }
        )
        return rows

    def expect(self, what: str, ok: bool, detail: str = "") -> None:
        self.verdicts.append((what, bool(ok), detail))
        print(f"[{'PASS' if ok else 'FAIL'}] {what} {detail}", flush=True)

    def report(self) -> str:
        lines = ["| run | steps | loss (first -> last) | tokens/s | peak GPU MB |", "|---|---:|---|---:|---:|"]
        lines += [f"| {r['run']} | {r['steps']} | {r['loss']} | {r['tokens/s']} | {r['peak MB']} |" for r in self.rows]
        lines += ["", "| check | result | detail |", "|---|---|---|"]
        lines += [f"| {w} | {'PASS' if ok else 'FAIL'} | {d} |" for w, ok, d in self.verdicts]
        return "\n".join(lines)


class StageFailed(Exception):
    pass


def train_args(preset: str, corpus: str, output: str, **settings: Any) -> list[str]:
    """``alarm train`` flags for a short run; ``settings`` override (underscores become dashes)."""
    base = dict(
        preset=preset,
        corpus=os.path.join(corpus, "corpus.jsonl"),
        audio_root=corpus,
        output=output,
        max_steps=20,
        effective_batch_size=8,
        micro_batch_size=4,
        warmup_steps=2,
        learning_rate=1e-3,
        num_workers=4,
        log_every=1,
        eval_every=10**6,
        save_every=0,
        val_split="",
    )
    flags = []
    for key, value in {**base, **settings}.items():
        if value is None:
            continue
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return ["train", *flags, "--no-progress"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "alarm.cli", *args]


def first_loss(rows: list[dict[str, str]]) -> float:
    return float(rows[0]["loss"])


def close(a: float, b: float, rel: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rel * max(abs(a), abs(b))


# -- stages --------------------------------------------------------------------------------


def stage_precision(check: Check, corpus: str, work: str) -> None:
    one = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]}
    bf16 = os.path.join(work, "tiny-bf16")
    steps = STEPS["precision"]
    check.run("tiny bf16 (default)", cli(*train_args("tiny-alarm-ca", corpus, bf16, max_steps=steps)), one)
    rows_bf16 = check.record("tiny-alarm-ca, bf16 autocast + bf16 frozen", bf16)
    fp32 = os.path.join(work, "tiny-fp32")
    flags = dict(max_steps=steps, mixed_precision="no", frozen_dtype="float32")
    check.run("tiny fp32", cli(*train_args("tiny-alarm-ca", corpus, fp32, **flags)), one)
    rows_fp32 = check.record("tiny-alarm-ca, fp32", fp32)
    check.expect(
        "bf16 first-step loss within 2% of fp32",
        close(first_loss(rows_bf16), first_loss(rows_fp32), 0.02),
        f"{first_loss(rows_bf16):.5f} vs {first_loss(rows_fp32):.5f}",
    )
    check.expect(
        "bf16 loss falls",
        float(rows_bf16[-1]["loss"]) < first_loss(rows_bf16),
        f"{first_loss(rows_bf16):.4f} -> {rows_bf16[-1]['loss']}",
    )
    dtypes = os.path.join(work, "dtypes.json")
    check.run("dtype check (in process)", [sys.executable, __file__, "--dtype-check", corpus, dtypes], one)
    with open(dtypes) as f:
        found = json.load(f)
    for key, ok in found["checks"].items():
        check.expect(key, ok, json.dumps(found["dtypes"]) if "dtype" in key else "")


def dtype_check(corpus: str, out: str) -> None:
    """Child process: train 5 steps on cuda:0 with the defaults; dtypes and frozen bit-identity as JSON."""
    from alarm.modeling.model import FROZEN_PREFIXES
    from alarm.training.config import TrainConfig
    from alarm.training.trainer import Trainer

    config = TrainConfig(
        preset="tiny-alarm-ca",
        corpus=os.path.join(corpus, "corpus.jsonl"),
        audio_root=corpus,
        output=os.path.join(os.path.dirname(out), "dtype-run"),
        max_steps=5,
        effective_batch_size=8,
        micro_batch_size=4,
        warmup_steps=1,
        learning_rate=1e-3,
        num_workers=2,
        val_split="",
        save_every=0,
        progress=False,
        report_to=(),
        target_tokens=None,  # synthetic targets are a sentence, under the official 100-token floor
    )
    trainer = Trainer(config)
    model = trainer.unwrapped
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(FROZEN_PREFIXES)}
    trainer.run()
    after = model.state_dict()
    moments = [v for s in trainer.optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim()]
    floating = {k: v.dtype for k, v in frozen.items() if v.is_floating_point()}
    result = {
        "dtypes": {
            "frozen": sorted({str(d) for d in floating.values()}),
            "trainable": sorted({str(p.dtype) for p in trainer.trainable}),
            "adam": sorted({str(v.dtype) for v in moments}),
            "device": str(next(model.parameters()).device),
        },
        "checks": {
            "frozen parts dtype bfloat16 on the GPU": set(floating.values()) == {torch.bfloat16},
            "trainable and AdamW dtype float32": {p.dtype for p in trainer.trainable} | {v.dtype for v in moments}
            == {torch.float32},
            "model on cuda": next(model.parameters()).device.type == "cuda",
            "frozen parts bit-identical after training": all(torch.equal(after[k], v) for k, v in frozen.items()),
        },
    }
    with open(out, "w") as f:
        json.dump(result, f)


def mid_preset(work: str) -> str:
    from forward_stages import mid_config

    from alarm.modeling.model import AlarmForConditionalGeneration

    path = os.path.join(work, "mid-alarm-ca")
    if not os.path.isdir(path):
        AlarmForConditionalGeneration(mid_config()).save_pretrained(path)
    return path


def stage_mid(check: Check, corpus: str, work: str) -> None:
    preset, one = mid_preset(work), {"CUDA_VISIBLE_DEVICES": "0"}
    peaks = {}
    for name, flags in (("bf16", {}), ("fp32", dict(mixed_precision="no", frozen_dtype="float32"))):
        out = os.path.join(work, f"mid-{name}")
        check.run(f"mid {name}", cli(*train_args(preset, corpus, out, max_steps=STEPS["mid"], **flags)), one)
        peaks[name] = float(check.record(f"mid-alarm-ca, {name}", out)[-1]["peak_mem_mb"])
    check.expect("bf16 frozen parts lower peak memory than fp32", peaks["bf16"] < peaks["fp32"], json.dumps(peaks))


def stage_cache(check: Check, corpus: str, work: str) -> None:
    preset, one = mid_preset(work), {"CUDA_VISIBLE_DEVICES": "0"}
    cache = os.path.join(work, "mid-cache")
    extract = ["features", "extract", "--preset", preset, "--corpus", os.path.join(corpus, "corpus.jsonl")]
    extract += ["--audio-root", corpus, "--out", cache, "--split", "train", "--no-progress"]
    check.run("features extract (GPU)", cli(*extract), one)
    runs = {}
    for name, features in (("online", None), ("cached", cache)):
        out = os.path.join(work, f"mid-{name}")
        args = train_args(preset, corpus, out, max_steps=STEPS["cache"], features=features)
        check.run(f"mid {name}", cli(*args), one)
        runs[name] = check.record(f"mid-alarm-ca, {name} (bf16)", out)
    online, cached = first_loss(runs["online"]), first_loss(runs["cached"])
    check.expect("cached first-step loss within 2% of online", close(online, cached, 0.02), f"{cached} vs {online}")
    peak = {k: float(v[-1]["peak_mem_mb"]) for k, v in runs.items()}
    lower = peak["cached"] < peak["online"]
    check.expect("cached run's peak memory below online (no encoders on the GPU)", lower, json.dumps(peak))


def resume_args(preset: str, corpus: str, out: str) -> list[str]:
    """A run of STEPS["resume"] steps that checkpoints at half of them (all checkpoints kept)."""
    total = STEPS["resume"]
    return train_args(preset, corpus, out, max_steps=total, save_every=total // 2, keep_checkpoints=0)


def resume_pair(check: Check, name: str, launch: list[str], args: list[str], out: str, env: dict[str, str]) -> None:
    """N steps straight, then the run cut back to its N/2 checkpoint and resumed: the second half again."""
    half = STEPS["resume"] // 2
    check.run(f"{name} straight", [*launch, *args], env)
    straight = check.record(name, out)
    cut = out + "-resumed"
    shutil.copytree(out, cut)
    for step in os.listdir(os.path.join(cut, "checkpoints")):
        if step != f"step-{half:07d}":
            shutil.rmtree(os.path.join(cut, "checkpoints", step))
    shutil.rmtree(os.path.join(cut, "final"))
    resumed_args = [a if a != out else cut for a in args]
    check.run(f"{name} resumed", [*launch, *resumed_args, "--resume"], env)
    from alarm.training.report import read_metrics

    again = read_metrics(os.path.join(cut, "metrics.csv"))
    a = [float(r["loss"]) for r in straight[half:]]
    b = [float(r["loss"]) for r in again[half:]]
    check.expect(
        f"{name}: steps {half + 1}-{2 * half} after resume match (1e-3 rel)",
        len(a) == len(b) == half and all(close(x, y, 1e-3) for x, y in zip(a, b)),
        f"{a} vs {b}",
    )


def stage_resume(check: Check, corpus: str, work: str) -> None:
    out = os.path.join(work, "resume")
    resume_pair(
        check,
        "tiny resume, 1 GPU",
        cli(),
        resume_args("tiny-alarm-ca", corpus, out),
        out,
        {"CUDA_VISIBLE_DEVICES": "0"},
    )


def stage_ddp(check: Check, corpus: str, work: str) -> None:
    fp32 = dict(mixed_precision="no", frozen_dtype="float32", effective_batch_size=8, micro_batch_size=2)
    one, two = os.path.join(work, "ddp-1"), os.path.join(work, "ddp-2")
    steps = STEPS["ddp"]
    args = train_args("tiny-al-sslam-r", corpus, one, max_steps=steps, **fp32)
    check.run("1 GPU, accumulation 4", cli(*args), {"CUDA_VISIBLE_DEVICES": "0"})
    rows_one = check.record("tiny-al-sslam-r fp32, 1 process", one)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "alarm.cli"]
    args = train_args("tiny-al-sslam-r", corpus, two, max_steps=steps, **fp32)
    check.run("torchrun 2 GPUs (NCCL)", [*torchrun, *args], {"CUDA_VISIBLE_DEVICES": "0,1"})
    rows_two = check.record("tiny-al-sslam-r fp32, 2 processes NCCL", two)
    a, b = [float(r["loss"]) for r in rows_one], [float(r["loss"]) for r in rows_two]
    same = len(a) == len(b) == steps and all(close(x, y, 1e-4) for x, y in zip(a, b))
    check.expect("2 processes == 1 process with accumulation (1e-4 rel)", same, f"{a} vs {b}")


def stage_deepspeed(check: Check, corpus: str, work: str, gpus: int) -> None:
    n = min(gpus, 2) if gpus else 2  # --allow-cpu: two CPU processes (DeepSpeed's gloo backend)
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(n),
        "--mixed_precision",
        "bf16",
    ]
    launch += ["--use_deepspeed", "--deepspeed_config_file", DEEPSPEED_CONFIG, "-m", "alarm.cli"]
    out = os.path.join(work, "deepspeed")
    env = {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(n))} if gpus else {}
    resume_pair(
        check,
        f"DeepSpeed ZeRO-2, {n} {'GPU(s)' if gpus else 'CPU processes'}",
        launch,
        resume_args("tiny-alarm-ca", corpus, out),
        out,
        env,
    )
    files = os.listdir(os.path.join(out, "checkpoints", f"step-{STEPS['resume']:07d}"))
    check.expect("per-rank optimizer files", all(f"optimizer-rank{r}.pt" in files for r in range(n)), str(files))
    from alarm.presets import build_model

    model = build_model(os.path.join(out, "final"))
    floats = {v.dtype for v in model.trainable_state_dict().values() if v.is_floating_point()}
    check.expect("final model loads, trainable fp32", floats == {torch.float32}, str(floats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--dtype-check", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--allow-cpu", action="store_true", help="run the plumbing on a CPU (GPU checks then fail)")
    parser.add_argument("--quick", action="store_true", help="2-4 steps per run (plumbing only)")
    args = parser.parse_args()
    if args.dtype_check:
        dtype_check(*args.dtype_check)
        return
    if args.quick:
        STEPS.update(QUICK_STEPS)
    if not torch.cuda.is_available() and not args.allow_cpu:
        sys.exit("no CUDA GPU: this check is for a GPU machine (the CPU paths are covered by tests/test_train_*.py)")
    out = os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu-train-check-")
    work = tempfile.mkdtemp(prefix="gpu-train-work-")
    check = Check(out)
    gpus = torch.cuda.device_count()
    try:
        import deepspeed  # noqa: F401

        has_deepspeed = True
    except ImportError:
        has_deepspeed = False
    env = {
        "torch": torch.__version__,
        "gpus": [torch.cuda.get_device_name(i) for i in range(gpus)],
        "bf16": gpus > 0 and torch.cuda.is_bf16_supported(),
        "deepspeed": has_deepspeed,
    }
    print(json.dumps(env), flush=True)

    from alarm.training.synthetic import make_tone_corpus

    corpus = os.path.join(work, "tones")
    make_tone_corpus(corpus, 64, durations=(1.0, 2.5, 4.0, 8.0))
    for stage in args.stages:
        if stage == "ddp" and gpus < 2:
            check.expect("ddp: skipped", True, f"{gpus} GPU")
            continue
        if stage == "deepspeed" and not has_deepspeed:
            check.expect("deepspeed: skipped", True, "deepspeed is not installed (pip install deepspeed)")
            continue
        started = time.perf_counter()
        try:
            if stage == "deepspeed":
                stage_deepspeed(check, corpus, work, gpus)
            else:
                globals()[f"stage_{stage}"](check, corpus, work)
        except StageFailed:
            pass  # recorded; go on with the next stage
        print(f"-- {stage}: {time.perf_counter() - started:.0f} s", flush=True)
    report = f"Environment: `{json.dumps(env)}`\n\n{check.report()}\n"
    with open(os.path.join(out, "gpu_train_check.md"), "w") as f:
        f.write(report)
    print("\n" + report)
    print(f"logs and report in {out}")
    sys.exit(0 if all(ok for _, ok, _ in check.verdicts) else 1)


if __name__ == "__main__":
    main()
