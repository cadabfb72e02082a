"""The scripted backend: texts from a Python function (tests, benchmarks, dry runs).

:class:`RulesResponder` is the default function: it answers this project's instructions
with well-formed, known texts derived from the request.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from alarm.corpus import instructions
from alarm.corpus.backends.base import Backend, ChatRequest, Completion, _word_tokens
from alarm.corpus.prompts import THINK_END

Responder = Callable[[ChatRequest, int], str]


class ScriptedBackend(Backend):
    """Completions written by ``responder(request, call_index)``.

    ``call_index`` counts earlier prefix-less calls with the same messages, so a responder
    can fail the first attempt and succeed on the retry. Tokens are whitespace words:
    ``max_tokens`` cuts a text (finish "length"), which is how the thinking budget is
    exercised. A prefixed request (the budget's second pass) gets the responder's text
    after the prefix, or after its ``</think>`` when the prefix already closed the reasoning.
    ``delay_s`` sleeps per request, imitating model latency.
    """

    thread_safe = True

    def __init__(self, responder: Responder | None = None, *, delay_s: float = 0.0, name: str = "scripted") -> None:
        self.responder = responder or RulesResponder()
        self.delay_s = float(delay_s)
        self.name = name
        self.calls = 0
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        out = []
        for r in requests:
            with self._lock:
                self.calls += 1
                if not r.prefix:
                    self._seen[r.key] += 1
                index = self._seen[r.key] - 1
            full = self.responder(replace(r, prefix=""), index)
            text = _continuation(full, r.assistant_text)
            tokens = _word_tokens(text)
            finish = "stop"
            if len(tokens) > r.params.max_tokens:
                text, finish = "".join(tokens[: r.params.max_tokens]), "length"
            if self.delay_s:
                time.sleep(self.delay_s)
            out.append(Completion(text=text, finish_reason=finish, num_tokens=min(len(tokens), r.params.max_tokens)))
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": "scripted", "name": self.name, "responder": type(self.responder).__name__}


def _continuation(full: str, prefix: str) -> str:
    if not prefix or full.startswith(prefix):
        return full[len(prefix) :]
    if THINK_END in prefix and THINK_END in full:
        return full.split(THINK_END, 1)[1]
    return full


class RulesResponder:
    """Well-formed answers to this project's instructions, computed from the request.

    * prompts: ``num_candidates`` candidates, in the asked languages, including one that
      exposes the text (removed by the lexical detector) and one asking for a guess (the
      judge drops it);
    * filter: keeps everything but requests to guess;
    * respond: reasoning and answer that quote "the description" (R0 exposes the text);
    * rephrase: the same reasoning and answer with the written references replaced by
      heard ones, after a short reasoning of its own (rephrase_answer: the answer alone;
      rephrase_unfinished: the cut reasoning alone, still cut);
    * a request with no system message (a spoken query): a reasoning and an answer that
      repeat the question.
    """

    OTHER = {
        "de": "Was hörst du in dieser Aufnahme über {topic}?",
        "fr": "Que remarques-tu dans cet enregistrement à propos de {topic} ?",
        "es": "¿Qué escuchas en esta grabación sobre {topic}?",
        "it": "Che cosa senti in questa registrazione riguardo a {topic}?",
        "zh": "你在这段录音里听到了什么？",
        "ru": "Что ты слышишь в этой записи?",
        "ja": "この録音で何が聞こえますか？",
    }
    ENGLISH = (
        "What do you hear in this recording?",
        "Describe {topic} in one sentence.",
        "According to the provided metadata, what is {topic}?",
        "Guess the weather on the day {topic} was recorded.",
        "Which word fits {topic} best: (A) calm, (B) loud, (C) unclear?",
        "Is there anything unusual about {topic}? Answer yes or no.",
    )

    def __call__(self, request: ChatRequest, call_index: int) -> str:
        messages = request.messages
        system = messages[0]["content"] if messages[0]["role"] == "system" else None
        user = messages[-1]["content"]
        if system is None:
            return f"The question is: {user} I will answer it.{THINK_END}\n\nMy answer to: {user}"
        stage = next((n for n, i in instructions.INSTRUCTIONS.items() if i.system == system), None)
        if stage == "prompts":
            return self.prompts(user)
        if stage == "filter":
            return self.verdicts(user)
        if stage == "respond":
            metadata, _, prompt = user.partition("</audio>")
            metadata = metadata.replace("<audio>", "", 1)
            return (
                f"The description says: {metadata}. The request is: {prompt.strip()} "
                f"I will answer from that.{THINK_END}\n\nFrom the description: {metadata}."
            )
        if stage == "rephrase":
            return self.rephrase(user)
        if stage == "rephrase_unfinished":
            reasoning = user.split("<original_reasoning>\n", 1)[1].split("\n</original_reasoning>", 1)[0]
            heard = reasoning.replace("The description says:", "I hear:")
            return f"I rewrite what is there and stop where it stops.{THINK_END}\n\n" + (
                f"<rewritten_reasoning>\n{heard}\n</rewritten_reasoning>"
            )
        if stage == "rephrase_answer":
            answer = user.split("\n\nAnswer to rewrite:\n", 1)[1]
            return answer.replace("From the description:", "I heard:")
        return "I do not know this instruction."

    @staticmethod
    def topic(metadata: str) -> str:
        return "the clip with " + " ".join(metadata.split()[:3]).rstrip(".,;:")

    def prompts(self, user: str) -> str:
        metadata = user.split("\n", 1)[1].split("\n\nWrite ", 1)[0]
        k = int(re.search(r"Write (\d+) requests", user).group(1))
        n_other_match = re.search(r"Write (\d+) of them in languages other than English, chosen among ([^;]+);", user)
        others = re.findall(r"\[(\w+)\]", n_other_match.group(2)) if n_other_match else []
        n_other = int(n_other_match.group(1)) if n_other_match else 0
        topic = self.topic(metadata)
        lines = []
        for i in range(k):
            if i >= k - n_other:
                lang = others[(i - (k - n_other)) % len(others)]
                text = self.OTHER.get(lang, "{topic}?").format(topic=topic)
            else:
                lang = "en"
                text = self.ENGLISH[i] if i < len(self.ENGLISH) else f"Summarise {{topic}} for a friend, take {i}."
                text = text.format(topic=topic)
            lines.append(f"{i + 1}. [{lang}] {text}")
        return "<prompts>\n" + "\n".join(lines) + "\n</prompts>"

    @staticmethod
    def verdicts(user: str) -> str:
        listed = user.split("\nRequests:\n", 1)[1]
        lines = []
        for line in listed.splitlines():
            number, _, text = line.partition(". ")
            drop = text.startswith("Guess")
            lines.append(f"{number}. no: cannot be answered from the clip" if drop else f"{number}. yes")
        return "<verdicts>\n" + "\n".join(lines) + "\n</verdicts>"

    @staticmethod
    def rephrase(user: str) -> str:
        reasoning = user.split("<original_reasoning>\n", 1)[1].split("\n</original_reasoning>", 1)[0]
        answer = user.split("<original_answer>\n", 1)[1].split("\n</original_answer>", 1)[0]

        def heard(text: str) -> str:
            return text.replace("The description says:", "I hear:").replace("From the description:", "I heard:")

        own = (
            "I need to replace each written reference with what is heard, keep the facts and the order, "
            "and leave the conclusion as it is. The first sentence quotes the description, so it becomes "
            "what I hear; the answer gets the same change."
        )
        return (
            f"{own}{THINK_END}\n\n<rewritten_reasoning>\n{heard(reasoning)}\n</rewritten_reasoning>\n"
            f"<rewritten_answer>\n{heard(answer)}\n</rewritten_answer>"
        )
