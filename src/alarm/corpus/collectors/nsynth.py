"""NSynth: four-second single notes of 1,006 instruments, with pitch, velocity and timbre labels."""

from alarm.corpus.collection import DatasetSpec, Source

# The note qualities of the NSynth dataset page, each with what it sounds like (our wording).
QUALITIES = {
    "bright": "bright (strong high-frequency content and upper harmonics)",
    "dark": "dark (little high-frequency content: muted, bassy, warm)",
    "distortion": "distortion (waveshaping: a crunchy sound with many harmonics, sometimes noise)",
    "fast_decay": "fast decay (the sound dies away well before the note is released)",
    "long_release": "long release (the sound fades slowly after the note is released)",
    "multiphonic": "multiphonic (overtones of more than one fundamental)",
    "nonlinear_env": "nonlinear envelope (loudness or filter changes beyond a plain decay)",
    "percussive": "percussive (a loud non-harmonic attack at the onset)",
    "reverb": "reverb (room acoustics in the recording)",
    "tempo-synced": "tempo-synced (rhythmic modulation locked to a tempo)",
}

SPEC = DatasetSpec(
    name="nsynth",
    title="NSynth (training split)",
    category="music",
    source=Source.of("json", files="examples.json", layout="dict", key_field="note_str"),
    id="{note_str}",
    audio="audio/{note_str}.wav",
    text="{instrument_family_str|spaces}",
    text_label="instrument note",
    fields=(
        ("MIDI pitch", "{pitch} of 127"),
        ("MIDI velocity", "{velocity} of 127"),
        ("instrument source", "{instrument_source_str}"),
        ("instrument family", "{instrument_family_str|spaces}"),
        ("qualities", "{qualities_str|map:quality|join:; }"),
    ),
    maps={"quality": QUALITIES},
    homepage="https://magenta.tensorflow.org/datasets/nsynth (nsynth-train.jsonwav.tar.gz)",
    licence="CC BY 4.0",
    layout="nsynth-train/ = --root: examples.json (note_str -> pitch, velocity, instrument_*_str, qualities_str), "
    "audio/<note_str>.wav",
    yields="instrument family; MIDI pitch and velocity; acoustic/electronic/synthetic source; timbre qualities",
)
