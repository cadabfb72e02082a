"""The corpus pipeline with scripted backends: every stage checked exactly on a 54-record fixture."""

import glob
import os
import re

import pytest

from alarm.corpus import instructions
from alarm.corpus.backends import ChatRequest, RulesResponder, SamplingParams, ScriptedBackend
from alarm.corpus.pipeline import (
    BackendUnavailable,
    BuildConfig,
    build,
    corpus_files,
    merge,
    plan_sources,
    reject_rows,
    shard_of,
)
from alarm.corpus.prompts import (
    THINK_END,
    choose,
    complete_sentences,
    grounded_sentences,
    grounding_problem,
    split_target,
    stable_seed,
    think_text,
)
from alarm.corpus.report import build_report, write_report
from alarm.corpus.schema import RecordError, SourceRecord, read_records, write_jsonl
from alarm.corpus.stages import flatten_context
from alarm.generation import DEFAULT_CLOSING
from tests.fixtures.corpus import make_fixture

BAD_AUDIO = {"nisqa/000": "audio missing", "nisqa/001": "audio unreadable", "nisqa/002": "segment outside the audio"}


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return make_fixture(tmp_path_factory.mktemp("fixture"))


class Recorder:
    """Rules responder that also keeps every request it saw."""

    def __init__(self, inner=None):
        self.inner = inner or RulesResponder()
        self.requests: list[ChatRequest] = []

    def __call__(self, request, index):
        self.requests.append(request)
        return self.inner(request, index)

    def stage_requests(self, stage):
        system = instructions.get(stage).system
        return [r for r in self.requests if r.messages[0]["content"] == system]


def run(fixture, out, backend=None, **over):
    sources, audio, _ = fixture
    config = BuildConfig(
        sources=(str(sources),), output=str(out), audio_root=str(audio), num_candidates=8, progress=False, **over
    )
    backend = backend or ScriptedBackend()
    return build(config, {"prompter": backend, "rlm": backend})


def corpus(out):
    return {r.id: r for p in corpus_files(str(out)) for r in read_records(p)}


def strip_times(record):
    """A record without what may differ between equivalent runs: times and the backend's description."""
    data = record.to_dict()
    data["provenance"]["stages"] = {
        k: {**v, "at": None, "backend": None} for k, v in data["provenance"]["stages"].items()
    }
    return data


@pytest.fixture(scope="module")
def full(fixture, tmp_path_factory):
    """One complete scripted build, with the requests it made."""
    out = tmp_path_factory.mktemp("full")
    recorder = Recorder()
    summary = run(fixture, out, ScriptedBackend(recorder))
    return out, recorder, summary


def test_every_record_ends_once_in_the_corpus_or_the_rejects(fixture, full):
    out, _, summary = full
    records = corpus(out)
    rejects = reject_rows(str(out))
    assert summary.complete and os.path.exists(out / "done-s00000of00001.json")
    assert {r["id"]: r["reason"] for r in rejects} == BAD_AUDIO
    assert all(r["stage"] == "audio" and r["attempts"] == 0 for r in rejects)
    assert sorted(records) == sorted(r.id for r in fixture[2] if r.id not in BAD_AUDIO)
    assert [s.stage for s in summary.stages] == ["audio", "prompts", "filter", "respond", "rephrase"]
    # 44 records need Q (7 are spoken queries); the RLM answers all 51 and rephrases 44
    assert [s.llm_calls for s in summary.stages] == [0, 44, 44, 51, 44]


def test_prompt_candidates_filter_and_choice_exactly(full):
    out, recorder, _ = full
    r = corpus(out)["vctk/000"]
    topic = "the clip with [00:00-00:01] Please call"
    texts = [
        "What do you hear in this recording?",
        f"Describe {topic} in one sentence.",
        f"According to the provided metadata, what is {topic}?",
        f"Guess the weather on the day {topic} was recorded.",
        f"Which word fits {topic} best: (A) calm, (B) loud, (C) unclear?",
        f"Is there anything unusual about {topic}? Answer yes or no.",
        f"Was hörst du in dieser Aufnahme über {topic}?",
        f"Que remarques-tu dans cet enregistrement à propos de {topic} ?",
    ]
    reasons = ["", "", "exposes the text: 'provided metadata'", "judge: cannot be answered from the clip"] + [""] * 4
    assert [c["text"] for c in r.prompt_candidates] == texts
    assert [c["reason"] for c in r.prompt_candidates] == reasons
    assert [c["kept"] for c in r.prompt_candidates] == [not x for x in reasons]
    assert r.provenance["candidate_languages"] == ["en"] * 6 + ["de", "fr"]  # round(8 * 0.2) = 2 others
    kept = [t for t, why in zip(texts, reasons) if not why]
    assert r.prompt == kept[choose(kept, 0, "vctk/000")]
    assert r.provenance["prompt_language"] == r.provenance["candidate_languages"][texts.index(r.prompt)]
    # the judge saw only what the lexical detector let through, numbered from 1
    judged = [q for q in recorder.stage_requests("filter") if f"clip:\n{r.metadata}\n" in q.messages[1]["content"]][0]
    assert judged.messages[1]["content"].endswith(
        "Requests:\n" + "\n".join(f"{i}. {t}" for i, t in enumerate([t for t in texts if "metadata" not in t], 1))
    )
    # and Q was asked for 8 candidates, 2 of them in other languages
    asked = recorder.stage_requests("prompts")[0].messages[1]["content"]
    assert (
        "Write 8 requests, about: " + instructions.topics(r.category) + ". Write 2 of them in languages other" in asked
    )
    assert instructions.topics("speech") != instructions.topics("sound")


def test_choice_spreads_over_the_kept_candidates(full):
    out, _, _ = full
    chosen = {r.prompt.split(" ")[0] for r in corpus(out).values() if r.prompt_candidates}
    assert len(chosen) >= 4  # 44 records pick among 6 kept forms


