"""A benchmark run end to end: load, answer (resumable), score, report, official files.

Layout of ``OUT`` (one folder per benchmark split, a summary over all of them)::

    OUT/<bench>[-<split>]/run.json            settings the predictions were made with
    OUT/<bench>[-<split>]/predictions.jsonl   one line per answered item (resumable)
    OUT/<bench>[-<split>]/rejects.jsonl       clips that could not be decoded, with the reason
    OUT/<bench>[-<split>]/scores.json         settings + scores + published numbers
    OUT/<bench>[-<split>]/scores.md           the same as a Markdown table
    OUT/<bench>[-<split>]/categories.png      per-category bars (published ones marked)
    OUT/<bench>[-<split>]/<official files>    the benchmark's own prediction-file format(s)
    OUT/summary.md, OUT/summary.png           all runs under OUT side by side
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alarm import official_texts
from alarm.evaluation import prompts
from alarm.evaluation import protocol as protocols
from alarm.evaluation.benchmarks.base import (
    BenchmarkError,
    BenchmarkSpec,
    Item,
    items_from_entries,
    load_items,
    read_entries,
)
from alarm.evaluation.published import paper_model, published
from alarm.evaluation.report import markdown, plot_categories, write_summary
from alarm.evaluation.runner import (
    CONDITIONS,
    PredictionStore,
    RunStats,
    TextEngine,
    build_engine,
    engine_settings,
    metadata_prompt,
    run_inference,
)
from alarm.evaluation.scoring import Scores, choose, score
from alarm.io import write_json, write_text

if TYPE_CHECKING:  # torch and transformers load only when a model runs, not to score a file
    from alarm.generation import GenerationConfig
    from alarm.generation_vllm import VLLMSettings
    from alarm.official_texts import OfficialTexts

log = logging.getLogger(__name__)

# The paper's protocol (official run_eval.sh): 16,384 new tokens, thinking budget 8,192.
PAPER_MAX_NEW_TOKENS, PAPER_THINKING_BUDGET = 16384, 8192


def paper_config() -> GenerationConfig:
    from alarm.generation import GenerationConfig

    return GenerationConfig(max_new_tokens=PAPER_MAX_NEW_TOKENS, thinking_budget=PAPER_THINKING_BUDGET)


# Settings that change what the model writes: a run directory holds predictions of one setting.
PINNED = (
    "benchmark",
    "split",
    "model",
    "style",
    "system",
    "max_new_tokens",
    "thinking_budget",
    "do_sample",
    "condition",
    "protocol",
    "decoding",
    "texts",
)


def run_settings(
    benchmark: str,
    split: str,
    data: str | os.PathLike[str],
    model_ref: str,
    config: GenerationConfig,
    *,
    style: str,
    system: str | None,
    limit: int | None,
    engine: str = "transformers",
    vllm: VLLMSettings | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """What ``run.json`` records about a run: the benchmark, the model, how it was asked and
    decoded, and ``extra`` (extraction, judge, ...) in that order."""
    return {
        "benchmark": benchmark,
        "split": split,
        "data": str(Path(data).resolve()),
        "model": model_ref,
        "style": style,
        "system": system,
        "max_new_tokens": config.max_new_tokens,
        "thinking_budget": config.thinking_budget,
        "do_sample": config.do_sample,
        **extra,
        "limit": limit,
        **engine_settings(engine, vllm),
    }


def open_run(
    run_dir: Path, settings: Mapping[str, Any], model: Any, *, pinned: tuple[str, ...] = PINNED
) -> tuple[Any, PredictionStore]:
    """Pin the settings of a run folder (refusing other ones), build the model unless given,
    and open its predictions store."""
    check_settings(run_dir / "run.json", settings, pinned)
    if model is None:
        from alarm.presets import build_model

        model = build_model(settings["model"])
    return model, PredictionStore(run_dir / "predictions.jsonl")


def run_dir_name(spec: BenchmarkSpec, split: str) -> str:
    return spec.name if split == spec.default_split else f"{spec.name}-{split}"


def check_settings(path: Path, settings: Mapping[str, Any], pinned: tuple[str, ...] = PINNED) -> None:
    """Refuse to add to a run folder whose predictions were made with other ``pinned`` settings."""
    # Compared as they read back from run.json: a tuple setting comes back as a list.
    settings = json.loads(json.dumps(dict(settings)))
    if path.exists():
        with open(path, encoding="utf-8") as f:
            before = json.load(f)
        changed = {k: (before.get(k), settings.get(k)) for k in pinned if before.get(k) != settings.get(k)}
        if changed:
            details = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise BenchmarkError(
                f"{path.parent}: its predictions were made with other settings ({details}); "
                "use another --out folder or delete this one"
            )
    write_json(path, settings)


def canonical_predictions(
    spec: BenchmarkSpec,
    items: list[Item],
    outputs: Mapping[str, str],
    schemes: Mapping[str, str],
    extraction: str,
    none_is_first: bool = False,
) -> dict[str, str]:
    """What the official scorer reads, per answered item (option text or letter; '' when none)."""
    return {
        item.id: spec.canonical_prediction(
            item, choose(item, outputs[item.id], extraction, schemes[item.id], none_is_first).index
        )
        for item in items
        if item.id in outputs
    }


def finish(
    spec: BenchmarkSpec,
    items: list[Item],
    outputs: Mapping[str, str],
    schemes: Mapping[str, str],
    run_dir: Path,
    split: str,
    settings: Mapping[str, Any],
    *,
    extraction: str = "strict",
    none_is_first: bool = False,
) -> dict[str, Any]:
    """Score, write scores.json / scores.md / plot / official files, refresh the summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    official = spec.write_official(
        items, canonical_predictions(spec, items, outputs, schemes, extraction, none_is_first), run_dir, split
    )
    model = paper_model(settings.get("model"))
    pub = published(model, spec.name, split)
    result: dict[str, Any] = {
        "settings": dict(settings),
        "official_files": [p.name for p in official],
        "paper_model": model,
        "published": pub,
        "published_note": "published in the paper, not measured by this run",
        "model": settings.get("model"),
    }
    title = f"{spec.title} {split} - {settings.get('model') or 'predictions'}"
    if split in spec.answers_withheld:
        result["scores"] = None
        result["note"] = f"{spec.title} {split} answers are withheld: submit {official[0].name} to the official server"
        write_json(run_dir / "scores.json", result)
        return result
    scores = score(
        spec, items, outputs, extraction=extraction, scheme=schemes, split=split, none_is_first=none_is_first
    )
    result["scores"] = scores.to_dict()
    result["accuracies"] = scores.accuracies()
    write_json(run_dir / "scores.json", result)
    write_text(run_dir / "scores.md", markdown(result["scores"], title=title, published=pub, model=model))
    plot_categories(result["scores"], run_dir / "categories.png", title=title, published=pub, model=model)
    write_summary(run_dir.parent)
    return result


