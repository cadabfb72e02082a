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

``layout="official"`` gives the official repository's layout instead (``get_audio_description``
in ``scripts/alarm/dataset_collection/utils.py``), one line: whole seconds (Python's
``round``), ``[mm:ss-mm:ss]`` before the text, each timed turn as ``[mm:ss-mm:ss, speaker]
text``, a caption between bars (a text whose ``text_label`` is not spoken words, as in
:data:`SPOKEN_LABELS`, or has no label: "speech", "music"), and every field in one
parenthesis after it, duration first, names lower-cased::

    [00:00-00:03] Please call Stella. (duration: 3s, gender: female, age: 23)
    [00:00-00:10] |a dog barks| (duration: 10s)
    [00:00-00:01, speaker 1] okay [00:02-00:04, speaker 2] does anyone want to see it (duration: 4s, speakers: 2)

A turn's own fields, for which the official layout has no place, follow the speaker inside
its brackets (``[00:02-00:04, speaker 2, emotion: joy]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alarm.corpus.collection.spec import Pairs

#: How the metadata text is laid out: this project's (multi-line, tenths of a second) or the
#: official repository's (one line, whole seconds); see the module docstring.
LAYOUTS = ("ours", "official")

#: ``text_label`` values whose text is spoken (or sung) words; any other text is a caption,
#: which the official layout puts between bars.
SPOKEN_LABELS = frozenset({"transcript", "annotated transcript", "sung lyrics"})


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
    layout: str = "ours",
) -> str:
    """The metadata text of one record in ``layout`` (see the module docstring for both)."""
    if layout == "official":
        return _official(duration_s, text, text_label, turns, fields)
    if layout != "ours":
        raise ValueError(f"metadata layout is one of {LAYOUTS}, got {layout!r}")
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


def whole_clock(seconds: int) -> str:
    """``mm:ss`` of whole seconds, minutes unbounded (the official layout)."""
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def _official(duration_s: float, text: str | None, text_label: str | None, turns: Sequence[Turn], fields: Pairs) -> str:
    """The official layout: ``<timed text> (duration: Ns, name: value, ...)`` on one line."""

    def shown(words: str) -> str:
        return words if text_label in SPOKEN_LABELS else f"|{words}|"

    duration = round(duration_s)
    if turns:
        parts = []
        for turn in turns:
            end = round(min(turn.end_s, duration_s))
            who = ", ".join([turn.speaker, *(f"{k}: {v}" for k, v in turn.fields)])
            # timed turns are utterances (meetings, mixtures): spoken words, never bars
            parts.append(f"[{whole_clock(round(turn.start_s))}-{whole_clock(end)}, {who}] {turn.text}")
        timed = " ".join(parts)
        # officially the duration shown for timed turns is where the last one ends
        duration = round(min(turns[-1].end_s, duration_s))
    elif text is not None:
        timed = f"[{whole_clock(0)}-{whole_clock(duration)}] {shown(text)}"
    else:
        timed = ""
    info = ", ".join(f"{k.lower()}: {v}" for k, v in (("duration", f"{duration}s"), *fields))
    return f"{timed} ({info})" if timed else f"({info})"
