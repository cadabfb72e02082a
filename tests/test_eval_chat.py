"""AIR-Bench chat: the judge through an OpenAI-compatible endpoint (a local server, no network)."""

from __future__ import annotations

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alarm.cli import main
from alarm.evaluation.judge import JudgeConfig, evaluate_chat, parse_scores, score_chat_file
from alarm.generation import GenerationConfig
from alarm.presets import build_model
from tests.test_eval_support import write_clip

ENTRIES = [
    ("c1", "speech_QA", "He is at the station.", "great answer: the station"),
    ("c2", "sound_QA", "A cat meows twice.", "a dog"),
    ("c3", "music_QA", "A slow piano waltz.", "great: a waltz on the piano"),
    ("c4", "speech_and_sound_QA", "Rain and a man talking.", "BROKEN"),
    ("c5", "speech_and_music_QA", "A woman sings over drums.", "meh"),
]
REFERENCES = {ident: reference for ident, _, reference, _ in ENTRIES}


def _score(text: str) -> int:
    """The fake judge: the reference answer 8, an answer with 'great' 9, anything else 3."""
    if text in REFERENCES.values():
        return 8
    return 9 if "great" in text else 3


class FakeJudge(BaseHTTPRequestHandler):
    prompts: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        type(self).prompts.append(prompt)
        first = re.search(r"Assistant 1's answer begins\]\n(.*?)\n\[Assistant 1's answer ends", prompt, re.S).group(1)
        second = re.search(r"Assistant 2's answer begins\]\n(.*?)\n\[Assistant 2's answer ends", prompt, re.S).group(1)
        if "BROKEN" in prompt:
            reply = "Score: 7/10"
        else:  # a judge that likes whoever comes first: +1 for Assistant 1
            reply = f"{min(10, _score(first) + 1)} {_score(second)}"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def judge_url():
    FakeJudge.prompts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _chat_release(root, with_response: bool = False):
    meta = root / "Chat" / "Chat_meta.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for ident, task, reference, response in ENTRIES:
        row = {
            "uniq_id": ident,
            "path": f"{ident}.wav",
            "task_name": task,
            "dataset_name": "fixture",
            "question": f"What happens in {ident}?",
            "answer_gt": reference,
            "meta_info": f"description of {ident}",
        }
        if with_response:
            row["response"] = response
        rows.append(row)
        write_clip(meta.parent / f"{task}_fixture" / f"{ident}.wav")
    meta.write_text(json.dumps(rows), encoding="utf-8")
    return meta


def test_official_parse():
    assert parse_scores("8 9") == (8, 9) and parse_scores(" 7 10\n") == (7, 10)
    assert parse_scores("8, 9") is None and parse_scores("11 3") is None and parse_scores("8 9 10") is None


def test_judged_scores_match_hand_count(tmp_path, judge_url, capsys):
    results = tmp_path / "Chat_result_modelx.jsonl"
    _chat_release(tmp_path)
    rows = json.loads((tmp_path / "Chat" / "Chat_meta.json").read_text())
    for row, (_, _, _, response) in zip(rows, ENTRIES):
        row["response"] = response
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = JudgeConfig(url=judge_url, model="fake-judge")
    result = score_chat_file(results, config, judgements=tmp_path / "j1.jsonl")
    # model = Assistant 2: c1 9, c2 3, c3 9, c4 unparsable reply, c5 3; reference (Assistant 1) 8 + 1
    assert result["categories"] == {"speech": 9.0, "sound": 3.0, "music": 9.0, "speech_and_music": 3.0}
    assert result["mixed_audio"] == 3.0 and result["average"] == (9 + 3 + 9 + 3) / 4
    assert result["failed"] == ["c4"] and result["reference_scores"]["speech"] == 9.0
    first = FakeJudge.prompts[0]
    assert "description of c1" in first and "What happens in c1?" in first
    assert first.index("He is at the station.") < first.index("great answer: the station")  # reference first
    # both orders, averaged: the model as Assistant 1 gets the judge's +1
    swapped = score_chat_file(
        results, JudgeConfig(url=judge_url, model="m", swap=True), judgements=tmp_path / "j2.jsonl"
    )
    assert swapped["categories"] == {"speech": 9.5, "sound": 3.5, "music": 9.5, "speech_and_music": 3.5}
    assert swapped["average"] == 6.5 and swapped["reference_scores"]["sound"] == 8.5
    # a rerun judges nothing again
    asked = len(FakeJudge.prompts)
    assert score_chat_file(results, config, judgements=tmp_path / "j1.jsonl") == result
    assert len(FakeJudge.prompts) == asked
    # the CLI prints the same
    args = ["eval", "score", "airbench-chat", "--predictions", str(results), "--judge-url", judge_url]
    assert main([*args, "--judge-model", "fake-judge"]) == 0
    assert json.loads(capsys.readouterr().out)["categories"] == result["categories"]
    assert main(args) == 2 and "--judge-model" in capsys.readouterr().err


def test_chat_end_to_end_on_tiny_preset(tmp_path, judge_url):
    _chat_release(tmp_path / "AIR")
    model = build_model("tiny-al-whisper-r")
    config = GenerationConfig(max_new_tokens=8, thinking_budget=4)
    judge = JudgeConfig(url=judge_url, model="fake-judge")
    result = evaluate_chat(
        tmp_path / "AIR",
        "tiny-al-whisper-r",
        tmp_path / "out",
        judge,
        config=config,
        limit=3,
        progress=False,
        model=model,
    )
    run = tmp_path / "out" / "airbench-chat"
    for name in ("predictions.jsonl", "judgements.jsonl", "Chat_result_alarm.jsonl", "scores.json"):
        assert (run / name).is_file(), name
    assert result["counts"] == {"speech": 1, "sound": 1, "music": 1} and result["failed"] == []
    assert len(FakeJudge.prompts) == 3
    official = [json.loads(line) for line in (run / "Chat_result_alarm.jsonl").read_text().splitlines()]
    assert [r["uniq_id"] for r in official] == ["c1", "c2", "c3"] and all(
        "</think>" not in r["response"] for r in official
    )
    again = evaluate_chat(
        tmp_path / "AIR",
        "tiny-al-whisper-r",
        tmp_path / "out",
        judge,
        config=config,
        limit=3,
        progress=False,
        model=model,
    )
    assert again == result and len(FakeJudge.prompts) == 3


def test_chat_cli_passes_the_engine(tmp_path, judge_url, monkeypatch, capsys):
    """`--engine vllm` reaches the decoder: without vllm it fails cleanly at the first batch."""
    monkeypatch.setitem(sys.modules, "vllm", None)  # importing it now raises ImportError
    _chat_release(tmp_path / "AIR")
    args = ["eval", "airbench-chat", "--data", str(tmp_path / "AIR"), "--preset", "tiny-al-whisper-r"]
    args += ["--out", str(tmp_path / "out"), "--judge-url", judge_url, "--judge-model", "fake-judge"]
    assert main([*args, "--limit", "1", "--no-progress", "--engine", "vllm"]) == 2
    assert "needs the `vllm` package" in capsys.readouterr().err
    run = json.loads((tmp_path / "out" / "airbench-chat" / "run.json").read_text())
    assert run["engine"] == "vllm" and run["vllm"]["max_model_len"] is None
