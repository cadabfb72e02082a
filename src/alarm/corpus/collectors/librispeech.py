"""LibriSpeech: read English audiobooks; the three training subsets."""

from alarm.corpus.collection import DatasetSpec, Join, Source
from alarm.corpus.collectors._common import GENDER

SPEAKERS = Join(
    name="spk",
    source=Source.of(
        "lines", files="SPEAKERS.TXT", sep="|", comment=";", columns=("ID", "SEX", "SUBSET", "MINUTES", "NAME")
    ),
    key="{ID}",
    on="{speaker}",
)

SPEC = DatasetSpec(
    name="librispeech",
    title="LibriSpeech ASR corpus",
    category="speech",
    source=Source.of(
        "lines",
        files="train-*/*/*/*.trans.txt",  # train-clean-100, train-clean-360, train-other-500
        columns=("utt", "text"),
        path_regex=r"^(?P<subset>[^/]+)/(?P<speaker>\d+)/(?P<chapter>\d+)/",
    ),
    id="{utt}",
    audio="{_dir}/{utt}.flac",
    joins=(SPEAKERS,),
    text="{text|lower}",
    text_label="transcript",
    fields=(("gender", "{spk.SEX|map:gender}"),),
    maps={"gender": GENDER},
    homepage="https://www.openslr.org/12",
    licence="CC BY 4.0",
    layout="LibriSpeech/ = --root: SPEAKERS.TXT, train-*/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt and *.flac",
    yields="transcript (lower-cased); speaker gender",
)
