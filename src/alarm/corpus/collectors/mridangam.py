"""Mridangam stroke dataset: single strokes of the South Indian drum, by tonic and stroke name."""

from alarm.corpus.collection import DatasetSpec, Source

SPEC = DatasetSpec(
    name="mridangam",
    title="Mridangam Stroke Dataset 1.5",
    category="music",
    # <tonic>/<freesound id>__<author>__<stroke>-<tonic>-<take>.wav
    source=Source.of("files", files="*/*.wav", regex=r"^(?P<tonic>[^/]+)/[^/]*_(?P<stroke>[a-z]+)-[^/_]*\.wav$"),
    id="{tonic}/{_stem}",
    audio="{_path}",
    text="{stroke|capitalize}",
    text_label="mridangam stroke",
    fields=(("tonic", "{tonic}"),),
    homepage="https://zenodo.org/records/4068196 (mridangam_stroke_1.5.zip)",
    licence="see the Zenodo record",
    layout="mridangam_stroke_1.5/ = --root: <tonic>/<id>__<author>__<stroke>-<tonic>-<take>.wav "
    "(tonics B, C, C#, D, D#, E)",
    yields="stroke name; tonic",
)
