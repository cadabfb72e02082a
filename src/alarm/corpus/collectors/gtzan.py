"""GTZAN: 1,000 thirty-second music excerpts in ten genres (folder per genre)."""

from alarm.corpus.collection import DatasetSpec, Source

SPEC = DatasetSpec(
    name="gtzan",
    title="GTZAN genre collection",
    category="music",
    source=Source.of(
        "files",
        # genres/<genre>/*.au is the original release; genres_original/<genre>/*.wav the Kaggle copy.
        files=("genres/*/*.au", "genres/*/*.wav", "genres_original/*/*.wav", "Data/genres_original/*/*.wav"),
        regex=r"(?P<genre>[^/]+)/(?P<track>[^/]+)\.(?:au|wav)$",
    ),
    id="{track}",
    audio="{_path}",
    text="music",
    fields=(("genre", "{genre|map:genre}"),),
    maps={"genre": {"hiphop": "hip-hop"}},
    homepage="http://marsyas.info/index.html (original); Kaggle 'gtzan-dataset-music-genre-classification'",
    licence="no explicit licence; distributed for research use",
    layout="--root holding genres/<genre>/<genre>.NNNNN.au (original) or genres_original/<genre>/<genre>.NNNNN.wav",
    yields="genre (blues, classical, country, disco, hip-hop, jazz, metal, pop, reggae, rock)",
    notes="jazz.00054.wav of the Kaggle copy is unreadable and is rejected as such.",
)