def test_respond_and_rephrase_exactly(full):
    out, recorder, _ = full
    r = corpus(out)["gtzan/003"]
    respond = [q for q in recorder.stage_requests("respond") if r.metadata in q.messages[1]["content"]]
    assert respond[0].messages == (
        {"role": "system", "content": instructions.get("respond").system},
        {"role": "user", "content": f"<audio>{r.metadata}</audio>\n\n{r.prompt}"},
    )
    assert r.response_raw == (
        f"<think>\nThe description says: {r.metadata}. The request is: {r.prompt} I will answer from that.\n</think>"
        f"\n\nFrom the description: {r.metadata}."
    )
    assert r.response == (
        f"<think>\nI hear: {r.metadata}. The request is: {r.prompt} I will answer from that.\n</think>"
        f"\n\nI heard: {r.metadata}."
    )
    assert r.rephrase_reasoning.startswith("I need to replace each written reference")
    assert "</think>" not in r.rephrase_reasoning and r.rephrase_reasoning not in r.response
    rephrase = [q for q in recorder.stage_requests("rephrase") if r.metadata in q.messages[1]["content"]]
    assert rephrase[0].params.thinking_budget == 1536 and respond[0].params.thinking_budget == -1
    # official: the rephrasing's second pass gets all of max_tokens again; R0's keeps what is left
    assert rephrase[0].params.second_pass == "full" and respond[0].params.second_pass == "remaining"
    assert "<original_reasoning>\nThe description says:" in rephrase[0].messages[1]["content"]
    # provenance: instruction versions, sampling and the per-record seed of every LLM stage
    assert r.provenance["instructions"] == instructions.refs()
    stage = r.provenance["stages"]["rephrase"]
    assert stage["sampling"] == {
        "max_tokens": 4096,
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": 20,
        "thinking_budget": 1536,
        "seed": stable_seed(0, "rephrase", r.id, 0) % 2**31,
        "second_pass": "full",
    }
    assert r.provenance["rephrase_second_pass"] == "full"
    assert stage["attempts"] == 1 and stage["backend"]["backend"] == "scripted"
    assert r.provenance["stages"]["prompts"]["sampling"]["temperature"] == 0.7  # Q's settings


def _words(text):
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_spoken_queries_are_heard_only_as_audio_by_default(full, fixture):
    # official (hf_dataset.py, instructs2s.py): the row's text is the passage or the earlier turns
    # flattened as User:/Assistant: lines; the question itself exists only as audio
    out, recorder, _ = full
    records = corpus(out)
    sources = {r.id: r for r in fixture[2]}
    spoken = [i for i in records if i.startswith(("heysquad_human/", "instructs2s/"))]
    assert len(spoken) == 7
    for rid in spoken:
        r, source = records[rid], sources[rid]
        assert r.prompt == flatten_context(source.context) and r.context == () and r.prompt_candidates == ()
        question_only = _words(source.metadata) - _words(flatten_context(source.context))
        assert question_only and not question_only & _words(r.prompt)  # no word of the question is text
        assert r.provenance["spoken_query_text"] == "context" and r.provenance["special_case"] == "spoken_query"
        assert r.response == r.response_raw and r.rephrase_reasoning == ""
        # R0 answered the context and the transcript as one user message, no system text
        asked = f"{r.prompt}\n{source.metadata}".strip()
        (sent,) = [q for q in recorder.requests if q.messages[-1]["content"] == asked]
        assert sent.messages == ({"role": "user", "content": asked},)
        assert sent.params.max_tokens == 512  # official R0 cap (generate_instruction_responses.py)
    assert records["heysquad_human/000"].prompt == ""  # no passage: the audio alone
    assert records["heysquad_human/001"].prompt == "Stella lives in Paris and works at a bakery."
    assert records["instructs2s/001"].prompt == (
        "User: Hi, can you help me plan a trip, number 1?\nAssistant: Of course. Where would you like to go?\n"
    )


def test_spoken_query_transcript_setting_keeps_the_question_as_text(fixture, tmp_path):
    recorder = Recorder()
    run(fixture, tmp_path, ScriptedBackend(recorder), spoken_query_text="transcript")
    records = corpus(tmp_path)
    sources = {r.id: r for r in fixture[2]}
    for rid in [i for i in records if i.startswith(("heysquad_human/", "instructs2s/"))]:
        r = records[rid]
        assert r.prompt == sources[rid].metadata and r.context == sources[rid].context
        assert (
            r.response
            == r.response_raw
            == (f"<think>\nThe question is: {r.prompt} I will answer it.\n</think>\n\nMy answer to: {r.prompt}")
        )
        (sent,) = [q for q in recorder.requests if q.messages[-1]["content"] == r.prompt]
        assert sent.messages == (*sources[rid].context, {"role": "user", "content": r.prompt})


def test_splits_are_exact_per_dataset(full, fixture):
    out, _, _ = full
    records = corpus(out)
    val = sorted(i for i, r in records.items() if r.split == "validation")
    per = {}
    for rid in val:
        per[rid.split("/")[0]] = per.get(rid.split("/")[0], 0) + 1
    assert per == {"vctk": 1, "esc50": 1, "gtzan": 1, "clotho": 2}  # floor(10% of 16, 12, 10); clotho is official
    assert {"clotho/000", "clotho/001"} <= set(val)
    for dataset in ("vctk", "esc50", "gtzan"):  # the one with the smallest seeded hash
        ids = [r.id for r in fixture[2] if r.dataset == dataset]
        assert min(ids, key=lambda i: stable_seed(0, "split", i)) in val
    assert records["clotho/003"].provenance["split_rule"] == "source"  # kept as the sources gave it
    assert records["vctk/003"].provenance["split_rule"] == "seeded 0.1"
    other = plan_sources([str(fixture[0])], 0.1, seed=1).splits
    assert {r.id for r in fixture[2] if other.split_of(r) == "validation"} != set(val)  # the seed matters


def test_split_plan_breaks_hash_ties_by_id_and_refuses_duplicate_ids(fixture, tmp_path, monkeypatch):
    from alarm.corpus import pipeline

    real = pipeline.split_hash
    # every vctk id shares one hash (a collision, made certain): the smallest id wins the one validation place
    monkeypatch.setattr(pipeline, "split_hash", lambda seed, rid: 0 if rid.startswith("vctk/") else real(seed, rid))
    plan = plan_sources([str(fixture[0])], 0.1, seed=0)
    vctk = [r for r in fixture[2] if r.dataset == "vctk"]
    assert [r.id for r in vctk if plan.splits.split_of(r) == "validation"] == ["vctk/000"]
    assert plan.shard_ids == tuple(r.id for r in fixture[2])
    monkeypatch.undo()
    write_jsonl([*fixture[2], fixture[2][5]], tmp_path / "twice.jsonl")
    with pytest.raises(RecordError, match="'vctk/005': id appears twice in the sources"):
        plan_sources([str(tmp_path / "twice.jsonl")], 0.1, seed=0)


def test_same_records_whatever_the_sharding_and_chunking(fixture, full, tmp_path):
    out, _, _ = full
    for k in range(3):
        summary = run(fixture, tmp_path / "sharded", num_shards=3, shard_index=k, chunk_size=5)
        assert summary.complete
        for path in glob.glob(str(tmp_path / "sharded" / "corpus" / f"s{k:05d}of00003-*.parquet")):
            assert {shard_of(r.id, 3) for r in read_records(path)} == {k}
    merged = tmp_path / "merged"
    info = merge([str(tmp_path / "sharded")], str(merged))
    assert info["records"] == {"train": 46, "validation": 5} and info["rejects"] == 3
    one, three = corpus(out), corpus(merged)
    assert sorted(one) == sorted(three)
    assert all(strip_times(one[i]) == strip_times(three[i]) for i in one)


