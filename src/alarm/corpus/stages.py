"""The stages of the self-generation pipeline: what each asks an LLM and what it keeps.

A :class:`Stage` turns one record into a request (or none) and the completion into the next
record, or raises :class:`StageError` with a short reason; the engine in
:mod:`alarm.corpus.pipeline` runs them, retries and writes. The stages, in order, are
:data:`STAGES` (see the table in :mod:`alarm.corpus.pipeline`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from alarm.corpus import instructions
from alarm.corpus.backends import ChatRequest, Completion, SamplingParams
from alarm.corpus.prompts import (
    THINK_END,
    THINK_OPEN,
    Candidate,
    ParseError,
    choose,
    complete_sentences,
    echoed_markup,
    exposure_hits,
    extract_block,
    grounded_sentences,
    grounding_problem,
    is_refusal,
    numbered,
    parse_candidates,
    parse_rewritten_answer,
    parse_verdicts,
    rewriting_talk,
    screen_copies,
    screen_exposure,
    split_target,
    split_think,
    stable_seed,
    text_problem,
    think_text,
    unfinished_think_text,
)
from alarm.corpus.schema import CorpusRecord, SourceRecord

if TYPE_CHECKING:  # the stages read their settings; the engine module builds them
    from alarm.corpus.pipeline import BuildConfig, SplitRule

log = logging.getLogger(__name__)

PIPELINE_VERSION = "alarm.corpus.pipeline/1"
STAGES = ("audio", "prompts", "filter", "respond", "rephrase")


# -- stage errors and the stage protocol --------------------------------------------------------------


class StageError(Exception):
    """A record that fails a stage: ``reason`` is a short category; ``retry`` says if trying again may help."""

    def __init__(self, reason: str, detail: str = "", *, retry: bool = True) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail, self.retry = reason, detail, retry


class BackendUnavailable(RuntimeError):
    """The backend failed too many requests in a row; rerun the build to resume."""


class Stage:
    """One step over records. ``request`` returns None when a record needs no LLM call."""

    name: str = ""
    role: str | None = None  # "prompter" | "rlm" | None

    def __init__(self, config: BuildConfig) -> None:
        self.config = config

    def request(self, record: CorpusRecord, attempt: int) -> ChatRequest | None:
        return None

    def apply(self, record: Any, completion: Completion | None, attempt: int = 0) -> CorpusRecord:
        """The next record from ``completion``, the answer to ``request(record, attempt)``."""
        raise NotImplementedError

    # helpers shared by the stages
    def spoken(self, record: SourceRecord) -> bool:
        return record.dataset in self.config.spoken_query_datasets

    def opening(self) -> str:
        """The start of this stage's reply sent as the assistant's first words (empty when off)."""
        return instructions.OPENINGS.get(self.name, "") if self.config.reply_openings else ""

    def check_grounding(self, text: str, *sources: str, what: str) -> None:
        """With ``config.grounding`` set, :class:`StageError` when ``text`` says what no source supports."""
        if self.config.grounding is not None and (problem := grounding_problem(text, sources, self.config.grounding)):
            raise StageError(f"ungrounded {what}", problem)

    def grounded_part(self, text: str, sources: tuple[str, ...]) -> str:
        """With ``config.grounding`` set, ``text`` or its longest grounded run of leading sentences ("" if none)."""
        if self.config.grounding is None or not grounding_problem(text, sources, self.config.grounding):
            return text
        return grounded_sentences(text, sources, self.config.grounding)

    def params(self, base: SamplingParams, record: CorpusRecord, attempt: int, **over: Any) -> SamplingParams:
        seed = stable_seed(self.config.seed, self.name, record.id, attempt) % 2**31
        return replace(base, seed=seed, **over)


def _account(record: CorpusRecord) -> tuple[str, ...]:
    """What the grounding check takes as evidence: the metadata and the context turns.

    The request is not evidence: words taken from it ("the speaker" of a noise clip, "loud"
    of "loud or quiet?") would let a false premise or a guess through.
    """
    return (record.metadata, *(m["content"] for m in record.context))


def _usable(completion: Completion | None, expects_thinking: bool, allow_length: bool = False) -> tuple[str, str]:
    """(reasoning, answer) of a completion that ended normally, else :class:`StageError`.

    ``allow_length``: a completion cut at ``max_tokens`` may still be used (Q's lists, where a
    small model's chatter after a complete list is what hits the limit); the caller then checks
    what was cut and raises :func:`_over_length` when nothing usable is left.
    """
    if completion is None:
        raise StageError("no completion")
    if completion.error:
        raise StageError("backend error", completion.error)
    if completion.finish_reason == "length" and not allow_length:
        raise _over_length(completion)
    reason, detail = text_problem(completion.text)
    if reason:
        raise StageError(reason, detail)
    try:
        return split_think(completion.text, expects_thinking)
    except ParseError as err:
        raise StageError(err.reason, err.detail) from None


def _over_length(completion: Completion) -> StageError:
    return StageError("over-length", f"hit max_tokens after {completion.num_tokens} tokens")


def _r0_parts(record: CorpusRecord) -> tuple[str, str, bool]:
    """(reasoning, answer, finished) of a record's R0; an R0 kept unfinished has an open ``<think>``."""
    try:
        return split_target(record.response_raw)
    except ParseError as err:
        raise StageError(err.reason, err.detail, retry=False) from None


def _truncated(completion: Completion | None) -> bool:
    return bool(completion and completion.finish_reason == "length")


class AudioStage(Stage):
    """The audio exists and holds the segment; the record becomes a CorpusRecord with its split."""

    name = "audio"

    def __init__(self, config: BuildConfig, splits: SplitRule) -> None:
        super().__init__(config)
        self.splits = splits

    def apply(self, record: SourceRecord, completion: Completion | None, attempt: int = 0) -> CorpusRecord:
        limit = self.config.max_audio_seconds
        if limit is not None and record.duration_s >= limit:  # the official filter keeps clips under 60 s
            raise StageError("audio too long", f"{record.duration_s:.1f} s, not under {limit:g} s", retry=False)
        check_audio(record, self.config.audio_root, self.config.audio_check)
        rule = self.splits.rule_name(record.dataset)
        provenance = {
            "pipeline": PIPELINE_VERSION,
            "instructions": instructions.refs(),
            "seed": self.config.seed,
            "thinking_budget": self.config.thinking_budget,
            "rephrase_second_pass": self.config.rephrase_second_pass,
            "respond_thinking_budget": self.config.respond_thinking_budget,
            "split_rule": rule,
            "special_case": "spoken_query" if self.spoken(record) else None,
            "spoken_query_text": self.config.spoken_query_text if self.spoken(record) else None,
            "stages": {},
        }
        fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(SourceRecord)}
        fields["split"] = self.splits.split_of(record)
        return CorpusRecord(**fields, provenance=provenance)


