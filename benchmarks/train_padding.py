"""Padding with length-grouped vs random batches, on a corpus with a realistic length spread.

The corpus is simulated from the mixture the paper trains on (sizes, not audio): speech
utterances (log-normal around 8 s), sound clips (10 s AudioSet/AudioCaps, 5 s ESC-50,
15-30 s Clotho), music (30 s GTZAN/FMA clips, 4 s NSynth) and short spoken instructions;
responses are log-normal around 350 tokens. A sample's sequence is template + prompt + audio
positions (25 Hz + 2 boundaries, ALARM-CA/Whisper) + response. Both orders come from
:class:`alarm.training.data.StepPlan`, the sampler training uses; the table reports the
share of padded token positions (what the RLM computes for nothing) and of padded audio
samples (what W2V-BERT/MuQ/SSLAM compute for nothing; Whisper always pads to 30 s).

    python benchmarks/train_padding.py                 # 200k samples, micro-batches 2, 4, 8, 16
    python benchmarks/train_padding.py --samples 50000 --group-size 16
"""

from __future__ import annotations

import argparse

import numpy as np

from alarm.training.data import StepPlan, padding_fraction


def simulate(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, seconds) of n samples drawn from the corpus mixture described above."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(4, size=n, p=[0.45, 0.30, 0.20, 0.05])
    seconds = np.empty(n)
    speech = kind == 0
    seconds[speech] = np.clip(rng.lognormal(np.log(8.0), 0.6, speech.sum()), 1.0, 35.0)
    sound = np.flatnonzero(kind == 1)
    pick = rng.choice(3, size=sound.size, p=[0.6, 0.2, 0.2])
    seconds[sound] = np.where(pick == 0, 10.0, np.where(pick == 1, 5.0, rng.uniform(15.0, 30.0, sound.size)))
    music = np.flatnonzero(kind == 2)
    seconds[music] = np.where(rng.random(music.size) < 0.5, 30.0, 4.0)
    spoken = kind == 3
    seconds[spoken] = np.clip(rng.lognormal(np.log(5.0), 0.5, spoken.sum()), 1.0, 20.0)
    prompt = rng.integers(20, 60, n)
    response = np.clip(rng.lognormal(np.log(350.0), 0.5, n), 30, 3000)
    tokens = (60 + prompt + np.ceil(seconds * 25) + 2 + response).astype(np.int64)
    return tokens, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--group-size", type=int, default=64, help="micro-batches sorted together (TrainConfig)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tokens, seconds = simulate(args.samples, args.seed)
    samples = np.round(seconds * 16_000).astype(np.int64)
    print(
        f"{args.samples} samples: audio {seconds.mean():.1f} s mean ({np.percentile(seconds, 5):.0f}-"
        f"{np.percentile(seconds, 95):.0f} s, 5-95%), sequence {tokens.mean():.0f} tokens mean "
        f"({np.percentile(tokens, 5):.0f}-{np.percentile(tokens, 95):.0f}); group size {args.group_size}\n"
    )
    print("| micro-batch | token padding, random | token padding, grouped | ratio | audio padding, random | "
          "audio padding, grouped |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for micro in args.micro_batches:
        row = []
        for group in (False, True):
            plan = StepPlan(tokens, seconds, micro, 1, args.seed, group_by_length=group, group_size=args.group_size)
            batches = plan.epoch(0).reshape(-1, micro)
            row.append((padding_fraction(batches, tokens), padding_fraction(batches, samples)))
        (tok_r, aud_r), (tok_g, aud_g) = row
        print(f"| {micro} | {tok_r:.1%} | {tok_g:.1%} | {tok_g / tok_r:.3f} | {aud_r:.1%} | {aud_g:.1%} |")


if __name__ == "__main__":
    main()