def test_reply_openings_start_the_prompter_replies_and_change_no_record(fixture, full, tmp_path):
    out, _, _ = full
    recorder = Recorder()
    assert run(fixture, tmp_path / "opened", ScriptedBackend(recorder), reply_openings=True).complete
    for stage in ("prompts", "filter"):
        requests = recorder.stage_requests(stage)
        assert requests and {r.opening for r in requests} == {instructions.OPENINGS[stage]}
        assert all(not r.prefix for r in requests)  # an opening is part of the request, not a continuation
    assert all(not r.opening for r in recorder.stage_requests("respond"))
    # the replies are parsed with their opening: the same records as the build without openings
    one, opened = corpus(out), corpus(tmp_path / "opened")
    assert sorted(one) == sorted(opened)
    assert all(strip_times(one[i])["prompt_candidates"] == strip_times(opened[i])["prompt_candidates"] for i in one)
    assert all(one[i].prompt == opened[i].prompt and one[i].response == opened[i].response for i in one)


def test_merge_checks_shards_and_duplicates(fixture, full, tmp_path):
    out, _, _ = full
    run(fixture, tmp_path / "half", num_shards=2, shard_index=0)
    with pytest.raises(ValueError, match="shards not finished: s00001of00002"):
        merge([str(tmp_path / "half")], str(tmp_path / "m1"))
    info = merge([str(tmp_path / "half")], str(tmp_path / "m1"), allow_partial=True)
    assert 0 < sum(info["records"].values()) < 51
    with pytest.raises(RecordError, match="appears twice"):
        merge([str(out), str(tmp_path / "half")], str(tmp_path / "m2"), allow_partial=True)
    info = merge([str(out)], str(tmp_path / "m3"), rows_per_file=20)
    names = sorted(os.listdir(tmp_path / "m3" / "data"))
    assert names == [f"train-0000{k}-of-00003.parquet" for k in range(3)] + ["validation-00000-of-00001.parquet"]
    ids = [r.id for p in corpus_files(str(tmp_path / "m3")) if "train" in p for r in read_records(p)]
    assert ids == sorted(ids) and len(ids) == 46


def test_merge_holds_one_output_file_of_records_at_a_time(full, tmp_path, monkeypatch):
    import weakref

    from alarm.corpus import shards

    out, _, _ = full
    refs, peaks = [], []
    real_read, real_write = shards.read_records, shards.write_parquet

    def tracked_read(path):
        for record in real_read(path):
            refs.append(weakref.ref(record))
            yield record

    def write(records, path):
        peaks.append(sum(r() is not None for r in refs))
        return real_write(records, path)

    monkeypatch.setattr(shards, "read_records", tracked_read)
    monkeypatch.setattr(shards, "write_parquet", write)
    info = merge([str(out)], str(tmp_path / "m"), rows_per_file=10)
    assert info["records"] == {"train": 46, "validation": 5} and len(peaks) == 5 + 1
    assert max(peaks) == 10  # one output file's records, never the corpus
    assert not glob.glob(str(tmp_path / "m" / ".tmp-*"))
    monkeypatch.undo()
    merged = corpus(tmp_path / "m")
    assert [r.id for p in corpus_files(str(tmp_path / "m")) for r in read_records(p)] == sorted(
        merged, key=lambda i: (merged[i].split, i)
    )
    assert all(strip_times(merged[i]) == strip_times(r) for i, r in corpus(out).items())


def test_resume_after_limit_and_stage_by_stage(fixture, full, tmp_path):
    out, _, _ = full
    target = tmp_path / "resumed"
    first = run(fixture, target, limit=10)
    assert not first.complete and len(corpus(target)) == 10
    run(fixture, target, stages=("audio", "prompts", "filter"))  # Q stages for everything...
    assert len(corpus(target)) == 10
    backend = ScriptedBackend(Recorder())
    last = run(fixture, target, backend, stages=("respond", "rephrase"))  # ...then the RLM stages
    assert last.complete
    assert not backend.responder.stage_requests("prompts")  # nothing was asked twice
    assert backend.calls == (51 - 10) + (44 - 10)  # respond the 41 new, rephrase the 34 new
    again, done = corpus(target), corpus(out)
    assert sorted(again) == sorted(done) and all(strip_times(again[i]) == strip_times(done[i]) for i in done)
    assert run(fixture, target).stages[1].pending == 0  # a finished build has nothing left to do


def test_stages_hold_one_chunk_of_records_at_a_time(fixture, tmp_path, monkeypatch):
    """Every record read from a file is tracked; when a chunk is committed at most that chunk is alive.

    Records hold no reference cycles, so reference counting frees them at once (no gc needed).
    """
    import weakref

    from alarm.corpus import pipeline, shards

    refs, peaks = [], []
    real_read, real_commit = pipeline.read_records, shards.ShardFiles.commit

    def tracked_read(path):
        for record in real_read(path):
            refs.append(weakref.ref(record))
            yield record

    def commit(self, stage, accepted, rejected):
        peaks.append(sum(r() is not None for r in refs))
        return real_commit(self, stage, accepted, rejected)

    monkeypatch.setattr(pipeline, "read_records", tracked_read)  # the sources
    monkeypatch.setattr(shards, "read_records", tracked_read)  # each stage's input, from the previous stage's files
    monkeypatch.setattr(shards.ShardFiles, "commit", commit)
    assert run(fixture, tmp_path / "o", chunk_size=4).complete
    assert len(peaks) == 14 + 4 * 13  # 54 then 51 records per stage, in chunks of 4
    assert max(peaks) <= 4 + 1  # the chunk, and at most one record the reader holds ahead


def test_changed_settings_are_refused_on_resume(fixture, tmp_path):
    run(fixture, tmp_path / "o", limit=2)
    with pytest.raises(ValueError, match="other settings \\(seed differ"):
        run(fixture, tmp_path / "o", seed=1)
    run(fixture, tmp_path / "o", limit=3, chunk_size=7)  # where and how much to run may change


