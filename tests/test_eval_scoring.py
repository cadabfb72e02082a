"""Each benchmark: an official-format fixture, a hand-made predictions file, scores computed by hand.

The expected numbers in every test are worked out in the comments next to the predictions,
one item at a time, from the official rule of that benchmark; the scorer must give exactly
those numbers, through the library and through ``alarm eval score``.
"""

from __future__ import annotations

import json

import pytest

from alarm.cli import main
from alarm.evaluation.benchmarks import get_benchmark
from alarm.evaluation.evaluate import score_file
from alarm.evaluation.rules import letter_of, token_match
from tests.test_eval_support import (
    AIR_ENTRIES,
    MMAR_ENTRIES,
    MMAU_ENTRIES,
    MMSU_ENTRIES,
    build_mmsu,
    with_predictions,
)


def pct(correct: int, total: int) -> float:
    return 100.0 * correct / total


def cli_score(capsys, *args: str) -> dict:
    assert main(["eval", "score", *args]) == 0
    return json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------- MMAU (JSON list, model_prediction)

MMAU_PREDICTIONS = {
    # m1 Man: label (A) after the reasoning                      extract: right  official: {answer,man,...} -> right
    "m1": "<think>The voice is deep.</think>\nThe answer is (A) Man.",
    # m2 Bird chirping: the answer only inside the reasoning      extract: empty  official: 'birds' != 'bird' -> wrong
    "m2": "<think>I hear birds so the answer is C</think>",
    # m3 Violin: option text instead of a letter                  extract: right  official: right
    "m3": "violin",
    # m4 Minor: two letters                                       extract: ambiguous  official: wrong
    "m4": "A or B",
    # m5 Angry: empty answer                                      extract: empty  official: wrong (no words)
    "m5": "",
    # m6 Three speakers: answered in Chinese with a letter        extract: right (B)  official: wrong
    "m6": "<think>数一数说话的人。</think>答案是B",
    # m7 No (category is a list in the release): markdown letter  extract: right  official: wrong
    "m7": "<think>..</think>**B**",
    # m8 Thunder: names another option                            extract: wrong (Rain)  official: wrong
    "m8": "I think it's rain",
    # m9: no prediction at all                                    extract: missing -> wrong  official: skipped
}


@pytest.fixture
def mmau_file(tmp_path):
    path = tmp_path / "mmau-test-mini-with-predictions.json"
    path.write_text(json.dumps(with_predictions(MMAU_ENTRIES, "model_prediction", MMAU_PREDICTIONS)), encoding="utf-8")
    return path


def test_mmau_extract_rule_matches_hand_count(mmau_file, capsys):
    scores = score_file(get_benchmark("mmau"), mmau_file)
    # right: m1 m3 m6 m7 -> 4 of 9
    assert (scores.overall.correct, scores.overall.total) == (4, 9)
    acc = scores.accuracies()
    assert acc["overall"] == pct(4, 9)
    # sound m1+ m2- m8- m9-; music m3+ m4-; speech m5- m6+ m7+
    assert acc["task"] == {"sound": pct(1, 4), "music": pct(1, 2), "speech": pct(2, 3)}
    # easy m1+ m3+ m7+ m9-; hard m4- m6+ m8-; medium m2- m5-   (official order easy, hard, medium)
    assert acc["difficulty"] == {"easy": pct(3, 4), "hard": pct(1, 3), "medium": 0.0}
    assert list(acc["difficulty"]) == ["easy", "hard", "medium"]
    assert acc["category"] == {"Reasoning": pct(4, 9)}  # ["Reasoning"] and "Reasoning" are one category
    failures = {row["id"]: row["status"] for row in scores.failures()}
    assert failures == {"m2": "empty", "m4": "ambiguous", "m5": "empty", "m9": "missing"}
    assert cli_score(capsys, "mmau", "--predictions", str(mmau_file)) == acc


def test_mmau_official_rule_reproduces_evaluation_py(mmau_file, capsys):
    scores = score_file(get_benchmark("mmau"), mmau_file, rule="official")
    # token rule on the raw strings: only m1 and m3 match; m9 has no prediction and is skipped
    assert (scores.overall.correct, scores.overall.total) == (2, 8)
    assert scores.accuracies()["task"] == {"sound": pct(1, 3), "music": pct(1, 2), "speech": 0.0}
    printed = cli_score(capsys, "mmau", "--predictions", str(mmau_file), "--rule", "official")
    assert printed["overall"] == 25.0 and printed["unparsed"] == 0


def test_mmau_reads_model_output_key_of_the_script_at_head(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(with_predictions(MMAU_ENTRIES, "model_output", MMAU_PREDICTIONS)), encoding="utf-8")
    assert score_file(get_benchmark("mmau"), path).overall.correct == 4


