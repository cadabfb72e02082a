"""InstructS2S-200K: spoken multi-turn instructions; every spoken user turn with the text before it."""

from alarm.corpus.collection import DatasetSpec, Source

SPEC = DatasetSpec(
    name="instructs2s",
    title="InstructS2S-200K (English)",
    category="instruction",
    source=Source.of("conversations", files="instruct_en_200k_data_cosy2.json", audio_dir="en/wav"),
    id="{id}/{turn}",
    audio="{_audio}",
    text="{text|squash}",
    metadata_style="transcript",
    homepage="https://huggingface.co/datasets/ICTNLP/InstructS2S-200K",
    licence="CC BY-NC 4.0",
    layout="--root: instruct_en_200k_data_cosy2.json ([{id, conversation: [{from, text, speech}]}]) and the "
    "extracted en_part_* archives: en/wav/<folder>/<file>.wav",
    yields="the spoken query's transcript; earlier turns as user/assistant text context",
)
