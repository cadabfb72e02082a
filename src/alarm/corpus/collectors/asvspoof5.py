"""ASVspoof 5: bona fide and spoofed speech from many TTS systems, training set."""

from alarm.corpus.collection import DatasetSpec, Source
from alarm.corpus.collectors._common import GENDER

# The attacks of the ASVspoof 5 training set (ASVspoof 5 evaluation plan), in our words.
ATTACKS = {
    "A01": "text-to-speech (GlowTTS)",
    "A02": "text-to-speech (GlowTTS)",
    "A03": "text-to-speech (GlowTTS)",
    "A04": "text-to-speech (GradTTS)",
    "A05": "text-to-speech (GradTTS)",
    "A06": "text-to-speech (GradTTS)",
    "A07": "text-to-speech (FastPitch)",
    "A08": "text-to-speech (VITS)",
    "bonafide": "",
    "-": "",
}

SPEC = DatasetSpec(
    name="asvspoof5",
    title="ASVspoof 5 (training set)",
    category="speech",
    source=Source.of(
        "lines",
        files=("ASVspoof5.train.tsv", "ASVspoof5_protocols/ASVspoof5.train.tsv"),
        columns=("speaker", "file", "gender", "codec", "codec_q", "codec_seed", "attack_tag", "attack", "key", "tmp"),
    ),
    id="{file}",
    audio="flac_T/{file}.flac",
    text="speech",
    fields=(
        ("authenticity", "{key|map:key}"),
        ("spoofing method", "{attack|map:attack}"),
        ("speaker gender", "{gender|map:gender}"),
    ),
    maps={
        "key": {"bonafide": "bona fide (real human speech)", "spoof": "spoofed (machine-generated)"},
        "attack": ATTACKS,
        "gender": GENDER,
    },
    homepage="https://zenodo.org/records/14498691",
    licence="see the Zenodo record",
    layout="--root: ASVspoof5.train.tsv (or ASVspoof5_protocols/ASVspoof5.train.tsv; whitespace-separated: "
    "speaker file gender codec codec_q codec_seed attack_tag attack key -), flac_T/<file>.flac",
    yields="bona fide or spoofed; the spoofing method; speaker gender",
)
