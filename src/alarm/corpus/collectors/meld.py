"""MELD: utterances from the TV series Friends with emotion and sentiment labels (training split)."""

from alarm.corpus.collection import DatasetSpec, Source

SPEC = DatasetSpec(
    name="meld",
    title="MELD (training split)",
    category="speech",
    source=Source.of("table", files="train_sent_emo.csv"),
    id="dia{Dialogue_ID}_utt{Utterance_ID}",
    # MELD ships video (.mp4), which libsndfile cannot read: extract the audio to WAV first
    # (docs/datasets.md). An .mp4 left in place is reported as unreadable audio.
    audio=(
        "train_splits_wav/dia{Dialogue_ID}_utt{Utterance_ID}.wav",
        "train_splits/dia{Dialogue_ID}_utt{Utterance_ID}.wav",
        "train_splits/dia{Dialogue_ID}_utt{Utterance_ID}.mp4",
    ),
    text="{Utterance|fix_quotes|squash}",
    text_label="transcript",
    fields=(("emotion", "{Emotion}"), ("sentiment", "{Sentiment}")),
    homepage="https://affective-meld.github.io/ (MELD.Raw.tar.gz)",
    licence="GPL-3.0",
    layout="MELD.Raw/ = --root: train_sent_emo.csv, train_splits/diaD_uttU.mp4 with audio extracted to "
    "train_splits_wav/diaD_uttU.wav (or .wav next to the .mp4)",
    yields="transcript; emotion (7 classes); sentiment",
)
