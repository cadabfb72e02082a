"""AIR-Bench chat: open questions scored by an LLM judge through any OpenAI-compatible endpoint.

Only here is an LLM judge used (never for multiple choice). The logic is the official
``score_chat.py`` / ``cal_score.py`` (OFA-Sys/AIR-Bench), the wording of the prompt ours:

* The judge sees the audio's text description (``meta_info``), the question, and two answers,
  "Assistant 1" and "Assistant 2": the reference answer (``answer_gt``) first and the model's
  final answer (reasoning removed) second. It rates each from 1 to 10 for helpfulness,
  relevance, accuracy and comprehensiveness and replies with one line: two scores separated by
  a space.
* A reply that is not exactly two integers, or has one above 10, is a failure: the item is
  left out of the averages and listed (official: ``fail_num``).
* ``swap=True`` also asks with the two answers in the other order and averages the model's two
  scores (the README's "swap the positions of answer_gt and model prediction").
* Tasks map to categories as in ``cal_score.py``: speech (speech_QA, speech_dialogue_QA),
  sound (sound_QA, sound_generation_QA), music (music_QA, music_generation_analysis_QA),
  speech_and_sound (speech_and_sound_QA), speech_and_music (speech_and_music_QA); "mixed
  audio" is the mean of the last two; "average" the mean of speech, sound, music and mixed.

Judgements are appended per item to a JSONL (resumable, like the predictions). The official
setting is ``gpt-4-0125-preview`` at temperature 1 (2 for a random half of the requests);
here the temperature is fixed and defaults to 0 so that a rerun gives the same scores.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm.auto import tqdm

from alarm.evaluation.answers import final_answer
from alarm.evaluation.benchmarks.base import BenchmarkError, Item, read_entries
from alarm.evaluation.runner import PredictionStore
from alarm.evaluation.uncertainty import DEFAULT, interval
from alarm.io import write_json, write_jsonl

CHAT_FILES = ("Chat/Chat_meta.json", "Chat_meta.json")
TASK_CATEGORIES = {
    "speech_QA": "speech",
    "speech_dialogue_QA": "speech",
    "sound_QA": "sound",
    "sound_generation_QA": "sound",
    "music_QA": "music",
    "music_generation_analysis_QA": "music",
    "speech_and_sound_QA": "speech_and_sound",
    "speech_and_music_QA": "speech_and_music",
}
REQUIRED = ("uniq_id", "path", "task_name", "dataset_name", "question", "answer_gt", "meta_info")

JUDGE_PROMPT = (
    "You check how good answers to a question about an audio clip are.\n"
    "[Audio description]\n{description}\n"
    "[Question]\n{question}\n"
    "[Assistant 1's answer begins]\n{first}\n[Assistant 1's answer ends]\n"
    "[Assistant 2's answer begins]\n{second}\n[Assistant 2's answer ends]\n"
    "[Task]\n"
    "Two AI assistants answered the question above. They were given the detailed audio description "
    "and the question. Rate how helpful, relevant, accurate and comprehensive each answer is with one "
    "overall score from 1 to 10 per assistant; higher is better. Reply with a single line holding only "
    "the two scores, Assistant 1's first, separated by a space."
)


def judge_prompt(description: str, question: str, first: str, second: str) -> str:
    return JUDGE_PROMPT.format(description=description, question=question, first=first, second=second)


def parse_scores(reply: str) -> tuple[int, int] | None:
    """The official parse: exactly two integers separated by one space, each at most 10."""
    parts = reply.strip().replace("\n", "").split(" ")
    if len(parts) != 2:
        return None
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    if a > 10 or b > 10:
        return None
    return a, b


def load_chat(data: str | os.PathLike[str], *, check_audio: bool = True) -> list[Item]:
    """AIR-Bench chat items: ``Chat/Chat_meta.json`` + ``Chat/<task>_<dataset>/<path>``."""
    root = Path(data)
    meta = root if root.is_file() else next((root / n for n in CHAT_FILES if (root / n).is_file()), None)
    if meta is None:
        raise BenchmarkError(
            f"AIR-Bench chat: no metadata file; looked for {' or '.join(str(root / n) for n in CHAT_FILES)}"
        )
    items, seen = [], set()
    for place, entry in read_entries(meta):
        label = f"{meta}: {place}" + (f" (id {entry.get('uniq_id')!r})" if entry.get("uniq_id") is not None else "")
        for name in REQUIRED:
            if entry.get(name) in (None, ""):
                raise BenchmarkError(f"{label}: missing or empty field {name!r}")
        ident = str(entry["uniq_id"])
        if ident in seen:
            raise BenchmarkError(f"{label}: duplicate id {ident!r}")
        seen.add(ident)
        audio = meta.parent / f"{entry['task_name']}_{entry['dataset_name']}" / str(entry["path"])
        if check_audio and not audio.is_file():
            raise BenchmarkError(f"{label}: audio file {audio} does not exist")
        task = str(entry["task_name"])
        items.append(
            Item(
                id=ident,
                audio=audio,
                question=str(entry["question"]),
                choices=(),
                letters=(),
                answer=str(entry["answer_gt"]),
                groups={"task": task, "category": TASK_CATEGORIES.get(task, task)},
                record=dict(entry),
            )
        )
    if not items:
        raise BenchmarkError(f"{meta}: no entries")
    return items


def chat_prompt(item: Item) -> str:
    """The official chat inference prompt: the question alone."""
    return item.question


@dataclass(frozen=True)
class JudgeConfig:
    url: str  # base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str | None = None
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout: float = 120.0
    retries: int = 3
    swap: bool = False
    seed: int | None = None  # sent with each request where set (MMAR-Rubrics' script sends 42)


class Judge:
    """Asks an OpenAI-compatible ``/chat/completions`` endpoint for the two scores."""

    def __init__(self, config: JudgeConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.client = client or httpx.Client(timeout=config.timeout, headers=headers)

    def ask(self, prompt: str, system: str | None = None) -> str:
        """The judge's reply to one user message (after an optional system message)."""
        url = self.config.url.rstrip("/") + "/chat/completions"
        head = [{"role": "system", "content": system}] if system is not None else []
        body = {
            "model": self.config.model,
            "messages": [*head, {"role": "user", "content": prompt}],
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
            **({"seed": self.config.seed} if self.config.seed is not None else {}),
        }
        error: Exception | None = None
        for attempt in range(self.config.retries):
            try:
                response = self.client.post(url, json=body)
                response.raise_for_status()
                return str(response.json()["choices"][0]["message"]["content"])
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as err:
                error = err
                time.sleep(min(2**attempt, 10) * 0.1)
        raise RuntimeError(f"judge at {url} failed {self.config.retries} times: {error}")

    def judge(self, item: Item, response: str) -> dict[str, Any]:
        """One judgement: the model's score (None on a failed parse) and the judge's replies."""
        description = str(item.record.get("meta_info", ""))
        reply = self.ask(judge_prompt(description, item.question, str(item.answer), response))
        parsed = parse_scores(reply)
        row: dict[str, Any] = {"id": item.id, "replies": [reply], "reference_score": None, "score": None}
        scores = [] if parsed is None else [(parsed[0], parsed[1])]
        if self.config.swap:
            reply2 = self.ask(judge_prompt(description, item.question, response, str(item.answer)))
            row["replies"].append(reply2)
            parsed2 = parse_scores(reply2)
            scores = scores if parsed2 is None else [*scores, (parsed2[1], parsed2[0])]
            if parsed is None or parsed2 is None:
                scores = []
        if scores:
            row["reference_score"] = sum(s[0] for s in scores) / len(scores)
            row["score"] = sum(s[1] for s in scores) / len(scores)
        return row


