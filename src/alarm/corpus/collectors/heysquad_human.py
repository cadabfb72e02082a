"""HeySQuAD (human): SQuAD questions read aloud; each is used twice, with and without its passage."""

from alarm.corpus.collection import DatasetSpec, Source, Variant

SPEC = DatasetSpec(
    name="heysquad_human",
    title="HeySQuAD, human-spoken subset",
    category="instruction",
    source=Source.of(
        "parquet",
        files=("data/*.parquet", "*/*.parquet"),
        path_regex=r"(?P<_split>train|validation)[-/]",
        name="heysquad_human/{_split}/{id}",
    ),
    split="{_split}",
    id="{id}",
    audio="{_audio}",
    # The paper's two uses: the spoken question alone, and with the passage as an earlier text turn.
    variants=(Variant("question", context=()), Variant("context", context=(("user", "{context|squash}"),))),
    text="{question|squash}",
    metadata_style="transcript",
    homepage="https://huggingface.co/datasets/yijingwu/HeySQuAD_human",
    licence="CC BY 4.0 (SQuAD passages: CC BY-SA 4.0)",
    layout="--root: data/{train,validation}-NNNNN-of-NNNNN.parquet (Hugging Face snapshot: audio, question, "
    "context, id, ...); the audio is extracted once to <root>/_alarm_audio/heysquad_human/",
    yields="the question's transcript (used verbatim as the prompt); the passage as context",
)
