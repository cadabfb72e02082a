"""GLOBE V3: Common Voice English with accent, age and gender, quality-filtered (Hugging Face Parquet)."""

from alarm.corpus.collection import DatasetSpec, Source

SPEC = DatasetSpec(
    name="globe_v3",
    title="GLOBE V3 (training split)",
    category="speech",
    source=Source.of(
        "parquet",
        files=("data/train-*.parquet", "train/*.parquet"),
        name="globe_v3/{common_voice_path|stem}",
    ),
    # As in the paper: only speakers whose attributes come from Common Voice, not from a classifier.
    exclude=(
        ("{common_voice_gender|default:nan}", ("nan",)),
        ("{common_voice_accents|default:nan}", ("nan",)),
        ("{common_voice_age|default:nan}", ("nan",)),
    ),
    id="{common_voice_path|stem}",
    audio="{_audio}",
    text="{common_voice_sentence|squash}",
    text_label="transcript",
    fields=(
        ("gender", "{common_voice_gender|before:_|lower}"),
        ("accent", "{common_voice_accents}"),
        ("age", "{common_voice_age}"),
        ("predicted MOS (UTMOS)", "{utmos|round:2}"),
        ("SNR", "{snr|round:1} dB"),
    ),
    homepage="https://huggingface.co/datasets/MushanW/GLOBE_V3",
    licence="see the dataset card (derived from Mozilla Common Voice, CC0)",
    layout="--root: the dataset snapshot's training Parquet shards (data/train-*.parquet: audio, "
    "common_voice_sentence, common_voice_gender/accents/age, utmos, snr, ...); audio extracted to _alarm_audio/",
    yields="transcript; gender, accent, age (from Common Voice); predicted MOS; SNR",
)
