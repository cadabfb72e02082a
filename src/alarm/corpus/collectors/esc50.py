"""ESC-50: 2,000 five-second environmental recordings in 50 classes (all five folds used)."""

from alarm.corpus.collection import DatasetSpec, Source

SPEC = DatasetSpec(
    name="esc50",
    title="ESC-50 (environmental sound classification)",
    category="sound",
    source=Source.of("table", files="meta/esc50.csv"),
    id="{filename|stem}",
    audio="audio/{filename}",
    text="{category|spaces}",
    text_label="sound event",
    homepage="https://github.com/karolpiczak/ESC-50",
    licence="CC BY-NC 3.0 (clips from freesound.org)",
    layout="ESC-50-master/ = --root: meta/esc50.csv (filename,fold,target,category,esc10,src_file,take), audio/*.wav",
    yields="sound event class (e.g. 'dog', 'chirping birds')",
)
