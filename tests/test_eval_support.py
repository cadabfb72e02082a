"""Small benchmark releases in the official on-disk layouts, built in a temp folder.

Each builder writes the metadata file exactly as the release names and shapes it, plus one
short audio clip per entry where the release keeps it, and returns the metadata path. The
entries are hand-made; the scores the tests expect are computed by hand next to them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from alarm.evaluation.benchmarks.base import read_entries


def write_clip(path: Path, seconds: float = 0.5, rate: int = 16_000, freq: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    return path


def mmau_entry(ident: str, choices: list[str], answer: str, task: str, difficulty: str, **extra: Any) -> dict:
    return {
        "id": ident,
        "audio_id": f"./test-mini-audios/{ident}.wav",
        "question": f"Question {ident}?",
        "choices": choices,
        "answer": answer,
        "dataset": "fixture",
        "task": task,
        "split": "test-mini",
        "category": extra.pop("category", "Reasoning"),
        "sub-category": extra.pop("sub", "Acoustic Source Inference"),
        "difficulty": difficulty,
        **extra,
    }


# MMAU test-mini entries; the predictions (raw model outputs) are added by the tests.
MMAU_ENTRIES = [
    mmau_entry("m1", ["Man", "Woman", "Child", "Robot"], "Man", "sound", "easy"),
    mmau_entry("m2", ["Dog barking", "Cat meowing", "Bird chirping", "Car horn"], "Bird chirping", "sound", "medium"),
    mmau_entry("m3", ["Piano", "Guitar", "Violin", "Drums"], "Violin", "music", "easy", sub="Instrumentation"),
    mmau_entry("m4", ["Major", "Minor"], "Minor", "music", "hard", sub="Harmony"),
    mmau_entry("m5", ["Happy", "Sad", "Angry", "Neutral"], "Angry", "speech", "medium", sub="Emotion"),
    mmau_entry(
        "m6",
        ["Two speakers", "Three speakers", "Four speakers", "One speaker"],
        "Three speakers",
        "speech",
        "hard",
        sub="Speaker Counting",
    ),
    mmau_entry("m7", ["Yes", "No"], "No", "speech", "easy", category=["Reasoning"], sub="Phonemic"),
    mmau_entry("m8", ["Rain", "Thunder", "Wind", "Fire"], "Thunder", "sound", "hard"),
    mmau_entry("m9", ["Cow", "Sheep"], "Sheep", "sound", "easy"),
]


def build_mmau(root: Path, entries: list[dict] | None = None, audio: bool = True) -> Path:
    entries = MMAU_ENTRIES if entries is None else entries
    root.mkdir(parents=True, exist_ok=True)
    meta = root / "mmau-test-mini.json"
    meta.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    if audio:
        for i, e in enumerate(entries):
            write_clip(root / e["audio_id"], freq=300 + 50 * i)
    return meta


def mmar_entry(ident: str, choices: list[str], answer: str, modality: str, category: str, **extra: Any) -> dict:
    return {
        "id": ident,
        "audio_path": f"./audio/{ident}.wav",
        "question": extra.pop("question", f"Question {ident}?"),
        "choices": choices,
        "answer": answer,
        "modality": modality,
        "category": category,
        "sub-category": extra.pop("sub", "Content Analysis"),
        "language": extra.pop("language", "en"),
        "source": "youtube",
        **extra,
    }


MMAR_ENTRIES = [
    mmar_entry("r1", ["Too little", "Just right", "Too much"], "Too little", "speech", "Semantic Layer"),
    mmar_entry(
        "r2",
        ["Mountain Canyon", "Dense Forest", "Open Grassland", "City Streets"],
        "Open Grassland",
        "music",
        "Cultural Layer",
    ),
    mmar_entry(
        "r3",
        ["厨房", "街道", "教室"],
        "街道",
        "mix-sound-speech",
        "Perception Layer",
        question="说话人在哪里？",
        language="zh",
    ),
    mmar_entry("r4", ["Owl", "Robot", "Rooster", "Parrot"], "Parrot", "sound", "Signal Layer"),
    mmar_entry("r5", ["Yes", "No"], "Yes", "speech", "Semantic Layer"),
    mmar_entry("r6", ["Fast", "Slow"], "Slow", "music", "Perception Layer"),
]


def build_mmar(root: Path, entries: list[dict] | None = None, jsonl: bool = True, audio: bool = True) -> Path:
    entries = MMAR_ENTRIES if entries is None else entries
    root.mkdir(parents=True, exist_ok=True)
    if jsonl:
        meta = root / "MMAR-meta.jsonl"
        meta.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
    else:
        meta = root / "MMAR-meta.json"
        meta.write_text(json.dumps(entries, ensure_ascii=False, indent=4), encoding="utf-8")
    if audio:
        for e in entries:
            write_clip(root / e["audio_path"])
    return meta


def mmsu_entry(ident: str, task: str, choices: dict, answer: str, category: str, sub: str, subsub: str) -> dict:
    return {
        "id": ident,
        "task_name": task,
        "audio_path": f"/audio/{ident}.wav",
        "question": f"Question {ident}?",
        **{f"choice_{k}": v for k, v in choices.items()},
        "answer_gt": answer,
        "category": category,
        "sub-category": sub,
        "sub-sub-category": subsub,
        "linguistics_sub_discipline": subsub,
    }


MMSU_ENTRIES = [
    mmsu_entry(
        "s1",
        "emotion_recognition",
        {"a": "Happy", "b": "Sad", "c": "Angry", "d": "Neutral"},
        "Sad",
        "Perception",
        "Paralinguistics",
        "Speaking Style",
    ),
    mmsu_entry(
        "s2",
        "intonation",
        {"a": "rising", "b": "falling", "c": "", "d": ""},
        "falling",
        "Perception",
        "Linguistics",
        "Phonology",
    ),
    mmsu_entry(
        "s3",
        "code_switch_question_answering",
        {"a": "A cake.", "b": "Chocolate.", "c": "A fruit basket.", "d": "A drink."},
        "Chocolate.",
        "Reasoning",
        "Linguistics",
        "Semantics",
    ),
    mmsu_entry(
        "s4",
        "gender_reasoning",
        {"a": "male", "b": "female", "c": None},
        "female",
        "Reasoning",
        "Paralinguistics",
        "Speaker Traits",
    ),
    mmsu_entry(
        "s5",
        "question_answering",
        {"a": "yes", "b": "no", "c": "maybe", "d": "unknown"},
        "maybe",
        "Reasoning",
        "Linguistics",
        "Semantics",
    ),
    mmsu_entry(
        "s6", "counting", {"a": "1", "b": "2", "c": "3", "d": "4"}, "3", "Perception", "Linguistics", "Phonology"
    ),
]


def build_mmsu(root: Path, entries: list[dict] | None = None, audio: bool = True) -> Path:
    entries = MMSU_ENTRIES if entries is None else entries
    meta = root / "question" / "mmsu.jsonl"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    if audio:
        for e in entries:
            write_clip(root / e["audio_path"].lstrip("/"))
    return meta


def air_entry(ident: int, task: str, dataset: str, path: str, choices: dict, answer: str) -> dict:
    return {
        "path": path,
        "question": f"Question {ident}?",
        **{f"choice_{k}": v for k, v in choices.items()},
        "answer_gt": answer,
        "task_name": task,
        "dataset_name": dataset,
        "uniq_id": ident,
    }


SPEAKER = ("Speaker_Gender_Recognition", "VoxCeleb1")
GROUNDING = ("Audio_Grounding", "AudioGrounding")
SPANS = {"a": "[0.5, 2.0]", "b": "[1.0, 3.5]", "c": "[2.2, 4.0]", "d": "[0.0, 1.0]"}
AIR_ENTRIES = [
    air_entry(1, *SPEAKER, "id1.wav", {"a": "Male", "b": "Female"}, "Female"),
    air_entry(2, *SPEAKER, "id2.wav", {"a": "Male", "b": "Female"}, "Male"),
    air_entry(3, *SPEAKER, "id3.wav", {"a": "Male", "b": "Female"}, "Female"),
    air_entry(4, *GROUNDING, "g4.wav", SPANS, "[1.0, 3.5]"),
    air_entry(5, *GROUNDING, "g5.wav", SPANS, "[0.0, 1.0]"),
    air_entry(6, *GROUNDING, "g6.wav", SPANS, "[2.2, 4.0]"),
]


def build_airbench(root: Path, entries: list[dict] | None = None, audio: bool = True) -> Path:
    entries = AIR_ENTRIES if entries is None else entries
    meta = root / "Foundation" / "Foundation_meta.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(entries, indent=4), encoding="utf-8")
    if audio:
        for e in entries:
            name = e["path"][:-3] + "flac" if e["task_name"] == "Audio_Grounding" else e["path"]
            clip = meta.parent / f"{e['task_name']}_{e['dataset_name']}" / name
            clip.parent.mkdir(parents=True, exist_ok=True)
            sf.write(
                clip, np.zeros(8000, dtype=np.float32) + 0.01, 16_000, format="FLAC" if name.endswith("flac") else "WAV"
            )
    return meta


def with_predictions(entries: list[dict], key: str, predictions: dict[str, str], id_field: str = "id") -> list[dict]:
    """The entries with ``key`` set from ``predictions`` (entries without one keep no key)."""
    out = []
    for e in entries:
        ident = str(e[id_field])
        out.append({**e, key: predictions[ident]} if ident in predictions else dict(e))
    return out


def test_builders_write_readable_releases(tmp_path):
    for build in (build_mmau, build_mmar, build_mmsu, build_airbench):
        meta = build(tmp_path / build.__name__)
        assert read_entries(meta)


class JudgeHandler(BaseHTTPRequestHandler):
    """A local OpenAI-compatible ``/chat/completions`` for judge tests: subclasses say what to
    reply (``reply``); every request body is kept in ``bodies``."""

    bodies: list[dict[str, Any]] = []

    @classmethod
    def reply(cls, body: dict[str, Any]) -> str:
        raise NotImplementedError

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        message = {"role": "assistant", "content": type(self).reply(body)}
        data = json.dumps(
            {
                "id": "judgement",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", ""),
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve(handler: type[JudgeHandler]) -> Iterator[str]:
    """Run ``handler`` on 127.0.0.1 (a free port) for the block; yields the API base URL."""
    handler.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
