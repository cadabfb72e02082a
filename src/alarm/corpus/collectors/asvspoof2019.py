"""ASVspoof 2019 logical access: bona fide and spoofed (TTS / voice conversion) speech, training set."""

from alarm.corpus.collection import DatasetSpec, Source

# The spoofing systems of the LA training set (ASVspoof 2019 evaluation plan), in our words.
SYSTEMS = {
    "A01": "text-to-speech with a WaveNet neural vocoder",
    "A02": "text-to-speech with the WORLD vocoder",
    "A03": "text-to-speech with the WORLD vocoder",
    "A04": "text-to-speech by waveform concatenation (MaryTTS unit selection)",
    "A05": "voice conversion with a VAE and the WORLD vocoder",
    "A06": "voice conversion by spectral filtering and overlap-add",
    "-": "",
}

SPEC = DatasetSpec(
    name="asvspoof2019",
    title="ASVspoof 2019, logical access (training set)",
    category="speech",
    source=Source.of(
        "lines",
        files="LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.train.trn.txt",
        columns=("speaker", "file", "environment", "system", "key"),
    ),
    id="{file}",
    audio="LA/ASVspoof2019_LA_train/flac/{file}.flac",
    text="speech",
    fields=(("authenticity", "{key|map:key}"), ("spoofing method", "{system|map:system}")),
    maps={
        "key": {"bonafide": "bona fide (real human speech)", "spoof": "spoofed (machine-generated)"},
        "system": SYSTEMS,
    },
    homepage="https://datashare.ed.ac.uk/handle/10283/3336 (LA.zip)",
    licence="ODC-By 1.0",
    layout="--root holding LA/: ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.train.trn.txt "
    "(speaker file - system key), ASVspoof2019_LA_train/flac/<file>.flac",
    yields="bona fide or spoofed; the spoofing method",
)