def check_audio(record: SourceRecord, root: str, mode: str) -> None:
    """Raise StageError (no retry) unless the record's segment can be read."""
    if mode == "none":
        return
    import soundfile as sf

    from alarm.audio import AudioError, load_audio

    path = os.path.join(root, record.audio_path)
    if not os.path.isfile(path):
        raise StageError("audio missing", f"{record.audio_path} does not exist under the audio root", retry=False)
    try:
        if mode == "decode":
            wave = load_audio(path, offset_s=record.offset_s, duration_s=record.duration_s)
            seconds = record.offset_s + wave.seconds
        else:
            info = sf.info(path)
            if info.frames <= 0:
                raise AudioError(f"{path}: audio is empty (0 frames)")
            seconds = info.frames / info.samplerate
    except (AudioError, RuntimeError, OSError) as err:  # soundfile's LibsndfileError is a RuntimeError
        raise StageError("audio unreadable", str(err), retry=False) from None
    end = record.offset_s + record.duration_s
    if record.offset_s >= seconds or end > seconds + max(0.05, 0.01 * record.duration_s):
        raise StageError(
            "segment outside the audio",
            f"[{record.offset_s:.2f}, {end:.2f}] s asked, {record.audio_path} has {seconds:.2f} s",
            retry=False,
        )