# ---------------------------------------------------------------- MMAR (JSONL, answer_prediction)

MMAR_PREDICTIONS = {
    "r1": "<think>..</think>\n\nThe answer is A.",  # Too little: letter in a sentence -> right; official wrong
    "r2": "Open grassland.",  # option text, other case -> right; official right
    "r3": "<think>背景有汽车声。</think>我认为是街道。",  # Chinese option text -> right; official wrong (one CJK word)
    "r4": "<think>It could be D... I'm torn",  # reasoning never finished -> unfinished; official wrong
    "r5": "B",  # Yes is A: wrong option -> wrong; official wrong
    "r6": "A, B",  # two letters -> ambiguous; official wrong
}


def test_mmar_scores_match_hand_count(tmp_path, capsys):
    path = tmp_path / "mmar-predictions.jsonl"
    rows = with_predictions(MMAR_ENTRIES, "answer_prediction", MMAR_PREDICTIONS)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    spec = get_benchmark("mmar")
    acc = score_file(spec, path).accuracies()
    assert (acc["correct"], acc["total"]) == (3, 6)  # r1 r2 r3
    assert acc["modality"] == {"sound": 0.0, "music": 50.0, "speech": 50.0, "mix-sound-speech": 100.0}
    assert list(acc["modality"]) == ["sound", "music", "speech", "mix-sound-speech"]  # official order
    assert acc["category"] == {
        "Signal Layer": 0.0,
        "Perception Layer": 50.0,
        "Semantic Layer": 50.0,
        "Cultural Layer": 100.0,
    }
    assert acc["unparsed"] == 2  # r4 unfinished, r6 ambiguous (r5 chose an option: wrong, not unparsed)
    official = score_file(spec, path, rule="official").accuracies()
    assert (official["correct"], official["total"]) == (1, 6)  # only r2's words match
    assert cli_score(capsys, "mmar", "--predictions", str(path)) == acc


def test_mmar_2025_json_list_with_model_prediction(tmp_path):
    path = tmp_path / "mmar.json"
    path.write_text(json.dumps(with_predictions(MMAR_ENTRIES, "model_prediction", MMAR_PREDICTIONS)), encoding="utf-8")
    assert score_file(get_benchmark("mmar"), path).overall.correct == 3


# ---------------------------------------------------------------- MMSU (JSONL with response)

MMSU_RESPONSES = {
    # official letter rule: p[0] in ABCD, else p[-2] in ABCD, else wrong format (left out)
    "s1": "B",  # Sad -> right (both rules)
    "s2": "The answer is B.",  # p[-2] = 'B' falling -> right (both)
    "s3": "",  # empty: official counts it wrong; extract: empty -> wrong
    "s4": "female",  # official: wrong format, left out; extract: option text -> right
    "s5": "C) maybe",  # official: 'C' -> maybe right; extract: leading label C -> right
    "s6": "D",  # '4' but the answer is '3' -> wrong (both)
}


def test_mmsu_official_format_both_rules(tmp_path, capsys):
    path = tmp_path / "model_pred.jsonl"
    rows = with_predictions(MMSU_ENTRIES, "response", MMSU_RESPONSES)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = get_benchmark("mmsu")
    official = score_file(spec, path, rule="official")
    assert (official.overall.correct, official.overall.total) == (3, 5)  # s1 s2 s5 of s1 s2 s3 s5 s6
    assert official.excluded() == ["s4"]
    acc = official.accuracies()
    assert acc["category"] == {"Perception": pct(2, 3), "Reasoning": pct(1, 2)}
    assert acc["sub-category"] == {
        "Perception / Paralinguistics": 100.0,
        "Perception / Linguistics": pct(1, 2),
        "Reasoning / Linguistics": pct(1, 2),
    }
    extracted = score_file(spec, path).accuracies()
    assert (extracted["correct"], extracted["total"]) == (4, 6)  # s1 s2 s4 s5
    assert extracted["category"] == {"Perception": pct(2, 3), "Reasoning": pct(2, 3)}
    assert cli_score(capsys, "mmsu", "--predictions", str(path), "--rule", "official") == acc


MMSU_OUTPUTS = {
    # predictions.jsonl of `alarm eval` with the ALARM prompt (0-based option IDs)
    "s1": "<think>sounds low</think>\n<answer>1</answer>",  # Option_1 Sad -> right
    "s2": "<think>pitch goes down</think><answer>falling</answer>",  # option text in the tags -> right
    "s3": "<think>the speaker said chocolate, option 1</think>",  # answer only in the reasoning -> empty
    "s4": "<answer>0</answer> Actually the voice is female: <answer>1</answer>",  # last tags: female -> right
    "s5": "<think>..</think><answer>2 or 3</answer>",  # two IDs, no option named -> unparsable
    "s6": "<answer>2</answer>",  # options are numbers: the ID wins, Option_2 is '3' -> right
}