def judge_each(
    items: Sequence[Item],
    judge_one: Callable[[Item], dict[str, Any] | None],
    store: PredictionStore,
    *,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Judge every item not yet in ``store`` (one appended line each, so a rerun resumes);
    all judgements by id. ``judge_one`` returns the item's row, ``id`` included, or None for
    a judgement that failed: nothing is stored and the next run asks again."""
    done = store.load()
    todo = [item for item in items if item.id not in done]
    for item in tqdm(todo, disable=not progress, unit="q", desc="judging"):
        row = judge_one(item)
        if row is not None:
            store.append([row])
    return store.load()


def judge_all(
    judge: Judge, items: Sequence[Item], outputs: Mapping[str, str], store: PredictionStore, *, progress: bool = True
) -> dict[str, dict[str, Any]]:
    """Judge every answered item not yet in ``store`` (resumable); all judgements by id."""
    answered = [item for item in items if item.id in outputs]
    return judge_each(
        answered, lambda item: judge.judge(item, final_answer(outputs[item.id])[0]), store, progress=progress
    )


def chat_scores(items: Sequence[Item], judgements: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean judge scores per category, mixed audio, average; failures and unanswered listed."""
    sums: dict[str, list[float]] = {}
    reference: dict[str, list[float]] = {}
    wins: dict[str, int] = {}
    failed, unanswered = [], []
    for item in items:
        row = judgements.get(item.id)
        if row is None:
            unanswered.append(item.id)
            continue
        if row.get("score") is None:
            failed.append(item.id)
            continue
        category = item.groups["category"]
        sums.setdefault(category, []).append(float(row["score"]))
        reference.setdefault(category, []).append(float(row["reference_score"]))
        wins[category] = wins.get(category, 0) + int(row["score"] > row["reference_score"])
    categories = {c: sum(v) / len(v) for c, v in sums.items()}
    result: dict[str, Any] = {
        "categories": categories,
        "reference_scores": {c: sum(v) / len(v) for c, v in reference.items()},
        "win_rate": {c: wins.get(c, 0) / len(v) for c, v in sums.items()},
        "counts": {c: len(v) for c, v in sums.items()},
        # bootstrap intervals of the mean judge score (1-10) per category, resampling its items
        "ci": {c: interval(v, scale=1.0) for c, v in sums.items()},
        "intervals": DEFAULT.to_dict(),
        "failed": failed,
        "unanswered": unanswered,
    }
    mixed = [categories[c] for c in ("speech_and_sound", "speech_and_music") if c in categories]
    if mixed:
        result["mixed_audio"] = sum(mixed) / len(mixed)
    headline = [categories[c] for c in ("speech", "sound", "music") if c in categories]
    headline += [result["mixed_audio"]] if mixed else []
    result["average"] = sum(headline) / len(headline) if headline else None
    return result


def write_chat_scores(path: Path, result: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    write_json(path, {"settings": dict(settings), "chat": dict(result)})


def write_official_chat(items: Sequence[Item], outputs: Mapping[str, str], path: Path) -> Path:
    """``Chat_result_alarm.jsonl`` in the official ``Inference_Chat.py`` output format
    (``response`` = the final answer, reasoning removed), the input of ``score_chat.py``."""
    rows = []
    for item in items:
        if item.id not in outputs:
            continue
        r = item.record
        rows.append(
            {
                "meta_info": r.get("meta_info"),
                "question": r.get("question"),
                "answer_gt": r.get("answer_gt"),
                "path": r.get("path"),
                "task_name": r.get("task_name"),
                "dataset_name": r.get("dataset_name"),
                "response": final_answer(outputs[item.id])[0],
                "uniq_id": r.get("uniq_id"),
            }
        )
    write_jsonl(path, rows)
    return path


def evaluate_chat(
    data: str | os.PathLike[str],
    model_ref: str,
    out: str | os.PathLike[str],
    judge_config: JudgeConfig,
    *,
    config: Any = None,
    system: str | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    progress: bool = True,
    model: Any = None,
    client: httpx.Client | None = None,
    engine: str = "transformers",
    vllm: Any = None,
) -> dict[str, Any]:
    """Answer AIR-Bench chat questions (resumable), judge the answers (resumable), score.

    ``engine`` decodes (``transformers`` or ``vllm`` with ``vllm`` settings), as in
    :func:`alarm.evaluation.evaluate.evaluate`.
    """
    from alarm.evaluation.evaluate import PINNED, open_run, paper_config, run_settings
    from alarm.evaluation.runner import build_engine, run_inference

    config = config or paper_config()
    items = load_chat(data)[:limit] if limit is not None else load_chat(data)
    run_dir = Path(out) / "airbench-chat"
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = run_settings(
        "airbench-chat",
        "chat",
        data,
        model_ref,
        config,
        style="chat",
        system=system,
        limit=limit,
        engine=engine,
        vllm=vllm,
        judge_model=judge_config.model,
        judge_temperature=judge_config.temperature,
        judge_swap=judge_config.swap,
    )
    pinned = (*PINNED, "judge_model", "judge_temperature", "judge_swap")
    model, store = open_run(run_dir, settings, model, pinned=pinned)
    run_inference(
        model,
        items,
        store,
        config,
        style="chat",
        system=system,
        prompt=chat_prompt,
        batch_size=batch_size,
        rejects=PredictionStore(run_dir / "rejects.jsonl"),
        progress=progress,
        engine=functools.partial(build_engine, engine, model, vllm),
    )
    outputs = {i: r["output"] for i, r in store.load().items()}
    write_official_chat(items, outputs, run_dir / "Chat_result_alarm.jsonl")
    judge = Judge(judge_config, client=client)
    judgements = judge_all(judge, items, outputs, PredictionStore(run_dir / "judgements.jsonl"), progress=progress)
    result = chat_scores(items, judgements)
    write_chat_scores(run_dir / "scores.json", result, settings)
    return result


def score_chat_file(
    path: str | os.PathLike[str],
    judge_config: JudgeConfig,
    *,
    data: str | os.PathLike[str] | None = None,
    judgements: str | os.PathLike[str] | None = None,
    client: httpx.Client | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Judge a predictions file: ``alarm eval`` predictions.jsonl (needs ``data``) or the
    official chat inference output (``response`` per entry, as ``Inference_Chat.py`` writes)."""
    path = Path(path)
    entries = read_entries(path)
    first = entries[0][1] if entries else {}
    if "response" in first and "question" in first:
        items = load_chat(path, check_audio=False)
        outputs = {item.id: str(item.record.get("response") or "") for item in items if "response" in item.record}
    elif "output" in first and "id" in first:
        if data is None:
            raise BenchmarkError(f"{path}: a predictions.jsonl of `alarm eval` needs --data (the AIR-Bench release)")
        items = load_chat(data, check_audio=False)
        outputs = {i: r["output"] for i, r in PredictionStore(path).load().items()}
        items = [item for item in items if item.id in outputs]
    else:
        raise BenchmarkError(f"{path}: neither AIR-Bench chat results nor `alarm eval` predictions")
    store = PredictionStore(judgements or path.with_name(path.stem + ".judgements.jsonl"))
    return chat_scores(items, judge_all(Judge(judge_config, client=client), items, outputs, store, progress=progress))
