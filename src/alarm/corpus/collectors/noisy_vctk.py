"""Noisy VCTK (Valentini): VCTK sentences with added noise at known SNRs, and their clean originals."""

from alarm.corpus.collection import DatasetSpec, Join, Source, Variant

TEXTS = Join(
    name="txt",
    source=Source.of(
        "files",
        files="trainset_*_txt/*.txt",
        regex=r"^(?P<set>trainset_\d+spk)_txt/(?P<utt>[^/]+)\.txt$",
        text_field="text",
    ),
    key="{set}/{utt}",
    on="{set}/{utt}",
)

SPEC = DatasetSpec(
    name="noisy_vctk",
    title="Noisy speech database (Valentini-Botinhao), 28- and 56-speaker training sets",
    category="speech",
    # log_trainset_*.txt: "<utt> <noise type> <snr>" for every noisy file.
    source=Source.of(
        "lines",
        files="log_trainset_*.txt",
        columns=("utt", "noise", "snr"),
        path_regex=r"log_(?P<set>trainset_\d+spk)\.txt$",
    ),
    joins=(TEXTS,),
    # Each sentence twice: as mixed with noise, and as the clean recording it was made from.
    variants=(
        Variant("noisy", fields=(("kind", "noisy"),)),
        Variant("clean", fields=(("kind", "clean"), ("noise", "none (clean recording)"), ("snr", ""))),
    ),
    id="{set}/{utt}",
    audio="{kind}_{set}_wav/{utt}.wav",
    text="{txt.text|squash}",
    text_label="transcript",
    fields=(("background noise", "{noise|map:noise}"), ("SNR", "{snr} dB")),
    maps={"noise": {"ssn": "speech-shaped noise"}},
    homepage="https://datashare.ed.ac.uk/handle/10283/2791",
    licence="CC BY 4.0",
    layout="--root: log_trainset_{28,56}spk.txt, trainset_{28,56}spk_txt/<utt>.txt, "
    "noisy_trainset_{28,56}spk_wav/<utt>.wav, clean_trainset_{28,56}spk_wav/<utt>.wav",
    yields="transcript; background noise type and SNR (or clean)",
)