def flatten_context(turns: tuple[dict[str, str], ...]) -> str:
    """The earlier turns as the plain text that goes with a spoken query's audio.

    A lone user turn is a passage read with the question (HeySQuAD) and stays as it is; a
    conversation (InstructS2S) becomes ``User: ...`` / ``Assistant: ...`` lines, one per turn,
    each ending in a newline: the official layout (``dataset_collection/instructs2s.py``).
    """
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"]
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    return "".join(f"{names[t['role']]}: {t['content']}\n" for t in turns)


class PromptsStage(Stage):
    """Q writes candidate prompts; a spoken query's text is its context (or, as a setting, its transcript).

    ``spoken_query_text="context"`` (the official recipe): the question exists only as audio;
    the row's text is the earlier turns flattened (:func:`flatten_context`: the passage, or the
    conversation so far; empty for a first turn) and ``context`` is emptied, since it now lives
    in the prompt. ``"transcript"``: the question's transcript is the text prompt and the
    earlier turns stay chat turns; the text then gives the question away, so a model trained
    on it learns to answer text it can read, not speech it hears.
    """

    name, role = "prompts", "prompter"

    def request(self, record: CorpusRecord, attempt: int) -> ChatRequest | None:
        if self.spoken(record):
            return None
        cfg = self.config
        messages = instructions.get("prompts").messages(
            metadata=record.metadata,
            num_candidates=str(cfg.num_candidates),
            topics=instructions.topics(record.category),
            language_rule=instructions.language_rule(cfg.num_candidates, cfg.multilingual_share, cfg.languages),
        )
        return ChatRequest(tuple(messages), self.params(cfg.prompter_sampling, record, attempt), opening=self.opening())

    def apply(self, record: CorpusRecord, completion: Completion | None, attempt: int = 0) -> CorpusRecord:
        if self.spoken(record):
            if not record.metadata.strip():
                raise StageError("empty transcript", "a spoken query needs its transcript in metadata", retry=False)
            if self.config.spoken_query_text == "transcript":
                return replace(record, prompt=record.metadata.strip())
            return replace(record, prompt=flatten_context(record.context), context=())
        cfg = self.config
        _, answer = _usable(completion, expects_thinking=False, allow_length=True)
        answer = self.opening() + answer
        truncated = _truncated(completion)
        # untagged items are English when every candidate was asked for in English
        all_english = instructions.num_other_languages(cfg.num_candidates, cfg.multilingual_share, cfg.languages) == 0
        try:
            candidates = parse_candidates(
                answer,
                cfg.languages,
                cfg.max_prompt_chars,
                default_language="en" if all_english else "",
                truncated=truncated,
            )
        except ParseError as err:
            if err.reason == "no candidate list" and is_refusal(answer):
                raise StageError("refusal", answer[:200]) from None
            if truncated and err.reason in ("no candidate list", "no usable candidate"):
                raise _over_length(completion) from None  # type: ignore[arg-type]
            raise StageError(err.reason, err.detail) from None
        candidates = screen_copies(candidates, record.metadata)
        if not any(c.kept for c in candidates):
            raise StageError("no usable candidate", "every candidate is dropped or copies the written account")
        provenance = {
            **record.provenance,
            "candidate_languages": [c.language for c in candidates],
            "candidate_format": "block" if extract_block(answer, "prompts") is not None else "numbered list",
        }
        return replace(record, prompt_candidates=tuple(c.as_record() for c in candidates), provenance=provenance)


def _candidates(record: CorpusRecord) -> list[Candidate]:
    languages = record.provenance.get("candidate_languages", [])
    return [
        Candidate(c["text"], languages[i] if i < len(languages) else "", bool(c["kept"]), c["reason"])
        for i, c in enumerate(record.prompt_candidates)
    ]


