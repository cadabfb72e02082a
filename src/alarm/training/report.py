"""What a run writes besides weights: metrics CSV (+ TensorBoard / wandb), rejects, curve plots.

The CSV is the source of truth. On resume it is cut back to the checkpoint's step, so the
rows of steps that are trained again are not duplicated; TensorBoard gets the same cut
(``purge_step``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import uuid
from collections.abc import Sequence
from typing import Any

from alarm.io import atomic_open, atomic_path, write_text

log = logging.getLogger(__name__)

COLUMNS = (
    "step",
    "epoch",
    "loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "target_tokens",
    "samples",
    "skipped",
    "val_loss",
    "elapsed_s",
    "peak_mem_mb",  # main process: accelerator memory allocated at most (CUDA), else peak RSS
)
WANDB_ID_FILE = "wandb-run-id"


def wandb_run_id(directory: str) -> str:
    """The run's wandb id, made once and kept in the output directory, so a resume continues
    the same wandb run while two runs that share a directory name do not."""
    path = os.path.join(directory, WANDB_ID_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    run_id = f"{os.path.basename(os.path.abspath(directory))}-{uuid.uuid4().hex[:8]}"
    write_text(path, run_id)
    return run_id


class MetricsLog:
    """Rows of :data:`COLUMNS` to ``metrics.csv``; mirrored to TensorBoard / wandb when asked."""

    def __init__(
        self,
        directory: str,
        *,
        resume_step: int | None = None,
        report_to: Sequence[str] = (),
        run_config: dict[str, Any] | None = None,
    ) -> None:
        self.path = os.path.join(directory, "metrics.csv")
        if resume_step is None or not os.path.exists(self.path):
            _write_rows(self.path, [])
        else:
            _write_rows(self.path, [r for r in read_metrics(self.path) if int(r["step"]) <= resume_step])
        self._tb = self._wandb = None
        if "tensorboard" in report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(os.path.join(directory, "tensorboard"), purge_step=(resume_step or 0) + 1)
            except ImportError:
                log.warning("tensorboard is not installed; metrics go to %s only", self.path)
        if "wandb" in report_to:
            try:
                import wandb

                self._wandb = wandb.init(
                    dir=directory,
                    config=run_config,
                    name=os.path.basename(os.path.abspath(directory)),
                    id=wandb_run_id(directory),
                    resume="allow",
                )
            except ImportError:
                log.warning("wandb is not installed; metrics go to %s only", self.path)

    def write(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown metric columns {sorted(unknown)}")
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, COLUMNS).writerow({k: _fmt(row.get(k)) for k in COLUMNS})
        step = int(row["step"])
        scalars = {k: float(v) for k, v in row.items() if k not in ("step",) and v is not None}
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(f"train/{key}" if key != "val_loss" else "val/loss", value, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def write_text(self, tag: str, text: str, step: int) -> None:
        if self._tb is not None:
            self._tb.add_text(tag, text, step)
        if self._wandb is not None:
            self._wandb.log({tag: text}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _write_rows(path: str, rows: list[dict[str, str]]) -> None:
    with atomic_open(path, newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def read_metrics(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _column(rows: list[dict[str, str]], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for row in rows:
        if row.get(key):
            steps.append(int(row["step"]))
            values.append(float(row[key]))
    return steps, values


def plot_curves(metrics_csv: str, png: str, title: str = "") -> None:
    """Training/validation loss, learning rate and gradient norm against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on training machines
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_csv)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        steps, values = _column(rows, key)
        if steps:
            axes[0].plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=label)
    axes[0].set_ylabel("loss (nats / target token)")
    losses = [float(r[k]) for r in rows for k in ("loss", "val_loss") if r.get(k)]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 10:  # log only when it spans decades
        axes[0].set_yscale("log")
    if axes[0].lines:
        axes[0].legend()
    for ax, key, label in ((axes[1], "lr", "learning rate"), (axes[2], "grad_norm", "gradient norm (pre-clip)")):
        steps, values = _column(rows, key)
        ax.plot(steps, values)
        ax.set_ylabel(label)
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


class RejectsLog:
    """Append-only ``rejects.jsonl``, one line per skipped id (an id seen again is not repeated)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.seen: set[str] = set()
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.seen = {json.loads(line)["id"] for line in f if line.strip()}

    def add(self, rejection: Any) -> bool:
        """Record a rejection; False when this id was already recorded."""
        if rejection.id in self.seen:
            return False
        self.seen.add(rejection.id)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rejection.to_dict(), ensure_ascii=False) + "\n")
        return True


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
