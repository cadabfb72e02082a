"""Parsing what the LLMs write: candidates, language tags, exposure, verdicts, seeded choice."""

from collections import Counter

import pytest

from alarm.corpus import instructions
from alarm.corpus.prompts import (
    Candidate,
    ParseError,
    check_language,
    choose,
    exposure_hits,
    extract_block,
    is_refusal,
    parse_candidates,
    parse_verdicts,
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
    assert set(refs) == {"prompts", "filter", "respond", "rephrase", "rephrase_answer"}
    for name, ref in refs.items():
        instr = instructions.get(name)
        assert ref == f"{name}/{instr.version}#{instr.sha}" and len(instr.sha) == 12
    assert len({i.system for i in instructions.INSTRUCTIONS.values()}) == 5  # stages are told apart by system text
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
