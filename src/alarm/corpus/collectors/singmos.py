"""SingMOS: real and synthesized singing with listener MOS (the SingMOS training list)."""

from alarm.corpus.collection import DatasetSpec, Join, Source

SPEC = DatasetSpec(
    name="singmos",
    title="SingMOS (training list)",
    category="music",
    source=Source.of("json", files="info/split.json", at="singmos.train"),
    joins=(
        Join(
            name="score",
            source=Source.of("json", files="info/score.json", layout="dict", at="utterance", key_field="id"),
            key="{id}",
            on="{value}",
        ),
        # The second join looks up the system named by the first one.
        Join(
            name="system",
            source=Source.of("json", files="info/sys_info.json", layout="dict", key_field="id"),
            key="{id}",
            on="{score.sys_id}",
        ),
    ),
    id="{value}",
    audio="wavs/{value}.wav",
    text="singing",
    fields=(
        ("MOS (1-5)", "{score.score.mos|round:2}"),
        ("real or synthesized", "{system.type|map:real}"),
        ("generation method", "{system.type|map:method}"),
    ),
    maps={
        "real": {"gt": "real recording", "svs": "synthesized", "svc": "synthesized", "vocoder": "synthesized"},
        "method": {"gt": "", "svs": "singing voice synthesis", "svc": "singing voice conversion", "vocoder": "vocoder"},
    },
    homepage="https://huggingface.co/datasets/TangRain/SingMOS",
    licence="see the dataset card",
    layout="--root: the dataset snapshot: info/split.json ({singmos: {train: [ids]}}), info/score.json "
    "({utterance: {id: {sys_id, score: {mos}}}}), info/sys_info.json ({system: {type}}), wavs/<id>.wav",
    yields="MOS; real or synthesized; generation method",
)
