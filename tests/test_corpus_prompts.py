"""Parsing what the LLMs write: candidates, language tags, exposure, verdicts, seeded choice."""

from collections import Counter

import pytest

from alarm.corpus import instructions
from alarm.corpus.prompts import (
    Candidate,
    ParseError,
    check_language,
    choose,
    copies_account,
    echoed_markup,
    exposure_hits,
    extract_block,
    is_refusal,
    numbered_run,
    parse_candidates,
    parse_rewritten_answer,
    parse_verdicts,
    rewriting_talk,
    screen_copies,
    screen_exposure,
    split_think,
    text_problem,
    think_text,
)

LANGS = ("en", "de", "zh", "ru")


def test_candidates_are_parsed_with_their_tags_and_checks():
    text = (
        "Sure, here they are.\n<prompts>\n"
        "1. [en] What do you hear?\n"
        "2) [DE] Was hörst du?\n"
        "3. [en] Which instrument plays?\n"
        "   (A) piano (B) violin\n"
        "4. [zh] What is this?\n"  # Latin text under a Chinese tag
        "5. [xx] Unknown tag here\n"
        "6. No tag at all\n"
        "7. [en] what do you HEAR?\n"  # a duplicate, case and spaces aside
        f"8. [en] {'long ' * 30}\n"
        "9. [ru] Что ты слышишь?\n"
        "</prompts>\ntrailing words"
    )
    cands = parse_candidates(text, LANGS, max_chars=100)
    assert [c.language for c in cands] == ["en", "de", "en", "zh", "xx", "", "en", "en", "ru"]
    assert cands[2].text == "Which instrument plays?\n(A) piano (B) violin"  # wrapped line joins its item
    assert [c.kept for c in cands] == [True, True, True, False, False, False, False, False, True]
    assert cands[3].reason == "language tag [zh] does not match the text (latin script)"
    assert cands[4].reason.startswith("language tag [xx] is not one of en, de, zh, ru")
    assert cands[5].reason == "missing language tag"
    assert cands[6].reason == "duplicate of candidate 1"
    assert cands[7].reason == "too long (149 > 100 characters)"  # trailing space stripped


@pytest.mark.parametrize(
    "text,reason",
    [
        ("What do you hear? Nothing numbered here.", "no candidate list"),
        ("2. [en] a list that does not start at one\n3. [en] more", "no candidate list"),
        ("<prompts>\n1. [en] cut off at max_tokens", "no usable candidate"),  # with truncated=True
        ("<prompts>\n\n</prompts>", "empty candidate list"),
        ("<prompts>\nnot numbered\n</prompts>", "empty candidate list"),
        ("<prompts>\n1. [fr] Bonjour\n2. [zh] hello\n</prompts>", "no usable candidate"),
    ],
)
def test_unusable_candidate_lists_raise_with_a_reason(text, reason):
    with pytest.raises(ParseError) as err:
        parse_candidates(text, LANGS, max_chars=100, truncated="cut off" in text)
    assert err.value.reason == reason


def test_script_check_of_language_tags():
    assert check_language("ru", "Что это за звук?", LANGS) == ""
    assert check_language("zh", "这是什么声音？", LANGS) == ""
    assert "cyrillic" in check_language("de", "Что это за звук?", LANGS)
    assert check_language("ja", "この録音", ("en", "ja")) == ""  # kana and kanji are both Japanese
    assert check_language("en", "12345 ?", LANGS) == ""  # no letters: nothing to check


@pytest.mark.parametrize(
    "text",
    [
        "According to the provided metadata, what is the genre?",
        "From the metadata provided, we see: emotion: Neutral",
        "The description says the dog barks.",
        "Based on the given information the speaker is male.",
        "as stated in the caption",
        "the transcript shows that",
        "Laut den Metadaten ist es Jazz.",
    ],
)
def test_exposure_detector_flags_written_account_phrases(text):
    assert exposure_hits(text)


@pytest.mark.parametrize(
    "text",
    [
        "What do you hear in this recording?",
        "Describe the sound in one sentence.",
        "Write a short description of the music.",
        "Transcribe what the speaker says.",
        "I hear a dog barking in the distance.",
    ],
)
def test_exposure_detector_leaves_audio_language_alone(text):
    assert exposure_hits(text) == []


def test_screen_exposure_drops_only_kept_flagged_candidates():
    cands = [
        Candidate("What is heard?", "en"),
        Candidate("Per the given description?", "en"),
        Candidate("x", "", False, "missing language tag"),
    ]
    out = screen_exposure(cands)
    assert [c.kept for c in out] == [True, False, False]
    assert out[1].reason == "exposes the text: 'given description'"
    assert out[2].reason == "missing language tag"