def evaluate(
    spec: BenchmarkSpec,
    data: str | os.PathLike[str],
    model_ref: str,
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    config: GenerationConfig | None = None,
    style: str = "alarm",
    system: str | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    extraction: str | None = None,
    progress: bool = True,
    model: Any = None,
    engine: str = "transformers",
    vllm: VLLMSettings | None = None,
    audio_cache: str | os.PathLike[str] | None = None,
    condition: str = "audio",
    protocol: str = "ours",
    seed: int = 0,
    texts: OfficialTexts | None = None,
) -> tuple[dict[str, Any], RunStats]:
    """Answer every item of a benchmark split with a model, then score and report.

    ``condition`` says what the RLM gets about each clip: ``audio`` (the model as built), or
    for the baselines ``text`` (the question alone) or ``metadata`` (the item's ``metadata``
    text in place of the audio), answered by the model's frozen RLM with the same prompt.

    ``model`` may be passed already built (tests); otherwise ``model_ref`` (preset name,
    preset JSON, saved directory or ``official:<checkpoint>``) is built. ``engine`` decodes:
    ``transformers`` or ``vllm`` (started with ``vllm`` settings). A rerun with the same
    ``out`` resumes where the last one stopped. ``audio_cache``: where the clips of a
    Parquet release are extracted (default: inside ``data``).

    ``protocol`` (:mod:`alarm.evaluation.protocol`): ``ours`` or ``official``; the official one
    replaces ``config``'s decoding by the RLM's own sampling defaults with ``seed`` (sampling
    with ``ours`` uses ``seed`` too). ``extraction`` defaults to the protocol's. ``texts``: the
    official texts (prompts, closing sentence, ALARM-E instructions) instead of ours.
    """
    split = split or spec.default_split
    proto = protocols.get(protocol)
    extraction = extraction or proto.extraction
    if model is None and (proto.sampling or texts is not None):
        from alarm.presets import build_model

        model = build_model(model_ref)  # its RLM's sampling defaults and its kind decide the settings
    config = run_config(config or paper_config(), proto, model, seed, texts)
    official_texts.apply_to_model(model, texts)
    if texts is not None:
        system = system if system is not None else prompts.system_prompt(style, texts)
    items = load_items(spec, data, split, audio_cache=audio_cache, null_choice=proto.null_choice(spec.name))
    if limit is not None:
        items = items[:limit]
    run_dir = Path(out) / run_dir_name(spec, split)
    run_dir.mkdir(parents=True, exist_ok=True)
    if engine == "vllm" and config.max_model_len is not None and (vllm is None or vllm.max_model_len is None):
        from dataclasses import replace

        from alarm.generation_vllm import VLLMSettings

        vllm = replace(vllm or VLLMSettings(), max_model_len=config.max_model_len)  # official: 16384
    settings = run_settings(
        spec.name,
        split,
        data,
        model_ref,
        config,
        style=style,
        system=system,
        limit=limit,
        engine=engine,
        vllm=vllm,
        extraction=extraction,
        protocol=proto.settings(),
        decoding=protocols.decoding_settings(config),
        texts=official_texts.texts_settings(texts),
    )
    if condition != "audio":  # old run.json files have none
        settings["condition"] = condition
    if condition not in CONDITIONS:
        raise BenchmarkError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}")
    if condition != "audio" and engine != "transformers":
        raise BenchmarkError(f"the {condition} condition runs on the transformers engine only")
    model, store = open_run(run_dir, settings, model)
    answerer = functools.partial(build_engine, engine, model, vllm)
    prompt = None if texts is None else functools.partial(prompts.user_prompt, style=style, texts=texts)
    if condition != "audio":
        answerer = functools.partial(TextEngine, model)
        system = system if system is not None else prompts.system_prompt(style)
        prompt = functools.partial(_condition_prompt, condition=condition, style=style, texts=texts)
    stats = run_inference(
        model,
        items,
        store,
        config,
        style=style,
        system=system,
        batch_size=batch_size,
        rejects=PredictionStore(run_dir / "rejects.jsonl"),
        progress=progress,
        engine=answerer,
        prompt=prompt,
        crop_seconds=proto.crop_seconds(spec.name),
        audio_rate=proto.audio_rate,
    )
    records = store.load()
    outputs = {i: r["output"] for i, r in records.items()}
    schemes = {i: prompts.scheme(r.get("style", style)) for i, r in records.items()}
    none_is_first = proto.none_is_first(spec.name)
    result = finish(
        spec, items, outputs, schemes, run_dir, split, settings, extraction=extraction, none_is_first=none_is_first
    )
    return result, stats


