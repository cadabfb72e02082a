"""CAMEO: emotional speech in eight languages gathered from 13 corpora (Hugging Face Parquet)."""

from alarm.corpus.collection import DatasetSpec, Source

SPEC = DatasetSpec(
    name="cameo",
    title="CAMEO (collection of multilingual emotional speech)",
    category="speech",
    source=Source.of("parquet", files=("data/*.parquet", "*/*.parquet"), name="cameo/{dataset}/{file_id|stem}"),
    id="{dataset}/{file_id|stem}",
    audio="{_audio}",
    text="{transcription|squash}",
    text_label="transcript",
    fields=(
        ("emotion", "{emotion|lower}"),
        ("gender", "{gender|lower}"),
        ("age", "{age}"),
        ("language", "{language|capitalize}"),
    ),
    homepage="https://huggingface.co/datasets/amu-cai/CAMEO",
    licence="CC BY-NC-SA 4.0 (per-corpus licences in the license column)",
    layout="--root: the dataset snapshot's Parquet shards (data/*.parquet: file_id, audio, emotion, transcription, "
    "speaker_id, gender, age, dataset, language, license); audio extracted to _alarm_audio/cameo/",
    yields="transcript; emotion; gender; age; language",
)