def test_thinking_budgets_reach_the_rlm_stages(fixture, tmp_path):
    run(fixture, tmp_path / "b", thinking_budget=10, respond_thinking_budget=3)
    records = corpus(tmp_path / "b")
    r = records["esc50/004"]
    # R0: 3 words of reasoning, the closing sentence, then the answer the RLM goes on to give
    assert r.response_raw == think_text(
        "The description says: " + DEFAULT_CLOSING, f"From the description: {r.metadata}."
    )
    # the rephrasing's own reasoning is cut at 10 words; the target keeps the rewritten blocks
    assert r.rephrase_reasoning == ("I need to replace each written reference with what is " + DEFAULT_CLOSING).strip()
    assert r.response == think_text("I hear: " + DEFAULT_CLOSING, f"I heard: {r.metadata}.")
    assert r.provenance["rephrase_budget_reached"] and r.provenance["respond_budget_reached"]
    spoken = records["heysquad_human/000"]
    assert (
        spoken.response
        == spoken.response_raw
        == think_text("The question is: " + DEFAULT_CLOSING, f"My answer to: {spoken.metadata}")
    )
    assert "rephrase_budget_reached" not in spoken.provenance
    report, _ = build_report(str(tmp_path / "b"))
    assert (report["retries"]["respond_budget_reached"], report["retries"]["rephrase_budget_reached"]) == (51, 44)


# -- bad LLM output ---------------------------------------------------------------------------------------

ALWAYS = object()


class Faulty:
    """RulesResponder, except for scripted (stage, case) -> outputs by call index (ALWAYS: every call)."""

    def __init__(self, faults):
        self.faults = faults
        self.rules = RulesResponder()

    def __call__(self, request, index):
        system = request.messages[0]["content"]
        stage = next(n for n, i in instructions.INSTRUCTIONS.items() if i.system == system)
        case = re.search(r"case (\w+)", request.messages[-1]["content"]).group(1)
        outputs = self.faults.get((stage, case))
        if outputs is not None:
            if outputs[0] is ALWAYS:
                return outputs[1]
            if index < len(outputs):
                if isinstance(outputs[index], Exception):
                    raise outputs[index]
                return outputs[index]
        return self.rules(request, index)


CASES = {
    ("prompts", "nolist"): ["no list here at all"],  # then fine
    ("prompts", "empty"): [ALWAYS, "<prompts>\n</prompts>"],
    ("prompts", "refuses"): [ALWAYS, "I'm sorry, but I can't help with that."],
    ("prompts", "badtags"): [ALWAYS, "<prompts>\n1. [zh] hello there\n2. [xx] hi\n3. no tag\n</prompts>"],
    ("prompts", "long"): [ALWAYS, "word " * 500],
    ("filter", "noverdict"): [ALWAYS, "all fine"],
    ("filter", "alldrop"): [
        ALWAYS,
        "<verdicts>\n" + "\n".join(f"{i}. drop: vague" for i in range(1, 9)) + "\n</verdicts>",
    ],
    ("respond", "unterminated"): [ALWAYS, "thinking and thinking"],
    ("respond", "refusesonce"): ["hmm</think>\n\nI cannot listen to audio, sorry."],
    ("respond", "emptyanswer"): [ALWAYS, "all thought</think>\n\n   "],
    ("rephrase", "noblock"): [ALWAYS, "done</think>\n\nHere is the rewrite: I hear a dog."],
    ("rephrase", "rrefuses"): [ALWAYS, "no</think>\n\nI'm sorry, I can't do that."],
    ("rephrase", "emptyrewrite"): [
        ALWAYS,
        "ok</think>\n\n<rewritten_reasoning>\nx\n</rewritten_reasoning>\n<rewritten_answer>\n\n</rewritten_answer>",
    ],
}
EXPECTED_REJECTS = {  # id -> (stage, reason, attempts)
    "cases/empty": ("prompts", "empty candidate list", 3),
    "cases/refuses": ("prompts", "refusal", 3),
    "cases/badtags": ("prompts", "no usable candidate", 3),
    "cases/long": ("prompts", "over-length", 3),
    "cases/noverdict": ("filter", "no verdict list", 3),
    "cases/alldrop": ("filter", "no prompt kept", 1),
    "cases/unterminated": ("respond", "unterminated <think>", 3),
    "cases/emptyanswer": ("respond", "empty answer", 3),
    "cases/noblock": ("rephrase", "no rewrite block", 3),
    "cases/rrefuses": ("rephrase", "refusal", 3),
    "cases/emptyrewrite": ("rephrase", "empty rewrite", 3),
}


def _cases(tmp_path, names):
    records = [
        SourceRecord(f"cases/{n}", "cases", "sound", "train", f"{n}.wav", 0.0, 1.0, f"case {n}: a dog barks")
        for n in names
    ]
    write_jsonl(records, tmp_path / "cases.jsonl")
    return BuildConfig(
        sources=(str(tmp_path / "cases.jsonl"),),
        output=str(tmp_path / "out"),
        audio_check="none",
        num_candidates=8,
        progress=False,
        validation_fraction=0.0,
    )


def test_bad_output_is_retried_then_rejected_with_stage_and_reason(tmp_path):
    names = sorted({case for _, case in CASES} | {"fine"})
    config = _cases(tmp_path, names)
    config = BuildConfig.from_dict({**config.__dict__, "prompter_sampling": {"max_tokens": 300}})
    backend = ScriptedBackend(Faulty(CASES))
    summary = build(config, {"prompter": backend, "rlm": backend})
    assert summary.complete
    assert {s.stage: s.retries for s in summary.stages} == {
        "audio": 0,
        "prompts": 9,
        "filter": 2,
        "respond": 5,
        "rephrase": 6,
    }
    rejects = {r["id"]: (r["stage"], r["reason"], r["attempts"]) for r in reject_rows(config.output)}
    assert rejects == EXPECTED_REJECTS
    records = corpus(config.output)
    assert sorted(records) == ["cases/fine", "cases/nolist", "cases/refusesonce"]
    assert records["cases/nolist"].provenance["stages"]["prompts"]["attempts"] == 2
    assert records["cases/refusesonce"].provenance["stages"]["respond"]["attempts"] == 2
    assert records["cases/fine"].provenance["stages"]["respond"]["attempts"] == 1
    bad = {r["id"]: r for r in reject_rows(config.output)}
    assert bad["cases/long"]["detail"] == "hit max_tokens after 300 tokens"
    assert bad["cases/refuses"]["last_output"] == "I'm sorry, but I can't help with that."
    report, _ = build_report(config.output)
    assert report["retries"]["per_stage"]["prompts"]["llm_retries"] == 1 + 4 * 2  # nolist once, 4 cases twice


