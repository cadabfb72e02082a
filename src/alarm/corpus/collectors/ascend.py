"""ASCEND: spontaneous Chinese-English code-switched conversation (training split, Hugging Face Parquet)."""

from alarm.corpus.collect import DatasetSpec, Source

SPEC = DatasetSpec(
    name="ascend",
    title="ASCEND (training split)",
    category="speech",
    source=Source.of(
        "parquet", files=("data/train-*.parquet", "*/train/*.parquet", "train/*.parquet"), name="ascend/{id}"
    ),
    id="{id}",
    audio="{_audio}",
    text="{transcription|squash}",
    text_label="transcript",
    fields=(("language", "{language|map:language}"), ("topic", "{topic}")),
    maps={"language": {"mixed": "Chinese-English code-switching", "zh": "Chinese", "en": "English"}},
    homepage="https://huggingface.co/datasets/CAiRE/ASCEND",
    licence="see the dataset card",
    layout="--root: the dataset snapshot's training Parquet shards (id, audio, transcription, language, topic, ...); "
    "audio extracted to _alarm_audio/ascend/",
    yields="transcript; language (Chinese, English or code-switching); conversation topic",
)
