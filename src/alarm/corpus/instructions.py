"""Every instruction text the corpus pipeline sends to an LLM, versioned, in one place.

The paper calls them ``I`` (rules for the prompt generator Q, also used to judge candidates)
and ``I_reph`` (rules for self-rephrasing); the official repository publishes its own. The
texts below were written for this project. Each :class:`Instruction` has a name and a
version; ``ref`` (``name/version#sha``) goes into every record's ``provenance``, so a corpus
says exactly which texts produced it. Change a text -> bump its version.

System texts are constant; everything that varies per record or per run (the metadata, how
many candidates, which languages) goes into the user message. That keeps system prompts
cacheable by the server (vLLM prefix caching) and lets a scripted backend tell stages apart
by their system text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alarm.official_texts import OfficialTexts

__all__ = [
    "Instruction",
    "INSTRUCTIONS",
    "OPENINGS",
    "OfficialRephrase",
    "TOPICS",
    "get",
    "official_rephrase",
    "refs",
    "topics",
    "use_official_texts",
]


@dataclass(frozen=True)
class Instruction:
    """A system text plus a user template (``str.format`` fields named in ``fields``)."""

    name: str
    version: str
    system: str
    user_template: str

    @property
    def sha(self) -> str:
        return hashlib.sha256(f"{self.system}\x00{self.user_template}".encode()).hexdigest()[:12]

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}#{self.sha}"

    def messages(self, **fields: str) -> list[dict[str, str]]:
        """``[system, user]`` chat messages with the template filled in."""
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user_template.format(**fields)},
        ]


# -- prompts: Q writes candidate prompts from the metadata --------------------------------------

_PROMPTS_SYSTEM = """\
You write requests that a listener could make after hearing an audio clip. You are told what \
is in the clip; the listener hears the clip but never reads what you were told.

Rules:
1. Ask only about what the clip settles: what is said, the voices, the sounds, the music, \
the mood. Do not ask about anything it leaves open.
2. Speak of the clip as sound ("the recording", "the speaker", "what you hear"). Never mention \
a description, metadata, captions, labels, a transcript or any given text.
3. Vary the form: questions, commands, yes/no questions, multiple choice with lettered \
options, requests to describe or summarise.
4. Start each request with its language code in square brackets.

Reply like this:
<prompts>
1. [en] What does the speaker say?
2. [en] What kind of sound is it?
</prompts>"""

_PROMPTS_USER = """\
The clip:
{metadata}

Write {num_candidates} requests, about: {topics}. {language_rule}"""

#: What Q's requests should cover, by the record's category. Named topics steer a small model
#: away from what no clip settles (SmolLM2-135M, told only the clip, asks mostly for a
#: speaker's age, name or job: 26 of 48 candidates on the demo's speech clips; with the speech
#: topics, 2 of 48); a large model covers them and more. v4 names the facts speech and sound
#: accounts carry (who speaks, how fast; pitch, rhythm) instead of "the speaker's voice" and
#: "loudness", which drew requests no account settles ("What is the tone of the voice?", "Is
#: the sound loud or quiet?", the old format example) and then invented answers.
TOPICS: dict[str, str] = {
    "speech": "the words that are said; whether a man or a woman speaks; how fast or slowly they speak",
    "sound": "what the sound is; its pitch or rhythm; whether there is speech",
    "music": "the instruments; the mood; the tempo and rhythm",
    "instruction": "what is said; what the speaker asks for",
}


def topics(category: str) -> str:
    """The topics Q's requests cover for a record of ``category`` (any category: the general ones)."""
    return TOPICS.get(category, "what is heard; how it sounds")


# -- filter: Q judges every candidate -----------------------------------------------------------

_FILTER_SYSTEM = """\
You check requests written about an audio clip. You are told what is in the clip. You never \
answer the requests; you only judge them.

Answer yes for a request if both are true:
(a) what you are told about the clip is enough to answer it, with nothing guessed;
(b) it speaks of the clip as sound and does not mention a description, metadata, labels, \
captions, a transcript or any given text.
Otherwise answer no, with a short reason.

Reply with one line per request, in order:
<verdicts>
1. yes
2. yes
3. no: cannot be answered from the clip
</verdicts>"""

_FILTER_USER = """\
The clip:
{metadata}

Requests:
{candidates}"""

# -- respond: the RLM answers from the metadata (R0) ---------------------------------------------

_RESPOND_SYSTEM = """\
You are a model that understands audio. In each request the audio clip appears between \
<audio> and </audio>, followed by what the user wants to know or have done. Respond to the \
request about the clip directly."""

