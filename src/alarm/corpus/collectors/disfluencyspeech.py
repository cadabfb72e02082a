"""DisfluencySpeech: one speaker re-enacting Switchboard turns, with disfluencies annotated in the text."""

from alarm.corpus.collection import DatasetSpec, Source

# The annotation marks used in transcript_annotated (Switchboard conventions), in our words.
MARKS = (
    "{{F ...}} filled pause, {{E ...}} editing term, {{D ...}} discourse marker, {{C ...}} coordinating "
    "conjunction, {{A ...}} aside, [ ... + ... ] restart (the words before + are repaired after it)"
)

SPEC = DatasetSpec(
    name="disfluencyspeech",
    title="DisfluencySpeech (training split)",
    category="speech",
    source=Source.of(
        "parquet",
        files=("data/train-*.parquet", "*/train/*.parquet", "train/*.parquet"),
        name="disfluencyspeech/{_file|stem}-{_row}",
    ),
    id="{_file|stem}-{_row}",
    audio="{_audio}",
    text="{transcript_annotated|squash}",
    text_label="annotated transcript",
    fields=(("annotation marks", MARKS),),
    homepage="https://huggingface.co/datasets/amaai-lab/DisfluencySpeech",
    licence="Apache-2.0 (dataset card)",
    layout="--root: the dataset snapshot's training Parquet shards (data/train-*.parquet: audio, "
    "transcript_annotated, ...); audio extracted to _alarm_audio/disfluencyspeech/",
    yields="transcript with disfluency annotations; what the marks mean",
)
