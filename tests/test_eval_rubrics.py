"""MMAR-Rubrics: the official rubric protocol for the reasoning, end to end with a scripted
engine and an HTTP judge on 127.0.0.1, resumable; the reply checks; malformed rubrics.

Expected figures, worked by hand and printed by the official ``code/evaluation_rubrics.py``
(ddlBoJack/MMAR a355584) on the file this run writes, with its OpenAI client pointed at the same
fake judge (``--retries 3 --retry-interval 0``): "Total Accuracy: 40.00% over 5 samples",
"Total Score: 26.67 over 5 samples", "No prediction count: 1"; speech score 66.67 acc 100.00,
music 0.00 / 0.00, mix-sound-speech 66.67 / 100.00, sound 0.00 / 0.00.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pytest

import alarm.evaluation.rubrics as rubrics_module
import alarm.presets
from alarm.cli import main
from alarm.evaluation.benchmarks.base import BenchmarkError
from alarm.evaluation.rubrics import Criterion, ReplyError, check_release, parse_ratings, trimmed_mean
from alarm.generation import GenerationOutput
from tests.test_eval_support import MMAR_ENTRIES, JudgeHandler, build_mmar, serve


def rubric(*criteria: tuple[str, list[int]]) -> list[dict[str, Any]]:
    return [{"name": n, "scoring_point": f"Award points for {n}.", "note": "why", "choices": c} for n, c in criteria]


RUBRICS = {
    "r1": rubric(("Cue Identification: quantity words", [0, 1]), ("Correct Selection", [0, 1])),
    "r3": rubric(("Cue Identification: street noise", [0, 1]), ("Location Reasoning", [0, 1, 2])),
}
ENTRIES = [
    {
        **e,
        "thinking": f"Ideal reasoning for {e['id']}.",
        "cue": ["a cue"],
        "rubric": RUBRICS.get(e["id"], rubric(("Correct Selection", [0, 1]))),
    }
    for e in MMAR_ENTRIES
]
# raw outputs by question under the ALARM prompt (option IDs from 0)
OUTPUTS = {
    "Question r1?": "<think>The speaker says there is not enough.</think><answer>0</answer>",  # right
    "Question r2?": "<think>city sounds</think><answer>3</answer>",  # wrong: 0, judge not asked
    "说话人在哪里？": "<think>街道的声音，汽车和喇叭</think><answer>1</answer>",  # right
    "Question r4?": "<think>an owl or a",  # unfinished: wrong
    "Question r5?": "<think>a clear yes</think><answer>0</answer>",  # right, but the judge never replies validly
    "Question r6?": "<answer>0, 1</answer>",  # ambiguous: wrong
}


class ScriptedEngine:
    name = "scripted"
    asked = 0

    def answer(self, waveforms: Sequence[Any], prompts: Sequence[str], config: Any, **chat: Any) -> list:
        type(self).asked += len(prompts)
        outs = []
        for prompt in prompts:
            (text,) = [t for q, t in OUTPUTS.items() if f"<question>\n{q}\n</question>" in prompt]
            outs.append(GenerationOutput(text, "", text, [], 0, False, True))
        return outs


def ratings(names: Sequence[str], points: Sequence[int]) -> str:
    return json.dumps([{"name": n, "score": p, "justification": "seen"} for n, p in zip(names, points)])


# r1: five raters score 1, 1, 0.5, 0.5, 0 -> trimmed mean 2/3; r3: (1 + 1) / (1 + 2) = 2/3 every time
R1_POINTS = [(1, 1), (1, 1), (1, 0), (0, 1), (0, 0)]


class FakeJudge(JudgeHandler):
    """Replies by the question in the prompt; counts the requests per question."""

    calls: dict[str, int] = {}

    @classmethod
    def reply(cls, body: dict[str, Any]) -> str:
        question = re.search(r"Question: (.*)", body["messages"][-1]["content"]).group(1).strip()
        k = cls.calls.get(question, 0)
        cls.calls[question] = k + 1
        if question == "Question r1?":
            return ratings([c["name"] for c in RUBRICS["r1"]], R1_POINTS[k % 5])
        if question == "说话人在哪里？":  # text around the list and a renamed criterion: still valid
            return "Here it is:\n" + ratings(["Cue Identification: street noise", "Reasoning"], (1, 1)) + "\nDone."
        return "I think the reasoning is fine."


@pytest.fixture
def judge_url():
    FakeJudge.calls = {}
    with serve(FakeJudge) as url:
        yield url


def test_reply_checks_as_the_official_script():
    criteria = [Criterion("A", "rule", (0, 1)), Criterion("B", "rule", (0, 1, 2))]
    assert parse_ratings('noise [{"name": "A", "score": 1}, {"name": "B", "score": 2}] noise', criteria) == [1, 2]
    for reply, reason in [
        ("no json", "not valid JSON"),
        ('[{"name": "A", "score": 1}]', "1 ratings for 2 criteria"),
        ('[{"name": "A", "score": "1"}, {"name": "B", "score": 2}]', "not a number"),
        ('[{"name": "A", "score": 1}, {"name": "B", "score": 3}]', "not one of"),
        ('[{"name": "A"}, {"name": "B", "score": 2}]', "lacks 'name' or 'score'"),
    ]:
        with pytest.raises(ReplyError, match=reason):
            parse_ratings(reply, criteria)
    assert trimmed_mean([0, 0.5, 0.5, 1, 1]) == pytest.approx(2 / 3) and trimmed_mean([0.2, 0.4]) == pytest.approx(0.3)


def test_malformed_rubrics_name_file_and_entry(tmp_path):
    entries = [dict(e) for e in ENTRIES]
    entries[2] = {**entries[2], "rubric": [{"name": "x", "scoring_point": "y", "choices": "01"}]}
    meta = build_mmar(tmp_path, entries, audio=False)
    with pytest.raises(BenchmarkError, match=r"MMAR-meta.jsonl: line 3 \(id 'r3'\): rubric criterion 0: 'choices'"):
        check_release(meta)
    del entries[2]["rubric"]
    build_mmar(tmp_path, entries, audio=False)
    with pytest.raises(BenchmarkError, match=r"line 3 \(id 'r3'\): no 'rubric' field"):
        check_release(meta)


def test_end_to_end_resumable(tmp_path, judge_url, monkeypatch, capsys):
    build_mmar(tmp_path / "MMAR", ENTRIES)
    monkeypatch.setattr(alarm.presets, "build_model", lambda ref: object())  # the engine needs no model
    monkeypatch.setattr(rubrics_module, "build_engine", lambda *_: ScriptedEngine())
    ScriptedEngine.asked = 0
    args = ["eval", "mmar-rubrics", "--data", str(tmp_path / "MMAR"), "--preset", "scripted"]
    args += ["--out", str(tmp_path / "out"), "--no-progress", "--judge-url", judge_url, "--judge-model", "judge"]
    assert main(args) == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)
    assert printed["score"] == pytest.approx(100 * (4 / 3) / 5) and printed["accuracy"] == 40.0
    assert (printed["evaluated"], printed["not_evaluated"]) == (5, 1)
    assert printed["score_modality"] == pytest.approx(
        {"speech": 200 / 3, "music": 0.0, "mix-sound-speech": 200 / 3, "sound": 0.0}
    )
    assert printed["accuracy_modality"] == {"speech": 100.0, "music": 0.0, "mix-sound-speech": 100.0, "sound": 0.0}
    assert printed["accuracy_all_questions"] == 50.0  # MMAR accuracy over all six, as `alarm eval mmar` gives
    # only right answers reach the judge: r1 and r3 five raters each, r5 three tries of its first rater
    assert FakeJudge.calls == {"Question r1?": 5, "说话人在哪里？": 5, "Question r5?": 3}
    first = FakeJudge.bodies[0]
    assert first["seed"] == 42 and first["temperature"] == 0 and first["messages"][0]["role"] == "system"
    asked = [b["messages"][-1]["content"] for b in FakeJudge.bodies if "Question r1?" in b["messages"][-1]["content"]]
    # the reasoning of the thinking output is what is judged, with the chosen option as answer
    assert "The speaker says there is not enough. The answer is Too little." in asked[0]
    assert "Ideal reasoning for r1." in asked[0] and "Award points for Correct Selection." in asked[0]
    run = tmp_path / "out" / "mmar-rubrics"
    scores = json.loads((run / "scores.json").read_text())
    rubric_part = scores["rubric"]
    assert rubric_part["not_evaluated"] == ["r5"] and rubric_part["per_item"]["r1"]["value"] == pytest.approx(2 / 3)
    # criterion kinds: r1's cue 3/5 and r3's cue 1 -> 80; r1's selection 3/5; r3's location 1 of 2 points
    kinds = {"Correct Selection": 60.0, "Cue Identification": 80.0, "Location Reasoning": 50.0}
    assert rubric_part["criteria"] == pytest.approx(kinds)
    assert rubric_part["overall"]["ci"] is not None and scores["extra_scores"]["reasoning"] == rubric_part
    official = [json.loads(line) for line in (run / "mmar-rubrics_predictions.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in official}
    assert by_id["r3"]["thinking_prediction"] == "街道的声音，汽车和喇叭"
    assert by_id["r3"]["answer_prediction"] == "街道"
    assert by_id["r4"]["answer_prediction"] == "" and by_id["r6"]["thinking_prediction"] == ""
    assert "reasoning score" in (run / "scores.md").read_text() and (run / "reasoning.png").is_file()
    # a rerun answers nothing again and asks the judge only about the instance not evaluated
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == printed
    assert ScriptedEngine.asked == 6 and FakeJudge.calls["Question r5?"] == 6 and FakeJudge.calls["Question r1?"] == 5
    # the official input file scores the same through `alarm eval score`
    score = ["eval", "score", "mmar-rubrics", "--predictions", str(run / "mmar-rubrics_predictions.jsonl")]
    assert main([*score, "--judge-url", judge_url, "--judge-model", "judge"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {k: again[k] for k in ("score", "accuracy", "evaluated", "not_evaluated")} == {
        k: printed[k] for k in ("score", "accuracy", "evaluated", "not_evaluated")
    }
    # and `alarm eval compare` puts the reasoning score of two runs side by side
    assert main(["eval", "compare", str(tmp_path / "out"), str(tmp_path / "out"), "--out", str(tmp_path / "cmp")]) == 0
    assert "## mmar-rubrics:reasoning" in capsys.readouterr().out


def test_tiny_preset_end_to_end(tmp_path, judge_url):
    """A tiny random model answers (wrongly, most likely); what it got right is judged."""
    from alarm.evaluation.judge import Judge, JudgeConfig
    from alarm.evaluation.rubrics import evaluate_rubrics
    from alarm.generation import GenerationConfig
    from alarm.presets import build_model

    build_mmar(tmp_path / "MMAR", ENTRIES)
    judge = Judge(JudgeConfig(url=judge_url, model="judge", seed=42))
    run = {"config": GenerationConfig(max_new_tokens=6, thinking_budget=3), "limit": 3, "progress": False}
    result = evaluate_rubrics(
        tmp_path / "MMAR", "tiny-al-whisper-r", tmp_path / "out", judge, model=build_model("tiny-al-whisper-r"), **run
    )
    rubric_part = result["rubric"]
    assert rubric_part["overall"]["total"] + len(rubric_part["not_evaluated"]) == 3
    assert result["scores"]["overall"]["total"] == 3 and (tmp_path / "out" / "mmar-rubrics" / "scores.md").is_file()
