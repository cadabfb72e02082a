"""`alarm eval BENCH ...` (inference + scoring) and `alarm eval score BENCH ...` (scoring only)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from alarm import official_texts
from alarm.evaluation.benchmarks import BENCHMARKS, BenchmarkError, get_benchmark
from alarm.evaluation.protocol import PROTOCOLS
from alarm.generation_vllm import VLLMNotInstalled, add_vllm_arguments, settings_from_args
from alarm.official_texts import OfficialTextError

CHAT = "airbench-chat"
MMAU_PRO = "mmau-pro"
RUBRICS = "mmar-rubrics"


def _run(args: argparse.Namespace) -> int:
    from alarm.evaluation.evaluate import evaluate
    from alarm.generation import GenerationConfig

    spec = get_benchmark(args.eval_command)
    system = Path(args.system_file).read_text(encoding="utf-8") if args.system_file else None
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens, thinking_budget=args.thinking_budget, do_sample=args.sample
    )
    try:
        texts = official_texts.resolve(args.official_texts, ["eval", "ensemble", "thinking"])
        result, stats = evaluate(
            spec,
            args.data,
            args.preset or args.checkpoint,
            args.out,
            split=args.split,
            config=config,
            style=args.prompt,
            system=system,
            batch_size=args.batch_size,
            limit=args.limit,
            extraction=args.extraction,
            progress=not args.no_progress,
            engine=args.engine,
            vllm=settings_from_args(args) if args.engine == "vllm" else None,
            audio_cache=args.audio_cache,
            condition=args.condition,
            protocol=args.protocol,
            seed=args.seed,
            texts=texts,
        )
    except (BenchmarkError, VLLMNotInstalled, OfficialTextError) as err:
        print(f"alarm eval: {err}", file=sys.stderr)
        return 2
    summary = result.get("accuracies") or {"benchmark": spec.name, "note": result.get("note")}
    summary["generated"], summary["resumed"], summary["rejected"] = stats.generated, stats.skipped, stats.rejected
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def _judge_config(args: argparse.Namespace, title: str = "AIR-Bench chat"):
    from alarm.evaluation.judge import JudgeConfig

    if not args.judge_url or not args.judge_model:
        raise BenchmarkError(f"{title} needs --judge-url and --judge-model (an OpenAI-compatible endpoint)")
    return JudgeConfig(
        url=args.judge_url,
        model=args.judge_model,
        api_key=os.environ.get(args.judge_key_env) if args.judge_key_env else None,
        temperature=args.judge_temperature,
        swap=args.judge_swap,
    )


def _run_chat(args: argparse.Namespace) -> int:
    from alarm.evaluation.judge import evaluate_chat
    from alarm.generation import GenerationConfig

    system = Path(args.system_file).read_text(encoding="utf-8") if args.system_file else None
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens, thinking_budget=args.thinking_budget, do_sample=args.sample
    )
    try:
        texts = official_texts.resolve(args.official_texts, ["chat", "thinking"])
        if texts is not None:  # the official open-question system prompt and closing sentence
            system = system if system is not None else texts.text("chat.system")
            config = replace(config, closing_text=texts.text("thinking.closing"))
        result = evaluate_chat(
            args.data,
            args.preset or args.checkpoint,
            args.out,
            _judge_config(args),
            config=config,
            system=system,
            batch_size=args.batch_size,
            limit=args.limit,
            progress=not args.no_progress,
            engine=args.engine,
            vllm=settings_from_args(args) if args.engine == "vllm" else None,
        )
    except (BenchmarkError, VLLMNotInstalled, RuntimeError, OfficialTextError) as err:
        print(f"alarm eval: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False))
    return 0


def _run_mmau_pro(args: argparse.Namespace) -> int:
    from alarm.evaluation.judge import Judge
    from alarm.evaluation.mmau_pro import evaluate_mmau_pro

    try:
        judge = Judge(_judge_config(args, "MMAU-Pro")) if args.judge_url or args.judge_model else None
        result = evaluate_mmau_pro(args.data, args.preset or args.checkpoint, args.out, judge, **_run_options(args))
    except (BenchmarkError, VLLMNotInstalled, RuntimeError) as err:
        print(f"alarm eval: {err}", file=sys.stderr)
        return 2
    scores = result["scores"]
    summary = {"benchmark": "mmau-pro", "overall": scores["overall"]["accuracy"], "ci": scores["overall"]["ci"]}
    summary.update({group: {k: f["accuracy"] for k, f in keys.items()} for group, keys in scores["groups"].items()})
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def _rubric_judge(args: argparse.Namespace):
    from dataclasses import replace

    from alarm.evaluation.judge import Judge
    from alarm.evaluation.rubrics import SEED

    return Judge(replace(_judge_config(args, "MMAR-Rubrics"), seed=SEED))


def _run_rubrics(args: argparse.Namespace) -> int:
    from alarm.evaluation.rubrics import evaluate_rubrics

    try:
        judge = _rubric_judge(args)
        options = _run_options(args)
        result = evaluate_rubrics(
            args.data, args.preset or args.checkpoint, args.out, judge, raters=args.raters, **options
        )
    except (BenchmarkError, VLLMNotInstalled, RuntimeError) as err:
        print(f"alarm eval: {err}", file=sys.stderr)
        return 2
    print(json.dumps(_rubric_summary(result["rubric"], result["accuracies"]), ensure_ascii=False))
    return 0


def _rubric_summary(rubric: dict, accuracies: dict | None = None) -> dict:
    """What `alarm eval mmar-rubrics` and `score mmar-rubrics` print: the official figures."""
    out = {
        "benchmark": RUBRICS,
        "score": rubric["overall"]["accuracy"],
        "score_ci": rubric["overall"]["ci"],
        "accuracy": rubric["accuracy"]["overall"]["accuracy"],
        "evaluated": rubric["overall"]["total"],
        "not_evaluated": len(rubric["not_evaluated"]),
        **{f"score_{g}": {k: f["accuracy"] for k, f in keys.items()} for g, keys in rubric["groups"].items()},
        **{
            f"accuracy_{g}": {k: f["accuracy"] for k, f in keys.items()}
            for g, keys in rubric["accuracy"]["groups"].items()
        },
    }
    if accuracies is not None:
        out["accuracy_all_questions"] = accuracies["overall"]
    return out


def _run_options(args: argparse.Namespace) -> dict:
    """The options every judged benchmark run takes from the command line."""
    from alarm.generation import GenerationConfig

    return {
        "config": GenerationConfig(
            max_new_tokens=args.max_new_tokens, thinking_budget=args.thinking_budget, do_sample=args.sample
        ),
        "style": args.prompt,
        "system": Path(args.system_file).read_text(encoding="utf-8") if args.system_file else None,
        "batch_size": args.batch_size,
        "limit": args.limit,
        "extraction": args.extraction or "strict",
        "progress": not args.no_progress,
        "engine": args.engine,
        "vllm": settings_from_args(args) if args.engine == "vllm" else None,
    }


def _score(args: argparse.Namespace) -> int:
    from alarm.evaluation.evaluate import run_protocol, score_file

    if args.benchmark == RUBRICS:
        from alarm.evaluation.rubrics import score_rubrics_file

        try:
            rubric = score_rubrics_file(args.predictions, _rubric_judge(args), raters=args.raters)
        except (BenchmarkError, ValueError, OSError, RuntimeError) as err:
            print(f"alarm eval score: {err}", file=sys.stderr)
            return 2
        print(json.dumps(_rubric_summary(rubric), ensure_ascii=False))
        return 0
    if args.benchmark == CHAT:
        from alarm.evaluation.judge import score_chat_file

        try:
            result = score_chat_file(args.predictions, _judge_config(args), data=args.data)
        except (BenchmarkError, ValueError, OSError, RuntimeError) as err:
            print(f"alarm eval score: {err}", file=sys.stderr)
            return 2
        print(json.dumps(result, ensure_ascii=False))
        return 0
    try:
        spec = get_benchmark(args.benchmark)
        scores = score_file(
            spec,
            args.predictions,
            data=args.data,
            split=args.split,
            rule=args.rule,
            extraction=args.extraction,
            scheme=args.scheme,
            prediction_key=args.prediction_key,
            protocol=args.protocol or run_protocol(args.predictions),
        )
    except (BenchmarkError, KeyError, ValueError, OSError) as err:
        print(f"alarm eval score: {err}", file=sys.stderr)
        return 2
    if args.details:
        print(json.dumps(scores.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(json.dumps(scores.accuracies(), ensure_ascii=False))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from alarm.evaluation.compare import write_comparison
    from alarm.evaluation.uncertainty import Bootstrap

    try:
        settings = Bootstrap(resamples=args.resamples, seed=args.seed)
        result, paths = write_comparison(args.runs, args.out, settings)
    except (BenchmarkError, ValueError, OSError) as err:
        print(f"alarm eval compare: {err}", file=sys.stderr)
        return 2
    print(Path(paths[0]).read_text(encoding="utf-8"))
    print(f"written: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def _add_judge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--judge-url",
        help="LLM judge (AIR-Bench chat, MMAU-Pro open questions, MMAR-Rubrics): "
        "base URL of an OpenAI-compatible API (.../v1)",
    )
    p.add_argument("--judge-model", help="the judge model's name at that API")
    p.add_argument("--judge-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--judge-temperature", type=float, default=0.0)
    p.add_argument("--judge-swap", action="store_true", help="also judge with the answers swapped; average")


def _add_raters_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--raters", type=int, default=5, help="MMAR-Rubrics: judge runs per instance (official 5; trimmed mean)"
    )


def _add_run_arguments(p: argparse.ArgumentParser, name: str) -> None:
    spec = BENCHMARKS.get(name)
    title = spec.title if spec else "AIR-Bench"
    p.add_argument("--data", required=True, help=f"the {title} release folder (or its metadata file)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--preset", help="preset name, preset JSON file, saved model directory, or official:<hub id or dir>"
    )
    model.add_argument("--checkpoint", help="a save_pretrained directory, or official:<hub id or dir>")
    p.add_argument("--out", required=True, help="output folder; a rerun with the same folder resumes")
    if spec is not None:
        p.add_argument("--split", choices=sorted(spec.splits), default=spec.default_split)
    p.add_argument(
        "--thinking-budget",
        type=int,
        default=8192,
        help="max reasoning tokens (default 8192, the paper's; -1: unlimited)",
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=16384, help="max generated tokens, reasoning included (default 16384)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="questions per batch (default 8)")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions")
    p.add_argument("--system-file", default=None, help="use this file's text as the system prompt")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_vllm_arguments(p)
    if spec is None or name in BENCHMARKS:  # the official code asks these; MMAU-Pro and MMAR-Rubrics it never ran
        official_texts.add_argument(p)
    if spec is None:
        _add_judge_arguments(p)
        p.set_defaults(func=_run_chat)
        return
    p.add_argument(
        "--audio-cache",
        default=None,
        help="where the clips of a Parquet release (MMSU) are extracted; default: inside --data",
    )
    _add_choice_arguments(p)
    p.add_argument(
        "--condition",
        choices=("audio", "text", "metadata"),
        default="audio",
        help="baselines: the RLM with the question alone (text) or with each item's 'metadata' instead of the audio",
    )
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="ours",
        help="ours: greedy, strict extraction (default); official: the official evaluation's sampling, "
        "second pass, option-0 fallback, AIR-Bench 60 s crop and None rule, 16 kHz audio (docs/evaluation.md)",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (--protocol official, or --sample)")
    p.set_defaults(func=_run)


def _add_choice_arguments(p: argparse.ArgumentParser) -> None:
    """How multiple-choice questions are asked and read."""
    p.add_argument(
        "--prompt",
        choices=("alarm", "letters", "options"),
        default="alarm",
        help="question format (docs/evaluation.md)",
    )
    p.add_argument(
        "--extraction",
        choices=("strict", "alarm"),
        default=None,
        help="answer extraction rule (default: the protocol's; strict for ours, alarm for official)",
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="evaluate on MMSU, MMAU, MMAR, AIR-Bench, MMAU-Pro, MMAR-Rubrics; score or compare runs",
        description="alarm eval BENCH --data DIR --preset NAME --out DIR  |  alarm eval score BENCH --predictions FILE",
    )
    eval_sub = parser.add_subparsers(dest="eval_command", required=True)
    for name, spec in BENCHMARKS.items():
        p = eval_sub.add_parser(name, help=f"answer and score {spec.title}")
        _add_run_arguments(p, name)

    p = eval_sub.add_parser(CHAT, help="answer AIR-Bench chat questions and score them with an LLM judge")
    _add_run_arguments(p, CHAT)

    p = eval_sub.add_parser(
        MMAU_PRO, help="answer MMAU-Pro (several clips per question; open questions judged by an LLM)"
    )
    _add_run_arguments(p, MMAU_PRO)
    _add_choice_arguments(p)
    p.set_defaults(func=_run_mmau_pro)

    p = eval_sub.add_parser(
        RUBRICS, help="answer MMAR and judge the reasoning of each right answer with its rubrics (MMAR-Rubrics)"
    )
    _add_run_arguments(p, RUBRICS)
    _add_choice_arguments(p)
    _add_raters_argument(p)
    p.set_defaults(func=_run_rubrics)

    p = eval_sub.add_parser(
        "score",
        help="score a predictions file (ours, or the benchmark's official format); JSON on stdout. MMAU-Pro: "
        "rerun `alarm eval mmau-pro` with the same --out, which reuses its predictions and judgements",
    )
    p.add_argument("benchmark", choices=[*sorted(BENCHMARKS), CHAT, RUBRICS])
    p.add_argument("--predictions", required=True, help="predictions.jsonl of `alarm eval`, or an official file")
    p.add_argument("--data", default=None, help="the release folder (needed for predictions.jsonl only)")
    p.add_argument("--split", default=None)
    p.add_argument(
        "--rule",
        choices=("extract", "official"),
        default="extract",
        help="extract: deterministic answer extraction, unparsed = wrong (default); "
        "official: the official script's rule on the prediction as written",
    )
    p.add_argument(
        "--extraction", choices=("strict", "alarm"), default=None, help="default: the protocol's (ours: strict)"
    )
    p.add_argument(
        "--protocol",
        choices=("ours", "official"),
        default=None,
        help="official: the protocol's extraction, AIR-Bench null choices kept as 'None' options and a 'None' "
        "answer scored as choice A, as `alarm eval --protocol official` scores (docs/evaluation.md); default: the "
        "protocol in the run.json beside the predictions, else ours",
    )
    p.add_argument(
        "--scheme",
        choices=("letter", "option_id"),
        default=None,
        help="labels the prompt asked for (default: from predictions.jsonl, else letter)",
    )
    p.add_argument(
        "--prediction-key",
        default=None,
        help="official files: read this key only, as one official script version does "
        "(e.g. model_prediction for MMAU's 2024 evaluation.py); default: the current script's key first",
    )
    p.add_argument("--details", action="store_true", help="print counts and the unparsed outputs too")
    _add_judge_arguments(p)
    _add_raters_argument(p)
    p.set_defaults(func=_score)

    p = eval_sub.add_parser(
        "compare",
        help="several runs side by side: intervals, differences, paired-bootstrap p-values",
        description="alarm eval compare BASELINE_RUN OTHER_RUN... [--out DIR]; a run is an `alarm eval` --out "
        "folder or one benchmark folder inside it",
    )
    p.add_argument("runs", nargs="+", help="run folders; the first is the baseline")
    p.add_argument("--out", default="comparison", help="where comparison.md/.json/.png go (default: ./comparison)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=_compare)
