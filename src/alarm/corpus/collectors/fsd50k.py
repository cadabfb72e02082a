"""FSD50K: Freesound clips with AudioSet-ontology labels (the dev set's training part)."""

from alarm.corpus.collection import DatasetSpec, Source

SPEC = DatasetSpec(
    name="fsd50k",
    title="FSD50K (development set, train split)",
    category="sound",
    source=Source.of("table", files="FSD50K.ground_truth/dev.csv"),
    where=(("{split}", ("train",)),),  # dev.csv also marks a validation part; eval is a separate set
    id="{fname}",
    audio="FSD50K.dev_audio/{fname}.wav",
    text="{labels|split:,|spaces|join:, }",
    text_label="sound events",
    homepage="https://zenodo.org/records/4060432",
    licence="CC BY 4.0 (dataset); clips under their Freesound licences (CC0, CC BY, CC BY-NC, Sampling+)",
    layout="--root: FSD50K.ground_truth/dev.csv (fname,labels,mids,split), FSD50K.dev_audio/<fname>.wav",
    yields="sound event labels (leaf and ancestor classes of the AudioSet ontology)",
)
