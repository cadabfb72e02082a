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

__all__ = ["Instruction", "INSTRUCTIONS", "get", "refs"]


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
You write requests that a person could make after hearing an audio clip. You are given a \
written account of one clip: what is said in it, what sounds or music it contains, and \
attributes such as emotion, speaker traits, recording conditions, genre or quality scores. \
The one who will carry out your requests hears the clip but never sees the written account.

Rules:
1. Each request must be answerable by listening to the clip, using only facts that the account \
settles. Do not ask about anything the account leaves open: ask about background noise only \
if the account describes it, about age only if it gives an age, and so on.
2. Refer to the clip as sound: "the recording", "the speaker", "the music", "what you hear". \
Never refer to the account itself: no mention of metadata, descriptions, captions, labels, \
annotations, transcripts, fields or any text that was given.
3. Vary the form: direct questions, commands, open requests (describe, summarise, continue \
the scene, write something inspired by it), multiple-choice questions with lettered options, \
yes/no questions, requests for a one-word or for a detailed answer.
4. Spread the requests over the different facts of the account, and vary length and tone.
5. Write each request in the language asked for in the user message and start it with that \
language's ISO 639-1 code in square brackets.

Reply with one block and nothing after it:
<prompts>
1. [en] a request in English
2. [fr] une demande en français
</prompts>
One request per line, numbered from 1."""

_PROMPTS_USER = """\
Written account of the clip:
{metadata}

Write {num_candidates} requests. {language_rule}"""

# -- filter: Q judges every candidate -----------------------------------------------------------

_FILTER_SYSTEM = """\
You review requests written about an audio clip. You are given the written account of the \
clip and a numbered list of requests. The one who answers the requests hears the clip and \
never sees the account.

Keep a request only if both are true:
(a) the account holds everything needed to answer it, so nothing has to be guessed or invented;
(b) it speaks of the clip as sound and does not reveal that a written account exists (for \
example by mentioning provided metadata, a given description, labels, captions, a transcript \
or field names).

Reply with one block and nothing after it, one line per request, in order:
<verdicts>
1. keep
2. drop: cannot be answered from the clip
3. drop: mentions the written account
</verdicts>"""

_FILTER_USER = """\
Written account of the clip:
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


INSTRUCTIONS: dict[str, Instruction] = {
    "prompts": Instruction("prompts", "v1", _PROMPTS_SYSTEM, _PROMPTS_USER),
    "filter": Instruction("filter", "v1", _FILTER_SYSTEM, _FILTER_USER),
    "respond": Instruction("respond", "v1", _RESPOND_SYSTEM, _RESPOND_USER),
    "rephrase": Instruction("rephrase", "v1", _REPHRASE_SYSTEM, _REPHRASE_USER),
}


def get(name: str) -> Instruction:
    """The instruction of a stage, with a clear error for an unknown name."""
    try:
        return INSTRUCTIONS[name]
    except KeyError:
        raise KeyError(f"no instruction named {name!r}; known: {sorted(INSTRUCTIONS)}") from None


def refs() -> dict[str, str]:
    """``{name: name/version#sha}`` of every instruction, for provenance."""
    return {name: instr.ref for name, instr in INSTRUCTIONS.items()}


def language_rule(num_candidates: int, multilingual_share: float, languages: tuple[str, ...]) -> str:
    """The sentence telling Q how many candidates to write in which languages."""
    others = [lang for lang in languages if lang != "en"]
    n_other = round(num_candidates * multilingual_share) if others else 0
    if n_other == 0:
        return "Write all of them in English ([en])."
    return (
        f"Write {n_other} of them in languages other than English, chosen among "
        f"{', '.join(f'[{lang}]' for lang in others)}; write the other {num_candidates - n_other} in English ([en])."
    )
