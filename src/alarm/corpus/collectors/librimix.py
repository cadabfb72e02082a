"""LibriMix: two or three LibriSpeech utterances read at once, mixed into one file (training sets)."""

from alarm.corpus.collection import DatasetSpec, Join, Part, Source
from alarm.corpus.collectors._common import GENDER

MAX_SOURCES = 3  # Libri2Mix and Libri3Mix

# LibriMix writes its own metadata beside the audio; the metrics file lists every mixture.
METRICS = "Libri[23]Mix/wav16k/max/metadata/metrics_train-*_mix_clean.csv"
PATH = r"^(?P<mix>Libri(?P<n>\d)Mix)/wav16k/max/metadata/metrics_(?P<subset>train-\d+)_mix_clean\.csv$"

TRANSCRIPTS = Source.of("lines", files="LibriSpeech/train-clean-*/*/*/*.trans.txt", columns=("utt", "text"))
SPEAKERS = Source.of(
    "lines", files="LibriSpeech/SPEAKERS.TXT", sep="|", comment=";", columns=("ID", "SEX", "SUBSET", "MINUTES", "NAME")
)
# Sources are zero-padded to the longest one in the mixture ("max" mode), so their own
# length is the original utterance's.
LENGTHS = Source.of("files", files="LibriSpeech/train-clean-*/*/*/*.flac", audio_info=True)


def _utterance(k: int) -> str:
    """Template of source ``k``'s LibriSpeech utterance id: the mixture id joins them with ``_``."""
    return f"{{mixture_ID|split:_|nth:{k - 1}}}"


def _speaker(k: int) -> str:
    """Template of source ``k``'s speaker id (``<speaker>-<chapter>-<n>``)."""
    return f"{{mixture_ID|split:_|nth:{k - 1}|before:-}}"


def _joins(k: int) -> tuple[Join, ...]:
    return (
        Join(f"s{k}", TRANSCRIPTS, key="{utt}", on=_utterance(k)),
        Join(f"spk{k}", SPEAKERS, key="{ID}", on=_speaker(k)),
        Join(f"len{k}", LENGTHS, key="{_stem}", on=_utterance(k)),
    )


SPEC = DatasetSpec(
    name="librimix",
    title="LibriMix (Libri2Mix and Libri3Mix, clean training mixtures)",
    category="speech",
    source=Source.of("table", files=METRICS, path_regex=PATH),
    joins=tuple(join for k in range(1, MAX_SOURCES + 1) for join in _joins(k)),
    id="{mix}/{subset}/{mixture_ID}",
    audio="{mix}/wav16k/max/{subset}/mix_clean/{mixture_ID}.wav",
    parts=tuple(
        Part(speaker=f"speaker {k}", text=f"{{s{k}.text|lower}}", when=_utterance(k), end=f"{{len{k}._seconds}}")
        for k in range(1, MAX_SOURCES + 1)
    ),
    fields=(
        ("speakers", "{n}"),
        ("background noise", "none"),
        *(
            (label.format(k=k), template.format(k=k))
            for k in range(1, MAX_SOURCES + 1)
            for label, template in (
                ("speaker {k} gender", "{{spk{k}.SEX|map:gender}}"),
                ("speaker {k} level over the others", "{{source_{k}_SNR|round:1}} dB"),
            )
        ),
    ),
    maps={"gender": GENDER},
    homepage="https://github.com/JorisCos/LibriMix (generate_librimix.sh; from LibriSpeech openslr.org/12)",
    licence="CC BY 4.0 (LibriSpeech); the metadata and scripts under the LibriMix repository's MIT licence",
    layout="--root = the storage dir given to generate_librimix.sh: "
    "Libri{2,3}Mix/wav16k/max/metadata/metrics_train-{100,360}_mix_clean.csv, "
    "Libri{2,3}Mix/wav16k/max/train-{100,360}/mix_clean/<mixture_ID>.wav, LibriSpeech/SPEAKERS.TXT, "
    "LibriSpeech/train-clean-{100,360}/<spk>/<chapter>/*.trans.txt and *.flac",
    yields="per speaker: transcript (lower-cased) with its time span, gender, level over the other speakers "
    "(the source's SNR in the mixture, dB); speaker count",
    notes="Reads the 16 kHz 'max' mixtures without noise, as the paper did: 'min' mode cuts every source to "
    "the shortest, so the longer transcripts would not match the audio; 8 kHz copies would be duplicates.",
)
