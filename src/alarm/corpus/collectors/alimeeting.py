"""AliMeeting: Mandarin meetings (far-field array), cut into windows at the TextGrid times."""

from alarm.corpus.collection import DatasetSpec, Join, Source, Windowing
from alarm.corpus.collectors._common import GENDER

SPEC = DatasetSpec(
    name="alimeeting",
    title="AliMeeting (Train_Ali_far)",
    category="speech",
    # One TextGrid per meeting, one interval tier per speaker.
    source=Source.of(
        "textgrid", files="Train_Ali_far/textgrid_dir/*.TextGrid", path_regex=r"(?P<meeting>R\d+_M\d+)[^/]*\.TextGrid$"
    ),
    # The array recording's name adds the session (R0003_M0046_MS002.wav): found by meeting.
    joins=(
        Join(
            name="far",
            source=Source.of(
                "files", files="Train_Ali_far/audio_dir/*.wav", regex=r"(?P<meeting>R\d+_M\d+)_(?P<session>MS\d+)\.wav$"
            ),
            key="{meeting}",
            on="{meeting}",
        ),
    ),
    id="{meeting}",
    audio="{far._path}",
    windowing=Windowing(
        group="{meeting}",
        start="{start}",
        end="{end}",
        speaker="{tier}",
        text="{text}",
        # Far-field tiers are named <room>_<meeting>_<F|M>_SPK<n> or <F|M>_SPK<n> (lhotse's recipe
        # reads both); the letter is the speaker's gender.
        speaker_fields=(("gender", r"{tier|match:([FM])_SPK\d+$|map:gender}"),),
        max_window_s=30.0,
        max_gap_s=10.0,
    ),
    maps={"gender": GENDER},
    homepage="https://www.openslr.org/119 (Train_Ali_far.tar.gz)",
    licence="CC BY-SA 4.0 (OpenSLR 119)",
    layout="--root holding Train_Ali_far/: audio_dir/<room>_<meeting>_<session>.wav (8-channel array, mixed to "
    "mono when loaded), textgrid_dir/<room>_<meeting>.TextGrid (long format, a tier per speaker)",
    yields="windows of up to 30 s: timed utterances with speaker numbers and transcripts; speaker count; genders",
    notes="The paper mixed the near-field headset channels instead; one far-field file keeps records to one file.",
)
