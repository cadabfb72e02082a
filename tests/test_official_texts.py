"""Official texts read from a (fabricated) checkout: word for word, never executed, loud on change."""

import json

import pytest

from alarm import official_texts
from alarm.official_texts import ENV_VAR, OfficialTextError, load, resolve
from tests.fixtures.official_checkout import make_checkout


@pytest.fixture
def checkout(tmp_path):
    return make_checkout(tmp_path / "ALARM")


def test_every_registered_text_is_read_word_for_word(checkout):
    texts = load(checkout)
    assert set(texts.texts) == set(official_texts.TEXTS)
    assert texts.text("eval.system") == "STAND-IN system. Options look like '(Option_{option_ID}) {option_value}'."
    assert texts.template("eval.option").render(index=2, text="dog") == "[opt 2] dog\n"
    instruction = texts.template("eval.instruction").render(question="Why?", options="A\nB\n")
    assert instruction == "STAND-IN instruction.\nQ: Why?\nO: A\nB\nend\n"
    assert texts.template("ensemble.header").render(index=1, count=2) == "STAND-IN header 1 of 2:\n"
    assert texts.template("ensemble.intro").render(count=2) == "STAND-IN intro for 2 listens. Combine them.\n\n"
    assert texts.text("ensemble.separator") == "|sep|"
    assert texts.text("thinking.closing") == "\n\nSTAND-IN closing.\n</think>\n\n"
    assert texts.text("chat.system") == "STAND-IN open system."
    assert texts.text("corpus.respond.system") == "STAND-IN respond system. Answer the prompt."
    assert texts.template("corpus.respond.user").render(metadata="M", prompt="P") == "<a>M</a>\n\nP"
    assert texts.template("corpus.rephrase.user").render(response="R") == (
        "STAND-IN rephrase this:\n<RESPONSE>\nR\n</RESPONSE>\n"
    )
    assert (texts.text("corpus.rephrase.think_open"), texts.text("corpus.rephrase.think_end")) == ("<r>", "</r>")
    assert texts.text("corpus.rephrase.closing") == "\n\nSTAND-IN rephrase closing.\n</think>\n\n"


def test_loop_built_text_runs_the_few_shot_loop(checkout):
    system = load(checkout, ["corpus"]).text("corpus.rephrase.system")
    assert system == (
        "STAND-IN rephrase rules.\nExamples:\n"
        "<IN_1>\n<r>first</r> answer one\n</IN_1>\n<OUT_1>\n<r>first, heard</r> answer one\n</OUT_1>\n\n"
        "<IN_2>\n<r>second</r>\n</IN_2>\n<OUT_2>\n<r>second, heard</r>\n</OUT_2>\n\n"
        "End of examples."
    )


def test_literal_braces_survive_as_format_string(checkout):
    # the system text holds '{option_ID}' literally; a str.format template must keep it
    template = load(checkout, ["eval"]).template("eval.system")
    assert template.format_string().format() == template.text


def test_the_official_file_is_never_executed(checkout, tmp_path):
    marker = tmp_path / "executed"
    mcqa = checkout / "generate_vllm_mcqa.py"
    mcqa.write_text(f"open({str(marker)!r}, 'w').write('x')\n" + mcqa.read_text())
    load(checkout)
    assert not marker.exists()


def test_missing_file_names_the_file_and_the_text(checkout):
    (checkout / "generate_vllm.py").unlink()
    with pytest.raises(OfficialTextError, match=r"generate_vllm\.py: missing.*'chat\.system'"):
        load(checkout)
    assert "eval.system" in load(checkout, ["eval"]).texts  # a command that needs no chat text still works


def test_missing_function_or_variable_is_an_error(checkout):
    path = checkout / "generate_vllm_mcqa.py"
    path.write_text(path.read_text().replace("def get_system_prompt", "def get_system_text"))
    with pytest.raises(OfficialTextError, match=r"no function 'get_system_prompt'.*'eval\.system'"):
        load(checkout, ["eval"])
    path.write_text(path.read_text().replace("extra_input_str", "intro_str"))
    with pytest.raises(OfficialTextError, match=r"'ensemble\.intro'.*0 assignments to 'extra_input_str'"):
        load(checkout, ["ensemble"])


