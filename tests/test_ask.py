"""`alarm ask`: several clips per question, --hide-thinking, and --batch (resumable, rejects)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from alarm.ask import answer_only, ask_batch
from alarm.audio import load_audio
from alarm.cli import main
from alarm.evaluation.runner import TransformersEngine
from alarm.generation import GenerationConfig, GenerationOutput, answer
from alarm.modeling.inputs import AudioBatch
from alarm.presets import build_model
from tests.conftest import tone
from tests.helpers import launch_env

torch.set_num_threads(1)

PRESET = "tiny-al-whisper-r"
FLAGS = ["--preset", PRESET, "--max-new-tokens", "6", "--thinking-budget", "2"]
CONFIG = GenerationConfig(max_new_tokens=6, thinking_budget=2)


@pytest.fixture(scope="module")
def model():
    return build_model(PRESET).eval()


@pytest.fixture
def clips(tmp_path):
    paths = []
    for i, (seconds, freq) in enumerate(((1.0, 440.0), (0.7, 880.0), (1.3, 220.0))):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, tone(seconds, 16_000, freq), 16_000)
        paths.append(str(path))
    return paths


class FakeEngine:
    """Answers instantly and deterministically; records every batch; can fail after some batches."""

    name = "fake"

    def __init__(self, fail_after: int | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_after = fail_after

    def answer(self, waveforms, prompts, config, **chat):
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise KeyboardInterrupt  # as if the run were killed between batches
        self.batches.append(list(prompts))
        return [
            GenerationOutput(f"r</think>{p} x{len(w)}", "r", f"{p} x{len(w)}", [1, 2], 1, False, True)
            for w, p in zip(waveforms, prompts)
        ]


def _write_requests(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def _lines(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_one_question_about_several_clips_streams_the_library_answer(model, clips, capsys):
    assert main(["ask", clips[0], clips[1], "Which is higher?", *FLAGS]) == 0
    printed = capsys.readouterr().out
    waves = [load_audio(p) for p in clips[:2]]
    (expected,) = answer(model, [waves], ["Which is higher?"], CONFIG)
    assert printed == expected.text + "\n"
    assert main(["ask", clips[0], clips[1], "Which is higher?", *FLAGS, "--hide-thinking"]) == 0
    assert capsys.readouterr().out == expected.answer + "\n"


def test_answer_only_drops_the_reasoning_across_piece_boundaries():
    pieces = ["thinking about it", " still </th", "ink>", "\n\n", " The ", "answer."]
    assert "".join(answer_only(pieces)) == "The answer."
    assert list(answer_only(["no end of reasoning"])) == []


def test_ask_usage_errors_exit_2(clips, capsys):
    assert main(["ask", clips[0], *FLAGS]) == 2  # no question
    assert main(["ask", clips[0], "   ", *FLAGS]) == 2
    assert main(["ask", "--batch", "missing.jsonl", "--out", "a.jsonl", *FLAGS]) == 2
    assert main(["ask", clips[0], "q", "--batch", "x.jsonl", *FLAGS]) == 2
    assert main(["ask", "/no/such.wav", "q", *FLAGS]) == 2
    err = capsys.readouterr().err
    assert "the question is empty" in err and "/no/such.wav" in err


def test_batch_answers_good_lines_and_rejects_bad_ones_with_reasons(tmp_path, clips):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_text("not audio at all")
    rows = [
        {"id": "one", "audio": "clip0.wav", "question": "What is it?"},
        {"id": "two", "audio": ["clip1.wav", "clip2.wav"], "question": "Compare."},
        '{"id": "broken", "audio": "clip0.wav", ',
        {"id": "missing", "audio": "nowhere.wav", "question": "Hm?"},
        {"id": "corrupt", "audio": "corrupt.wav", "question": "Hm?"},
        {"id": "empty", "audio": "clip0.wav", "question": "  "},
        {"id": "one", "audio": "clip1.wav", "question": "Again?"},
        {"id": "typo", "audio": "clip0.wav", "questoin": "?"},
        {"audio": "clip2.wav", "question": "No id?"},
        "",
    ]
    requests, out = tmp_path / "requests.jsonl", tmp_path / "answers.jsonl"
    _write_requests(requests, rows)
    engine = FakeEngine()
    stats = ask_batch(engine, requests, out, CONFIG, batch_size=2, progress=False, hide_thinking=True)
    answers = {a["id"]: a for a in _lines(out)}
    assert set(answers) == {"one", "two", "line-9"}
    assert answers["two"]["answer"] == "Compare. x2" and answers["two"]["audio"] == [clips[1], clips[2]]
    assert "reasoning" not in answers["one"]
    rejects = {r["id"]: r["reason"] for r in _lines(f"{out}.rejects.jsonl")}
    assert set(rejects) == {"line-3", "missing", "corrupt", "empty", "one", "typo"}
    assert "not valid JSON" in rejects["line-3"]
    assert "nowhere.wav" in rejects["missing"] and "corrupt.wav" in rejects["corrupt"]
    assert "question" in rejects["empty"] and "repeats line 1" in rejects["one"] and "questoin" in rejects["typo"]
    assert (stats.total, stats.answered, stats.rejected, stats.skipped) == (9, 3, 6, 0)
    # A rerun answers nothing again; the rejects file is rewritten, not appended to.
    stats = ask_batch(FakeEngine(), requests, out, CONFIG, batch_size=2, progress=False)
    assert (stats.answered, stats.skipped, stats.rejected) == (0, 3, 6)
    assert len(_lines(out)) == 3 and len(_lines(f"{out}.rejects.jsonl")) == 6


def test_batch_resumes_without_losing_or_repeating_answers(tmp_path, clips):
    rows = [{"id": f"q{i}", "audio": f"clip{i % 3}.wav", "question": f"Question {i}?"} for i in range(7)]
    requests, out = tmp_path / "requests.jsonl", tmp_path / "answers.jsonl"
    _write_requests(requests, rows)
    with pytest.raises(KeyboardInterrupt):
        ask_batch(FakeEngine(fail_after=2), requests, out, CONFIG, batch_size=2, progress=False)
    assert [a["id"] for a in _lines(out)] == ["q0", "q1", "q2", "q3"]
    with open(out, "a", encoding="utf-8") as f:  # a kill in the middle of a write leaves a torn line
        f.write('{"id": "q4", "answ')
    engine = FakeEngine()
    stats = ask_batch(engine, requests, out, CONFIG, batch_size=2, progress=False)
    assert engine.batches == [["Question 4?", "Question 5?"], ["Question 6?"]]
    assert [a["id"] for a in _lines(out)] == [f"q{i}" for i in range(7)]
    assert (stats.skipped, stats.answered) == (4, 3)


def test_batch_answers_equal_the_library_answers(tmp_path, clips, model):
    rows = [
        {"id": "a", "audio": [clips[0], clips[1]], "question": "Compare."},
        {"id": "b", "audio": clips[2], "question": "What is it?"},
    ]
    requests, out = tmp_path / "requests.jsonl", tmp_path / "answers.jsonl"
    _write_requests(requests, rows)
    ask_batch(TransformersEngine(model), requests, out, CONFIG, batch_size=2, progress=False)
    waves = [[load_audio(clips[0]), load_audio(clips[1])], [load_audio(clips[2])]]
    expected = answer(model, waves, ["Compare.", "What is it?"], CONFIG)
    got = _lines(out)
    assert [(g["reasoning"], g["answer"]) for g in got] == [(e.reasoning, e.answer) for e in expected]
    assert [g["output_tokens"] for g in got] == [len(e.token_ids) for e in expected]


@pytest.mark.slow
def test_batch_killed_with_sigkill_resumes_from_the_command_line(tmp_path, clips):
    rows = [{"id": f"q{i}", "audio": f"clip{i % 3}.wav", "question": f"Question {i}?"} for i in range(12)]
    requests, out = tmp_path / "requests.jsonl", tmp_path / "answers.jsonl"
    _write_requests(requests, rows)
    command = [sys.executable, "-m", "alarm.cli", "ask", "--batch", str(requests), "--out", str(out), *FLAGS]
    command += ["--batch-size", "1", "--no-progress"]
    proc = subprocess.Popen(command, env=launch_env(), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while (not out.exists() or len(out.read_bytes().splitlines()) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = len(_lines_tolerant(out))
    assert 2 <= first < 12
    subprocess.run(command, env=launch_env(), check=True, stderr=subprocess.DEVNULL)
    ids = [a["id"] for a in _lines(out)]
    assert sorted(ids) == sorted(f"q{i}" for i in range(12)) and len(ids) == len(set(ids))


def _lines_tolerant(path):
    """Complete lines only (a killed writer may leave a torn last line)."""
    data = path.read_bytes()
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]


def test_batch_rejects_audio_over_the_limit(tmp_path):
    sf.write(tmp_path / "long.wav", np.zeros(16_000 * 3, dtype=np.float32), 16_000)
    requests, out = tmp_path / "requests.jsonl", tmp_path / "answers.jsonl"
    _write_requests(requests, [{"id": "long", "audio": "long.wav", "question": "?"}])
    stats = ask_batch(FakeEngine(), requests, out, CONFIG, max_seconds=2.0, progress=False)
    assert stats.rejected == 1 and "longer than the limit" in _lines(f"{out}.rejects.jsonl")[0]["reason"]


@pytest.mark.slow
def test_a_ten_minute_clip_is_answered_whole(tmp_path, model, capsys):
    """Encoders window long audio (Whisper: 20 windows of 30 s); every second reaches the RLM."""
    clip = tmp_path / "ten_minutes.wav"
    sf.write(clip, tone(600.0, 16_000, 330.0), 16_000)
    audio = AudioBatch.from_waveforms([load_audio(clip)], model.sample_rates)
    with torch.no_grad():
        _, valid = model.audio_embeddings(audio)
    assert int(valid.sum()) == int(model.audio_lengths(audio.lengths)[0]) == 25 * 600 + 2  # 25 Hz + boundaries
    assert main(["ask", str(clip), "How long is this?", *FLAGS]) == 0
    # The streamed text itself is not compared: over a 15,000-position prompt the random
    # tiny RLM's logits nearly tie, and the generation thread's float reductions may differ.
    assert capsys.readouterr().out.endswith("\n")
