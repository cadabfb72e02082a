"""VCTK: 110 English speakers reading newspaper sentences, with speaker age, gender, accent."""

from alarm.corpus.collection import DatasetSpec, Join, Source
from alarm.corpus.collectors._common import GENDER

# speaker-info.txt: whitespace columns; REGION is free text and may end in a "(comment)".
# Version 0.80 writes ids as "225", version 0.92 as "p225": keys are normalised to "p225".
SPEAKERS = Join(
    name="spk",
    source=Source.of("lines", files="speaker-info.txt", skip=1, columns=("ID", "AGE", "GENDER", "ACCENTS", "REGION")),
    key="p{ID|strip_prefix:p}",
    on="{speaker}",
)

SPEC = DatasetSpec(
    name="vctk",
    title="CSTR VCTK Corpus",
    category="speech",
    source=Source.of(
        "files", files="txt/*/*.txt", regex=r"^txt/(?P<speaker>[^/]+)/(?P<utt>[^/]+)\.txt$", text_field="text"
    ),
    id="{utt}",
    # 0.80 (the paper's release): wav48/; 0.92: wav48_silence_trimmed/ with two microphones.
    audio=("wav48/{speaker}/{utt}.wav", "wav48_silence_trimmed/{speaker}/{utt}_mic1.flac"),
    joins=(SPEAKERS,),
    text="{text|squash}",
    text_label="transcript",
    fields=(
        ("gender", "{spk.GENDER|map:gender}"),
        ("age", "{spk.AGE}"),
        ("accent", "{spk.ACCENTS}"),
        ("region", "{spk.REGION|before:(|squash}"),
    ),
    maps={"gender": GENDER},
    homepage="https://datashare.ed.ac.uk/handle/10283/2651 (0.80) or /10283/3443 (0.92)",
    licence="ODC-By 1.0 (0.80); CC BY 4.0 (0.92)",
    layout="VCTK-Corpus/ = --root: speaker-info.txt, txt/pNNN/pNNN_MMM.txt, wav48/pNNN/pNNN_MMM.wav "
    "(0.92: wav48_silence_trimmed/pNNN/pNNN_MMM_mic1.flac)",
    yields="transcript; speaker gender, age, accent, region",
)
