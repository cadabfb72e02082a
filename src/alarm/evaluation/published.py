"""Numbers the ALARM paper publishes (arXiv 2603.09556). Published, not measured by this code.

MMSU: Table 3 (perception / reasoning / overall). MMAU v05.15.25 test-mini and test (sound /
music / speech / mean) and MMAR (mean): Table 5. AIR-Bench appears only as a radar plot
(Figure 3) without numbers, so there is nothing to compare against there.

Keys follow the scorer's groups: MMSU ``category`` Perception / Reasoning, MMAU ``task``
sound / music / speech; ``overall`` is the paper's Overall (MMSU) or Mean (MMAU, MMAR).
"""

from __future__ import annotations

from typing import Any

SOURCE = "ALARM paper (arXiv 2603.09556), Tables 3 and 5"


def _mmau(sound: float, music: float, speech: float, mean: float) -> dict[str, Any]:
    return {"overall": mean, "task": {"sound": sound, "music": music, "speech": speech}}


def _mmsu(perception: float, reasoning: float, overall: float) -> dict[str, Any]:
    return {"overall": overall, "category": {"Perception": perception, "Reasoning": reasoning}}


# model -> (benchmark, split) -> numbers in percent
PUBLISHED: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
    "AL-Whisper-Instruct-R": {
        ("mmsu", "test"): _mmsu(38.2, 73.6, 55.3),
        ("mmau", "test-mini"): _mmau(45.9, 46.7, 73.0, 55.2),
        ("mmau", "test"): _mmau(49.9, 49.7, 73.0, 57.5),
        ("mmar", "test"): {"overall": 49.1},
    },
    "AL-W2VBERT2-R": {
        ("mmau", "test-mini"): _mmau(46.2, 47.9, 47.7, 47.3),
        ("mmau", "test"): _mmau(46.9, 46.0, 48.2, 47.0),
        ("mmar", "test"): {"overall": 37.4},
    },
    "AL-MuQ-R": {
        ("mmau", "test-mini"): _mmau(50.5, 53.9, 40.84, 48.4),
        ("mmau", "test"): _mmau(49.1, 53.3, 43.1, 48.5),
        ("mmar", "test"): {"overall": 36.0},
    },
    "AL-SSLAM-R": {
        ("mmau", "test-mini"): _mmau(61.3, 46.7, 45.9, 51.3),
        ("mmau", "test"): _mmau(60.4, 50.9, 47.8, 53.0),
        ("mmar", "test"): {"overall": 33.8},
    },
    "AL-Whisper-R": {
        ("mmau", "test-mini"): _mmau(52.3, 46.7, 57.1, 52.0),
        ("mmau", "test"): _mmau(55.6, 49.7, 58.8, 54.7),
        ("mmar", "test"): {"overall": 37.3},
    },
    "ALARM-CA": {
        ("mmsu", "test"): _mmsu(39.6, 68.3, 53.5),
        ("mmau", "test-mini"): _mmau(66.4, 57.2, 60.1, 61.2),
        ("mmau", "test"): _mmau(61.1, 53.3, 61.1, 58.5),
        ("mmar", "test"): {"overall": 40.6},
    },
    "ALARM-P": {
        ("mmsu", "test"): _mmsu(38.4, 74.2, 55.8),
        ("mmau", "test-mini"): _mmau(58.6, 52.7, 68.8, 60.0),
        ("mmau", "test"): _mmau(58.5, 53.3, 66.7, 59.5),
        ("mmar", "test"): {"overall": 43.5},
    },
    "ALARM-E": {
        ("mmsu", "test"): _mmsu(45.4, 78.3, 61.3),
        ("mmau", "test-mini"): _mmau(64.0, 54.8, 77.2, 65.3),
        ("mmau", "test"): _mmau(59.1, 54.2, 73.7, 62.4),
        ("mmar", "test"): {"overall": 48.7},
    },
}

PRESET_MODELS = {
    "al-whisper-instruct-r": "AL-Whisper-Instruct-R",
    "al-w2vbert2-r": "AL-W2VBERT2-R",
    "al-muq-r": "AL-MuQ-R",
    "al-sslam-r": "AL-SSLAM-R",
    "al-whisper-r": "AL-Whisper-R",
    "alarm-ca": "ALARM-CA",
    "alarm-p": "ALARM-P",
    "alarm-e": "ALARM-E",
}


def paper_model(model_ref: str | None) -> str:
    """The paper model to compare a preset with (its ``tiny-`` twin maps to the same); ALARM-E otherwise."""
    if model_ref:
        name = model_ref.rstrip("/").split("/")[-1].lower()
        name = name[len("tiny-") :] if name.startswith("tiny-") else name
        if name in PRESET_MODELS:
            return PRESET_MODELS[name]
    return "ALARM-E"


def published(model: str, benchmark: str, split: str) -> dict[str, Any] | None:
    """The paper's numbers for ``model`` on a benchmark split, or None."""
    return PUBLISHED.get(model, {}).get((benchmark, split))
