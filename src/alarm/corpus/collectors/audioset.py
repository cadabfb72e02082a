"""AudioSet: 10-second YouTube clips labelled with the AudioSet ontology (balanced + unbalanced train)."""

from alarm.corpus.collection import DatasetSpec, Source, TableMap

SPEC = DatasetSpec(
    name="audioset",
    title="AudioSet (balanced and unbalanced training segments)",
    category="sound",
    source=Source.of(
        "table",
        files=("balanced_train_segments.csv", "unbalanced_train_segments.csv"),
        columns=("YTID", "start_seconds", "end_seconds", "positive_labels"),
        comment="#",
        skipinitialspace=True,
    ),
    table_maps=(
        TableMap("label", Source.of("table", files="class_labels_indices.csv"), key="{mid}", value="{display_name}"),
    ),
    id="{YTID}_{start_seconds|int}",
    # AudioSet ships labels only; clips are fetched from YouTube by the user. Common namings:
    audio=(
        "audio/{YTID}_{start_seconds|int}.wav",
        "audio/Y{YTID}.wav",
        "audio/{YTID}.wav",
        "audio/{YTID}_{start_seconds|int}.flac",
    ),
    text="{positive_labels|split:,|map:label|join:; }",
    text_label="sound events",
    homepage="https://research.google.com/audioset/download.html",
    licence="labels CC BY 4.0; audio: the YouTube uploaders' terms",
    layout="--root: balanced_train_segments.csv, unbalanced_train_segments.csv, class_labels_indices.csv and the "
    "cut clips as audio/<YTID>_<start seconds>.wav (or audio/Y<YTID>.wav, audio/<YTID>.wav)",
    yields="sound event labels (display names of the ontology classes)",
)