class FilterStage(Stage):
    """Lexical exposure detector, then Q's verdicts; one kept prompt chosen uniformly (seeded)."""

    name, role = "filter", "prompter"

    def screened(self, record: CorpusRecord) -> list[Candidate]:
        return screen_exposure(_candidates(record))

    def request(self, record: CorpusRecord, attempt: int) -> ChatRequest | None:
        if self.spoken(record):
            return None
        kept = [c.text for c in self.screened(record) if c.kept]
        if not kept:
            return None  # nothing for the judge: apply() rejects
        messages = instructions.get("filter").messages(metadata=record.metadata, candidates=numbered(kept))
        params = self.params(self.config.prompter_sampling, record, attempt)
        return ChatRequest(tuple(messages), params, opening=self.opening())

    def apply(self, record: CorpusRecord, completion: Completion | None, attempt: int = 0) -> CorpusRecord:
        if self.spoken(record):
            return record
        candidates = self.screened(record)
        judged = [i for i, c in enumerate(candidates) if c.kept]
        verdict_format = None
        if judged:
            _, answer = _usable(completion, expects_thinking=False, allow_length=True)
            answer = self.opening() + answer
            try:
                verdicts = parse_verdicts(answer, count=len(judged))
            except ParseError as err:
                if is_refusal(answer):
                    raise StageError("refusal", answer[:200]) from None
                if _truncated(completion):
                    raise _over_length(completion) from None  # type: ignore[arg-type]
                raise StageError(err.reason, err.detail) from None
            verdict_format = "block" if extract_block(answer, "verdicts") is not None else "bare lines"
            for number, i in enumerate(judged, 1):
                kept, why = verdicts.get(number, (False, "no verdict from the judge"))
                if not kept:
                    candidates[i] = candidates[i].dropped(f"judge: {why}" if number in verdicts else why)
        kept = [c for c in candidates if c.kept]
        provenance = {**record.provenance, "verdict_format": verdict_format}
        out = replace(record, prompt_candidates=tuple(c.as_record() for c in candidates), provenance=provenance)
        if not kept:
            raise StageError("no prompt kept", f"{len(candidates)} candidates, none kept", retry=False)
        chosen = kept[choose([c.text for c in kept], self.config.seed, record.id)]
        return replace(out, prompt=chosen.text, provenance={**out.provenance, "prompt_language": chosen.language})