def run_config(
    config: GenerationConfig, proto: protocols.Protocol, model: Any, seed: int, texts: OfficialTexts | None
) -> GenerationConfig:
    """The decoding settings of a run: ``config``'s lengths under ``proto``, ``seed`` when
    sampling, and the official closing sentence with ``texts``."""
    from dataclasses import replace

    from alarm.generation import model_sampling_defaults

    closing = texts.text("thinking.closing") if texts is not None else config.closing_text
    if proto.sampling:
        return protocols.generation_config(
            proto,
            model_sampling_defaults(model.language_model),
            seed=seed,
            max_new_tokens=config.max_new_tokens,
            thinking_budget=config.thinking_budget,
            closing_text=closing,
        )
    # ours: config's own decoding (greedy, or sampling with its fixed values and the seed)
    return replace(
        config,
        seed=seed if config.do_sample else None,
        closing_text=closing,
        second_pass=proto.second_pass,
        max_model_len=proto.max_model_len,
    )


def _condition_prompt(item: Item, condition: str, style: str, texts: OfficialTexts | None = None) -> str:
    question = prompts.user_prompt(item, style, texts)
    return metadata_prompt(item, question) if condition == "metadata" else question


def read_predictions(
    spec: BenchmarkSpec,
    path: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    split: str | None = None,
    scheme: str | None = None,
    rule: str = "extract",
    prediction_key: str | None = None,
    null_choice: str | None = None,
) -> tuple[list[Item], dict[str, str], dict[str, str], str]:
    """Items, predictions by id, label scheme by id and split of a predictions file.

    Accepts this project's ``predictions.jsonl`` (needs ``data``: the benchmark release) or
    the benchmark's official prediction format as released: its own metadata entries with the
    prediction added (``model_output`` / ``model_prediction`` for MMAU, ``answer_prediction`` /
    ``model_prediction`` for MMAR, ``response`` for MMSU and AIR-Bench), answers included; the
    audio fields are not read. ``prediction_key`` reads that key alone, as one version of an
    official script does (see :func:`prediction_keys`). ``null_choice``: see
    :func:`alarm.evaluation.benchmarks.base.with_null_choices`.
    """
    path = Path(path)
    entries = read_entries(path)
    first = entries[0][1] if entries else {}
    if spec.question_field in first:
        split = split or str(first.get("split") or spec.default_split)
        if split not in spec.splits:
            split = spec.default_split
        items = items_from_entries(spec, entries, path, split, check_audio=False, null_choice=null_choice)
        keys = prediction_keys(spec, rule, prediction_key)
        predictions = keyed_predictions(items, keys, path)
        if not predictions and spec.missing_prediction != "empty":  # the official script prints no figure
            raise BenchmarkError(f"{path}: no entry has a prediction (looked for {', '.join(keys)})")
        schemes = {item.id: scheme or "letter" for item in items}
        return items, predictions, schemes, split
    if "output" in first and "id" in first:
        if data is None:
            raise BenchmarkError(f"{path}: a predictions.jsonl of `alarm eval` needs --data (the {spec.title} release)")
        if prediction_key is not None:
            raise BenchmarkError(f"{path}: --prediction-key is for official prediction files; this is `alarm eval`'s")
        split = split or spec.default_split
        items = load_items(spec, data, split, check_audio=False, null_choice=null_choice)
        records = PredictionStore(path).load()
        known = {item.id for item in items}
        stray = [i for i in records if i not in known]
        if stray:
            raise BenchmarkError(
                f"{path}: {len(stray)} ids are not in the {spec.title} {split} data, e.g. {stray[0]!r}"
            )
        run = path.parent / "run.json"
        limit = json.loads(run.read_text(encoding="utf-8")).get("limit") if run.exists() else None
        if limit is not None:
            items = items[:limit]  # the items that run was asked to answer; unanswered ones count wrong
        elif len(records) < len(items):
            log.warning("%s: %d of %d items have predictions; scoring those", path, len(records), len(items))
            items = [item for item in items if item.id in records]
        outputs = {i: r["output"] for i, r in records.items()}
        schemes = {i: scheme or prompts.scheme(r.get("style", "letters")) for i, r in records.items()}
        return items, outputs, schemes, split
    raise BenchmarkError(
        f"{path}: neither {spec.title} entries with a prediction nor `alarm eval` predictions "
        f"(first entry has fields {sorted(first)})"
    )


