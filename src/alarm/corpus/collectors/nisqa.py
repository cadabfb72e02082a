"""NISQA corpus: degraded speech with crowdsourced quality scores (the two training sets)."""

from alarm.corpus.collection import DatasetSpec, Source

SPEC = DatasetSpec(
    name="nisqa",
    title="NISQA Corpus (NISQA_TRAIN_SIM, NISQA_TRAIN_LIVE)",
    category="speech",
    source=Source.of("table", files="NISQA_corpus_file.csv"),
    where=(("{db}", ("NISQA_TRAIN_SIM", "NISQA_TRAIN_LIVE")),),
    id="{db}/{filename_deg|stem}",
    audio="{db}/deg/{filename_deg}",
    text="speech",
    # The source's scales: 1 (bad) to 5 (excellent); for the dimensions 5 means "no such degradation".
    fields=(
        ("overall quality (MOS, 1-5)", "{mos|round:2}"),
        ("noisiness (1-5, 5 = no noise)", "{noi|round:2}"),
        ("coloration (1-5, 5 = no coloration)", "{col|round:2}"),
        ("discontinuity (1-5, 5 = no interruptions)", "{dis|round:2}"),
        ("loudness (1-5, 5 = optimal)", "{loud|round:2}"),
        ("degradation", "{con_description}"),
    ),
    homepage="https://github.com/gabrielmittag/NISQA/wiki/NISQA-Corpus",
    licence="per source recording; see the NISQA Corpus page",
    layout="NISQA_Corpus/ = --root: NISQA_corpus_file.csv (db, filename_deg, mos, noi, col, dis, loud, "
    "con_description, ...), <db>/deg/<filename_deg>",
    yields="overall MOS; noisiness, coloration, discontinuity, loudness scores; the degradation condition",
)
