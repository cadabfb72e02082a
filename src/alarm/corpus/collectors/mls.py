"""Multilingual LibriSpeech: read audiobooks in eight languages (training partitions)."""

from alarm.corpus.collection import DatasetSpec, Join, Source
from alarm.corpus.collectors._common import GENDER

SPEAKERS = Join(
    name="spk",
    source=Source.of(
        "lines",
        files="mls_*/metainfo.txt",
        sep="|",
        skip=1,
        columns=("SPEAKER", "GENDER", "PARTITION", "MINUTES", "BOOK_ID", "TITLE", "CHAPTER"),
        path_regex=r"^(?P<release>[^/]+)/",
    ),
    key="{release}/{SPEAKER}",
    on="{release}/{utt|split:_|nth:0}",
)

SPEC = DatasetSpec(
    name="mls",
    title="Multilingual LibriSpeech (training partitions)",
    category="speech",
    source=Source.of(
        "lines",
        files="mls_*/train/transcripts.txt",
        sep="\t",
        columns=("utt", "text"),
        path_regex=r"^(?P<release>mls_(?P<language>[a-z]+?)(?:_opus)?)/train/",
    ),
    joins=(SPEAKERS,),
    id="{language}/{utt}",  # utterance ids restart in every language
    # <speaker>_<book>_<segment>: the opus releases (the paper's) and the flac ones.
    audio=(
        "{release}/train/audio/{utt|split:_|nth:0}/{utt|split:_|nth:1}/{utt}.opus",
        "{release}/train/audio/{utt|split:_|nth:0}/{utt|split:_|nth:1}/{utt}.flac",
    ),
    text="{text|squash}",
    text_label="transcript",
    fields=(("language", "{language|capitalize}"), ("gender", "{spk.GENDER|map:gender}")),
    maps={"gender": GENDER},
    homepage="https://www.openslr.org/94 (mls_<language>_opus.tar.gz)",
    licence="CC BY 4.0",
    layout="--root holding mls_<language>_opus/ folders: metainfo.txt (SPEAKER | GENDER | ...), "
    "train/transcripts.txt (<utt>\\t<text>), train/audio/<speaker>/<book>/<utt>.opus (or .flac)",
    yields="transcript; language; speaker gender",
    notes="Every mls_* folder under --root is read; the paper used the seven non-English languages.",
)
