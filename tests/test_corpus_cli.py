"""`alarm corpus build | merge | report` end to end: config files, the tiny transformers model,
a fault-injected local HTTP server, and builds killed with SIGKILL and resumed."""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest
import torch

from alarm.cli import main
from alarm.corpus.backends import ChatServer, ScriptedBackend
from alarm.corpus.pipeline import STAGES, corpus_files, reject_rows
from alarm.corpus.schema import read_records
from tests.fixtures.corpus import make_fixture

torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD_AUDIO = {"nisqa/000", "nisqa/001", "nisqa/002"}


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return make_fixture(tmp_path_factory.mktemp("fixture"))


def build_args(fixture, out, *extra):
    sources, audio, _ = fixture
    return ["corpus", "build", "--source", str(sources), "--audio-root", str(audio), "--output", str(out), *extra]


def records(out):
    return {r.id: r for p in corpus_files(str(out)) for r in read_records(p)}


def comparable(record):
    data = record.to_dict()
    data["provenance"]["stages"] = {k: {"attempts": v["attempts"]} for k, v in data["provenance"]["stages"].items()}
    return data


@pytest.fixture(scope="module")
def reference(fixture, tmp_path_factory):
    """An uninterrupted scripted build to compare the others with."""
    out = tmp_path_factory.mktemp("reference")
    assert main(build_args(fixture, out, "--num-candidates", "6", "--no-progress")) == 0
    return records(out)


