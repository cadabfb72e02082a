"""SonicMaster: Jamendo music clips degraded on purpose (reverb, EQ, level, dynamics, stereo), training split."""

from alarm.corpus.collection import DatasetSpec, Source

# What each degradation did to the clip, in our words, after the descriptions in the official
# ALARM script (which follow the SonicMaster paper). Keys: degradation_tracking[<kind>][0].
REVERB = {
    "big": "reverberation of a simulated large room",
    "small": "reverberation of a simulated small room",
    "real": "reverberation of a real room (measured impulse response)",
    "mix": "reverberation of a simulated room with mixed surface materials",
}
EQ = {
    "boom": "bass boom taken away (low shelf at 120 Hz cut by 10-20 dB)",
    "mud": "muddy (200-500 Hz band boosted by 6-15 dB)",
    "dark": "too bright (high shelf at 6 kHz boosted by 6-15 dB)",
    "bright": "dull (high shelf at 6 kHz cut by 6-15 dB)",
    "airy": "no air (high shelf at 10 kHz cut by 10-20 dB)",
    "warm": "no warmth (low shelf at 400 Hz cut by 6-20 dB)",
    "vocal": "vocal range attenuated (350-3500 Hz band cut by 6-20 dB)",
    "xband": "uneven tone from a random 8-12 band equaliser (each band within +/-6 dB)",
    "mic": "coloured by a microphone's frequency response",
    "clarity": "muffled (low-pass filter at 2 kHz)",
}
AMPLITUDE = {
    "volume": "very quiet (peak level 0.001-0.05 of full scale)",
    "clip": "clipped (driven to a peak of 2-5 times full scale)",
}
DYNAMICS = {
    "comp": "squashed by heavy compression (ratio 6-45, threshold -45 to -38 dB, 16-25 dB make-up gain)",
    "punch": "attacks softened by a transient shaper (8-15 dB reduction)",
}
STEREO = {"stereo": "collapsed to mono (left and right channels combined)"}

SPEC = DatasetSpec(
    name="sonicmaster",
    title="SonicMaster dataset (degraded clips of the training split)",
    category="music",
    # One Hugging Face split holds every row; meta.split says train/validation/test. The
    # clean reference (gt_flac) is the same song without degradations: not loaded.
    source=Source.of(
        "parquet",
        files="data/*.parquet",
        name="sonicmaster/{id}",
        audio_column="input_flac",
        json_columns=("meta",),
        drop_columns=("gt_flac",),
    ),
    where=(("{meta.split}", ("train",)),),
    id="{id}",
    audio="{_audio}",
    # The degraded versions of one song must not straddle the split.
    split_key="{meta.name}",
    text="music",
    fields=(
        ("title", "{meta.name|squash}"),
        ("genres", "{meta.genres|join:, }"),
        ("vocals", "{meta.vocalinstrumental|map:vocals}"),
        ("singer gender", "{meta.gender|if:meta.vocalinstrumental=vocal}"),
        ("tags", "{meta.vartags|join:, }"),
        ("reverb added", "{meta.degradation_tracking.Reverb|first|map:reverb}"),
        ("tonal balance", "{meta.degradation_tracking.EQ|first|map:eq}"),
        ("level", "{meta.degradation_tracking.Amplitude|first|map:amplitude}"),
        ("dynamics", "{meta.degradation_tracking.Dynamics|first|map:dynamics}"),
        ("stereo image", "{meta.degradation_tracking.Stereo|first|map:stereo}"),
    ),
    maps={
        "vocals": {"vocal": "with vocals", "instrumental": "instrumental"},
        "reverb": REVERB,
        "eq": EQ,
        "amplitude": AMPLITUDE,
        "dynamics": DYNAMICS,
        "stereo": STEREO,
    },
    homepage="https://huggingface.co/datasets/amaai-lab/SonicMasterDataset",
    licence="see the dataset card (tracks from Jamendo under their own Creative Commons licences)",
    layout="--root: the dataset snapshot's Parquet shards (data/*.parquet: id, input_flac, gt_flac, meta as "
    "JSON text, ...); degraded audio extracted to _alarm_audio/sonicmaster/",
    yields="title; genres; vocals or instrumental; singer gender; tags; each degradation applied (reverb, "
    "tonal balance, level, dynamics, stereo) with what it did",
)