def test_mmsu_predictions_jsonl_with_data(tmp_path, capsys):
    data = tmp_path / "MMSU"
    build_mmsu(data)
    preds = tmp_path / "predictions.jsonl"
    preds.write_text(
        "".join(json.dumps({"id": k, "output": v, "style": "alarm"}) + "\n" for k, v in MMSU_OUTPUTS.items()),
        encoding="utf-8",
    )
    acc = score_file(get_benchmark("mmsu"), preds, data=data).accuracies()
    assert (acc["correct"], acc["total"]) == (4, 6)
    assert acc["category"] == {"Perception": 100.0, "Reasoning": pct(1, 3)}
    assert acc["sub-category"] == {
        "Perception / Paralinguistics": 100.0,
        "Perception / Linguistics": 100.0,
        "Reasoning / Linguistics": 0.0,
        "Reasoning / Paralinguistics": 100.0,
    }
    assert acc["task"]["counting"] == 100.0 and acc["unparsed"] == 2
    assert cli_score(capsys, "mmsu", "--predictions", str(preds), "--data", str(data)) == acc
    # the same file under the ALARM code's own extraction: s3 and s5 fall back to Option_0
    alarm = score_file(get_benchmark("mmsu"), preds, data=data, extraction="alarm")
    # s1 right, s2 'falling' is not a number -> Option_0 rising wrong, s3 -> Option_0 'A cake.' wrong,
    # s4 right, s5 -> Option_0 'yes' wrong, s6 right
    assert (alarm.overall.correct, alarm.overall.total) == (3, 6) and alarm.failures() == []


def test_score_needs_data_for_our_predictions(tmp_path):
    preds = tmp_path / "predictions.jsonl"
    preds.write_text(json.dumps({"id": "s1", "output": "B"}) + "\n", encoding="utf-8")
    assert main(["eval", "score", "mmsu", "--predictions", str(preds)]) == 2


# ---------------------------------------------------------------- AIR-Bench foundation (JSONL with response)

AIR_RESPONSES = {
    "1": "B",  # Female -> right (both)
    "2": "<think>low pitch</think>\nA",  # official: '<' / '>' -> wrong format, left out; extract: A Male right
    "3": "None",  # official: fail, left out; extract: unparsable
    "4": "B",  # [1.0, 3.5] -> right (both)
    "5": "D.",  # [0.0, 1.0] -> right (both)
    "6": "(C) [2.2, 4.0]",  # official: '(' / '0' -> wrong format, left out; extract: label C and its text -> right
}


def test_airbench_foundation_both_rules(tmp_path, capsys):
    path = tmp_path / "Foundation_result_modelx.jsonl"
    rows = with_predictions(AIR_ENTRIES, "response", AIR_RESPONSES, id_field="uniq_id")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = get_benchmark("airbench")
    official = score_file(spec, path, rule="official")
    assert (official.overall.correct, official.overall.total) == (3, 3)
    assert sorted(official.excluded()) == ["2", "3", "6"]
    assert official.accuracies()["task_dataset"] == {
        "Speaker_Gender_Recognition_VoxCeleb1": 100.0,
        "Audio_Grounding_AudioGrounding": 100.0,
    }
    acc = cli_score(capsys, "airbench", "--predictions", str(path))
    assert (acc["correct"], acc["total"]) == (5, 6)
    assert acc["task"] == {"Speaker_Gender_Recognition": pct(2, 3), "Audio_Grounding": 100.0}
    assert acc["unparsed"] == 1


# ---------------------------------------------------------------- the official rules themselves


def test_token_match_is_the_mmau_rule():
    choices = ["Man", "Woman", "Child", "Robot"]
    assert token_match("Man", "a man", choices)
    assert not token_match("Man", "man or woman", choices)  # a word of another choice
    assert not token_match("Man", "", choices)
    # choices that are permutations of the same words: the official rule accepts a wrong one
    perm = ["['a', 'b']", "['b', 'a']"]
    assert token_match(perm[0], perm[1], perm)


def test_letter_rule_is_the_mmsu_airbench_rule():
    assert letter_of("B") == "B" and letter_of("The answer is C.") == "C"
    assert letter_of(" \nD\n") == "D" and letter_of("") == "" and letter_of("None") == ""
    assert letter_of("female") is None and letter_of("b") is None
