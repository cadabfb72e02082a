"""Clotho: 15-30 s Freesound clips, five captions each (development split), plus Freesound tags."""

from alarm.corpus.collection import DatasetSpec, Join, Source, Variant

SPEC = DatasetSpec(
    name="clotho",
    title="Clotho v2 (development split)",
    category="sound",
    source=Source.of("table", files="clotho_captions_development.csv"),
    joins=(
        Join(
            name="meta",
            source=Source.of("table", files="clotho_metadata_development.csv"),
            key="{file_name}",
            on="{file_name}",
        ),
    ),
    # One record per caption: the same audio with five independent descriptions.
    variants=tuple(Variant(str(k), fields=(("caption", f"{{caption_{k}}}"),)) for k in range(1, 6)),
    id="{file_name|stem}",
    audio="development/{file_name}",
    text="{caption|squash}",
    text_label="caption",
    fields=(("tags", "{meta.keywords|split:;|join:, }"),),
    homepage="https://zenodo.org/records/4783391 (Clotho v2.1)",
    licence="see the Zenodo record (each clip keeps its Freesound licence: license column of the metadata CSV)",
    layout="--root: clotho_captions_development.csv (file_name,caption_1..caption_5), "
    "clotho_metadata_development.csv (file_name,keywords,...), development/<file_name>",
    yields="caption (five records per clip); Freesound tags",
)
