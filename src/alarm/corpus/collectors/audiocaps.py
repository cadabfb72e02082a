"""AudioCaps: human captions of 10-second AudioSet clips (training split, one caption each)."""

from alarm.corpus.collection import DatasetSpec, Source

SPEC = DatasetSpec(
    name="audiocaps",
    title="AudioCaps (training split)",
    category="sound",
    source=Source.of("table", files="train.csv"),
    id="{audiocap_id}",
    # AudioCaps ships captions only; the clips are cut from YouTube by the user. Common layouts:
    audio=("audio/train/{youtube_id}.wav", "train/{youtube_id}.wav", "train/{audiocap_id}.wav"),
    text="{caption|squash}",
    text_label="caption",
    homepage="https://github.com/cdjkim/audiocaps (dataset/train.csv); audio from YouTube",
    licence="captions MIT (cdjkim/audiocaps); audio: the YouTube uploaders' terms",
    layout="--root: train.csv (audiocap_id,youtube_id,start_time,caption) and the 10 s clips as "
    "audio/train/<youtube_id>.wav (or train/<youtube_id>.wav, train/<audiocap_id>.wav)",
    yields="one caption",
)
