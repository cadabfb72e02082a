"""MMAU-Pro: the release's Parquet layout (several clips per question), the three official
scoring rules (multiple choice, judged open answers, instruction checks), the weighted overall,
resumable runs with a scripted engine and an HTTP judge on 127.0.0.1, and malformed files.

Expected figures, worked by hand and checked against the official
``evaluate_mmau_pro_comprehensive.py`` (bf12804): its ``evaluate_aif_sample``,
``extract_scores_from_evaluation``, ``calculate_openended_metrics`` and
``calculate_weighted_performance`` run on these rows and replies (NV-Embed replaced by an exact
match, which is what it does on a prediction that is an option's text) printed weighted
performance 0.6750, open avg_overall 3.5, instruction following success 0.6667.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import alarm.evaluation.mmau_pro as mmau_pro_module
import alarm.presets
from alarm.cli import main
from alarm.evaluation.benchmarks.base import BenchmarkError, load_items
from alarm.evaluation.benchmarks.mmau_pro import MMAU_PRO
from alarm.evaluation.instructions import count_sentences, follows
from alarm.evaluation.mmau_pro import parse_open_scores
from alarm.generation import GenerationOutput
from tests.test_eval_support import JudgeHandler, serve, write_clip


def row(ident: str, category: str, question: str, clips: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "audio_path": [f"data/{ident}-{k}.wav" for k in range(clips)],
        "question": question,
        "answer": extra.pop("answer", None),
        "choices": extra.pop("choices", []),
        "category": category,
        "sub-cat": extra.pop("sub", "fixture"),
        "length_type": "short",
        "task_identifier": extra.pop("task", None),
        "kwargs": extra.pop("kwargs", None),
        **extra,
    }


ROWS = [
    row("p1", "sound", "What animal is heard?", choices=["Dog barking", "Cat meowing", "Cow"], answer="Dog barking"),
    row("p2", "multi", "Which clip is louder?", clips=2, choices=["The first", "The second"], answer="The second"),
    row("p3", "spatial", "Where is the speaker?", choices=["Left", "Right", "Behind"], answer="Left"),
    row("p4", "music", "Dropped: one choice only", choices=["Jazz"], answer="Jazz"),  # the script drops it
    row("p5", "open", "Describe the scene.", answer="A busy street with cars and a siren."),
    row("p6", "open", "How do the two clips differ?", clips=2, answer="The second adds rain."),
    row(
        "p7",
        "instruction following",
        "Describe the weather, using the words rain and thunder.",
        task="Include Keywords",
        kwargs={"keywords": "rain, thunder"},
    ),
    row("p8", "instruction following", "Describe the mood without commas.", task="No Commas"),
    row(
        "p9",
        "instruction following",
        "Name the instrument in at most five words.",
        task="Number Words (at most)",
        kwargs={"N": 5},
    ),
]
# raw outputs by question (closed ones under the ALARM prompt: option IDs from 0)
OUTPUTS = {
    "What animal is heard?": "<think>barks</think><answer>0</answer>",  # right
    "Which clip is louder?": "<think>the second one</think><answer>1</answer>",  # right
    "Where is the speaker?": "<answer>2</answer>",  # Behind: wrong
    "Describe the scene.": "<think>cars</think>A street with traffic and a siren.",
    "How do the two clips differ?": "<think>rain</think>The second one has rain in it.",
    "Describe the weather, using the words rain and thunder.": "<think>ok</think>Heavy rain and thunder.",  # pass
    "Describe the mood without commas.": "<think>ok</think>Calm, quiet and slow.",  # comma: fail
    "Name the instrument in at most five words.": "<think>ok</think>A grand piano.",  # 3 words: pass
}
# judge replies by question: p5 overall 4 (0.8); p6 no OVERALL line -> mean(2, 3, 2, 5) = 3 (0.6)
REPLIES = {
    "Describe the scene.": "CORRECTNESS: 4 - close\nRELEVANCE: 5 - yes\nCOMPLETENESS: 3 - part\nCLARITY: 4 - ok\n"
    "OVERALL: 4 - good",
    "How do the two clips differ?": "CORRECTNESS: 2 - no\nRELEVANCE: 3 - so so\nCOMPLETENESS: 2 - no\nCLARITY: 5 - yes",
}


def build_release(root: Path, rows: Sequence[dict[str, Any]] = ROWS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(rows):
        for k, path in enumerate(r["audio_path"]):
            write_clip(root / path, freq=300 + 40 * i + 200 * k)
    path = root / "test.parquet"
    pq.write_table(pa.Table.from_pylist(list(rows)), path)
    return path


class ScriptedEngine:
    """Answers each prompt with the scripted output of the question it holds; records clips."""

    name = "scripted"
    clips: dict[str, int] = {}

    def answer(self, waveforms: Sequence[Any], prompts: Sequence[str], config: Any, **chat: Any) -> list:
        outs = []
        for wave, prompt in zip(waveforms, prompts):
            (question,) = [q for q in OUTPUTS if q in prompt]
            type(self).clips[question] = len(wave) if isinstance(wave, list) else 1
            outs.append(GenerationOutput(OUTPUTS[question], "", OUTPUTS[question], [], 0, False, True))
        return outs


class FakeJudge(JudgeHandler):
    @classmethod
    def reply(cls, body: dict[str, Any]) -> str:
        (reply,) = [r for q, r in REPLIES.items() if f"Question: {q}" in body["messages"][-1]["content"]]
        return reply


@pytest.fixture
def judge_url():
    with serve(FakeJudge) as url:
        yield url


def test_loader_reads_the_release_layout(tmp_path):
    build_release(tmp_path / "MMAU-Pro")
    items = load_items(MMAU_PRO, tmp_path / "MMAU-Pro")
    assert [i.id for i in items] == ["p1", "p2", "p3", "p5", "p6", "p7", "p8", "p9"]  # p4 dropped as officially
    by_id = {i.id: i for i in items}
    assert by_id["p2"].audio_files == (tmp_path / "MMAU-Pro/data/p2-0.wav", tmp_path / "MMAU-Pro/data/p2-1.wav")
    assert [by_id[i].kind for i in ("p1", "p5", "p7")] == ["choice", "open", "instruction"]
    assert by_id["p7"].answer is None and by_id["p5"].choices == ()
    assert by_id["p9"].record["kwargs"]["N"] == 5  # the struct column, as the script reads it


def test_malformed_releases_name_file_and_entry(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[1]["audio_path"] = ["data/p2-0.wav", "data/nowhere.wav"]  # the second clip of a question is missing
    path = build_release(tmp_path / "b", ROWS)
    pq.write_table(pa.Table.from_pylist(rows), path)
    missing = r"test.parquet: row 1 \(id 'p2'\): audio file .*nowhere.wav does not exist"
    with pytest.raises(BenchmarkError, match=missing):
        load_items(MMAU_PRO, tmp_path / "b")
    rows = [dict(r) for r in ROWS]
    rows[4]["answer"] = None  # an open question without its reference
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(BenchmarkError, match=r"row 4 \(id 'p5'\): missing or empty field 'answer'"):
        load_items(MMAU_PRO, tmp_path / "b")
    path.write_bytes(b"not parquet")
    with pytest.raises(BenchmarkError, match="not a readable Parquet file"):
        load_items(MMAU_PRO, tmp_path / "b")


def test_official_parse_and_instruction_rules():
    # OVERALL exactly 3 is replaced by the mean of the four, as the script does
    assert parse_open_scores("CORRECTNESS: 5\nRELEVANCE: 5\nCOMPLETENESS: 4\nCLARITY: 4\nOVERALL: 3")["overall"] == 4.5
    assert parse_open_scores("no scores at all") == dict.fromkeys(
        ("correctness", "relevance", "completeness", "clarity", "overall"), 3.0
    )
    assert parse_open_scores("overall: 4.5 fine")["overall"] == 4.5
    assert follows("rain and THUNDER", "Include Keywords", {"keywords": "rain, thunder"}, "")
    assert not follows("a, b", "No Commas", None, "") and follows("", "No Commas", None, "")
    assert follows("Describe it. Then more", "Repeat Prompt", {}, "describe it.")
    assert follows("one *two* three *four*", "Minimum Number Highlighted Section", {"N": 2}, "")
    assert follows("* a\n* b", "Number Bullets", {"N": 2}, "") and not follows("x", "Unknown rule", {}, "")
    assert follows("A ***\nB", "Number Paragraphs", {"N": 2}, "") and follows("<<Title>> x", "Title", {}, "")
    assert follows("yes ****** no", "Two Responses", {}, "") and not follows("a ****** A", "Two Responses", {}, "")
    assert follows("Hello there, friend!", "Start Checker", {"start_phrase": "hello there"}, "")
    assert follows("word rain word Rain", "Keyword Frequency", {"keyword": "rain", "N": 2}, "")
    assert count_sentences("One. Two! Three?") == 3 and count_sentences("") == 0


def test_end_to_end_resumable_with_http_judge(tmp_path, judge_url, monkeypatch, capsys):
    build_release(tmp_path / "MMAU-Pro")
    monkeypatch.setattr(alarm.presets, "build_model", lambda ref: object())  # the engine needs no model
    monkeypatch.setattr(mmau_pro_module, "build_engine", lambda *_: ScriptedEngine())
    ScriptedEngine.clips = {}
    args = ["eval", "mmau-pro", "--data", str(tmp_path / "MMAU-Pro"), "--preset", "scripted"]
    args += ["--out", str(tmp_path / "out"), "--no-progress"]
    assert main(args) == 2 and "--judge-url" in capsys.readouterr().err  # open questions need a judge
    args += ["--judge-url", judge_url, "--judge-model", "fake-judge"]
    assert main(args) == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)
    run = tmp_path / "out" / "mmau-pro"
    scores = json.loads((run / "scores.json").read_text())["scores"]
    # (1 + 1 + 0) closed + (0.8 + 0.6) open + (1 + 0 + 1) instruction, over 8 questions
    assert scores["overall"]["accuracy"] == pytest.approx(100 * 5.4 / 8) == printed["overall"]
    cats = {k: f["accuracy"] for k, f in scores["groups"]["category"].items()}
    assert cats == pytest.approx(
        {"sound": 100.0, "multi": 100.0, "spatial": 0.0, "open": 70.0, "instruction following": 200 / 3}
    )
    assert {k: f["total"] for k, f in scores["groups"]["type"].items()} == {"choice": 3, "open": 2, "instruction": 3}
    assert scores["open"]["avg_overall"] == 3.5 and scores["open"]["good_response_rate"] == 0.5
    assert all(f["ci"] is not None for keys in scores["groups"].values() for f in keys.values())
    clips = ScriptedEngine.clips
    assert clips["Which clip is louder?"] == clips["How do the two clips differ?"] == 2  # both clips, as a list
    assert clips["What animal is heard?"] == 1
    # the judge got the final answer (no reasoning) and the reference
    (first,) = [a for a in FakeJudge.bodies if "Describe the scene." in a["messages"][-1]["content"]]
    assert first["messages"][0]["role"] == "system" and "A street with traffic" in first["messages"][-1]["content"]
    assert "<think>" not in first["messages"][-1]["content"] and "cars and a siren" in first["messages"][-1]["content"]
    # official file: the release rows + model_output (option text / final answer)
    table = pq.read_table(run / "mmau-pro_predictions.parquet").to_pylist()
    outputs = {r["id"]: r["model_output"] for r in table}
    assert outputs["p1"] == "Dog barking" and outputs["p3"] == "Behind" and outputs["p8"] == "Calm, quiet and slow."
    assert "| 95% CI |" in (run / "scores.md").read_text() and (run / "categories.png").is_file()
    # a rerun answers and judges nothing again
    asked = len(FakeJudge.bodies)
    ScriptedEngine.clips = {}
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["overall"] == printed["overall"]
    assert ScriptedEngine.clips == {} and len(FakeJudge.bodies) == asked


def test_tiny_preset_answers_multi_clip_questions(tmp_path, judge_url, monkeypatch):
    """The real generation path: a tiny random model gets both clips of p2 and p6."""
    import alarm.generation
    from alarm.evaluation.judge import Judge, JudgeConfig
    from alarm.evaluation.mmau_pro import evaluate_mmau_pro
    from alarm.generation import GenerationConfig
    from alarm.presets import build_model

    answer, clips = alarm.generation.answer, []

    def counting(model, waveforms, prompts, config, **chat):
        clips.extend(len(w) if isinstance(w, list) else 1 for w in waveforms)
        return answer(model, waveforms, prompts, config, **chat)

    monkeypatch.setattr(alarm.generation, "answer", counting)
    build_release(tmp_path / "MMAU-Pro")
    judge = Judge(JudgeConfig(url=judge_url, model="fake-judge"))
    run = {
        "config": GenerationConfig(max_new_tokens=6, thinking_budget=3),
        "limit": 5,  # p1 p2 p3 (choice), p5 p6 (open): two questions with two clips
        "batch_size": 4,
        "progress": False,
        "model": build_model("tiny-al-whisper-r"),
    }
    result = evaluate_mmau_pro(tmp_path / "MMAU-Pro", "tiny-al-whisper-r", tmp_path / "out", judge, **run)
    records = (tmp_path / "out" / "mmau-pro" / "predictions.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in records) == ["p1", "p2", "p3", "p5", "p6"]
    assert result["scores"]["overall"]["total"] == 5 and len(FakeJudge.bodies) == 2
    assert sorted(clips) == [1, 1, 1, 2, 2]
    assert evaluate_mmau_pro(tmp_path / "MMAU-Pro", "tiny-al-whisper-r", tmp_path / "out", judge, **run) == result
