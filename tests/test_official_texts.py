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
