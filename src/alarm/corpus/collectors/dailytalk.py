"""DailyTalk: DailyDialog conversations re-recorded by voice actors, one WAV file per turn."""

from alarm.corpus.collection import DatasetSpec, Source

# DailyDialog's dialogue-act and emotion codes; metadata.json may hold the names or the numbers.
ACTS = {"1": "inform", "2": "question", "3": "directive", "4": "commissive"}
EMOTIONS = {
    "no emotion": "neutral",
    "0": "neutral",
    "1": "anger",
    "2": "disgust",
    "3": "fear",
    "4": "happiness",
    "5": "sadness",
    "6": "surprise",
}

SPEC = DatasetSpec(
    name="dailytalk",
    title="DailyTalk (spoken DailyDialog conversations)",
    category="speech",
    # metadata.json: {dialogue id: {turn id: {speaker, text, emotion, act, ...}}}.
    source=Source.of("json", files="metadata.json", layout="dict", key_field=("dialogue", "turn")),
    id="{dialogue}/{turn}",
    audio="data/{dialogue}/{turn}_{speaker}_d{dialogue}.wav",
    # Turns of one dialogue repeat its topic and wording: keep each dialogue in one split.
    split_key="{dialogue}",
    text="{text|squash}",
    text_label="transcript",
    fields=(("emotion", "{emotion|map:emotion}"), ("speech act", "{act|map:act}")),
    maps={"emotion": EMOTIONS, "act": ACTS},
    homepage="https://github.com/keonlee9420/DailyTalk (dataset: the Google Drive folder linked there)",
    licence="CC BY-SA 4.0",
    layout="dailytalk/ = --root: metadata.json and data/<dialogue>/<turn>_<speaker>_d<dialogue>.wav "
    "(a .txt transcript beside each .wav)",
    yields="one record per turn: transcript; emotion (DailyDialog's 7 classes, 'no emotion' as neutral); "
    "speech act (inform, question, directive, commissive)",
    notes="The paper concatenated consecutive turns into clips of up to 25 s; a record here is one turn's file.",
)