def test_a_failing_batch_is_retried_and_a_dead_backend_stops_the_job(tmp_path):
    config = _cases(tmp_path, ["a", "b", "c"])
    flaky = ScriptedBackend(Faulty({("respond", "b"): [RuntimeError("CUDA out of memory")]}))
    assert build(config, {"prompter": flaky, "rlm": flaky}).complete
    records = corpus(config.output)
    assert [records[i].provenance["stages"]["respond"]["attempts"] for i in sorted(records)] == [2, 2, 2]

    config = BuildConfig.from_dict({**config.__dict__, "output": str(tmp_path / "dead"), "max_backend_errors": 3})

    def gone(request, index):
        raise ConnectionError("server gone")

    good, dead = ScriptedBackend(), ScriptedBackend(gone)
    with pytest.raises(BackendUnavailable, match="3 backend requests failed in a row"):
        build(config, {"prompter": good, "rlm": dead})
    assert not reject_rows(config.output)  # nothing was rejected for the backend's sake
    assert build(config, {"prompter": good, "rlm": good}).complete
    assert sorted(corpus(config.output)) == ["cases/a", "cases/b", "cases/c"]


LEAKY = (
    "ok</think>\n\n<rewritten_reasoning>\nThe description says: a dog barks.\n</rewritten_reasoning>\n"
    "<rewritten_answer>\nI heard a dog, according to the labels.\n</rewritten_answer>"
)


@pytest.mark.parametrize("check", [True, False])
def test_rephrase_exposure_check_retries_then_rejects(tmp_path, check):
    config = _cases(tmp_path, ["fine", "leakyonce", "leaky"])
    config = BuildConfig.from_dict({**config.__dict__, "rephrase_exposure_check": check})
    backend = ScriptedBackend(Faulty({("rephrase", "leakyonce"): [LEAKY], ("rephrase", "leaky"): [ALWAYS, LEAKY]}))
    assert build(config, {"prompter": backend, "rlm": backend}).complete
    records, rejects = corpus(config.output), reject_rows(config.output)
    attempts = {i: r.provenance["stages"]["rephrase"]["attempts"] for i, r in records.items()}
    if not check:  # the paper's pipeline: every well-formed rewrite is a target, exposed or not
        assert attempts == {"cases/fine": 1, "cases/leakyonce": 1, "cases/leaky": 1} and not rejects
        assert records["cases/leaky"].response == think_text(
            "The description says: a dog barks.", "I heard a dog, according to the labels."
        )
        return
    assert attempts == {"cases/fine": 1, "cases/leakyonce": 2}
    assert records["cases/leakyonce"].response.startswith("<think>\nI hear: case leakyonce: a dog barks.")
    (reject,) = rejects
    assert (reject["id"], reject["stage"], reject["reason"], reject["attempts"]) == (
        "cases/leaky",
        "rephrase",
        "target exposes the text",
        3,
    )
    assert reject["detail"] == "'description says', 'according to the labels'" and reject["last_output"] == LEAKY
    report, _ = build_report(config.output)
    assert report["exposure"]["target_rate"] == 0.0 and report["exposure"]["r0_rate"] == 1.0
    assert report["rejects_by_reason"] == {"rephrase": {"target exposes the text": 1}}


# -- report -------------------------------------------------------------------------------------------------


def test_report_numbers_on_the_scripted_build(full, tmp_path):
    out, _, _ = full
    report = write_report(str(out), str(tmp_path))
    assert report["stages"] == {
        "audio": {"passed": 51, "rejected": 3},
        **{s: {"passed": 51, "rejected": 0} for s in ("prompts", "filter", "respond", "rephrase")},
    }
    assert report["rejects_by_reason"] == {"audio": {reason: 1 for reason in BAD_AUDIO.values()}}
    table = report["table1"]["by_category"]
    assert {c: table[c]["instances"] for c in table} == {
        "instruction": 7,
        "music": 10,
        "sound": 18,
        "speech": 16,
        "total": 51,
    }
    assert table["music"]["hours"] == round(10 * 1.5 / 3600, 6) and table["speech"]["hours"] == round(16 / 3600, 6)
    # spoken queries' prompts are their contexts: "" twice (HeySQuAD alone), the passage twice
    assert table["instruction"]["unique_prompts"] == 5
    assert report["exposure"] == {
        "records": 44,
        "r0_rate": 1.0,
        "target_rate": 0.0,
        "prompt_rate": 0.0,
        "r0_top_phrases": {"description says": 44, "from the description": 44},
        "target_top_phrases": {},
    }
    cands = report["candidates"]
    assert (cands["candidates"], cands["kept"], cands["lexical_exposure_rate"]) == (352, 264, 0.125)
    assert cands["dropped_by_reason"] == {"exposes the text": 44, "judge": 44}
    langs = report["languages"]
    assert sum(langs["chosen_prompts"].values()) == 51 and langs["chosen_prompts"]["transcript"] == 7
    assert langs["candidates"] == {"en": 264, "de": 44, "fr": 44}
    assert report["retries"]["llm_retries"] == 0 and report["retries"]["transport_retries"] == 0
    markdown = (tmp_path / "report.md").read_text()
    assert "| audio | 51 | 3 | audio missing (1), audio unreadable (1), segment outside the audio (1) |" in markdown
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    merge([str(out)], str(tmp_path / "merged"))
    again, _ = build_report(str(tmp_path / "merged"))
    for key in ("stages", "rejects_by_reason", "table1", "exposure", "candidates", "languages"):
        assert again[key] == report[key]


# -- sampled output is a function of the record, not of the run ---------------------------------------------


class Killed(BaseException):
    """The process dying mid-stage (a BaseException: the pipeline must not turn it into a reject)."""


class DiesAfter:
    """A backend that delegates to ``inner`` and dies on its ``calls + 1``-th batch."""

    def __init__(self, inner, calls):
        self.inner, self.left = inner, calls

    def complete(self, requests):
        if self.left == 0:
            raise Killed
        self.left -= 1
        return self.inner.complete(requests)

    def describe(self):
        return self.inner.describe()

    def close(self):
        pass