def test_changed_text_shape_is_an_error(checkout):
    path = checkout / "generate_vllm_mcqa.py"
    # a new per-request part in the instruction: its slots are no longer question + options
    path.write_text(path.read_text().replace('f"Q: {question}\\n"', 'f"Q: {question} {hint}\\n"'))
    with pytest.raises(OfficialTextError, match=r"'eval\.instruction'.*name 'hint'.*changed"):
        load(checkout, ["eval"])
    make_checkout(checkout)
    path.write_text(path.read_text().replace("return system_prompt", "return system_prompt.strip()", 1))
    with pytest.raises(OfficialTextError, match=r"'eval\.system'.*line \d+"):
        load(checkout, ["eval"])


def test_settings_record_commit_and_hashes(tmp_path):
    root = make_checkout(tmp_path / "ALARM", git=True)
    texts = load(root, ["eval", "thinking"])
    settings = texts.settings()
    assert settings["source"] == "official" and len(settings["commit"]) == 40 and settings["modified"] is False
    assert set(settings["texts"]) == {"eval.system", "eval.instruction", "eval.option", "thinking.closing"}
    assert settings["texts"]["eval.system"]["file"] == "generate_vllm_mcqa.py"
    json.dumps(settings)  # goes into run.json
    (root / "generate_vllm_mcqa.py").write_text((root / "generate_vllm_mcqa.py").read_text() + "\n# edited\n")
    assert load(root, ["eval"]).settings()["modified"] is True
    plain = load(make_checkout(tmp_path / "plain"), ["eval"]).settings()
    assert plain["commit"] is None