class RespondStage(Stage):
    """R0: the RLM's reasoning and answer given the metadata and the prompt.

    With ``config.grounding`` set, an answer that runs on past what the metadata supports keeps
    its grounded leading sentences; one with none (an invented age) is rejected, and the next
    attempt answers the next prompt the filter kept: a request the account cannot answer
    gives way to one it can.
    """

    name, role = "respond", "rlm"

    def prompt_for(self, record: CorpusRecord, attempt: int) -> tuple[str, str]:
        """(prompt, language) answered at ``attempt``: the filter's choice, then the other kept ones."""
        language = record.provenance.get("prompt_language", "")
        if self.config.grounding is None or self.spoken(record):
            return record.prompt, language
        others = [(c.text, c.language) for c in _candidates(record) if c.kept and c.text != record.prompt]
        random.Random(stable_seed(self.config.seed, "prompt order", record.id)).shuffle(others)
        order = [(record.prompt, language), *others]
        return order[attempt % len(order)]

    def request(self, record: CorpusRecord, attempt: int) -> ChatRequest:
        cfg = self.config
        prompt, _ = self.prompt_for(record, attempt)
        if self.spoken(record):  # the query is the audio: the RLM answers its transcript as a text chat
            messages = self.spoken_messages(record, prompt)
        else:
            system, user = instructions.get("respond").messages(metadata=record.metadata, prompt=prompt)
            messages = [system, *record.context, user]
        over = {"thinking_budget": cfg.respond_thinking_budget}
        if cfg.respond_max_tokens is not None:
            over["max_tokens"] = cfg.respond_max_tokens
        return ChatRequest(tuple(messages), self.params(cfg.rlm_sampling, record, attempt, **over))

    def spoken_messages(self, record: CorpusRecord, prompt: str) -> list[dict[str, str]]:
        """The text chat a spoken query's R0 answers: context and transcript, no system text.

        ``context`` mode: one user message, the flattened context (the row's prompt) then the
        transcript on the next line, as the official ``generate_instruction_responses.py``.
        """
        if self.config.spoken_query_text == "transcript":
            return [*record.context, {"role": "user", "content": prompt}]
        return [{"role": "user", "content": f"{prompt}\n{record.metadata}".strip()}]

    def apply(self, record: CorpusRecord, completion: Completion | None, attempt: int = 0) -> CorpusRecord:
        prompt, language = self.prompt_for(record, attempt)
        record = replace(record, prompt=prompt, provenance={**record.provenance, "prompt_language": language})
        cut = _truncated(completion)
        if cut and self.config.keep_unfinished:
            return self.unfinished(record, completion)  # type: ignore[arg-type]
        plain = not self.config.rlm_thinks and not self.spoken(record)
        reasoning, answer = _usable(completion, expects_thinking=self.config.rlm_thinks, allow_length=plain)
        if cut:  # a plain answer cut at the limit keeps its complete sentences
            answer = complete_sentences(answer)
            if not answer:
                raise _over_length(completion)  # type: ignore[arg-type]
        if not answer:
            raise StageError("empty answer", "nothing after </think>")
        if is_refusal(answer):
            raise StageError("refusal", answer[:200])
        if tag := echoed_markup(f"{reasoning}\n{answer}"):
            raise StageError("echoed the request", f"{tag} in the response")
        trimmed = False
        if not self.spoken(record):
            sources = _account(record)
            grounded = self.grounded_part(answer, sources)
            trimmed = grounded != answer
            self.check_grounding(grounded or answer, *sources, what="answer")
            answer = grounded or answer
        raw = think_text(reasoning, answer) if (reasoning or self.config.rlm_thinks) else answer
        provenance = {
            **record.provenance,
            "respond_budget_reached": bool(completion and completion.budget_reached),
            "respond_cut_at_sentence": cut,
            "respond_trimmed_to_grounded": trimmed,
            "respond_unfinished": False,
        }
        return replace(record, response_raw=raw, provenance=provenance)

    def unfinished(self, record: CorpusRecord, completion: Completion) -> CorpusRecord:
        """R0 cut at its token limit, kept as it stands (``keep_unfinished``, the official recipe).

        Cut inside the reasoning it stays an open ``<think>``; cut in the answer the answer
        stays partial. Only unusable text (special tokens, stray tags, a refusal, echoed
        markup) is still rejected; the grounding check has no complete answer to judge.
        """
        if completion.error:
            raise StageError("backend error", completion.error)
        reason, detail = text_problem(completion.text)
        if reason:
            raise StageError(reason, detail)
        text = completion.text
        if self.config.rlm_thinks and THINK_END not in text and not text.lstrip().startswith(THINK_OPEN):
            text = f"{THINK_OPEN}\n{text}"  # the chat template opened the reasoning
        try:
            reasoning, answer, finished = split_target(text)
        except ParseError as err:
            raise StageError(err.reason, err.detail) from None
        if not (reasoning or answer):
            raise StageError("empty answer", "the completion was cut before any text")
        if is_refusal(answer or reasoning):
            raise StageError("refusal", (answer or reasoning)[:200])
        if tag := echoed_markup(f"{reasoning}\n{answer}"):
            raise StageError("echoed the request", f"{tag} in the response")
        if not finished:
            raw = unfinished_think_text(reasoning)
        elif reasoning or self.config.rlm_thinks:
            raw = think_text(reasoning, answer)
        else:
            raw = answer
        provenance = {
            **record.provenance,
            "respond_budget_reached": bool(completion.budget_reached),
            "respond_cut_at_sentence": False,
            "respond_trimmed_to_grounded": False,
            "respond_unfinished": True,
        }
        return replace(record, response_raw=raw, provenance=provenance)