def test_killed_and_resumed_tiny_model_build_samples_the_same_text(fixture, tmp_path):
    """Q and the tiny RLM sample (temperature 1); a build killed mid-stage three times and resumed
    with other chunk and batch sizes gives the same records and rejects (with their texts)."""
    import torch

    from alarm.corpus.backends import TransformersBackend

    torch.set_num_threads(1)
    spoken = [r for r in fixture[2] if r.dataset in ("heysquad_human", "instructs2s")][:4]
    picked = spoken + [r for r in fixture[2] if r.dataset == "esc50"][:2]  # Q never writes a list in 8 tokens
    write_jsonl(picked, tmp_path / "sources.jsonl")
    tiny = TransformersBackend.from_name("tiny-al-whisper-r")
    sampling = {"temperature": 1.0, "top_p": 1.0, "top_k": 300}

    def config(out, chunk_size):
        return BuildConfig(
            sources=(str(tmp_path / "sources.jsonl"),),
            output=str(tmp_path / out),
            audio_check="none",
            num_candidates=4,
            max_attempts=2,
            respond_thinking_budget=4,
            prompter_sampling=SamplingParams(max_tokens=8, **sampling),
            rlm_sampling=SamplingParams(max_tokens=24, **sampling),
            chunk_size=chunk_size,
            progress=False,
        )

    def backend(batch_size):
        return TransformersBackend(tiny.model, tiny.tokenizer, batch_size=batch_size)

    whole = backend(8)
    assert build(config("whole", 8), {"prompter": whole, "rlm": whole}).complete
    kills = 0
    for calls in (1, 2, 3, 10_000):  # die on the 2nd, 3rd, 4th batch of each run; the last run finishes
        dying = DiesAfter(backend(2), calls)
        try:
            summary = build(config("killed", 3), {"prompter": dying, "rlm": dying})
        except Killed:
            kills += 1
    assert kills == 3 and summary.complete

    def rejects(out):
        keep = ("id", "stage", "reason", "detail", "attempts", "last_output")
        return sorted(tuple(r[k] for k in keep) for r in reject_rows(str(tmp_path / out)))

    a, b = corpus(tmp_path / "whole"), corpus(tmp_path / "killed")
    assert sorted(a) == sorted(b) and all(strip_times(a[i]) == strip_times(b[i]) for i in a)
    assert rejects("whole") == rejects("killed")
    # the spoken queries need no Q: all four reached the sampling RLM (passed or rejected there)
    assert len(a) + sum(r[1] == "respond" for r in rejects("whole")) == 4


# -- a small non-thinking instruct model (SmolLM2-135M-Instruct) as both Q and the RLM -------------------

SMOL = {  # (stage, case) -> what SmolLM2 wrote in a real build (docs/corpus.md), or close to it
    ("prompts", "smol"): "1. What is the tone of the sound?\n2. Is the sound loud or quiet?\n3. What is the tone of "
    "the sound?\n\nThe answer to this question will be the answer to the next question.",
    ("filter", "smol"): "1. Yes.\n2. No.",
    ("respond", "smol"): "The tone is indeed high, with a high-pitched quality.",
    ("rephrase_answer", "smol"): "The tone is high-pitched.",
    ("prompts", "copy"): "1. A dog barks.\n2. A dog barks.",  # the metadata written out, twice
    ("prompts", "echo"): "1. Does a dog bark?",
    ("filter", "echo"): "1. Yes.",
    ("respond", "echo"): "A:\n\n<audio>case echo: a dog barks</audio>\n\nIn this example, the audio clip is a dog.",
    ("prompts", "meta"): "1. Does a dog bark?",
    ("filter", "meta"): "Yes.",
    ("respond", "meta"): "A dog barks in the audio clip.",
    ("rephrase_answer", "meta"): "This is a rewritten version of the original text. A dog barks.",
    ("prompts", "judged"): "1. Does a dog bark?\n2. Is it raining?",
    ("filter", "judged"): "1. Does a dog bark?\n2. Is it raining?\n\nI'm sorry for any confusion, I'm here to assist.",
}


class Smol:
    """What a small non-thinking model writes, by stage and case; a case not scripted is a plain answer."""

    def __call__(self, request, index):
        system = request.messages[0]["content"]
        stage = next(n for n, i in instructions.INSTRUCTIONS.items() if i.system == system)
        user = request.messages[-1]["content"]
        if stage == "rephrase_answer":  # the request holds R0, not the metadata: find the case by its R0
            case = next(c for (st, c), text in SMOL.items() if st == "respond" and text in user)
        else:
            case = re.search(r"case (\w+)", user).group(1)
        return SMOL.get((stage, case), "A dog barks.")


def test_a_non_thinking_model_builds_plain_targets_and_bad_output_is_rejected_with_reasons(tmp_path):
    config = _cases(tmp_path, ["smol", "copy", "echo", "meta", "judged"])
    config = BuildConfig.from_dict({**config.__dict__, "multilingual_share": 0.0, "rlm_thinks": False})
    backend = ScriptedBackend(Smol())
    backend.thinks = False
    assert build(config, {"prompter": backend, "rlm": backend}).complete
    records = corpus(config.output)
    assert sorted(records) == ["cases/smol"]
    r = records["cases/smol"]
    assert [(c["text"], c["kept"], c["reason"]) for c in r.prompt_candidates] == [
        ("What is the tone of the sound?", True, ""),
        ("Is the sound loud or quiet?", False, "judge: dropped by the judge"),
        ("What is the tone of the sound?", False, "duplicate of candidate 1"),
    ]
    assert r.prompt == "What is the tone of the sound?" and r.provenance["prompt_language"] == "en"
    # a non-thinking RLM: R0 and the target are plain answers, no empty <think></think>
    assert r.response_raw == "The tone is indeed high, with a high-pitched quality."
    assert r.response == "The tone is high-pitched." and r.rephrase_reasoning == ""
    assert {k: r.provenance[k] for k in ("candidate_format", "verdict_format", "rewrite_format")} == {
        "candidate_format": "numbered list",
        "verdict_format": "bare lines",
        "rewrite_format": "plain",
    }
    rejects = {x["id"]: (x["stage"], x["reason"], x["attempts"]) for x in reject_rows(config.output)}
    assert rejects == {
        "cases/copy": ("prompts", "no usable candidate", 3),
        "cases/echo": ("respond", "echoed the request", 3),
        "cases/meta": ("rephrase", "talks about the rewriting", 3),
        "cases/judged": ("filter", "no verdict list", 3),
    }
    report, _ = build_report(config.output)
    assert report["formats"] == {
        "candidates": {"numbered list": 1},
        "verdicts": {"bare lines": 1},
        "rewrites": {"plain": 1},
    }
    assert report["rejects_by_reason"]["respond"] == {"echoed the request": 1}


