"""FMA (Free Music Archive): 30-second clips with genre, title, artist, album and tags (training split)."""

from alarm.corpus.collection import DatasetSpec, Source

_TRACK = "{track_id|zfill:6|head:3}/{track_id|zfill:6}.mp3"

SPEC = DatasetSpec(
    name="fma",
    title="FMA: A Dataset for Music Analysis (training split)",
    category="music",
    # tracks.csv has three stacked header rows: columns become "track.genre_top", "artist.name", ...
    source=Source.of("table", files="fma_metadata/tracks.csv", header_rows=3),
    where=(("{set.split}", ("training",)),),
    id="{track_id}",
    audio=tuple(f"{subset}/{_TRACK}" for subset in ("fma_large", "fma_full", "fma_medium", "fma_small")),
    text="music",
    fields=(
        ("genre", "{track.genre_top}"),
        ("title", "{track.title|squash}"),
        ("artist", "{artist.name|squash}"),
        ("album", "{album.title|squash}"),
        ("language", "{track.language_code}"),
        ("tags", "{track.tags|literal|join:, }"),
    ),
    homepage="https://github.com/mdeff/fma (fma_metadata.zip, fma_large.zip)",
    licence="metadata CC BY 4.0; each track under its artist's licence (track.license column)",
    layout="--root: fma_metadata/tracks.csv and fma_large/<first 3 digits>/<6-digit track id>.mp3 "
    "(or fma_full/, fma_medium/, fma_small/)",
    yields="top genre; title; artist; album; language code; tags",
)
