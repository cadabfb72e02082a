"""VoxCeleb1: celebrity interview speech with speaker gender and nationality (development set)."""

from alarm.corpus.collection import DatasetSpec, Join, Source
from alarm.corpus.collectors._common import GENDER

SPEC = DatasetSpec(
    name="voxceleb1",
    title="VoxCeleb1 (development set)",
    category="speech",
    source=Source.of(
        "files", files="wav/*/*/*.wav", regex=r"^wav/(?P<speaker>id\d+)/(?P<video>[^/]+)/(?P<clip>[^/]+)\.wav$"
    ),
    joins=(
        Join(
            name="meta",
            source=Source.of("table", files="vox1_meta.csv", delimiter="\t"),
            key="{VoxCeleb1 ID}",
            on="{speaker}",
        ),
    ),
    where=(("{meta.Set}", ("dev",)),),
    id="{speaker}/{video}/{clip}",
    audio="{_path}",
    text="speech",
    fields=(("speaker gender", "{meta.Gender|map:gender}"), ("speaker nationality", "{meta.Nationality}")),
    maps={"gender": GENDER},
    homepage="https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox1.html",
    licence="CC BY 4.0 (metadata); audio from YouTube",
    layout="--root: vox1_meta.csv (tab-separated: VoxCeleb1 ID, VGGFace1 ID, Gender, Nationality, Set), "
    "wav/<speaker>/<video>/<clip>.wav",
    yields="speaker gender and nationality (single utterances; the paper paired two)",
)