class Inventive:
    """A small RLM that answers what it is asked, inventing facts the account lacks."""

    ANSWERS = {
        "What is the man's age?": "The man's age is 42.",
        "What does the man say?": 'The man says "seven five one".',
        # a guess between the request's own words: the request is no evidence for "loud"
        "Is the man loud or quiet?": "The man is loud.",
    }

    def __call__(self, request, index):
        system = request.messages[0]["content"]
        stage = next(n for n, i in instructions.INSTRUCTIONS.items() if i.system == system)
        user = request.messages[-1]["content"]
        if stage == "prompts":
            return "<prompts>\n" + "\n".join(f"{i}. [en] {q}" for i, q in enumerate(self.ANSWERS, 1)) + "\n</prompts>"
        if stage == "filter":  # a judge that keeps everything, as a 135M model does
            return "<verdicts>\n1. yes\n2. yes\n3. yes\n</verdicts>"
        if stage == "respond":
            if "case nothing" in user:  # every request of this clip gets an invented answer
                return "The man is a baker from Lyon, 42 years old."
            if "case ramble" in user:  # two sentences, then on to the token limit
                return 'The man says "seven five one". He speaks fast. And then he ' + "goes on " * 40
            if "case endless" in user:  # no sentence ends before the limit
                return "The man says " + "and " * 60
            if "case story" in user:  # the fact asked for, then a story
                return 'The man says "seven five one". He was born in Lyon in 1942.'
            return self.ANSWERS[user.split("</audio>\n\n", 1)[1]]
        answer = user.split("Answer to rewrite:\n", 1)[1]  # rephrase_answer
        if "age is 42" not in answer and "seven" in answer:
            return answer.replace("The man says", "I hear the man say")
        return answer + " He sounds tired after a long day at the factory."


@pytest.mark.parametrize("grounding", [0.25, None])
def test_grounding_rejects_invented_answers_and_tries_the_next_kept_prompt(tmp_path, grounding):
    records = [
        SourceRecord(f"cases/{n}", "cases", "speech", "train", f"{n}.wav", 0.0, 1.0,
                     f'case {n}: a man says "seven five one", speaking fast.')
        for n in ("a", "b", "c", "d", "nothing", "ramble", "endless", "story")
    ]  # fmt: skip
    write_jsonl(records, tmp_path / "cases.jsonl")
    config = BuildConfig(
        sources=(str(tmp_path / "cases.jsonl"),), output=str(tmp_path / "out"), audio_check="none",
        num_candidates=3, multilingual_share=0.0, rlm_thinks=False, validation_fraction=0.0, progress=False,
        grounding=grounding, rlm_sampling=SamplingParams(max_tokens=30),
        respond_max_tokens=None, keep_unfinished=False,  # our setting for small RLMs: cut answers end at a sentence
    )  # fmt: skip
    backend = ScriptedBackend(Inventive())
    backend.thinks = False
    assert build(config, {"prompter": backend, "rlm": backend}).complete
    kept, rejects = corpus(config.output), {r["id"]: r for r in reject_rows(config.output)}
    # A plain answer cut at the token limit keeps its complete sentences; with none, it is over-length.
    ramble = kept["cases/ramble"]
    assert ramble.response_raw == 'The man says "seven five one". He speaks fast.'
    assert ramble.provenance["respond_cut_at_sentence"] is True
    assert not kept["cases/a"].provenance["respond_cut_at_sentence"]
    assert (rejects["cases/endless"]["stage"], rejects["cases/endless"]["reason"]) == ("respond", "over-length")
    del kept["cases/ramble"], rejects["cases/endless"]
    if grounding is None:  # the paper's pipeline: whatever the chosen prompt, its answer is the target
        assert not rejects and len(kept) == 6
        assert any("42" in r.response for r in kept.values()) and "1942" in kept["cases/story"].response
        return
    # An answer that runs on past the account keeps its grounded leading sentences.
    story = kept.pop("cases/story")
    assert story.response_raw == 'The man says "seven five one".'
    assert story.provenance["respond_trimmed_to_grounded"] is True
    # Every clip's only answerable request wins, whichever the filter chose first; the rest say why.
    assert sorted(kept) == ["cases/a", "cases/b", "cases/c", "cases/d"]
    for r in kept.values():
        assert r.prompt == "What does the man say?" and r.response == 'I hear the man say "seven five one".'
        assert r.provenance["prompt_language"] == "en" and not r.provenance["respond_trimmed_to_grounded"]
        assert 1 <= r.provenance["stages"]["respond"]["attempts"] <= 3
    assert {r.provenance["stages"]["respond"]["attempts"] for r in kept.values()} != {1}  # some walked on
    nothing = rejects["cases/nothing"]
    assert (nothing["stage"], nothing["reason"], nothing["attempts"]) == ("respond", "ungrounded answer", 3)
    assert nothing["detail"] == "numbers not in the account: 42"
    report, _ = build_report(config.output)
    assert report["rejects_by_reason"] == {"respond": {"ungrounded answer": 1, "over-length": 1}}
    assert (report["retries"]["respond_cut_at_sentence"], report["retries"]["respond_trimmed_to_grounded"]) == (1, 1)


def test_complete_sentences_cut_after_the_last_sentence_end():
    assert complete_sentences('He says "one two". It is fast. And then') == 'He says "one two". It is fast.'
    assert complete_sentences("Is it loud? Yes! It") == "Is it loud? Yes!"
    assert complete_sentences("It is 2.5 seconds long and") == ""  # a decimal point ends no sentence
    assert complete_sentences("and on and on") == ""


def test_grounded_sentences_keep_the_longest_grounded_lead():
    account, prompt = 'Speech. A woman says "four zero zero", speaking slowly.', "What does she say?"
    answer = 'The woman says "four zero zero". She speaks slowly. The clip was edited to remove effects.'
    assert grounded_sentences(answer, [account, prompt], 0.2) == 'The woman says "four zero zero". She speaks slowly.'
    # a lead that fails alone can pass with the next sentence (the share is over the whole lead)
    assert grounded_sentences("She says it slowly, warmly. She says four zero zero.", [account], 0.2) == (
        "She says it slowly, warmly. She says four zero zero."
    )
    assert grounded_sentences("Her name is Luna. She says four zero zero.", [account], 0.2) == ""
    assert grounded_sentences("She was born in 1990. She says four.", [account], 0.2) == ""  # a number fails all
    # a loop of free words says nothing the check could count: it is cut off, not kept
    assert grounding_problem("No, no, no, no, no, no.", [account, prompt], 0.2) == "a word repeated in a loop: 'No'"
    looped = "The woman speaks slowly.\n\nNo, no, no, no."
    assert grounded_sentences(looped, [account, prompt], 0.2) == "The woman speaks slowly."
    said = 'Speech. A man says "no no no no", speaking fast.'  # unless the account repeats it
    assert grounding_problem('He says "no, no, no, no".', [said], 0.2) == ""


