"""The demo's world: speech and sounds whose every audible fact is known.

A clip is a :class:`Clip` (what is in it, as data) rendered to a 16 kHz wave by
:func:`render`: speech by espeak-ng (digit strings, words from a small vocabulary, short
sentences; a male or a female voice, each with several variants; slow, normal or fast), or
a sound made with numpy (a low or high steady tone, hissing or rumbling noise, clicks at a
slow or fast rate). Its metadata (the textual surrogate A_text the corpus pipeline reads) is
:meth:`Clip.describe`, true by construction.

Held-out clips are new combinations: digit strings and sentences never used in training,
and words and sounds in voice/rate/level combinations drawn afresh (:func:`sample_clips`
keeps the test set's contents out of the training set).

The questions (:func:`questions_for`) are what the evaluation asks: multiple choice in the
MMAU format (kind of sound, speaker sex, speaking rate, which digits / word, tone pitch,
noise colour, click rate) and the open "What does the speaker say?".
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alarm.demo.speech import speak

SAMPLE_RATE = 16_000
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS = ("apple", "river", "window", "garden", "yellow", "doctor", "pencil", "orange", "bottle", "candle", "monkey",
         "silver")  # fmt: skip
SENTENCE_SUBJECTS = ("the cat", "my brother", "the old man", "a little girl", "the teacher", "our dog")
SENTENCE_ACTIONS = ("is sleeping", "likes apples", "went home", "can swim", "is very happy", "reads a book")
VOICES = {"male": ("en+m1", "en+m3", "en+m5"), "female": ("en+f1", "en+f2", "en+f4")}
RATES = {"slow": 120, "normal": 170, "fast": 230}  # words per minute
RATE_WORDS = {"slow": "slowly", "normal": "at a normal pace", "fast": "fast"}
SPEECH_KINDS = ("digits", "word", "sentence")
SOUNDS = {
    "tone": ("low", "high"),
    "noise": ("hissing", "rumbling"),
    "clicks": ("slow", "fast"),
}
TONE_HZ = {"low": 220.0, "high": 1760.0}
CLICKS_PER_SECOND = {"slow": 2.0, "fast": 10.0}
KIND_CHOICES = ("speech", "a steady tone", "noise", "clicks")
EVEN_MIX = (*SPEECH_KINDS, *sorted(SOUNDS))  # one clip of each kind in turn: half speech, half sounds


@dataclass(frozen=True)
class Clip:
    """What one clip contains. Speech: ``text``, ``sex``, ``voice``, ``rate``; a sound: ``sound``, ``variant``."""

    kind: str  # digits | word | sentence | tone | noise | clicks
    text: str = ""
    sex: str = ""
    voice: str = ""
    rate: str = ""
    variant: str = ""
    seed: int = 0
    pitch: int = 50  # espeak-ng's pitch (0-99): rerecordings vary it a little, the facts stay

    @property
    def is_speech(self) -> bool:
        return self.kind in SPEECH_KINDS

    @property
    def category(self) -> str:
        return "speech" if self.is_speech else "sound"

    def describe(self) -> str:
        """The clip's metadata: every audible fact, in plain words."""
        if self.is_speech:
            person = "A man" if self.sex == "male" else "A woman"
            return f'Speech. {person} says "{self.text}", speaking {RATE_WORDS[self.rate]}.'
        if self.kind == "tone":
            return f"A steady {self.variant}-pitched tone, with no speech."
        if self.kind == "noise":
            return f"{'Hissing white' if self.variant == 'hissing' else 'Rumbling brown'} noise, with no speech."
        return f"Clicks at a {self.variant} rate, about {CLICKS_PER_SECOND[self.variant]:g} per second, with no speech."


