"""AMI manual annotations in NXT XML, one entry per transcribed segment: reader ``ami``."""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from alarm.corpus.collection.errors import CollectError
from alarm.corpus.collection.readers.base import Item, glob_files, register

_NITE = "{http://nite.sourceforge.net/}"


@dataclass(frozen=True)
class AmiOptions:
    """AMI manual annotations in NXT XML: one entry per transcribed segment (utterance).

    Reads ``<annotations>/corpusResources/meetings.xml`` (who is who in each meeting),
    ``words/<meeting>.<agent>.words.xml`` and ``segments/<meeting>.<agent>.segments.xml``.
    Entries: ``meeting``, ``agent`` (A-E), ``speaker`` (global id, e.g. ``MEE006``),
    ``sex`` (its first letter), ``start``/``end`` (seconds) and ``text`` (the words, with
    punctuation attached; vocal sounds and other non-word events are left out).
    """

    annotations: str = "ami_public_manual_1.6.2"


def _ami_words(path: Path) -> tuple[list[str], dict[str, int]]:
    """Tokens of one words file in document order and the position of each element id.

    Segments point at ranges of element ids that include non-word events (vocal sounds,
    disfluency markers, gaps); those take a position but contribute no text.
    """
    tokens: list[str] = []
    index: dict[str, int] = {}
    for element in ET.parse(path).getroot():
        index[element.get(f"{_NITE}id", "")] = len(tokens)
        text = (element.text or "").strip() if element.tag == "w" else ""
        # Punctuation attaches to the word before it (its own slot is left empty).
        if text and element.get("punc") == "true":
            last = next((i for i in range(len(tokens) - 1, -1, -1) if tokens[i]), None)
            if last is not None:
                tokens[last] += text
                text = ""
        tokens.append(text)
    return tokens, index


def _ami_span(href: str, tokens: list[str], index: Mapping[str, int]) -> str | None:
    ids = re.findall(r"id\(([^)]+)\)", href.partition("#")[2])
    if not ids or any(i not in index for i in ids):
        return None
    first, last = index[ids[0]], index[ids[-1]]
    return " ".join(t for t in tokens[first : last + 1] if t)


@register("ami", AmiOptions)
def read_ami(root: Path, opts: AmiOptions) -> Iterator[Item]:
    base = root / opts.annotations
    meetings_xml = base / "corpusResources" / "meetings.xml"
    if not meetings_xml.is_file():
        raise CollectError(f"{meetings_xml} not found: --root must hold {opts.annotations}/ (AMI manual annotations)")
    speakers: dict[tuple[str, str], str] = {}
    for meeting in ET.parse(meetings_xml).getroot():
        for speaker in meeting:
            key = (meeting.get("observation", ""), speaker.get("nxt_agent", ""))
            speakers[key] = speaker.get("global_name", "")
    for rel in glob_files(root, (f"{opts.annotations}/segments/*.segments.xml",)):
        meeting, agent = posixpath.basename(rel).split(".")[:2]
        words_path = base / "words" / f"{meeting}.{agent}.words.xml"
        global_name = speakers.get((meeting, agent))
        where = {"_file": rel, "meeting": meeting, "agent": agent}
        if global_name is None or not words_path.is_file():
            yield {**where, "_error": f"{rel}: no speaker in meetings.xml or no words file for {meeting}.{agent}"}
            continue
        tokens, index = _ami_words(words_path)
        for segment in ET.parse(root / rel).getroot():
            if segment.tag != "segment":
                continue
            child = next((c for c in segment if c.tag == f"{_NITE}child"), None)
            text = _ami_span(child.get("href", ""), tokens, index) if child is not None else None
            if not text:
                continue  # segments holding only non-word events (laughs, coughs) carry no transcript
            yield {
                **where,
                "_id": segment.get(f"{_NITE}id", ""),
                "speaker": global_name,
                "sex": global_name[:1],
                "start": segment.get("transcriber_start"),
                "end": segment.get("transcriber_end"),
                "text": text,
            }
