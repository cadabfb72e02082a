"""The real CPU presets (packaged Whisper + SmolLM2): conversion, load, step and generation costs.

One process per measurement that needs its own memory figure; everything else in this one.
Prints, per preset: conversion time of each packaged model (into a fresh cache), model load
time, the Whisper encoder on 8 short clips as the preset runs it (each padded to its next
whole second, ``trim_to_audio``) vs padded to 30 s (and their ratio), training step time with
the feature cache vs the encoder online (and their ratio), the
trainer's target-positions-only loss vs logits at every position (and their ratio), the
shared-prefix cache of the loss (the system prompt run once) vs every row run whole,
greedy generation tokens/s (batch 1 and batch 8), and peak RSS.

    python benchmarks/real_presets.py                      # both cpu-* presets, 2 threads
    python benchmarks/real_presets.py --presets cpu-al-whisper-tiny-r --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

PRESETS = ("cpu-al-whisper-tiny-r", "cpu-al-whisper-r")
PROMPT = "What does the speaker say?"
TARGET = 'The speaker says "four two eight one".'


def _clips(n: int) -> list:
    from alarm.audio import Waveform
    from alarm.demo.speech import speak

    texts = ["four two eight one", "the cat is sleeping", "open the window", "seven three nine"]
    return [Waveform(speak(texts[i % len(texts)], voice="en+f2" if i % 2 else "en"), 16_000) for i in range(n)]


def measure(preset: str, steps: int, threads: int) -> dict:
    """Load, step (cache vs online) and generation figures of one preset, in this process."""
    import torch

    from alarm.chat import build_example, collate
    from alarm.generation import GenerationConfig, answer
    from alarm.modeling.inputs import AudioBatch
    from alarm.presets import build_model
    from alarm.training.data import TrainBatch
    from alarm.training.recipe import shared_prefix_length, token_loss_sum

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = build_model(preset)
    load_s = time.perf_counter() - t0
    waves = _clips(8)
    audio = AudioBatch.from_waveforms(waves, model.sample_rates)
    examples = [
        build_example(
            model.tokenizer, model.user_parts(PROMPT, slots), system=model.config.system_prompt, target=TARGET
        )
        for slots in model.audio_slots(audio.lengths)
    ]
    batch = collate(examples, int(model.tokenizer.pad_token_id))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step(cached: bool, full_logits: bool = False, prefix_cache: bool = True) -> float:
        start = time.perf_counter()
        a = audio
        if cached:  # what the feature cache hands the model: the encoders' states, precomputed
            with torch.no_grad():
                states = {k: e.encode(*audio.at(e.sample_rate)) for k, e in model.encoders.items()}
            a = AudioBatch(audio.waves, audio.lengths, encoder_states=states)
            start = time.perf_counter()
        if full_logits:  # the baseline: logits (and fp32 log-softmax) at every position
            loss = model(batch.input_ids, batch.attention_mask, audio=a, labels=batch.labels, use_cache=False).loss
        else:  # what the trainer runs: logits at target positions only
            train_batch = TrainBatch([], batch.input_ids, batch.attention_mask, batch.labels, a, [])
            loss = token_loss_sum(model, train_batch, prefix_cache) / train_batch.num_target_tokens
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    trimmed_s, padded_s = encoder_seconds(model, audio, steps)
    step(True)  # warm-up
    cached = [step(True) for _ in range(steps)]
    online = [step(False) for _ in range(steps)]
    full = [step(True, full_logits=True) for _ in range(steps)]
    whole = [step(True, prefix_cache=False) for _ in range(steps)]
    model.eval()
    config = GenerationConfig(max_new_tokens=32)
    rates = {}
    for size in (1, 8):
        t0 = time.perf_counter()
        outs = answer(model, waves[:size], [PROMPT] * size, config)
        rates[f"tokens_per_s_batch{size}"] = round(sum(len(o.token_ids) for o in outs) / (time.perf_counter() - t0), 1)
    return {
        "preset": preset,
        "threads": threads,
        "load_s": round(load_s, 2),
        "tokens_per_step": int(batch.attention_mask.sum()),
        "encode_s_trimmed": round(trimmed_s, 2),
        "encode_s_padded_30s": round(padded_s, 2),
        "padded_over_trimmed": round(padded_s / trimmed_s, 1),
        "step_s_cached": round(statistics.median(cached), 2),
        "step_s_online": round(statistics.median(online), 2),
        "online_over_cached": round(statistics.median(online) / statistics.median(cached), 2),
        "step_s_cached_full_logits": round(statistics.median(full), 2),
        "full_logits_over_targets": round(statistics.median(full) / statistics.median(cached), 2),
        "shared_prefix_tokens": shared_prefix_length(
            TrainBatch([], batch.input_ids, batch.attention_mask, batch.labels, audio, []), model.audio_token_id
        ),
        "step_s_cached_no_prefix_cache": round(statistics.median(whole), 2),
        "no_prefix_cache_over_prefix_cache": round(statistics.median(whole) / statistics.median(cached), 2),
        **rates,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def encoder_seconds(model, audio, repeats: int) -> tuple[float, float]:
    """Median seconds to encode ``audio`` with the preset's Whisper as configured, and padded to 30 s."""
    from dataclasses import replace

    from alarm.encoders.whisper import WhisperEncoder

    (encoder,) = model.encoders.values()
    padded = WhisperEncoder(replace(encoder.spec, trim_to_audio=False), encoder.model, encoder.feature_extractor)

    def seconds(e: WhisperEncoder) -> float:
        start = time.perf_counter()
        e.encode(*audio.at(e.sample_rate))
        return time.perf_counter() - start

    seconds(encoder)  # warm-up
    return statistics.median(seconds(encoder) for _ in range(repeats)), statistics.median(
        seconds(padded) for _ in range(repeats)
    )


def conversion_times() -> dict:
    """Seconds to convert each packaged model into a fresh cache (one process)."""
    from alarm import packaged

    times = {}
    for name in packaged.registry():
        t0 = time.perf_counter()
        packaged.ensure_converted(name)
        times[name] = round(time.perf_counter() - t0, 1)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.threads)))
        return
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "ALARM_CACHE": cache}
        conv = subprocess.run(
            [sys.executable, "-c", "import json,real_presets as r; print(json.dumps(r.conversion_times()))"],
            env={**env, "PYTHONPATH": os.path.dirname(os.path.abspath(__file__))},
            capture_output=True,
            text=True,
            check=True,
        )
        print(json.dumps({"conversion_s": json.loads(conv.stdout.strip().splitlines()[-1])}))
        for preset in args.presets:
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    preset,
                    "--steps",
                    str(args.steps),
                    "--threads",
                    str(args.threads),
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            print(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
