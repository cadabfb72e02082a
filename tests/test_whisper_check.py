"""`alarm corpus filter-wer`: the official HeySQuAD Whisper check (normalisation, WER threshold,
rejects, bad audio, resume) with a stub transcriber, and once with the packaged Whisper tiny.en
on espeak-ng speech."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from alarm import packaged
from alarm.cli import main
from alarm.corpus.schema import SourceRecord, read_records, write_jsonl
from alarm.corpus.whisper_check import (
    DUPLICATE_ID,
    MISSING_AUDIO,
    NO_WORDS,
    UNREADABLE_AUDIO,
    WER_TOO_HIGH,
    WhisperCheckConfig,
    official_normalize,
    official_wer,
    run_whisper_check,
)

# -- the official normalisation and threshold ----------------------------------------------------


def test_official_normalisation_keeps_lower_case_letters_and_spaces_only():
    assert official_normalize("What's the U.S. well-known answer?") == "whats the us wellknown answer"
    assert official_normalize("In 1990, Paris!") == "in  paris"  # digits vanish; the WER splits on whitespace
    assert official_normalize("Où est-ce?") == "o estce"  # non-ASCII letters are dropped too
    assert official_wer("In 1990, Paris?", "in paris") == 0.0


def test_official_wer_against_the_question():
    assert official_wer("Who wrote Hamlet?", "who wrote hamlet") == 0.0
    assert official_wer("Who wrote Hamlet?", " Who wrote Macbeth? ") == pytest.approx(1 / 3)
    assert official_wer("Who wrote it?", "who did") == pytest.approx(2 / 3)
    assert official_wer("Who wrote it?", "who wrote it then and now") == 1.0  # insertions count
    with pytest.raises(ValueError, match="no words"):
        official_wer("1990?", "nineteen ninety")


# -- the check with a stub transcriber -----------------------------------------------------------

# Each clip's length (in 16 kHz samples) names what the stub "hears".
HEARD = {
    16_000: "Who wrote Hamlet?",  # q1, matches
    17_600: "Where is the bank",  # q2, asked "Who painted the Mona Lisa?": mismatch
    19_200: "What is two plus two",  # q3, half wrong: WER 0.5 is kept (official: only above drops)
    20_800: "nineteen ninety",  # q6, whose question has no letters
}


class Stub:
    """Transcribes by clip length; counts clips; ``fail_after`` calls then raises (a kill)."""

    def __init__(self, fail_after: int | None = None):
        self.clips = 0
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, clips):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.clips += len(clips)
        return [HEARD[len(c)] for c in clips]


SECONDS = {f"{n}.wav": samples / 16_000 for n, samples in zip(("q1", "q2", "q3", "q6"), HEARD)}


def _record(rid, audio, question, dataset="heysquad_human"):
    seconds = SECONDS.get(audio, 1.0)
    return SourceRecord(f"{dataset}/{rid}", dataset, "instruction", "train", audio, 0.0, seconds, question)


@pytest.fixture
def fixture(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    for n, samples in zip(("q1", "q2", "q3", "q6"), HEARD):
        sf.write(root / f"{n}.wav", np.zeros(samples // 2, dtype=np.float32), 8_000)  # resampled to 16 kHz
    (root / "broken.wav").write_bytes(b"RIFF not really a wave file")
    records = [
        _record("q1/question", "q1.wav", "Who wrote Hamlet?"),
        _record("q1/context", "q1.wav", "Who wrote Hamlet?"),  # same segment: one transcription
        _record("q2", "q2.wav", "Who painted the Mona Lisa?"),
        _record("q3", "q3.wav", "What was two plus three, ten?"),  # 3 edits of 6 words
        _record("q4", "missing.wav", "Anything?"),
        _record("q5", "broken.wav", "Anything?"),
        _record("q6", "q6.wav", "1990?"),
        _record("dog", "missing.wav", "a dog barks", dataset="esc50"),  # not checked: passes as it is
        _record("q2", "q2.wav", "Who painted the Mona Lisa?"),  # a repeated id
    ]
    write_jsonl(records, tmp_path / "src.jsonl")
    return tmp_path, root


def _config(tmp_path, root, **over):
    base = dict(sources=(str(tmp_path / "src.jsonl"),), out=str(tmp_path / "kept.jsonl"), audio_root=str(root))
    return WhisperCheckConfig(**{**base, "whisper": "stub", "batch_size": 2, "progress": False, **over})


def _outputs(tmp_path):
    kept = [r.id for r in read_records(tmp_path / "kept.jsonl")]
    rejects = {}
    for line in (tmp_path / "kept.rejects.jsonl").read_text().splitlines():
        row = json.loads(line)
        rejects.setdefault(row["id"], row)
    return kept, rejects


def test_check_keeps_matching_rows_and_rejects_the_rest_with_reasons(fixture):
    tmp_path, root = fixture
    stub = Stub()
    summary = run_whisper_check(_config(tmp_path, root), stub)
    kept, rejects = _outputs(tmp_path)
    assert kept == ["heysquad_human/q1/question", "heysquad_human/q1/context", "heysquad_human/q3", "esc50/dog"]
    assert {i: r["reason"] for i, r in rejects.items()} == {
        "heysquad_human/q2": WER_TOO_HIGH,
        "heysquad_human/q4": MISSING_AUDIO,
        "heysquad_human/q5": UNREADABLE_AUDIO,
        "heysquad_human/q6": NO_WORDS,
    }
    mismatch = rejects["heysquad_human/q2"]
    assert mismatch["hypothesis"] == "Where is the bank" and mismatch["wer"] == 0.8  # 4 edits of 5 words
    assert mismatch["question"] == "Who painted the Mona Lisa?" and "> 0.5" in mismatch["detail"]
    assert summary.dropped[DUPLICATE_ID] == 1 and summary.passed_through == 1 and summary.kept == 4
    assert stub.clips == 4  # q1's two rows share a clip; bad audio and other datasets are never transcribed
    verdicts = [json.loads(x) for x in (tmp_path / "kept.whisper.jsonl").read_text().splitlines()]
    assert next(v for v in verdicts if v["id"] == "heysquad_human/q3")["wer"] == 0.5  # kept: not above 0.5


def test_a_killed_check_resumes_with_nothing_lost_or_repeated(fixture, tmp_path):
    src, root = fixture
    with pytest.raises(KeyboardInterrupt):
        run_whisper_check(_config(src, root), Stub(fail_after=1))  # killed in its second batch
    assert not (src / "kept.jsonl").exists()  # outputs appear only when every row is checked
    first = (src / "kept.whisper.jsonl").read_text().splitlines()
    assert len(first) == 2
    stub = Stub()
    summary = run_whisper_check(_config(src, root), stub)
    assert summary.resumed == 2 and summary.transcribed == 5 and stub.clips == 3  # q1's clip came from the file
    ids = [json.loads(x)["id"] for x in (src / "kept.whisper.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 7
    resumed = _outputs(src)
    os.rename(src / "kept.whisper.jsonl", src / "old.whisper.jsonl")
    run_whisper_check(_config(src, root), Stub())  # one uninterrupted run gives the same files
    assert _outputs(src) == resumed


def test_a_new_threshold_decides_again_without_transcribing_and_another_model_is_refused(fixture):
    tmp_path, root = fixture
    run_whisper_check(_config(tmp_path, root), Stub())
    run_whisper_check(_config(tmp_path, root, max_wer=1.0), Stub(fail_after=0))  # any transcription would raise
    kept, rejects = _outputs(tmp_path)
    assert "heysquad_human/q2" in kept and rejects["heysquad_human/q2"]["reason"] == DUPLICATE_ID  # its repeat
    with pytest.raises(ValueError, match="another Whisper model"):
        run_whisper_check(_config(tmp_path, root, whisper="other"), Stub())
    with pytest.raises(ValueError, match="unknown whisper check keys"):
        WhisperCheckConfig.from_dict(
            {"sources": ["a.jsonl"], "out": "k.jsonl", "audio_root": ".", "whisper": "w", "x": 1}
        )


# -- the real packaged Whisper tiny.en -----------------------------------------------------------


def test_packaged_whisper_tiny_en_passes_a_right_question_and_rejects_a_wrong_one(tmp_path, monkeypatch, capsys):
    from alarm.demo.speech import espeak_available, speak

    model = packaged.get("whisper-tiny.en")
    if packaged.missing_files(model):
        pytest.skip(f"whisper-tiny.en not installed ({model.install_command})")
    if not espeak_available():
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    monkeypatch.setenv("ALARM_CACHE", str(tmp_path / "cache"))  # convert into a cache of its own, never the user's
    question = "Who wrote the play about the prince of Denmark?"
    root = tmp_path / "audio"
    root.mkdir()
    samples = speak(question)
    sf.write(root / "q.wav", samples, 16_000)
    seconds = len(samples) / 16_000
    records = [
        SourceRecord("heysquad_human/right", "heysquad_human", "instruction", "train", "q.wav", 0, seconds, question),
        SourceRecord("heysquad_human/wrong", "heysquad_human", "instruction", "train", "q.wav", 0, seconds,
                     "When did the Normans first arrive in Italy?"),
    ]  # fmt: skip
    write_jsonl(records, tmp_path / "src.jsonl")
    args = ["corpus", "filter-wer", "--source", str(tmp_path / "src.jsonl"), "--audio-root", str(root)]
    args += ["--whisper", "whisper-tiny.en", "--out", str(tmp_path / "kept.jsonl"), "--no-progress"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kept"] == 1 and summary["dropped"] == {WER_TOO_HIGH: 1}
    kept, rejects = _outputs(tmp_path)
    assert kept == ["heysquad_human/right"]
    verdict = json.loads((tmp_path / "kept.whisper.jsonl").read_text().splitlines()[0])
    wrong = rejects["heysquad_human/wrong"]["wer"]
    print(f"tiny.en heard {verdict['hypothesis']!r}: WER {verdict['wer']:.3f}, against the wrong question {wrong:.3f}")
    assert verdict["wer"] <= 0.5 < wrong
