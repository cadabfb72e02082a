"""How a question and its choices are put to the model.

Two styles, both documented in docs/evaluation.md:

``alarm`` (default: the paper's protocol). The official ALARM evaluation
(``generate_vllm_mcqa.py``) uses one prompt for all four benchmarks: a system prompt saying
that options come as ``(Option_<ID>) <text>`` and that the answer is the option ID alone
between ``<answer>`` and ``</answer>``; a user turn with the instruction, the question inside
``<question>`` tags and the options, numbered from 0, inside ``<options>`` tags; the audio
sits before this text in the user turn. The structure and the ID scheme are the official
ones; the sentences are this project's own. With ``texts`` (``--official-texts``, see
:mod:`alarm.official_texts`) the system prompt, the instruction and the option lines are the
official ones, read from a checkout of the official repository.

``letters``: the format of the MMSU and AIR-Bench reference inference scripts: one line asking
for the letter only, the question, then ``A. <text>`` lines with the official letters.

``options``: the options as a plain list, and the answer asked for in the option's own words.
For small instruct models (SmolLM2-135M): given letters, they write a letter that does not
match the option text they write next to it ("B. speech" when speech is C); given no letters,
they copy the option text, which extraction reads exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alarm.evaluation.benchmarks.base import Item

if TYPE_CHECKING:
    from alarm.official_texts import OfficialTexts

STYLES = ("alarm", "letters", "options")

ALARM_SYSTEM = (
    "You are a model that listens to audio. Each request gives you an audio clip, a question about "
    "it, and answer options written as '(Option_<ID>) <text>'.\n\n"
    "Listen to the audio and pick the option that answers the question. Write your final answer "
    "between <answer> and </answer>: only the number <ID> of the chosen option, nothing else. "
    "Always give exactly one valid <ID>, even when you are unsure.\n\n"
    "Correct format:\n<answer>0</answer>\n\n"
    "Wrong format (extra text inside or around the tags):\n<answer>Option 0, because ...</answer>"
)


def scheme(style: str) -> str:
    """The label scheme a style asks the model for (see :func:`alarm.evaluation.answers.extract`)."""
    _check(style)
    return "option_id" if style == "alarm" else "letter"


def system_prompt(style: str, texts: OfficialTexts | None = None) -> str | None:
    """The system prompt of a style (``None``: the model's own default)."""
    _check(style, texts)
    if texts is not None:
        return texts.text("eval.system")
    return ALARM_SYSTEM if style == "alarm" else None


def user_prompt(item: Item, style: str, texts: OfficialTexts | None = None) -> str:
    """The user text for one item (the audio is placed before it by the chat layer)."""
    _check(style, texts)
    if texts is not None:
        option = texts.template("eval.option")
        options = "".join(option.render(index=i, text=text) for i, text in enumerate(item.choices))
        return texts.template("eval.instruction").render(question=item.question, options=options)
    if style == "alarm":
        options = "".join(f"(Option_{i}) {text}\n" for i, text in enumerate(item.choices))
        return (
            "Instruction: answer the question inside the <question> tags; the options are inside the "
            "<options> tags. Reply with your final answer only, between <answer> and </answer>: the "
            "number <ID> of the correct option.\n\n"
            f"<question>\n{item.question}\n</question>\n\n"
            f"<options>\n{options}</options>\n\n"
        )
    if style == "options":
        listed = "\n".join(f"- {text}" for text in item.choices)
        return f"{item.question}\nOptions:\n{listed}\nAnswer with one of the options, in its own words."
    listed = ", ".join(item.letters[:-1]) + f" or {item.letters[-1]}"
    options = "\n".join(f"{letter}. {text}" for letter, text in zip(item.letters, item.choices))
    instruction = f"Choose the best answer to the question from the options {listed}; reply with the letter only."
    return f"{instruction}\n\nQuestion: {item.question}\n\n{options}"


def with_metadata(metadata: str, question: str) -> str:
    """A question with a clip's metadata where the audio would be: the metadata baseline's layout,
    the one the corpus pipeline's respond stage shows the RLM (``<audio>...</audio>``)."""
    return f"<audio>{metadata.strip()}</audio>\n\n{question}"


def _check(style: str, texts: OfficialTexts | None = None) -> None:
    if style not in STYLES:
        raise ValueError(f"prompt style is one of {STYLES}, got {style!r}")
    if texts is not None and style != "alarm":
        raise ValueError(f"the official texts ask questions in the alarm style only, not {style!r}")