def render(clip: Clip) -> np.ndarray:
    """The clip as float32 mono samples at :data:`SAMPLE_RATE` (speech via espeak-ng)."""
    rng = np.random.default_rng(clip.seed)
    if clip.is_speech:
        wave = speak(clip.text, voice=clip.voice, words_per_minute=RATES[clip.rate], pitch=clip.pitch,
                     sample_rate=SAMPLE_RATE)  # fmt: skip
        wave = wave * float(rng.uniform(0.6, 1.0))
        return (wave + 0.003 * rng.standard_normal(wave.size)).astype(np.float32)
    seconds = float(rng.uniform(1.2, 2.0))
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    level = float(rng.uniform(0.15, 0.4))
    if clip.kind == "tone":
        wave = np.sin(2 * np.pi * TONE_HZ[clip.variant] * t + rng.uniform(0, 2 * np.pi))
    elif clip.kind == "noise":
        noise = rng.standard_normal(t.size)
        if clip.variant == "rumbling":
            noise = np.cumsum(noise)
            noise -= np.linspace(noise[0], noise[-1], t.size)  # no drift: a rumble, not a ramp
        wave = noise / (np.abs(noise).max() + 1e-9)
    else:
        wave = np.zeros(t.size)
        period = SAMPLE_RATE / CLICKS_PER_SECOND[clip.variant]
        click = np.hanning(64) * np.sin(2 * np.pi * 3000 * np.arange(64) / SAMPLE_RATE)
        for start in np.arange(rng.uniform(0, period), t.size - 64, period).astype(int):
            wave[start : start + 64] += click
    ramp = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)  # 10 ms fades: no clicks at the edges
    return (level * wave * ramp + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def rerender(clip: Clip, index: int) -> Clip:
    """Another recording of the same facts (``index`` >= 1): the same metadata, a new wave.

    Speech changes to another voice of the same sex and another pitch (-6, +6, -12, +12, ...
    around espeak-ng's 50: small enough that a man still sounds like a man), every clip to a
    new seed (level, noise, a sound's length and phase). What :meth:`Clip.describe` says stays
    true, so a corpus target written for ``clip`` is a target for this recording too.
    """
    if index < 1:
        raise ValueError(f"a rerendering index is at least 1, got {index}")
    voice, pitch = clip.voice, clip.pitch
    if clip.is_speech:
        voices = VOICES[clip.sex]
        voice = voices[(voices.index(clip.voice) + index) % len(voices)]
        pitch = min(99, max(0, clip.pitch + 6 * (-1) ** index * ((index + 1) // 2)))
    return dataclasses.replace(clip, voice=voice, pitch=pitch, seed=clip.seed + 10_000_000 * index)


def _speech(kind: str, text: str, rng: random.Random, seed: int) -> Clip:
    sex = rng.choice(sorted(VOICES))
    return Clip(kind, text=text, sex=sex, voice=rng.choice(VOICES[sex]), rate=rng.choice(sorted(RATES)), seed=seed)


def _digit_string(rng: random.Random) -> str:
    return " ".join(rng.choice(DIGITS) for _ in range(3))


def sample_clips(
    num_train: int, num_test: int, seed: int = 0, train_mix: Sequence[str] = EVEN_MIX
) -> tuple[list[Clip], list[Clip]]:
    """Training and held-out clips. Their kinds follow a mix in turn: ``train_mix`` for training
    (a kind listed twice is twice as common), :data:`EVEN_MIX` for the held-out clips.

    Digit strings and sentences of the test set never occur in training. The held-out clips
    are drawn first, so they do not depend on ``num_train`` or ``train_mix``.
    """
    if not train_mix or set(train_mix) - set(EVEN_MIX):
        raise ValueError(f"train_mix lists kinds of {EVEN_MIX}, got {tuple(train_mix)}")
    rng = random.Random(seed)
    sentences = [f"{s} {a}" for s in SENTENCE_SUBJECTS for a in SENTENCE_ACTIONS]
    rng.shuffle(sentences)
    held_sentences, train_sentences = sentences[: len(sentences) // 4], sentences[len(sentences) // 4 :]
    held_digits: set[str] = set()

    def make(n: int, held_out: bool, first_seed: int, mix: Sequence[str]) -> list[Clip]:
        clips = []
        for i in range(n):
            seed_i = first_seed + i
            kind = mix[i % len(mix)]
            if kind in SPEECH_KINDS:
                if kind == "digits":
                    text = _digit_string(rng)
                    while not held_out and text in held_digits:
                        text = _digit_string(rng)
                    if held_out:
                        held_digits.add(text)
                elif kind == "word":
                    text = rng.choice(WORDS)
                else:
                    text = rng.choice(held_sentences if held_out else train_sentences)
                clips.append(_speech(kind, text, rng, seed_i))
            else:
                clips.append(Clip(kind, variant=rng.choice(SOUNDS[kind]), seed=seed_i))
        return clips

    test = make(num_test, True, 1_000_000 + seed * 10_000, EVEN_MIX)
    train = make(num_train, False, seed * 10_000, train_mix)
    return train, test


@dataclass(frozen=True)
class Question:
    """One multiple-choice question about a clip (MMAU fields) or an open one (``choices`` empty)."""

    category: str  # the report's grouping: kind, sex, rate, digits, word, pitch, noise, clicks, transcript
    question: str
    choices: tuple[str, ...]
    answer: str


def _options(answer: str, pool: list[str], rng: random.Random, n: int = 4) -> tuple[str, ...]:
    others = [p for p in dict.fromkeys(pool) if p != answer]
    picked = [answer, *rng.sample(others, min(n - 1, len(others)))]
    rng.shuffle(picked)
    return tuple(picked)


def questions_for(clip: Clip, rng: random.Random) -> list[Question]:
    """The questions the demo asks about ``clip`` (multiple choice, plus the open transcript one)."""
    kind_answer = (
        "speech" if clip.is_speech else {"tone": "a steady tone", "noise": "noise", "clicks": "clicks"}[clip.kind]
    )
    out = [Question("kind", "What kind of sound is this?", _shuffled(KIND_CHOICES, rng), kind_answer)]
    if clip.is_speech:
        out.append(Question("sex", "Is the speaker a man or a woman?", ("a man", "a woman"),
                            "a man" if clip.sex == "male" else "a woman"))  # fmt: skip
        out.append(Question("rate", "How fast does the person speak?", ("slowly", "at a normal pace", "fast"),
                            RATE_WORDS[clip.rate]))  # fmt: skip
        if clip.kind == "digits":
            pool = [clip.text] + [_digit_string(rng) for _ in range(6)]
            out.append(
                Question("digits", "Which numbers does the speaker say?", _options(clip.text, pool, rng), clip.text)
            )
        elif clip.kind == "word":
            out.append(
                Question("word", "Which word does the speaker say?", _options(clip.text, list(WORDS), rng), clip.text)
            )
        out.append(Question("transcript", "What does the speaker say?", (), clip.text))
    elif clip.kind == "tone":
        out.append(Question("pitch", "Is the tone low or high in pitch?", ("low", "high"), clip.variant))
    elif clip.kind == "noise":
        out.append(
            Question("noise", "Does the noise sound hissing or rumbling?", ("hissing", "rumbling"), clip.variant)
        )
    else:
        out.append(Question("clicks", "Are the clicks slow or fast?", ("slow", "fast"), clip.variant))
    return out


def _shuffled(options: tuple[str, ...], rng: random.Random) -> tuple[str, ...]:
    items = list(options)
    rng.shuffle(items)
    return tuple(items)
