"""The metadata text of a record (the paper's textual surrogate A_text).

One consistent shape for every source::

    [00:00.0-00:02.6] transcript: Please call Stella.
    duration: 2.6 s; gender: female; age: 23; accent: English; region: Southern England

and for windows of a long recording (times relative to the window start)::

    [00:00.0-00:01.3] speaker 1: okay
    [00:02.1-00:04.0] speaker 2 (emotion: joy): does anyone want to see it
    duration: 4.0 s; speakers: 2; speaker 1 gender: male; speaker 2 gender: female

Instruction sources (``metadata_style="transcript"``) keep only the spoken query's
transcript, since the pipeline uses it verbatim as the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alarm.corpus.collection.spec import Pairs


def clock(seconds: float) -> str:
    """``mm:ss.s`` (``h:mm:ss.s`` from one hour), tenths of a second."""
    tenths = int(round(max(seconds, 0.0) * 10))
    minutes, rest = divmod(tenths, 600)
    text = f"{rest // 10:02d}.{rest % 10}"
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{text}"
    return f"{minutes:02d}:{text}"


@dataclass(frozen=True)
class Turn:
    """One utterance inside a window: times relative to the window start."""

    start_s: float
    end_s: float
    speaker: str
    text: str
    fields: Pairs = ()


def render_metadata(
    duration_s: float,
    *,
    text: str | None = None,
    text_label: str | None = None,
    turns: Sequence[Turn] = (),
    fields: Pairs = (),
) -> str:
    """The metadata text of one record (see the module docstring for its shape)."""
    lines = []
    for turn in turns:
        attrs = f" ({', '.join(f'{k}: {v}' for k, v in turn.fields)})" if turn.fields else ""
        end = min(turn.end_s, duration_s)
        lines.append(f"[{clock(turn.start_s)}-{clock(end)}] {turn.speaker}{attrs}: {turn.text}")
    if not turns and text is not None:
        lines.append(f"[{clock(0)}-{clock(duration_s)}] " + (f"{text_label}: {text}" if text_label else text))
    info = (("duration", f"{duration_s:.1f} s"), *fields)
    lines.append("; ".join(f"{k}: {v}" for k, v in info))
    return "\n".join(lines)
