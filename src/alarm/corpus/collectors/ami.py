"""AMI Meeting Corpus: meetings cut into windows of utterances at the manual segment times."""

from alarm.corpus.collection import DatasetSpec, Source, Windowing
from alarm.corpus.collectors._common import GENDER


def _meetings(*sessions: str, parts: str = "abcd") -> tuple[str, ...]:
    return tuple(f"{s}{p}" for s in sessions for p in parts)


# The AMI "full-corpus-asr" partition's development and test meetings: everything else trains.
HELD_OUT = (
    _meetings("ES2011", "IS1008", "TS3004")
    + ("IB4001", "IB4002", "IB4003", "IB4004", "IB4010", "IB4011")
    + _meetings("ES2004", "IS1009", "TS3003", "EN2002")
)

SPEC = DatasetSpec(
    name="ami",
    title="AMI Meeting Corpus (headset mix, manual transcripts)",
    category="speech",
    source=Source.of("ami", annotations="ami_public_manual_1.6.2"),
    exclude=(("{meeting}", HELD_OUT),),
    id="{meeting}",  # windows get ids <meeting>/<k>
    audio="amicorpus/{meeting}/audio/{meeting}.Mix-Headset.wav",
    windowing=Windowing(
        group="{meeting}",
        start="{start}",
        end="{end}",
        speaker="{speaker}",
        text="{text}",
        speaker_fields=(("gender", "{sex|map:gender}"),),
        max_window_s=30.0,
        max_gap_s=10.0,
    ),
    maps={"gender": GENDER},
    homepage="https://groups.inf.ed.ac.uk/ami/download/ (Headset mix + ami_public_manual_1.6.2.zip)",
    licence="CC BY 4.0",
    layout="--root: amicorpus/<meeting>/audio/<meeting>.Mix-Headset.wav and ami_public_manual_1.6.2/ "
    "(corpusResources/meetings.xml, words/*.words.xml, segments/*.segments.xml)",
    yields="windows of up to 30 s: timed utterances with speaker numbers and transcripts; speaker count; genders",
    notes="Development and test meetings of the full-corpus-asr partition are left out.",
)