def prediction_keys(spec: BenchmarkSpec, rule: str, key: str | None = None) -> tuple[str, ...]:
    """The keys an official-format entry's prediction is read from, first present wins.

    ``key`` alone when given (each official script version reads one key; what it does with
    an entry without it is the spec's ``missing_prediction``); else the benchmark's order, the
    current official script's key first. The
    official rule of a letter benchmark reads its official key only: ALARM's copies keep the
    option text under the others, which the letter rule would misread.
    """
    if key is not None:
        return (key,)
    if spec.prediction_kind == "letter" and rule == "official":
        return spec.prediction_keys[:1]
    return spec.prediction_keys


def keyed_predictions(items: Sequence[Item], keys: Sequence[str], path: Path) -> dict[str, Any]:
    """Prediction by item id: the value of the first of ``keys`` its entry has (entries with
    none are left out). Entries holding several keys with different values are counted in a
    warning, since official script versions that read different keys disagree on them."""
    predictions: dict[str, Any] = {}
    conflicting = 0
    for item in items:
        present = [k for k in keys if k in item.record]
        if present:
            predictions[item.id] = item.record[present[0]]
            conflicting += any(item.record[k] != predictions[item.id] for k in present[1:])
    if conflicting:
        log.warning(
            "%s: %d entries hold %s with different values; read %r (--prediction-key reads another)",
            path,
            conflicting,
            " and ".join(keys),
            keys[0],
        )
    return predictions