def test_verdicts():
    text = "<verdicts>\n1. keep\n2. drop: asks about noise\n3. DROP\n1. drop: repeated number is ignored\n</verdicts>"
    assert parse_verdicts(text) == {1: (True, ""), 2: (False, "asks about noise"), 3: (False, "dropped by the judge")}
    with pytest.raises(ParseError, match="no verdict list"):
        parse_verdicts("1. The song is a sad ballad.\n2. The genre is folk.")  # answers, not verdicts
    with pytest.raises(ParseError, match="empty verdict list"):
        parse_verdicts("<verdicts>\nall good\n</verdicts>")


def test_split_think_and_think_text():
    assert split_think("reasoning here</think>\n\nThe answer.", True) == ("reasoning here", "The answer.")
    assert split_think("<think>r</think>a", False) == ("r", "a")
    assert split_think("just an answer", False) == ("", "just an answer")
    with pytest.raises(ParseError, match="unterminated <think>"):
        split_think("still thinking", True)
    with pytest.raises(ParseError, match="unterminated <think>"):
        split_think("<think>still thinking", False)
    assert think_text(" r ", " a ") == "<think>\nr\n</think>\n\na"
    assert split_think(think_text("r", "a"), True) == ("r", "a")


def test_stray_tags_special_tokens_and_bad_bytes_are_caught():
    with pytest.raises(ParseError, match="stray think tag"):
        split_think("r</think>answer</think> more", True)
    with pytest.raises(ParseError, match="stray think tag"):
        split_think("r<think>again</think>answer", True)
    assert text_problem("fine text with <b>tags</b> and | pipes |") == ("", "")
    assert text_problem("answer<|im_start|>user") == ("special token", "<|im_start|>")
    assert text_problem("x <|audio|> y") == ("special token", "<|audio|>")
    assert text_problem("caf\ufffd") == ("undecodable bytes", "U+FFFD at character 3")


def test_extract_block_takes_the_last_complete_block():
    assert extract_block("<a>1</a> <a>2</a>", "a") == "2"
    assert extract_block("<a>1</a> <a>2", "a") is None
    assert extract_block("none", "a") is None


@pytest.mark.parametrize(
    "answer,refused",
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I cannot listen to audio files, so I cannot tell.", True),
        ("As an AI, I do not have ears.", True),
        ("I can't answer that.", True),
        ("The speaker sounds happy.", False),
        ("Sorrow fills the song; it is slow and sad.", False),
    ],
)
def test_refusals(answer, refused):
    assert is_refusal(answer) is refused


def test_choice_is_seeded_by_record_and_uniform():
    kept = ["a", "b", "c", "d"]
    assert choose(kept, 0, "ds/1") == choose(list(kept), 0, "ds/1")  # same inputs, same pick
    picks = Counter(choose(kept, 0, f"ds/{i}") for i in range(4000))
    assert set(picks) == {0, 1, 2, 3} and min(picks.values()) > 900  # ~1000 each
    assert len({choose(kept, s, "ds/1") for s in range(40)}) == 4  # the seed matters
    with pytest.raises(ValueError):
        choose([], 0, "ds/1")


def test_instructions_are_versioned_and_recorded():
    refs = instructions.refs()
    assert set(refs) == {"prompts", "filter", "respond", "rephrase", "rephrase_answer", "rephrase_unfinished"}
    for name, ref in refs.items():
        instr = instructions.get(name)
        assert ref == f"{name}/{instr.version}#{instr.sha}" and len(instr.sha) == 12
    assert len({i.system for i in instructions.INSTRUCTIONS.values()}) == 6  # stages are told apart by system text
    msgs = instructions.get("respond").messages(metadata="genre: jazz", prompt="Which genre?")
    assert msgs == [
        {"role": "system", "content": instructions.get("respond").system},
        {"role": "user", "content": "<audio>genre: jazz</audio>\n\nWhich genre?"},
    ]
    with pytest.raises(KeyError, match="no instruction named"):
        instructions.get("nope")


def test_language_rule():
    assert instructions.language_rule(20, 0.2, ("en", "de", "fr")) == (
        "Write 4 of them in languages other than English, chosen among [de], [fr]; "
        "write the other 16 in English ([en])."
    )
    assert instructions.language_rule(20, 0.2, ("en",)) == "Write all of them in English ([en])."
    assert instructions.language_rule(3, 0.1, ("en", "de")) == "Write all of them in English ([en])."