def test_resolve_prefers_the_option_then_the_environment(checkout, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve(None) is None
    monkeypatch.setenv(ENV_VAR, str(checkout))
    assert resolve(None, ["eval"]).root == checkout.resolve()
    with pytest.raises(OfficialTextError, match="not a folder"):
        resolve(tmp_path / "nowhere", ["eval"])
    monkeypatch.setenv(ENV_VAR, "")
    assert resolve(None) is None


def test_corpus_r0_uses_the_official_texts_and_provenance_says_so(tmp_path):
    from alarm.corpus import instructions

    root = make_checkout(tmp_path / "ALARM", git=True)
    ours = instructions.get("respond")
    try:
        instructions.use_official_texts(load(root, ["corpus"]))
        system, user = instructions.get("respond").messages(metadata="[00:00-00:02] hi", prompt="What?")
        assert system["content"] == "STAND-IN respond system. Answer the prompt."
        assert user["content"] == "<a>[00:00-00:02] hi</a>\n\nWhat?"
        assert instructions.refs()["respond"].startswith("respond/official@")
        assert instructions.get("prompts") is instructions.INSTRUCTIONS["prompts"]  # not in the official repo
    finally:
        instructions.use_official_texts(None)
    assert instructions.get("respond") is ours


class OfficialCorpusResponder:
    """Answers the fabricated checkout's R0 and rephrasing texts; our prompt writer and filter
    are answered by the rules responder (the official repository has no texts for them)."""

    OWN = "I keep the facts and change each written reference to what is heard. " * 2

    def __init__(self):
        from alarm.corpus.backends import RulesResponder

        self.rules = RulesResponder()
        self.requests = []

    def __call__(self, request, index):
        self.requests.append(request)
        system, user = request.messages[0]["content"], request.messages[-1]["content"]
        if system == "STAND-IN respond system. Answer the prompt.":
            metadata = user.split("<a>", 1)[1].split("</a>", 1)[0]
            return f"The description says: {metadata}.</think>\n\nFrom the description: {metadata}."
        if system.startswith("STAND-IN rephrase rules."):
            sent = user.split("<RESPONSE>\n", 1)[1].split("\n</RESPONSE>", 1)[0]
            heard = sent.replace("The description says:", "I hear:").replace("From the description:", "I heard:")
            return f"{self.OWN}</think>\n\n<answer>\n{heard}\n</answer>"
        return self.rules(request, index)


def _official_build(tmp_path, **over):
    from alarm.corpus import instructions
    from alarm.corpus.backends import ScriptedBackend
    from alarm.corpus.pipeline import BuildConfig, build, corpus_files
    from alarm.corpus.schema import read_records
    from tests.fixtures.corpus import make_fixture

    sources, audio, _ = make_fixture(tmp_path / "fixture")
    responder = OfficialCorpusResponder()
    backend = ScriptedBackend(responder)
    config = BuildConfig(sources=(str(sources),), output=str(tmp_path / "out"), audio_root=str(audio),
                         num_candidates=8, progress=False, limit=10, **over)  # fmt: skip
    instructions.use_official_texts(load(make_checkout(tmp_path / "ALARM", git=True), ["corpus"]))
    try:
        build(config, {"prompter": backend, "rlm": backend})
    finally:
        instructions.use_official_texts(None)
    records = [r for p in corpus_files(config.output) for r in read_records(p)]
    return [r for r in records if r.dataset not in config.spoken_query_datasets], responder


def test_corpus_rephrasing_uses_the_official_exchange_and_closing(tmp_path):
    records, responder = _official_build(tmp_path, thinking_budget=4)
    assert records
    rephrase = {r.messages[-1]["content"]: r for r in responder.requests if "rephrase" in r.messages[0]["content"]}
    for record in records:
        # the whole R0 sent in the official user text, think tags renamed as the official file renames them
        sent = record.response_raw.replace("<think>", "<r>").replace("</think>", "</r>")
        request = rephrase[f"STAND-IN rephrase this:\n<RESPONSE>\n{sent}\n</RESPONSE>\n"]
        assert request.messages[0]["content"] == load(tmp_path / "ALARM", ["corpus"]).text("corpus.rephrase.system")
        assert request.closing == "\n\nSTAND-IN rephrase closing.\n</think>\n\n"
        # the rewrite read from <answer>, the tags renamed back: a target in the RLM's own shape
        heard = record.response_raw.replace("The description says:", "I hear:").replace(
            "From the description:", "I heard:"
        )
        assert record.response == heard and record.response.startswith("<think>\nI hear:")
        assert record.provenance["rewrite_format"] == "official"
        # B = 4 cut the rephraser's reasoning: the official closing sentence ended it
        assert record.provenance["rephrase_budget_reached"] is True
        assert record.rephrase_reasoning.endswith("STAND-IN rephrase closing.")


def _official_format(tmp_path):
    from alarm.corpus import instructions
    from alarm.corpus.stages import OfficialRephraseFormat

    instructions.use_official_texts(load(make_checkout(tmp_path / "ALARM"), ["corpus"]))
    try:
        return OfficialRephraseFormat(instructions.official_rephrase())
    finally:
        instructions.use_official_texts(None)


@pytest.mark.parametrize(
    ("r0", "reply", "target"),
    [
        # cut inside its reasoning: sent closed, as officially, and the target stays cut
        ("<think>\nThe text says hi", "<answer>\n<r>\nI hear hi\n</r>\n</answer>", "<think>\nI hear hi"),
        # a plain answer (no thinking RLM): sent inside added tags, which come off again
        ("The text says hi.", "<answer><r>\nI hear hi.\n</r></answer>", "I hear hi."),
        # the last <answer> counts, and a missing </answer> reads to the end
        (
            "<think>\nA\n</think>\n\nB",
            "<answer>x</answer> <answer>\n<r>\nA2\n</r>\n\nB2",
            "<think>\nA2\n</think>\n\nB2",
        ),  # fmt: skip
    ],
)
def test_official_rephrase_format_keeps_the_shape_of_r0(tmp_path, r0, reply, target):
    from alarm.corpus.schema import CorpusRecord

    fmt = _official_format(tmp_path)
    record = CorpusRecord("d/1", "d", "sound", "train", "a.wav", 0.0, 1.0, "hi", prompt="What?", response_raw=r0)
    sent = fmt.messages(record)[1]["content"]
    assert sent.count("<r>") == 1 and sent.count("</r>") == 1 and "think>" not in sent
    assert fmt.target(record, reply) == (target, "official")


def test_official_rephrase_format_rejects_a_reply_without_answer_or_with_other_tags(tmp_path):
    from alarm.corpus.schema import CorpusRecord
    from alarm.corpus.stages import StageError

    fmt = _official_format(tmp_path)
    r0 = "<think>\nA\n</think>\n\nB"
    record = CorpusRecord("d/1", "d", "sound", "train", "a.wav", 0.0, 1.0, "hi", response_raw=r0)
    with pytest.raises(StageError, match="no rewrite block"):
        fmt.target(record, "<r>\nA2\n</r>\n\nB2")
    with pytest.raises(StageError, match="tags"):  # the reasoning's end lost: it would train an unfinished target
        fmt.target(record, "<answer>\n<r>\nA2 B2\n</answer>")