def test_grounding_problem_names_what_the_account_does_not_say():
    account = 'Speech. A woman says "the cat can swim", speaking slowly.'
    assert grounding_problem("The woman's age is 25.", [account, "What is her age?"], 0.25) == (
        "numbers not in the account: 25"
    )
    assert (
        grounding_problem('The woman speaks slowly: "The cat can swim."', [account, "What does she say?"], 0.25) == ""
    )
    assert grounding_problem("I hear a woman; she sounds slow.", [account], 0.25) == ""
    # irregular forms meet their stems, and the words of what is said need no support
    assert grounding_problem('The word that is spoken is "the cat can swim".', [account], 0.2) == ""
    assert grounding_problem('She said "the cat can swim".', [account], 0.2) == ""
    tone = "A steady high-pitched tone, with no speech."
    assert grounding_problem("The sound of a high-pitched tone with no speech.", [tone], 0.25) == ""
    assert grounding_problem("A calm, relaxing melody for meditation.", [tone, "What is it?"], 0.25) == (
        "4 of 4 words not in the account: calm, relaxing, melody, meditation"
    )
    # the share is a threshold: one unsupported word of three passes at 0.5, not at 0.25
    answer, sources = "The man sounds Indonesian.", ['Speech. A man says "hello".']
    assert grounding_problem(answer, sources, 0.5) == "" and grounding_problem(answer, sources, 0.25)


@pytest.mark.slow
def test_real_smollm2_builds_a_corpus_end_to_end(tmp_path):
    """SmolLM2-135M-Instruct as Q and RLM on 3 records: each ends in the corpus or the rejects, one is kept."""
    import numpy as np
    import soundfile as sf

    from alarm import packaged

    if packaged.missing_files(packaged.get("smollm2-135m-instruct")):
        pytest.skip("SmolLM2-135M-Instruct is not installed (alarm models install smollm2-135m-instruct)")
    from alarm.corpus.backends import TransformersBackend

    metas = [
        'Speech. A female voice says "four two eight one", speaking slowly.',
        "A steady high-pitched tone.",
        "White noise, a hissing sound.",
    ]
    records = []
    for i, meta in enumerate(metas):
        sf.write(tmp_path / f"{i}.wav", np.zeros(16000, dtype="float32"), 16000)
        records.append(SourceRecord(f"smol/{i}", "smol", "sound", "train", f"{i}.wav", 0.0, 1.0, meta))
    write_jsonl(records, tmp_path / "sources.jsonl")
    backend = TransformersBackend.from_name("cpu-al-whisper-tiny-r", batch_size=8, num_threads=1)
    assert not backend.thinks
    config = BuildConfig(
        sources=(str(tmp_path / "sources.jsonl"),),
        output=str(tmp_path / "out"),
        audio_root=str(tmp_path),
        num_candidates=4,
        multilingual_share=0.0,
        rlm_thinks=backend.thinks,
        validation_fraction=0.0,
        seed=0,
        prompter_sampling=SamplingParams(max_tokens=96, temperature=0.7, top_p=0.8, top_k=20),
        rlm_sampling=SamplingParams(max_tokens=96, temperature=0.6, top_p=0.95, top_k=20),
        max_attempts=2,
        progress=False,
    )
    assert build(config, {"prompter": backend, "rlm": backend}).complete
    kept = corpus(config.output)
    rejects = reject_rows(config.output)
    assert sorted([*kept, *(r["id"] for r in rejects)]) == [r.id for r in records]  # each exactly once
    assert all(r["stage"] and r["reason"] for r in rejects)
    assert kept, f"no record kept; rejects: {[(r['stage'], r['reason']) for r in rejects]}"
    for r in kept.values():
        assert "<think>" not in r.response and r.response.strip() and r.prompt.strip()


class LongThinker(RulesResponder):
    """An RLM whose R0 thinks past any cap (a reasoning of 40 words, never closed within 12)."""

    def __call__(self, request, index):
        system = request.messages[0]["content"]
        if system == instructions.get("respond").system:
            return "The description says: " + "and then I weigh it " * 8 + f"{THINK_END}\n\nDone."
        return super().__call__(request, index)


def test_r0_is_capped_and_an_unfinished_r0_stays_unfinished(fixture, tmp_path):
    # official (generate_responses.py): R0 capped at max_tokens in all, kept when cut, and the
    # rephrasing leaves it unfinished (no </think>, no answer)
    recorder = Recorder(LongThinker())
    run(fixture, tmp_path, ScriptedBackend(recorder), respond_max_tokens=12, limit=12)
    records = corpus(tmp_path)
    r = next(x for x in records.values() if not x.provenance["special_case"])
    assert r.provenance["respond_unfinished"] is True
    assert r.response_raw.startswith("<think>\nThe description says:") and THINK_END not in r.response_raw
    assert r.response.startswith("<think>\nI hear:") and THINK_END not in r.response  # rewritten, still cut
    assert split_target(r.response)[1:] == ("", False)
    respond = [q for q in recorder.stage_requests("respond")]
    assert respond and {q.params.max_tokens for q in respond} == {12}
    assert recorder.stage_requests("rephrase_unfinished")


def test_unfinished_r0_is_retried_then_rejected_when_not_kept(fixture, tmp_path):
    run(fixture, tmp_path, ScriptedBackend(LongThinker()), respond_max_tokens=12, keep_unfinished=False, limit=12)
    rejects = [r for r in reject_rows(str(tmp_path)) if r["stage"] == "respond"]
    assert rejects and {r["reason"] for r in rejects} == {"over-length"} and {r["attempts"] for r in rejects} == {3}


def test_audio_of_sixty_seconds_or_more_is_rejected(tmp_path):
    # official (validate_and_filter_indexes.py): clips are kept only under 60 s
    records = [
        SourceRecord(f"cases/{n}", "cases", "sound", "train", f"{n}.wav", 0.0, seconds, "a dog barks")
        for n, seconds in (("short", 59.9), ("minute", 60.0), ("long", 75.0))
    ]
    write_jsonl(records, tmp_path / "cases.jsonl")
    config = BuildConfig(sources=(str(tmp_path / "cases.jsonl"),), output=str(tmp_path / "out"), audio_check="none",
                         num_candidates=8, validation_fraction=0.0, progress=False, stages=("audio",))  # fmt: skip
    build(config, {})
    rejects = {r["id"]: r["reason"] for r in reject_rows(config.output)}
    assert rejects == {"cases/minute": "audio too long", "cases/long": "audio too long"}
    assert BuildConfig(sources=("x",), output="o", audio_check="none", max_audio_seconds=None).max_audio_seconds is None


def test_official_corpus_defaults():
    config = BuildConfig(sources=("x",), output="o", audio_check="none")
    assert (config.spoken_query_text, config.respond_max_tokens, config.keep_unfinished) == ("context", 512, True)
    assert config.max_audio_seconds == 60.0 and config.thinking_budget == 1536
    assert config.rephrase_second_pass == "full"  # official: the rewrite gets all 4096 tokens after B
    with pytest.raises(ValueError, match="rephrase_second_pass is one of"):
        BuildConfig(sources=("x",), output="o", audio_check="none", rephrase_second_pass="half")