def run_protocol(predictions: str | os.PathLike[str]) -> str:
    """The protocol a predictions file was made with: the one its run folder's ``run.json``
    records, so rescoring a run scores it as ``alarm eval`` did; ``ours`` for a file outside a
    run folder (an official answer file) or a run.json from before protocols were recorded."""
    run = Path(predictions).parent / "run.json"
    if not run.is_file():
        return protocols.OURS.name
    try:
        name = (json.loads(run.read_text(encoding="utf-8")).get("protocol") or {}).get("name", protocols.OURS.name)
    except (json.JSONDecodeError, AttributeError) as err:
        raise BenchmarkError(f"{run}: not a run.json of `alarm eval` ({err})") from None
    return protocols.get(name).name


def score_file(
    spec: BenchmarkSpec,
    path: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    split: str | None = None,
    rule: str = "extract",
    extraction: str | None = None,
    scheme: str | None = None,
    prediction_key: str | None = None,
    protocol: str = "ours",
) -> Scores:
    """Score an existing predictions file (see :func:`read_predictions` for the formats).

    ``protocol`` (:mod:`alarm.evaluation.protocol`) sets what scoring takes from it: the
    extraction (when ``extraction`` is None) and, under ``official``, AIR-Bench's null choices
    listed as "None" options and a "None" answer scored as choice A, as in ``alarm eval
    --protocol official``.
    """
    proto = protocols.get(protocol)
    items, predictions, schemes, split = read_predictions(
        spec,
        path,
        data=data,
        split=split,
        scheme=scheme,
        rule=rule,
        prediction_key=prediction_key,
        null_choice=proto.null_choice(spec.name),
    )
    try:
        return score(
            spec,
            items,
            predictions,
            rule=rule,
            extraction=extraction or proto.extraction,
            scheme=schemes,
            split=split,
            none_is_first=proto.none_is_first(spec.name),
        )
    except BenchmarkError as err:  # name the file, as the reading errors do
        raise BenchmarkError(f"{path}: {err}") from None
