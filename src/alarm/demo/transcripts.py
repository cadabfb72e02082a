"""The open question "What does the speaker say?": answered under a condition, scored by WER.

Answers are free text ('The speaker says "four two eight".'), so the words compared with the
reference are the answer's longest quoted span when it quotes one, else the whole answer
(:func:`spoken_words`); the same rule for every condition, so the baselines and the aligned
model are measured alike. Reported: corpus WER over all speech clips (:mod:`alarm.wer`),
WER per kind of speech, and for digit strings the share answered with exactly those digits.
Predictions go to an append-only store (one line per answer), so a killed run resumes.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from tqdm.auto import tqdm

from alarm.audio import load_audio
from alarm.evaluation.prompts import with_metadata
from alarm.evaluation.runner import PredictionStore
from alarm.wer import DIGIT_WORDS, normalize_words, word_error_rate

_QUOTED = re.compile(r"[\"“«]([^\"”»]+)[\"”»]|'([^']{2,})'")


def spoken_words(answer: str) -> str:
    """What an answer says was spoken: its longest quoted span, else the answer itself."""
    spans = [a or b for a, b in _QUOTED.findall(answer)]
    return max(spans, key=len) if spans else answer


def digits_of(text: str) -> list[str]:
    return [w for w in normalize_words(text) if w in DIGIT_WORDS]


def _prompt(row: dict[str, Any], condition: str) -> str:
    return with_metadata(row["metadata"], row["question"]) if condition == "metadata" else row["question"]


def answer_open_questions(
    model: Any,
    questions: str,
    bench_root: str,
    out: str,
    *,
    condition: str,
    config: Any,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Answer every open question not yet in ``out`` under ``condition``; return the scores."""
    from alarm.generation import answer, answer_text

    with open(questions, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    store = PredictionStore(out)
    done = store.load()
    todo = [r for r in rows if r["id"] not in done]
    for start in tqdm(range(0, len(todo), batch_size), desc=f"open questions ({condition})", disable=not progress):
        batch = todo[start : start + batch_size]
        prompts = [_prompt(r, condition) for r in batch]
        if condition == "audio":
            waves = [load_audio(os.path.join(bench_root, r["audio_id"])) for r in batch]
            outs = answer(model, waves, prompts, config)
        else:
            outs = answer_text(model, prompts, config)
        store.append([{"id": r["id"], "output": o.text, "answer": o.answer} for r, o in zip(batch, outs)])
    answers = {i: r["answer"] for i, r in store.load().items()}
    return score_open_answers(rows, answers)


def score_open_answers(rows: list[dict[str, Any]], answers: dict[str, str]) -> dict[str, Any]:
    """WER overall and per kind of speech, and exact digit strings, for answered rows."""
    answered = [r for r in rows if r["id"] in answers]
    if not answered:
        return {"answered": 0}
    heard = {r["id"]: spoken_words(answers[r["id"]]) for r in answered}
    by_kind: dict[str, float] = {}
    for kind in sorted({r["kind"] for r in answered}):
        group = [r for r in answered if r["kind"] == kind]
        by_kind[kind] = round(
            100 * word_error_rate([r["reference"] for r in group], [heard[r["id"]] for r in group]), 1
        )
    digit_rows = [r for r in answered if r["kind"] == "digits"]
    exact = [digits_of(heard[r["id"]]) == digits_of(r["reference"]) for r in digit_rows]
    return {
        "answered": len(answered),
        "wer": round(100 * word_error_rate([r["reference"] for r in answered], [heard[r["id"]] for r in answered]), 1),
        "wer_by_kind": by_kind,
        "digits_exact": round(100 * sum(exact) / len(exact), 1) if exact else None,
        "digit_questions": len(digit_rows),
    }
