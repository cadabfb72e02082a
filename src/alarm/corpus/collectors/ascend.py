"""ASCEND: spontaneous Chinese-English code-switched conversation (training split, Hugging Face Parquet)."""

from alarm.corpus.collection import DatasetSpec, Source

SPEC = DatasetSpec(
    name="ascend",
    title="ASCEND (training split)",
    category="speech",
    # The repository keeps its shards under main/ (the config name): main/train-0000N-of-00003.parquet
    # today, main/ascend-train-*.parquet before; the Parquet export has main/train/0000.parquet.
    source=Source.of(
        "parquet",
        files=("*/train-*.parquet", "*/ascend-train-*.parquet", "*/train/*.parquet", "train/*.parquet"),
        name="ascend/{id}",
    ),
    id="{id}",
    audio="{_audio}",
    text="{transcription|squash}",
    text_label="transcript",
    fields=(("language", "{language|map:language}"), ("topic", "{topic}")),
    maps={"language": {"mixed": "Chinese-English code-switching", "zh": "Chinese", "en": "English"}},
    homepage="https://huggingface.co/datasets/CAiRE/ASCEND",
    licence="CC BY-SA 4.0 (dataset card)",
    layout="--root: the dataset snapshot's training Parquet shards (main/train-*.parquet: id, audio, transcription, "
    "language, topic, ...); "
    "audio extracted to _alarm_audio/ascend/",
    yields="transcript; language (Chinese, English or code-switching); conversation topic",
)