_RESPOND_USER = """\
<audio>{metadata}</audio>

{prompt}"""

# -- rephrase: the same RLM rewrites R0 as if it had listened ------------------------------------

_REPHRASE_SYSTEM = """\
You rewrite the reasoning and the answer of a text model so that they read as the words of a \
model that listened to the audio itself. The text model was given a written account of an \
audio clip instead of the clip, so it speaks of the account as text: "the metadata says", \
"according to the description", "the transcript shows", "the label is", field names such as \
"emotion:" or "snr:".

Rewrite both parts:
1. Replace every reference to written material with what is heard: "I hear", "the speaker \
sounds", "the recording has", "the music is", "there is a sound of".
2. Keep everything else: the same facts, the same steps in the same order, the same \
conclusion, the same language, about the same length. Add nothing new.
3. Do not mention these rules, the rewriting or the text model.

Reply with exactly these two blocks:
<rewritten_reasoning>
the reasoning, rewritten
</rewritten_reasoning>
<rewritten_answer>
the answer, rewritten
</rewritten_answer>"""

_REPHRASE_USER = """\
The request about the clip was:
{prompt}

<original_reasoning>
{reasoning}
</original_reasoning>
<original_answer>
{answer}
</original_answer>"""


# -- rephrase, unfinished: R0 stopped at its token limit inside its reasoning --------------------
_REPHRASE_UNFINISHED_SYSTEM = """\
You rewrite the reasoning of a text model so that it reads as the thoughts of a model that \
listened to the audio itself. The text model was given a written account of an audio clip \
instead of the clip, so it speaks of the account as text: "the metadata says", "according to \
the description", "the transcript shows", field names such as "emotion:".
The reasoning was cut off before it ended. Rewrite only the part you are given:
1. Replace every reference to written material with what is heard: "I hear", "the speaker \
sounds", "the recording has".
2. Keep everything else: the same facts and steps in the same order, the same language, about \
the same length. Stop where the given reasoning stops; do not finish it and do not add an answer.
3. Do not mention these rules, the rewriting or the text model.
Reply with exactly this block:
<rewritten_reasoning>
the reasoning, rewritten
</rewritten_reasoning>"""

_REPHRASE_UNFINISHED_USER = """\
The request about the clip was:
{prompt}

<original_reasoning>
{reasoning}
</original_reasoning>"""

# -- rephrase, answer only: a non-thinking RLM (no reasoning to rewrite) -------------------------

_REPHRASE_ANSWER_SYSTEM = """\
You rewrite an answer about an audio clip so that it reads as the words of someone who \
listened to the clip. The answer was written from a text about the clip, so it may speak of \
"the description", "the metadata", "the text" or "the label". Replace every such mention \
with what is heard ("I hear", "the speaker sounds", "the recording has"). Keep the same \
facts, language and length; add nothing. Reply with the rewritten answer only."""

_REPHRASE_ANSWER_USER = """\
Request: {prompt}

Answer to rewrite:
{answer}"""

# -- reply openings --------------------------------------------------------------------------------

#: The first words of the prompter's reply in the format its instruction asks for. With
#: ``BuildConfig.reply_openings`` they are sent as the start of the assistant turn (a prefix
#: every backend continues): a small instruct model keeps a format it is already writing in,
#: where told the format only in the rules it often writes something else (SmolLM2-135M: most
#: of its filter replies had no verdict list at all).
OPENINGS: dict[str, str] = {"prompts": "<prompts>\n1.", "filter": "<verdicts>\n1."}

INSTRUCTIONS: dict[str, Instruction] = {
    # v2: shorter rules a 135M instruct model can follow; the judge answers yes/no (v1: keep/drop)
    # prompts v3: the user message names the topics of the record's category (TOPICS)
    # prompts v4: topics of the facts accounts carry; a format example every clip can answer
    # prompts v5: "whether a man or a woman speaks", not "who speaks (a man, a woman, a child)",
    # which drew age questions (SmolLM2 on 64 speech clips: 67 of 245 candidates asked an age,
    # name or job with v4, 27 of 242 with v5; 37 and 45 asked what is said)
    "prompts": Instruction("prompts", "v5", _PROMPTS_SYSTEM, _PROMPTS_USER),
    # filter v3: the format example keeps two of three (a small judge copies the example's
    # verdicts: SmolLM2 kept 50 candidates of 28 clips instead of 31, docs/corpus.md)
    "filter": Instruction("filter", "v3", _FILTER_SYSTEM, _FILTER_USER),
    "respond": Instruction("respond", "v1", _RESPOND_SYSTEM, _RESPOND_USER),
    "rephrase": Instruction("rephrase", "v1", _REPHRASE_SYSTEM, _REPHRASE_USER),
    "rephrase_answer": Instruction("rephrase_answer", "v1", _REPHRASE_ANSWER_SYSTEM, _REPHRASE_ANSWER_USER),
    # an R0 kept unfinished (BuildConfig.keep_unfinished): the reasoning alone, left unfinished
    "rephrase_unfinished": Instruction(
        "rephrase_unfinished", "v1", _REPHRASE_UNFINISHED_SYSTEM, _REPHRASE_UNFINISHED_USER
    ),
}