class RephraseStage(Stage):
    """The RLM rewrites R0 as heard; its own reasoning (budget B) goes to ``rephrase_reasoning``.

    How the request is written and the reply read is the stage's format: ours
    (:class:`OursRephrase`) or, with the official texts in use, the official exchange
    (:class:`OfficialRephraseFormat`). Everything else (sampling, budget, the checks on the
    target, provenance) is the stage's, whatever the format.
    """

    name, role = "rephrase", "rlm"

    def format(self) -> RephraseFormat:
        official = instructions.official_rephrase()
        return OursRephrase(self.config) if official is None else OfficialRephraseFormat(official)

    def request(self, record: CorpusRecord, attempt: int) -> ChatRequest | None:
        if self.spoken(record):
            return None
        fmt = self.format()
        cfg = self.config
        params = self.params(
            cfg.rlm_sampling, record, attempt, thinking_budget=cfg.thinking_budget, second_pass=cfg.rephrase_second_pass
        )
        return ChatRequest(tuple(fmt.messages(record)), params, closing=fmt.closing)

    def apply(self, record: CorpusRecord, completion: Completion | None, attempt: int = 0) -> CorpusRecord:
        if self.spoken(record):
            return replace(record, response=record.response_raw, rephrase_reasoning="")
        own, rest = _usable(completion, expects_thinking=self.config.rlm_thinks)
        finished = _r0_parts(record)[2]
        target, rewrite_format = self.format().target(record, rest)
        if tag := echoed_markup(target):
            raise StageError("echoed the request", f"{tag} in the rewrite")
        if is_refusal(target):
            raise StageError("refusal", target[:200])
        if phrase := rewriting_talk(target, f"{record.prompt}\n{record.response_raw}"):
            raise StageError("talks about the rewriting", repr(phrase))
        if finished:  # an unfinished target has no answer to check
            self.check_grounding(split_think(target, expects_thinking=False)[1], *_account(record),
                                 record.response_raw, what="rewrite")  # fmt: skip
        if self.config.rephrase_exposure_check and (hits := exposure_hits(target)):
            # the same detector the report measures targets with; a new seed may rewrite it cleanly
            raise StageError("target exposes the text", ", ".join(repr(h) for h in dict.fromkeys(hits)))
        provenance = {
            **record.provenance,
            "rephrase_budget_reached": bool(completion and completion.budget_reached),
            "rewrite_format": rewrite_format,
        }
        return replace(record, response=target, rephrase_reasoning=own, provenance=provenance)


class RephraseFormat:
    """How the rephrase stage writes its request and reads the rewrite out of the reply."""

    closing: str | None = None  # the thinking budget's closing sentence (None: the default)

    def messages(self, record: CorpusRecord) -> list[dict[str, str]]:
        raise NotImplementedError

    def target(self, record: CorpusRecord, rest: str) -> tuple[str, str]:
        """(target, rewrite format) from ``rest``, the reply after the rephraser's own reasoning."""
        raise NotImplementedError


class OursRephrase(RephraseFormat):
    """Our exchange: R0's reasoning and answer sent apart, the rewrite in named blocks.

    A finished R0 gets ``rephrase`` (both blocks back), one cut inside its reasoning
    ``rephrase_unfinished`` (the reasoning alone, still cut), a non-thinking RLM's plain
    answer ``rephrase_answer`` (the answer alone).
    """

    def __init__(self, config: BuildConfig) -> None:
        self.config = config

    def answer_only(self, r0_reasoning: str) -> bool:
        """A non-thinking RLM's R0 is a plain answer: it is rewritten alone and the target stays plain."""
        return not self.config.rlm_thinks and not r0_reasoning

    def messages(self, record: CorpusRecord) -> list[dict[str, str]]:
        reasoning, answer, finished = _r0_parts(record)
        if not finished:  # cut inside its reasoning: only the reasoning is rewritten, and stays cut
            return instructions.get("rephrase_unfinished").messages(prompt=record.prompt, reasoning=reasoning)
        if self.answer_only(reasoning):
            return instructions.get("rephrase_answer").messages(prompt=record.prompt, answer=answer)
        return instructions.get("rephrase").messages(prompt=record.prompt, reasoning=reasoning, answer=answer)

    def target(self, record: CorpusRecord, rest: str) -> tuple[str, str]:
        old_reasoning, _, finished = _r0_parts(record)
        if not finished:
            return self.rewritten_unfinished(rest), "reasoning block"
        if self.answer_only(old_reasoning):
            if is_refusal(rest):
                raise StageError("refusal", rest[:200])
            try:
                target = parse_rewritten_answer(rest)
            except ParseError as err:
                raise StageError(err.reason, err.detail) from None
            return target, "block" if extract_block(rest, "rewritten_answer") is not None else "plain"
        return self.rewritten_blocks(rest, old_reasoning), "blocks"

    @staticmethod
    def rewritten_unfinished(rest: str) -> str:
        """The open ``<think>`` target from the rewritten reasoning of an R0 cut mid-thought."""
        new_reasoning = extract_block(rest, "rewritten_reasoning")
        if new_reasoning is None:
            if is_refusal(rest):
                raise StageError("refusal", rest[:200])
            raise StageError("no rewrite block", "missing <rewritten_reasoning>")
        if not new_reasoning.strip():
            raise StageError("empty rewrite", "the rewritten reasoning is empty")
        if THINK_END in new_reasoning or THINK_OPEN in new_reasoning:
            raise StageError("stray think tag", "a think tag in the rewritten reasoning")
        return unfinished_think_text(new_reasoning)

    @staticmethod
    def rewritten_blocks(rest: str, old_reasoning: str) -> str:
        """The ``<think>`` target from the two rewritten blocks of a thinking RLM (both required)."""
        new_reasoning = extract_block(rest, "rewritten_reasoning")
        new_answer = extract_block(rest, "rewritten_answer")
        if new_reasoning is None or new_answer is None:
            if is_refusal(rest):
                raise StageError("refusal", rest[:200])
            missing = [t for t, b in (("reasoning", new_reasoning), ("answer", new_answer)) if b is None]
            raise StageError("no rewrite block", f"missing <rewritten_{'> and <rewritten_'.join(missing)}>")
        if not new_answer.strip() or (old_reasoning and not new_reasoning.strip()):
            raise StageError("empty rewrite", "a rewritten block is empty")
        return think_text(new_reasoning, new_answer)


