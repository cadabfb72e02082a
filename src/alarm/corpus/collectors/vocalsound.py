"""VocalSound: laughs, sighs, coughs, throat clearing, sneezes and sniffs from 3,365 speakers."""

from alarm.corpus.collection import DatasetSpec, Join, Source

SPEC = DatasetSpec(
    name="vocalsound",
    title="VocalSound (training speakers)",
    category="speech",
    source=Source.of(
        "files", files="audio_16k/*.wav", regex=r"(?P<speaker>[fm]\d+)_(?P<take>\d+)_(?P<sound>[a-z]+)\.wav$"
    ),
    joins=(
        # tr_meta.csv lists the training speakers only: the inner join keeps their recordings.
        Join(
            name="meta",
            source=Source.of(
                "table",
                files="meta/tr_meta.csv",
                columns=("speaker", "gender", "age", "country", "native_language", "health"),
            ),
            key="{speaker}",
            on="{speaker}",
            required=True,
        ),
    ),
    id="{_stem}",
    audio="{_path}",
    text="{sound|map:sound}",
    text_label="vocal sound",
    fields=(
        ("speaker gender", "{meta.gender|lower}"),
        ("speaker age", "{meta.age|decade}"),
        ("health condition that may affect the voice", "{meta.health|lower}"),
    ),
    maps={"sound": {"throatclearing": "throat clearing"}},
    homepage="https://github.com/YuanGongND/vocalsound (vs_release_16k.zip)",
    licence="CC BY-SA 4.0",
    layout="--root: audio_16k/<f|m><speaker>_<take>_<sound>.wav, meta/tr_meta.csv "
    "(no header: speaker,gender,age,country,native language,health condition)",
    yields="vocal sound class; speaker gender, age decade, health condition",
)