def test_build_with_a_config_file_then_report(fixture, tmp_path, capsys):
    config = tmp_path / "build.json"
    config.write_text(json.dumps({"num_candidates": 5, "seed": 3, "languages": ["en", "de"], "chunk_size": 7}))
    out = tmp_path / "out"
    assert main(build_args(fixture, out, "--config", str(config), "--num-candidates", "6", "--no-progress")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["complete"] and [s["stage"] for s in summary["stages"]] == list(STAGES)
    got = records(out)
    assert len(got) == 51 and {len(r.prompt_candidates) for r in got.values()} == {0, 6}  # the flag wins
    assert {r.provenance["seed"] for r in got.values()} == {3}  # the file's seed
    assert {lang for r in got.values() for lang in r.provenance.get("candidate_languages", [])} == {"en", "de"}

    assert main(["corpus", "report", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == 51 and report["rejected"] == 3
    assert all((out / f"report.{ext}").stat().st_size > 0 for ext in ("json", "md", "png"))

    assert main(["corpus", "merge", str(out), "--output", str(tmp_path / "merged")]) == 0
    assert json.loads(capsys.readouterr().out)["records"]["train"] + 5 == 51

    config.write_text(json.dumps({"num_candidate": 5}))
    assert main(build_args(fixture, tmp_path / "o2", "--config", str(config))) == 2
    assert "unknown build config keys ['num_candidate']" in capsys.readouterr().err


def test_tiny_transformers_model_end_to_end(fixture, tmp_path, capsys):
    """A random tiny model writes garbage: the build must finish, reject with reasons, and report it.

    Q gets 8 tokens (it never writes a candidate list that fast); the RLM samples up to 256
    tokens with an 8-token budget on R0's reasoning, so the spoken queries (no Q needed)
    reach the RLM and are judged by the same checks as real output.
    """
    config = tmp_path / "tiny.json"
    config.write_text(
        json.dumps(
            {
                "prompter_sampling": {"max_tokens": 8, "temperature": 1.0, "top_p": 1.0, "top_k": 300},
                "rlm_sampling": {"max_tokens": 256, "temperature": 1.0, "top_p": 1.0, "top_k": 300},
                "respond_thinking_budget": 8,
                "num_candidates": 4,
                "max_attempts": 2,
            }
        )
    )
    out = tmp_path / "tiny"
    spec = "transformers:tiny-al-whisper-r?batch_size=16"
    args = ["--config", str(config), "--prompter", spec, "--rlm", spec, "--no-progress"]
    assert main(build_args(fixture, out, *args)) == 0
    assert json.loads(capsys.readouterr().out)["complete"]
    assert main(["corpus", "report", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["records"] + report["rejected"] == 54 and (out / "report.png").exists()
    rejects = reject_rows(str(out))
    assert {r["id"] for r in rejects} | set(records(out)) == {r.id for r in fixture[2]}
    assert {r["id"] for r in rejects if r["stage"] == "audio"} == BAD_AUDIO
    assert report["stages"]["prompts"] == {"passed": 7, "rejected": 44}  # only the spoken queries pass Q
    garbage = {"over-length", "special token", "undecodable bytes", "stray think tag", "unterminated <think>"}
    assert set(report["rejects_by_reason"]["prompts"]) <= garbage | {"no candidate list", "refusal"}
    respond = report["stages"]["respond"]
    assert respond["passed"] + respond["rejected"] == 7  # the RLM saw every spoken query
    assert set(report["rejects_by_reason"].get("respond", {})) <= garbage | {"empty answer", "refusal"}
    assert all(r["attempts"] == 2 and r["reason"] for r in rejects if r["stage"] != "audio")
    for record in records(out).values():  # whatever passed is a valid training record
        assert record.response == record.response_raw and record.response.startswith("<think>\n")
        assert record.response.count("</think>") == 1 and "<|" not in record.response


def test_http_backend_with_faults_end_to_end(fixture, reference, tmp_path, capsys):
    kinds = ["500", "429", "malformed", "slow:1.0", "drop", None]

    def fault(body, seen):  # the first sighting of each request fails, in turn with each kind
        return None if seen else kinds[len(json.dumps(body)) % len(kinds)]

    with ChatServer(ScriptedBackend(), fault=fault) as server:
        spec = f"openai:{server.url}?model=local&concurrency=8&timeout_s=0.4&backoff_s=0.01"
        out = tmp_path / "http"
        args = ["--prompter", spec, "--rlm", spec, "--num-candidates", "6", "--no-progress"]
        assert main(build_args(fixture, out, *args)) == 0
    assert json.loads(capsys.readouterr().out)["complete"]
    faults = sum(n for k, n in server.stats.items() if k.startswith("fault:"))
    assert faults > 20
    got = records(out)
    assert sorted(got) == sorted(reference)
    assert all(comparable(got[i]) == comparable(reference[i]) for i in got)  # faults change nothing
    assert main(["corpus", "report", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    # every retry the server saw is counted; a loaded machine may add timeouts to the injected
    # faults, and an attempt that timed out before the server read it is a retry it never saw
    assert report["retries"]["transport_retries"] >= server.stats["repeats"] >= faults
    assert report["retries"]["llm_retries"] == 0


def _stage_ids(out):
    ids = {}
    for stage in STAGES:
        folder = "corpus" if stage == STAGES[-1] else os.path.join("stages", stage)
        rows = [
            i for p in glob.glob(str(out / folder / "*.parquet")) for i in pq.read_table(p).column("id").to_pylist()
        ]
        rows += [r["id"] for r in reject_rows(str(out)) if r["stage"] == stage]
        ids[stage] = rows
    return ids


def test_killed_builds_resume_with_nothing_lost_or_repeated(fixture, reference, tmp_path):
    out = tmp_path / "killed"
    spec = "scripted?delay_s=0.004"
    cmd = [sys.executable, "-m", "alarm.cli", *build_args(fixture, out), "--prompter", spec, "--rlm", spec]
    cmd += ["--num-candidates", "6", "--chunk-size", "4", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}

    def files(stage):
        folder = "corpus" if stage == STAGES[-1] else os.path.join("stages", stage)
        return len(glob.glob(str(out / folder / "*.parquet")))

    def all_files():
        return sum(files(stage) for stage in STAGES)

    # kill points, in every stage: two chunks in, and a few milliseconds after the next file appears
    # (mid-chunk, mid-write, between the records file and the rejects file)
    rng = random.Random(0)
    points = [(kind, stage) for stage in STAGES for kind in ("chunks", "jitter")]
    kills = 0
    for kind, stage in points:
        base, total, delay = files(stage), all_files(), rng.uniform(0.0, 0.03)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while proc.poll() is None:
            if files(stage) >= base + 2 if kind == "chunks" else all_files() > total:
                time.sleep(delay if kind == "jitter" else 0.0)
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.002)
        proc.wait()
    assert kills >= 8  # a few runs may finish a stage before the kill lands
    final = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["complete"]

    everyone = {r.id for r in fixture[2]}
    for stage, ids in _stage_ids(out).items():  # each stage saw every id that reached it exactly once
        assert not [i for i, n in Counter(ids).items() if n > 1], stage
    rejected = [r["id"] for r in reject_rows(str(out))]
    got = records(out)
    assert sorted(rejected) == sorted(BAD_AUDIO) and set(got) | set(rejected) == everyone
    assert all(comparable(got[i]) == comparable(reference[i]) for i in reference)  # 0 lost, 0 changed
    assert not glob.glob(str(out / "**" / ".tmp-*"), recursive=True)


def test_rephrase_exposure_check_flag(fixture, tmp_path, capsys):
    for flag, expected in (("--rephrase-exposure-check", True), ("--no-rephrase-exposure-check", False)):
        out = tmp_path / flag
        assert main(build_args(fixture, out, flag, "--limit", "2", "--no-progress")) == 0
        assert json.loads((out / "build.json").read_text())["rephrase_exposure_check"] is expected
    config = tmp_path / "on.json"
    config.write_text(json.dumps({"rephrase_exposure_check": True}))
    assert main(build_args(fixture, tmp_path / "file", "--config", str(config), "--limit", "2", "--no-progress")) == 0
    assert json.loads((tmp_path / "file" / "build.json").read_text())["rephrase_exposure_check"] is True
    capsys.readouterr()


def test_rephrase_second_pass_flag_reaches_the_rephrasing_requests(fixture, tmp_path, capsys):
    out = tmp_path / "remaining"
    assert main(build_args(fixture, out, "--rephrase-second-pass", "remaining", "--limit", "2", "--no-progress")) == 0
    assert json.loads((out / "build.json").read_text())["rephrase_second_pass"] == "remaining"
    rephrased = [r for r in records(out).values() if "rephrase" in r.provenance["stages"]]
    passes = {r.provenance["stages"]["rephrase"]["sampling"]["second_pass"] for r in rephrased}
    assert passes == {"remaining"}
    capsys.readouterr()
