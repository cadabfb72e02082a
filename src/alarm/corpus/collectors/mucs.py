"""MUCS 2021: Hindi-English and Bengali-English code-switched lectures, Kaldi-style segments."""

from alarm.corpus.collection import DatasetSpec, Join, Source

TEXT = Join(
    name="txt",
    source=Source.of(
        "lines", files="*/train/transcripts/text", columns=("utt", "text"), path_regex=r"^(?P<pair>[^/]+)/train/"
    ),
    key="{pair}/{utt}",
    on="{pair}/{utt}",
)

SPEC = DatasetSpec(
    name="mucs",
    title="MUCS 2021 code-switching ASR (training sets)",
    category="speech",
    # segments: "<utt> <recording> <start> <end>" into long lecture recordings
    source=Source.of(
        "lines",
        files="*/train/transcripts/segments",
        columns=("utt", "recording", "start", "end"),
        path_regex=r"^(?P<pair>[^/]+)/train/",
    ),
    joins=(TEXT,),
    id="{pair}/{utt}",
    audio="{pair}/train/{recording}.wav",
    offset="{start}",
    end="{end}",
    text="{txt.text|squash}",
    text_label="transcript",
    fields=(("language", "{pair} code-switching"),),
    homepage="https://www.openslr.org/104",
    licence="see OpenSLR 104",
    layout="--root holding <Language-English>/train/ (the extracted <pair>_train.tar.gz): "
    "transcripts/segments, transcripts/text, <recording>.wav",
    yields="transcript; the code-switched language pair",
)