# -- what SmolLM2-135M-Instruct actually wrote (copied from a real build, see docs/corpus.md) -----------

SMOL_PROMPTS = (  # prompts v1: no <prompts> block, no language tags, quoted statements, duplicates
    '1. "A woman with a baby is singing in the background"\n'
    '2. "A woman with a baby is singing"\n'
    '3. "A woman is singing"\n'
    '4. "A woman with a baby is singing"'
)
SMOL_PROMPTS_CHATTER = (  # a list, then chatter that repeats it, cut at max_tokens
    "1. What's the song about?\n2. How long is the song?\n3. What's the style of music?\n4. What's the genre?\n\n"
    "Here are the answers:\n1. What's the song about?\n2. How long is the song?\n3. What's the style of music?\n"
    "4. What's the genre?\n\nThese are just a few examples of how you can ask follow-up questions to help the "
    "listener understand what you're talking about. You can ask a lot of questions and they'll just keep asking you"
)


def test_an_untagged_numbered_list_is_read_with_the_default_language():
    cands = parse_candidates(SMOL_PROMPTS, ("en",), max_chars=400, default_language="en")
    assert [(c.text, c.language, c.kept, c.reason) for c in cands] == [
        ("A woman with a baby is singing in the background", "en", True, ""),
        ("A woman with a baby is singing", "en", True, ""),
        ("A woman is singing", "en", True, ""),
        ("A woman with a baby is singing", "en", False, "duplicate of candidate 2"),
    ]
    with pytest.raises(ParseError) as err:  # no default (candidates were asked in several languages): strict
        parse_candidates(SMOL_PROMPTS, LANGS, max_chars=400)
    assert (err.value.reason, err.value.detail) == ("no usable candidate", "4x missing language tag")


def test_the_first_numbered_run_ends_at_chatter_and_survives_a_cut():
    cands = parse_candidates(SMOL_PROMPTS_CHATTER, ("en",), 400, default_language="en", truncated=True)
    # the list ended before the cut: nothing of it is dropped; the repeated list is not read
    assert [c.text for c in cands if c.kept] == [
        "What's the song about?",
        "How long is the song?",
        "What's the style of music?",
        "What's the genre?",
    ]
    cut = parse_candidates(
        "1. What is the tone?\n2. Is the sound loud or", ("en",), 400, default_language="en", truncated=True
    )
    assert [(c.text, c.kept, c.reason) for c in cut] == [
        ("What is the tone?", True, ""),
        ("Is the sound loud or", False, "cut off at max_tokens"),
    ]


def test_a_list_running_into_the_cut_loses_its_last_item_and_tags_still_count():
    text = "<prompts>\n1. [en] What is the tone?\n2. [de] Ist der Ton hoch?\n3. [en] Is the sound loud or"
    cands = parse_candidates(text, LANGS, 400, truncated=True)
    assert [(c.language, c.kept, c.reason) for c in cands] == [
        ("en", True, ""),
        ("de", True, ""),
        ("en", False, "cut off at max_tokens"),
    ]
    assert [c.kept for c in parse_candidates(text, LANGS, 400)] == [True, True, True]  # not cut: kept


def test_numbered_run_rules():
    assert numbered_run("Sure:\n1. a\n(A) x\n\n2. b\nmore text\n3. c\n\nThe end.\n1. again") == (
        [(1, "a\n(A) x"), (2, "b\nmore text"), (3, "c")],
        False,
    )
    assert numbered_run("1. a\n2. b") == ([(1, "a"), (2, "b")], True)
    assert numbered_run("1. a\n3. skipped a number") == ([(1, "a")], False)


def test_a_wrapped_item_of_an_untagged_list_is_one_candidate():
    # SmolLM2 on a demo clip: a list without <prompts>, an item wrapped onto the next line
    cands = parse_candidates(
        "1. What does she say?\n   It is a clue.\n2. How fast?", ["en"], 300, default_language="en"
    )
    assert [(c.text, c.language, c.kept) for c in cands] == [
        ("What does she say?\nIt is a clue.", "en", True),
        ("How fast?", "en", True),
    ]


