"""OpenSinger: Chinese singing by 66 singers, one lyric line per clip, grouped by song."""

from alarm.corpus.collection import DatasetSpec, Join, Source

LYRICS = Join(
    name="lyrics",
    source=Source.of("files", files="*Raw/*/*.txt", text_field="text"),
    key="{_dir}/{_stem}",
    on="{_dir}/{_stem}",
)

SPEC = DatasetSpec(
    name="opensinger",
    title="OpenSinger",
    category="music",
    source=Source.of(
        "files", files="*Raw/*/*.wav", regex=r"^(?P<voice>Man|Woman)Raw/(?P<singer>[^/_]+)_(?P<song>[^/]+)/[^/]+\.wav$"
    ),
    joins=(LYRICS,),
    id="{_stem}",
    audio="{_path}",
    text="{lyrics.text|squash}",
    text_label="sung lyrics",
    fields=(("song title", "{song}"), ("singer gender", "{voice|map:voice}")),
    maps={"voice": {"Man": "male", "Woman": "female"}},
    homepage="https://github.com/Multi-Singer/Multi-Singer.github.io (OpenSinger.tar.gz)",
    licence="see the source page",
    layout="OpenSinger/ = --root: ManRaw/ and WomanRaw/, each <singer>_<song>/<singer>_<song>_<n>.wav with "
    "<singer>_<song>_<n>.txt (lyrics)",
    yields="lyrics; song title; singer gender",
)
