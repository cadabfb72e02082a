"""What a collection run reports besides its records: rejects with their reasons, and the summary.

An entry that cannot become a record is never fatal: it is kept as a :class:`Reject` with
one of :data:`REASONS` and written to the rejects file. Most reasons come from the audio
file's header (:func:`probe_audio`, read before any decoding); :class:`CollectSummary`
counts what was kept, rejected (per reason) and filtered out on purpose.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf

from alarm import io as atomic

# Reasons an entry is rejected; the rejects file and the summary use exactly these strings.
MISSING_AUDIO = "missing audio"
UNREADABLE_AUDIO = "unreadable audio"
ZERO_DURATION = "zero duration"
OUT_OF_RANGE = "segment outside the audio"
DUPLICATE_ID = "duplicate id"
BAD_ANNOTATION = "bad annotation"
REASONS = (MISSING_AUDIO, UNREADABLE_AUDIO, ZERO_DURATION, OUT_OF_RANGE, DUPLICATE_ID, BAD_ANNOTATION)


@dataclass(frozen=True)
class Reject:
    """An entry that did not become a record, and why (one line of the rejects file)."""

    id: str
    reason: str
    detail: str
    audio_path: str = ""

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass
class CollectSummary:
    """What one collection run kept, rejected (by reason) and filtered out (by reason)."""

    dataset: str
    kept: int = 0
    seconds: float = 0.0
    splits: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "kept": self.kept,
            "hours": round(self.hours, 4),
            "splits": dict(self.splits),
            "rejected": dict(self.rejected),
            "filtered": dict(self.filtered),
        }

    def format(self) -> str:
        splits = ", ".join(f"{k} {v}" for k, v in sorted(self.splits.items())) or "none"
        lines = [f"{self.dataset}: kept {self.kept} records, {self.hours:.3f} h ({splits})"]
        total = sum(self.rejected.values())
        lines.append(f"  rejected {total}" + "".join(f"\n    {r}: {n}" for r, n in self.rejected.most_common()))
        if self.filtered:
            lines.append(
                f"  filtered out {sum(self.filtered.values())}"
                + "".join(f"\n    {r}: {n}" for r, n in self.filtered.most_common())
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class AudioInfo:
    seconds: float = 0.0
    reason: str | None = None
    detail: str = ""


def probe_audio(path: Path) -> AudioInfo:
    """Length of an audio file from its header, or the reject reason it deserves."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return AudioInfo(reason=MISSING_AUDIO, detail="file does not exist")
    except OSError as err:
        return AudioInfo(reason=UNREADABLE_AUDIO, detail=f"cannot stat ({err.strerror})")
    if not path.is_file():
        return AudioInfo(reason=MISSING_AUDIO, detail="not a regular file")
    if st.st_size == 0:
        return AudioInfo(reason=ZERO_DURATION, detail="file is empty (0 bytes)")
    try:
        info = sf.info(str(path))
    except Exception as err:  # libsndfile raises several types; any of them means "cannot read"
        return AudioInfo(reason=UNREADABLE_AUDIO, detail=str(err).splitlines()[0][:300])
    if info.frames <= 0 or info.samplerate <= 0:
        return AudioInfo(reason=ZERO_DURATION, detail=f"header declares {info.frames} frames")
    return AudioInfo(seconds=info.frames / info.samplerate)


def write_rejects(rejects: Iterable[Reject], path: str | os.PathLike[str]) -> int:
    """Write rejects as JSON lines, atomically. Returns the number written."""
    return atomic.write_jsonl(path, (r.to_dict() for r in rejects))


def default_rejects_path(out: str | os.PathLike[str]) -> Path:
    """``corpus/esc50.jsonl`` -> ``corpus/esc50.rejects.jsonl``."""
    out = Path(out)
    stem = out.name.rsplit(".", 1)[0] if "." in out.name else out.name
    return out.with_name(f"{stem}.rejects.jsonl")