class OfficialRephraseFormat(RephraseFormat):
    """The official exchange (``generate_responses.py``, ``get_rephrased_response``).

    The whole R0 goes into the official user text with its think tags renamed; an R0 without
    ``<think>`` gets one first and one cut inside its reasoning gets ``</think>`` (the closed
    copy the official code sends). The rewrite is the text after the reply's last
    ``<answer>`` up to ``</answer>`` (or the end); the tags are renamed back, an opening one
    added here is removed again, and the closing one is kept only where R0 had it, so an
    unfinished R0 stays unfinished and a plain answer stays plain. Stricter than the official
    code in two ways, each a rejection with its reason: a reply with no ``<answer>`` (the
    official code would keep the whole reply as the target) and a rewrite whose think tags
    do not match R0's.
    """

    def __init__(self, texts: instructions.OfficialRephrase) -> None:
        self.texts = texts
        self.closing = texts.closing

    def messages(self, record: CorpusRecord) -> list[dict[str, str]]:
        response = record.response_raw
        if not _opens_think(response):
            response = f"{THINK_OPEN}\n{response}"
        if THINK_END not in response:
            response = f"{response}\n{THINK_END}"
        renamed = response.replace(THINK_OPEN, self.texts.think_open).replace(THINK_END, self.texts.think_end)
        return self.texts.instruction.messages(response=renamed)

    def target(self, record: CorpusRecord, rest: str) -> tuple[str, str]:
        start = rest.rfind("<answer>")
        if start < 0:
            if is_refusal(rest):
                raise StageError("refusal", rest[:200])
            raise StageError("no rewrite block", "missing <answer>")
        text = rest[start + len("<answer>") :].split("</answer>", 1)[0].strip()
        t = self.texts
        if THINK_OPEN in text or THINK_END in text:
            raise StageError("stray think tag", "a think tag of the rephraser's own in the rewrite")
        if _opens_think(record.response_raw):
            text = text.replace(t.think_open, THINK_OPEN)
        else:
            text = text.replace(t.think_open, "").lstrip()
        if THINK_END in record.response_raw:
            text = text.replace(t.think_end, THINK_END)
        else:
            text = text.replace(t.think_end, "").rstrip()
        if not text:
            raise StageError("empty rewrite", "nothing inside <answer>")
        try:
            reasoning, _, finished = split_target(text)
        except ParseError as err:
            raise StageError(err.reason, err.detail) from None
        if _opens_think(text) != _opens_think(record.response_raw) or finished != _r0_parts(record)[2]:
            raise StageError("rewrite changed the reasoning's tags", "its think tags differ from R0's")
        if _opens_think(text) and not reasoning:
            raise StageError("empty rewrite", "the rewritten reasoning is empty")
        return text, "official"


def _opens_think(text: str) -> bool:
    return text.lstrip().startswith(THINK_OPEN)