@pytest.mark.parametrize(
    "text,count,expected",
    [
        (
            "1. Yes.\n2. Yes.\n3. No.",
            None,
            {1: (True, ""), 2: (True, ""), 3: (False, "dropped by the judge")},
        ),  # SmolLM2
        ("1. Yes.\n2. No.", 3, {1: (True, ""), 2: (False, "dropped by the judge")}),  # SmolLM2: one missing
        (
            "2. no: cannot be answered from the clip\n3. no: cannot be answered from the clip",
            1,
            {
                2: (False, "cannot be answered from the clip"),
                3: (False, "cannot be answered from the clip"),
            },
        ),  # SmolLM2 numbering from 2: request 1 gets no verdict
        (
            "1: keep\nQuestion 2: no, it is not said\n3) drop - vague",
            None,
            {
                1: (True, ""),
                2: (False, "it is not said"),
                3: (False, "vague"),
            },
        ),
        ("Keep\nDrop: vague\nKeep", 2, {1: (True, ""), 2: (False, "vague")}),  # bare lines, in order, at most count
        ("No.", 1, {1: (False, "dropped by the judge")}),  # SmolLM2 judging one request
        (
            "<verdicts>\n1. yes\n2. no: asks about the weather\n</verdicts>",
            None,
            {
                1: (True, ""),
                2: (False, "asks about the weather"),
            },
        ),
    ],
)
def test_verdicts_in_the_forms_a_small_model_writes(text, count, expected):
    assert parse_verdicts(text, count) == expected


@pytest.mark.parametrize(
    "text",
    [
        "1. Keep or Drop\n2. Keep or Drop\n3. Keep or Drop\nQuestion: Is the sound loud or quiet?\n"
        "Answer: The clip is loud.",
        "1. The song about a classic ballad with a dark and ominous sound.\n2. The style of music is a mix of jazz.",
        "1. No one is speaking in the clip.\n2. Yes it is a piano",  # answers that begin with yes/no words
        "1. What's the music?\n2. What's the sound?\n\nI'm sorry for any confusion, I'm here to assist you.",
    ],
)
def test_answers_and_echoed_formats_are_not_verdicts(text):
    with pytest.raises(ParseError) as err:
        parse_verdicts(text, 3)
    assert err.value.reason == "no verdict list"


def test_answer_only_rewrites():
    assert parse_rewritten_answer("The tone is high-pitched.") == "The tone is high-pitched."  # SmolLM2, untagged
    assert parse_rewritten_answer("Rewritten answer: I hear a tone.") == "I hear a tone."
    assert parse_rewritten_answer("<rewritten_answer>\nI hear rain.\n</rewritten_answer>\nDone.") == "I hear rain."
    assert parse_rewritten_answer("<rewritten_answer>\nI hear rain.") == "I hear rain."  # unclosed
    for text, reason in [
        ("   ", "empty rewrite"),
        ("<rewritten_answer>\n</rewritten_answer>", "empty rewrite"),
        ("Answer to rewrite:\nThe metadata says piano.", "echoed the request"),
        ("<original_answer>\nThe metadata says piano.\n</original_answer>", "echoed the request"),
    ]:
        with pytest.raises(ParseError) as err:
            parse_rewritten_answer(text)
        assert err.value.reason == reason


def test_copies_markup_rewriting_talk_and_mid_answer_self_descriptions():
    meta = 'Speech. An old man says "good morning everyone", speaking quietly.'
    assert copies_account("Good morning everyone, speaking quietly.", meta)  # SmolLM2's "request"
    assert not copies_account("What does the old man say?", meta)
    assert not copies_account("Speech.", meta)  # too short to tell
    kept = screen_copies(
        [Candidate("Good morning everyone, speaking quietly.", "en"), Candidate("Who speaks?", "en")], meta
    )
    assert [(c.kept, c.reason) for c in kept] == [(False, "copies the written account"), (True, "")]
    smol_r0 = (
        'A:\n\n<audio>Speech. A well-known person says "good morning everyone", speaking quietly.</audio>\n\nIn this'
    )
    assert echoed_markup(smol_r0) == "<audio>" and echoed_markup("I hear a man.") == ""
    smol_target = "This is a rewritten version of the original text."
    assert rewriting_talk(smol_target, "The audio clip is a speech.") == "rewritten"
    assert rewriting_talk("Rewrite the lyrics: la la.", "Rewrite the lyrics of the song") == ""  # the request's word
    assert is_refusal(
        "The sound of the recording is a hissing sound. I'm sorry for any misunderstanding, but as a model, "
        "I don't have the ability to create music or perform music."
    )
    assert is_refusal("I'm a model. I'm designed to assist users with audio content.")
    assert not is_refusal("The model of the car in the recording sounds old.")
