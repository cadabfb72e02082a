"""Does a demo model say the digits of a clip it never heard? ``alarm ask`` on new espeak-ng clips.

Renders digit strings that occur in neither the demo's training nor its held-out clips (every
voice, every rate), asks the trained model "What does the speaker say?" through the real
command (``alarm ask --batch``, greedy), and scores what the answer quotes: digits of the
reference found in it (a bag: order not asked), exact strings, and the same figures for a
random 3-digit answer (chance).

    python benchmarks/ask_digits.py --model-dir alarm-demo/train/final --demo-dir alarm-demo --clips 24

Needs espeak-ng. Results: docs/demo.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

import soundfile as sf

from alarm.demo.transcripts import digits_of, spoken_words
from alarm.demo.world import DIGITS, RATES, SAMPLE_RATE, VOICES, Clip, render

QUESTION = "What does the speaker say?"


def seen_digit_strings(demo_dir: str) -> set[str]:
    """Every digit string the demo's clips say (training metadata and held-out questions)."""
    seen = set()
    files = [os.path.join(demo_dir, "sources.jsonl"), os.path.join(demo_dir, "bench", "open_questions.jsonl")]
    for path in files:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    row = json.loads(line)
                    text = row.get("reference") or row.get("metadata", "").partition('"')[2].partition('"')[0]
                    if text.split() and all(w in DIGITS for w in text.split()):
                        seen.add(text)
    return seen


def new_clips(n: int, seen: set[str], seed: int) -> list[Clip]:
    rng = random.Random(seed)
    voices = [(sex, v) for sex, vs in sorted(VOICES.items()) for v in vs]
    clips, used = [], set(seen)
    while len(clips) < n:
        text = " ".join(rng.choice(DIGITS) for _ in range(3))
        if text in used:
            continue
        used.add(text)
        sex, voice = voices[len(clips) % len(voices)]
        rate = sorted(RATES)[len(clips) % len(RATES)]
        clips.append(Clip("digits", text=text, sex=sex, voice=voice, rate=rate, seed=5_000_000 + len(clips)))
    return clips


def chance(reference: list[str]) -> float:
    """Expected reference digits found in a random 3-digit answer."""
    return sum(1 - (1 - 1 / len(DIGITS)) ** 3 for _ in reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a trained model directory (alarm demo: OUT/train/final)")
    parser.add_argument("--demo-dir", default=None, help="the demo's directory: its digit strings are left out")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=None, help="keep the clips, requests and answers here")
    args = parser.parse_args()

    out = args.out or tempfile.mkdtemp(prefix="ask-digits-")
    os.makedirs(out, exist_ok=True)
    clips = new_clips(args.clips, seen_digit_strings(args.demo_dir) if args.demo_dir else set(), args.seed)
    requests = []
    for i, clip in enumerate(clips):
        path = os.path.join(out, f"digits-{i:03d}.wav")
        sf.write(path, render(clip), SAMPLE_RATE)
        requests.append({"id": f"d{i:03d}", "audio": os.path.basename(path), "question": QUESTION})
    with open(os.path.join(out, "requests.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in requests)
    answers_path = os.path.join(out, "answers.jsonl")
    if os.path.exists(answers_path):
        os.remove(answers_path)
    cmd = [sys.executable, "-m", "alarm.cli", "ask", "--preset", args.model_dir, "--batch",
           os.path.join(out, "requests.jsonl"), "--out", answers_path, "--hide-thinking", "--max-new-tokens", "40",
           "--no-progress"]  # fmt: skip
    subprocess.run(cmd, check=True)
    answers = {}
    with open(answers_path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            answers[row["id"]] = row.get("answer", "")
    found = exact = expected = total = 0
    for i, clip in enumerate(clips):
        reference, said = clip.text.split(), digits_of(spoken_words(answers.get(f"d{i:03d}", "")))
        found += sum(d in said for d in reference)
        exact += said == reference
        expected += chance(reference)
        total += len(reference)
        print(
            json.dumps({"said": clip.text, "voice": clip.voice, "rate": clip.rate, "answer": answers.get(f"d{i:03d}")})
        )
    print(json.dumps({
        "model_dir": args.model_dir, "clips": len(clips), "digits": total,
        "digits_found": found, "digits_found_by_chance": round(expected, 1),
        "exact": exact, "exact_by_chance": round(len(clips) / len(DIGITS) ** 3, 3), "files": out,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