@dataclass(frozen=True)
class OfficialRephrase:
    """The official rephrasing exchange (``generate_responses.py``), read from a checkout.

    ``instruction``: the rules with their few-shot examples, and the user text with one field,
    ``{response}``, the whole R0 with its think tags renamed to ``think_open``/``think_end``
    (officially so the RLM does not take them for its own reasoning); the rewrite comes back
    in an ``<answer>`` block with the same renamed tags. ``closing``: the thinking budget's
    closing sentence while rephrasing (it holds ``</think>`` itself).
    """

    instruction: Instruction
    think_open: str
    think_end: str
    closing: str


#: Official texts swapped in by :func:`use_official_texts` (``alarm corpus build --official-texts``).
_OFFICIAL: dict[str, Instruction] = {}
_OFFICIAL_REPHRASE: list[OfficialRephrase] = []  # one or none


def use_official_texts(texts: OfficialTexts | None) -> None:
    """Use the official repository's texts where its stages and ours take the same inputs.

    R0 (``respond``): the official system prompt and metadata-plus-prompt layout
    (``scripts/alarm/generate_responses.py``), read word for word from the checkout.
    Rephrasing: the official exchange (:class:`OfficialRephrase`, :func:`official_rephrase`),
    which the rephrase stage selects as its format; its one instruction stands for our three
    (a finished, an unfinished and an answer-only R0 all go to it whole), so provenance names
    it under each. The prompt writer and its filter keep our texts: the official ones live in
    ``create_prompts.py``, which the official repository imports but does not contain.
    ``None`` restores ours.
    """
    _OFFICIAL.clear()
    _OFFICIAL_REPHRASE.clear()
    if texts is None:
        return
    version = f"official@{(texts.commit or 'checkout')[:12]}"
    _OFFICIAL["respond"] = Instruction(
        "respond", version, texts.text("corpus.respond.system"), texts.template("corpus.respond.user").format_string()
    )
    system, user = texts.text("corpus.rephrase.system"), texts.template("corpus.rephrase.user").format_string()
    for name in ("rephrase", "rephrase_unfinished", "rephrase_answer"):
        _OFFICIAL[name] = Instruction(name, version, system, user)
    _OFFICIAL_REPHRASE.append(
        OfficialRephrase(
            _OFFICIAL["rephrase"],
            texts.text("corpus.rephrase.think_open"),
            texts.text("corpus.rephrase.think_end"),
            texts.text("corpus.rephrase.closing"),
        )
    )


def official_rephrase() -> OfficialRephrase | None:
    """The official rephrasing exchange when official texts are in use, else None (ours)."""
    return _OFFICIAL_REPHRASE[0] if _OFFICIAL_REPHRASE else None


def get(name: str) -> Instruction:
    """The instruction of a stage, with a clear error for an unknown name."""
    if name in _OFFICIAL:
        return _OFFICIAL[name]
    try:
        return INSTRUCTIONS[name]
    except KeyError:
        raise KeyError(f"no instruction named {name!r}; known: {sorted(INSTRUCTIONS)}") from None


def refs() -> dict[str, str]:
    """``{name: name/version#sha}`` of every instruction in use, for provenance."""
    return {name: get(name).ref for name in INSTRUCTIONS}


def num_other_languages(num_candidates: int, multilingual_share: float, languages: tuple[str, ...]) -> int:
    """How many of the candidates Q is asked to write in languages other than English."""
    others = [lang for lang in languages if lang != "en"]
    return round(num_candidates * multilingual_share) if others else 0


def language_rule(num_candidates: int, multilingual_share: float, languages: tuple[str, ...]) -> str:
    """The sentence telling Q how many candidates to write in which languages."""
    others = [lang for lang in languages if lang != "en"]
    n_other = num_other_languages(num_candidates, multilingual_share, languages)
    if n_other == 0:
        return "Write all of them in English ([en])."
    return (
        f"Write {n_other} of them in languages other than English, chosen among "
        f"{', '.join(f'[{lang}]' for lang in others)}; write the other {num_candidates - n_other} in English ([en])."
    )
