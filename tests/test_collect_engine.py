"""The collection engine: templates, specs, validation and rejects, windowing, splits, statistics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from alarm.corpus import collection
from alarm.corpus.collection import (
    CollectError,
    CollectOptions,
    Collector,
    DatasetSpec,
    Join,
    Part,
    Source,
    SpecError,
    Template,
    Variant,
    Windowing,
    clock,
    collect_to_file,
    corpus_stats,
    default_rejects_path,
    hash_split,
    spec_from_dict,
)
from alarm.corpus.schema import CorpusRecord, SourceRecord, read_records, write_jsonl, write_parquet

RATE = 8000


def wav(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(int(round(seconds * RATE)), 0.05, np.float32), RATE, subtype="PCM_16")
    return path


def run(spec: DatasetSpec, root: Path, **options) -> tuple[list[SourceRecord], Collector]:
    options = {"validation_fraction": 0.0, "progress": False, **options}
    collector = Collector(spec, root, CollectOptions(**options))
    return list(collector.records()), collector


# -- templates -----------------------------------------------------------------------------


def test_template_fields_filters_and_missing_values() -> None:
    maps = {"g": {"F": "female"}}
    item = {"a": "Chirping_Birds", "n": 37, "tags": "x; y;;z", "g": "F", "empty": " ", "f": 4.035799}
    assert Template("{a|spaces|lower}").render(item, maps) == "chirping birds"
    assert Template("{n|decade} / {{n}}").render(item, maps) == "30s / {n}"
    assert Template("{tags|split:;|join:/}").render(item, maps) == "x/y/z"
    assert Template("{g|map:g}, {a|map:g}").render(item, maps) == "female, Chirping_Birds"
    assert Template("{f} {f|round:1} {n|int}").render(item, maps) == "4.0358 4.0 37"
    assert Template("a {empty} b").render(item, maps) is None  # one missing value drops the whole field
    assert Template("{nope|default:unknown}").render(item, maps) == "unknown"
    assert Template("{a|before:_|upper}").render(item, maps) == "CHIRPING"
    assert Template("p{id|strip_prefix:p}").render({"id": "p225"}, maps) == "p225"
    assert Template("p{id|strip_prefix:p}").render({"id": "225"}, maps) == "p225"


@pytest.mark.parametrize("bad", ["{a", "a}", "{a|nofilter}", "{}", "{a}{"])
def test_malformed_templates_are_spec_errors(bad: str) -> None:
    with pytest.raises(SpecError):
        Template(bad)


def test_clock() -> None:
    assert [clock(s) for s in (0, 2.64, 59.96, 61.0, 3725.25)] == [
        "00:00.0",
        "00:02.6",
        "01:00.0",
        "01:01.0",
        "1:02:05.2",
    ]


# -- specs ---------------------------------------------------------------------------------


def toy_spec(**overrides) -> DatasetSpec:
    fields = {
        "name": "toy",
        "title": "toy",
        "category": "sound",
        "source": Source.of("table", files="clips.csv"),
        "id": "{clip}",
        "audio": "{file}",
        "text": "{label}",
        "text_label": "label",
        "offset": "{start}",
        "duration": "{length}",
    }
    return DatasetSpec(**{**fields, **overrides})


def test_spec_validation() -> None:
    with pytest.raises(SpecError, match="category"):
        toy_spec(category="noise")
    with pytest.raises(SpecError, match="map"):
        toy_spec(text="{label|map:missing}")
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['file'\]"):
        Source.of("table", file="clips.csv")
    with pytest.raises(SpecError, match="unknown reader"):
        Source.of("xml", files="a.xml")
    with pytest.raises(SpecError, match="name"):
        toy_spec(name="Toy Set")


def test_spec_from_json_refuses_unknown_keys_and_runs(tmp_path: Path) -> None:
    data = {
        "name": "toy",
        "title": "toy",
        "category": "sound",
        "source": {"reader": "table", "options": {"files": "clips.csv"}},
        "id": "{clip}",
        "audio": "{file}",
        "text": "{label}",
        "fields": [["label again", "{label|upper}"]],
    }
    with pytest.raises(SpecError, match="colour"):
        spec_from_dict({**data, "colour": "red"})
    with pytest.raises(SpecError, match="delimeter"):
        spec_from_dict({**data, "source": {"reader": "table", "options": {"files": "x", "delimeter": ";"}}})
    (tmp_path / "clips.csv").write_text("clip,file,label\na,a.wav,dog\n")
    wav(tmp_path / "a.wav", 0.5)
    records, _ = run(spec_from_dict(json.loads(json.dumps(data))), tmp_path)
    assert [r.metadata for r in records] == ["[00:00.0-00:00.5] dog\nduration: 0.5 s; label again: DOG"]


@dataclass(frozen=True)
class IdListOptions:
    ids: tuple[str, ...]


def test_a_new_layout_is_one_registered_reader(tmp_path: Path) -> None:
    """A reader registered by name is usable from any spec; a name is taken only once."""

    @collection.register("test_id_list", IdListOptions)
    def read_id_list(root: Path, opts: IdListOptions):
        yield from ({"id": i} for i in opts.ids)

    try:
        wav(tmp_path / "a.wav", 1.0)
        wav(tmp_path / "b.wav", 0.5)
        spec = DatasetSpec(
            name="listed",
            title="t",
            category="sound",
            source=Source("test_id_list", {"ids": ["a", "b"]}),
            id="{id}",
            audio="{id}.wav",
            text="{id}",
        )
        records, _ = run(spec, tmp_path)
        assert [(r.id, r.duration_s) for r in records] == [("listed/a", 1.0), ("listed/b", 0.5)]
        with pytest.raises(ValueError, match="two readers are named 'test_id_list'"):
            collection.register("test_id_list", IdListOptions)(read_id_list)
    finally:
        del collection.READERS["test_id_list"]


def test_wrong_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CollectError, match="clips.csv"):
        run(toy_spec(), tmp_path)
    with pytest.raises(CollectError, match="not a folder"):
        Collector(toy_spec(), tmp_path / "absent")


# -- parts, item conditions, nested JSON, shared joins -------------------------------------


def test_if_filter_keeps_a_value_only_when_another_field_says_so() -> None:
    template = Template("{gender|if:kind=vocal}")
    assert template.render({"gender": "female", "kind": "vocal"}, {}) == "female"
    assert template.render({"gender": "female", "kind": "instrumental"}, {}) is None
    assert template.render({"gender": "female"}, {}) is None
    assert Template("{gender|if:kind}").render({"gender": "male", "kind": "x"}, {}) == "male"
    with pytest.raises(SpecError, match="condition"):
        Template("{gender|if}")


def mixture_spec(**overrides) -> DatasetSpec:
    """Two speakers read at once in one file: each part has its own end time, from a side table."""
    lengths = Source.of("table", files="lengths.csv")
    fields = {
        "name": "mix",
        "title": "mix",
        "category": "speech",
        "source": Source.of("table", files="mixes.csv"),
        "joins": (
            Join("a", lengths, key="{utt}", on="{first}"),
            Join("b", lengths, key="{utt}", on="{second}"),
        ),
        "id": "{mix}",
        "audio": "{mix}.wav",
        "parts": (
            Part("speaker 1", "{text_1}", when="{first}", end="{a.seconds}"),
            Part("speaker 2", "{text_2}", when="{second}", end="{b.seconds}", fields=(("emotion", "{emotion_2}"),)),
        ),
        "fields": (("speakers", "{count}"),),
    }
    return DatasetSpec(**{**fields, **overrides})


def test_parts_are_timed_lines_and_a_missing_one_rejects_the_entry(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mixes.csv").write_text(
        "mix,first,second,text_1,text_2,emotion_2,count\n"
        "m1,u1,u2,hello there,fine thanks,joy,2\n"
        "m2,u1,,only one,,,1\n"
        "m3,u1,u2,hello,,,2\n"  # the second speaker exists but has no transcript
    )
    (tmp_path / "lengths.csv").write_text("utt,seconds\nu1,1.2\nu2,0.4\n")
    for name in ("m1", "m2", "m3"):
        wav(tmp_path / f"{name}.wav", 1.0)
    reads = []
    real = collection.READERS["table"]
    counting = collection.ReaderKind(
        real.options, lambda root, opts: (reads.append(opts.files), real.read(root, opts))[1]
    )
    monkeypatch.setitem(collection.READERS, "table", counting)

    records, collector = run(mixture_spec(), tmp_path)
    assert [r.metadata for r in records] == [
        "[00:00.0-00:01.0] speaker 1: hello there\n[00:00.0-00:00.4] speaker 2 (emotion: joy): fine thanks\n"
        "duration: 1.0 s; speakers: 2",
        "[00:00.0-00:01.0] speaker 1: only one\nduration: 1.0 s; speakers: 1",
    ]
    assert [(r.id, r.reason) for r in collector.rejects] == [("mix/m3", "bad annotation")]
    assert "text_2" in collector.rejects[0].detail
    # The two joins read lengths.csv once.
    assert reads.count(("lengths.csv",)) == 1


def test_parts_replace_text_and_come_from_json_specs(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="parts replace text"):
        mixture_spec(text="{text_1}")
    data = {
        "name": "mix",
        "title": "mix",
        "category": "speech",
        "source": {"reader": "table", "options": {"files": "mixes.csv"}},
        "id": "{mix}",
        "audio": "{mix}.wav",
        "parts": [{"speaker": "A", "text": "{a}", "end": "{a_end}"}, {"speaker": "B", "text": "{b}"}],
    }
    (tmp_path / "mixes.csv").write_text("mix,a,a_end,b\nm1,hi,0.3,ho\n")
    wav(tmp_path / "m1.wav", 0.5)
    records, _ = run(spec_from_dict(data), tmp_path)
    # Without an end a part lasts to the end of the record.
    assert records[0].metadata == "[00:00.0-00:00.3] A: hi\n[00:00.0-00:00.5] B: ho\nduration: 0.5 s"
    with pytest.raises(SpecError, match="part"):
        spec_from_dict({**data, "parts": [{"speaker": "A", "txt": "{a}"}]})


def test_nested_json_objects_one_key_per_level(tmp_path: Path) -> None:
    doc = {"d1": {"t0": {"text": "hi", "file": "a.wav"}, "t1": {"text": "ho", "file": "b.wav"}}, "d2": "oops"}
    (tmp_path / "meta.json").write_text(json.dumps(doc))
    wav(tmp_path / "a.wav", 0.5)
    wav(tmp_path / "b.wav", 0.5)
    spec = toy_spec(
        source=Source.of("json", files="meta.json", layout="dict", key_field=("dialogue", "turn")),
        id="{dialogue}/{turn}",
        audio="{file}",
        text="{text}",
        offset=None,
        duration=None,
    )
    records, collector = run(spec, tmp_path)
    assert [(r.id, r.metadata.splitlines()[0]) for r in records] == [
        ("toy/d1/t0", "[00:00.0-00:00.5] label: hi"),
        ("toy/d1/t1", "[00:00.0-00:00.5] label: ho"),
    ]
    assert [r.reason for r in collector.rejects] == ["bad annotation"]
    assert "expected an object under dialogue 'd2'" in collector.rejects[0].detail


# -- validation and rejects ----------------------------------------------------------------


def build_broken(root: Path) -> None:
    wav(root / "good.wav", 1.0)
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00junk that is not audio" * 3)
    (root / "empty.wav").write_bytes(b"")
    sf.write(root / "zeroframes.wav", np.zeros(0, np.float32), RATE)
    (root / "clips.csv").write_text(
        "clip,file,label,start,length\n"
        "good,good.wav,dog,,\n"
        "missing,missing.wav,cat,,\n"
        "corrupt,corrupt.wav,bird,,\n"
        "empty,empty.wav,rain,,\n"
        "zeroframes,zeroframes.wav,wind,,\n"
        "good,good.wav,dog again,,\n"
        ",nameless.wav,fox,,\n"
        "late,good.wav,car,5.0,1.0\n"
        "long,good.wav,bus,0.5,2.0\n"
        "tail,good.wav,horn,0.5,0.9\n"
        "notime,good.wav,horn,soon,\n"
    )


def test_broken_entries_are_rejected_with_reasons_never_fatal(tmp_path: Path) -> None:
    build_broken(tmp_path)
    out = tmp_path / "out/toy.jsonl"
    summary = collect_to_file(toy_spec(), tmp_path, out, options=CollectOptions(validation_fraction=0, progress=False))
    records = list(read_records(out))
    assert [(r.id, r.offset_s, r.duration_s, r.metadata) for r in records] == [
        ("toy/good", 0.0, 1.0, "[00:00.0-00:01.0] label: dog\nduration: 1.0 s"),
        # ends 0.4 s past the file: within tolerance, cut at the end of the file
        ("toy/tail", 0.5, 0.5, "[00:00.0-00:00.5] label: horn\nduration: 0.5 s"),
    ]
    rejects = [json.loads(line) for line in default_rejects_path(out).read_text().splitlines()]
    assert {r["id"]: r["reason"] for r in rejects} == {
        "toy/missing": "missing audio",
        "toy/corrupt": "unreadable audio",
        "toy/empty": "zero duration",
        "toy/zeroframes": "zero duration",
        "toy/good": "duplicate id",
        "toy/?clips.csv:8": "bad annotation",
        "toy/late": "segment outside the audio",
        "toy/long": "segment outside the audio",
        "toy/notime": "bad annotation",
    }
    by_id = {r["id"]: r for r in rejects}
    assert by_id["toy/missing"]["audio_path"] == "missing.wav"
    assert "['clip']" in by_id["toy/?clips.csv:8"]["detail"]
    assert "soon" in by_id["toy/notime"]["detail"]
    assert summary.kept == 2 and summary.seconds == pytest.approx(1.5)
    assert dict(summary.rejected) == {
        "missing audio": 1,
        "unreadable audio": 1,
        "zero duration": 2,
        "duplicate id": 1,
        "bad annotation": 2,
        "segment outside the audio": 2,
    }
    text = summary.format()
    assert "kept 2 records" in text and "rejected 9" in text and "duplicate id: 1" in text


def test_decode_check_catches_truncated_files_the_header_misses(tmp_path: Path) -> None:
    data = wav(tmp_path / "cut.wav", 1.0).read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])  # header still promises 1 s
    (tmp_path / "clips.csv").write_text("clip,file,label,start,length\ncut,cut.wav,dog,,\n")
    header_records, _ = run(toy_spec(), tmp_path, check="header")
    assert [r.id for r in header_records] == ["toy/cut"]
    decoded, collector = run(toy_spec(), tmp_path, check="decode")
    assert decoded == []
    assert [(r.id, r.reason) for r in collector.rejects] == [("toy/cut", "unreadable audio")]
    assert "truncated" in collector.rejects[0].detail


def test_where_exclude_and_limit(tmp_path: Path) -> None:
    for name in "abcd":
        wav(tmp_path / f"{name}.wav", 0.25)
    (tmp_path / "clips.csv").write_text(
        "clip,file,label,start,length\na,a.wav,dog,,\nb,b.wav,cat,,\nc,c.wav,dog,,\nd,d.wav,dog,,\n"
    )
    spec = toy_spec(where=(("{label}", ("dog",)),), exclude=(("{clip}", ("d",)),))
    records, collector = run(spec, tmp_path)
    assert [r.id for r in records] == ["toy/a", "toy/c"]
    assert sum(collector.summary.filtered.values()) == 2 and collector.rejects == []
    limited, _ = run(spec, tmp_path, limit=1)
    assert [r.id for r in limited] == ["toy/a"]


def test_a_filter_that_cannot_read_a_value_rejects_the_entry(tmp_path: Path) -> None:
    wav(tmp_path / "a.wav", 0.25)
    (tmp_path / "clips.csv").write_text("clip,file,label,year\na,a.wav,x,1999\nb,a.wav,y,soon\n")
    spec = toy_spec(offset=None, duration=None, where=(("{year|int}", ("1999",)),))
    records, collector = run(spec, tmp_path)
    assert [r.id for r in records] == ["toy/a"]
    assert [(r.id, r.reason) for r in collector.rejects] == [("toy/b", "bad annotation")]
    assert "'soon'" in collector.rejects[0].detail


# -- splits --------------------------------------------------------------------------------


def test_hash_split_is_stable_and_close_to_the_fraction() -> None:
    ids = [f"toy/{i}" for i in range(2000)]
    splits = [hash_split(i, 0.1) for i in ids]
    assert splits == [hash_split(i, 0.1) for i in ids]
    assert 150 <= splits.count("validation") <= 250
    assert {hash_split(i, 0.0) for i in ids} == {"train"} and {hash_split(i, 1.0) for i in ids} == {"validation"}


def test_source_split_is_mapped_and_other_splits_filtered(tmp_path: Path) -> None:
    for name in "abc":
        wav(tmp_path / f"{name}.wav", 0.25)
    (tmp_path / "clips.csv").write_text("clip,file,label,part\na,a.wav,x,tr\nb,b.wav,y,cv\nc,c.wav,z,test\n")
    spec = toy_spec(offset=None, duration=None, split="{part}", split_map={"tr": "train", "cv": "validation"})
    records, collector = run(spec, tmp_path, validation_fraction=1.0)
    assert [(r.id, r.split) for r in records] == [("toy/a", "train"), ("toy/b", "validation")]
    assert dict(collector.summary.filtered) == {"split 'test'": 1}


def test_variants_of_one_entry_share_a_split(tmp_path: Path) -> None:
    rows = ["clip,file,label"]
    for i in range(40):
        wav(tmp_path / f"{i}.wav", 0.1)
        rows.append(f"c{i},{i}.wav,x")
    (tmp_path / "clips.csv").write_text("\n".join(rows) + "\n")
    variants = tuple(Variant(str(k)) for k in range(3))
    records, _ = run(toy_spec(offset=None, duration=None, variants=variants), tmp_path, validation_fraction=0.5)
    splits: dict[str, set[str]] = {}
    for r in records:
        splits.setdefault(r.id.rsplit("/", 1)[0], set()).add(r.split)
    assert len(splits) == 40 and all(len(s) == 1 for s in splits.values())
    assert {next(iter(s)) for s in splits.values()} == {"train", "validation"}


# -- windowing -----------------------------------------------------------------------------


def test_windows_from_kaldi_style_segments(tmp_path: Path) -> None:
    wav(tmp_path / "wav/rec1.wav", 30.0)
    (tmp_path / "segments").write_text(
        "u1 rec1 0.0 2.0 A happy hello there\n"
        "u2 rec1 3.0 5.0 B neutral hi\n"
        "u3 rec1 4.0 12.0 A sad a long answer\n"  # 12 - 0 > 10: opens the next window
        "u4 rec1 12.5 25.0 B neutral longer than a window on its own\n"
        "u5 rec1 9.0 8.0 A neutral backwards\n"  # end before start: a bad annotation
    )
    spec = DatasetSpec(
        name="talk",
        title="talk",
        category="speech",
        source=Source.of("lines", files="segments", columns=("utt", "rec", "start", "end", "spk", "emo", "text")),
        id="{rec}",
        audio="wav/{rec}.wav",
        windowing=Windowing(
            group="{rec}",
            start="{start}",
            end="{end}",
            speaker="{spk}",
            text="{text}",
            turn_fields=(("emotion", "{emo}"),),
            max_window_s=10.0,
        ),
    )
    records, collector = run(spec, tmp_path)
    assert [(r.id, r.offset_s, r.duration_s, r.metadata) for r in records] == [
        (
            "talk/rec1/0",
            0.0,
            5.0,
            "[00:00.0-00:02.0] speaker 1 (emotion: happy): hello there\n"
            "[00:03.0-00:05.0] speaker 2 (emotion: neutral): hi\nduration: 5.0 s; speakers: 2",
        ),
        (
            "talk/rec1/1",
            4.0,
            8.0,
            "[00:00.0-00:08.0] speaker 1 (emotion: sad): a long answer\nduration: 8.0 s; speakers: 1",
        ),
        (
            "talk/rec1/2",
            12.5,
            12.5,
            "[00:00.0-00:12.5] speaker 1 (emotion: neutral): longer than a window on its own\n"
            "duration: 12.5 s; speakers: 1",
        ),
    ]
    assert [(r.reason, "9.0-8.0" in r.detail) for r in collector.rejects] == [("bad annotation", True)]


# -- output and statistics -----------------------------------------------------------------


def test_parquet_output_round_trips(tmp_path: Path) -> None:
    build_broken(tmp_path)
    out = tmp_path / "toy.parquet"
    rejects = tmp_path / "bad.jsonl"
    collect_to_file(toy_spec(), tmp_path, out, rejects=rejects, options=CollectOptions(progress=False, workers=2))
    records = list(read_records(out))
    assert [r.id for r in records] == ["toy/good", "toy/tail"]
    assert len(rejects.read_text().splitlines()) == 9
    with pytest.raises(ValueError, match=".jsonl or .parquet"):
        collect_to_file(toy_spec(), tmp_path, tmp_path / "toy.csv")


def _source(rid: str, category: str, split: str, seconds: float, audio: str) -> SourceRecord:
    return SourceRecord(rid, rid.split("/")[0], category, split, audio, 0.0, seconds, "m")


def test_corpus_stats_table_one(tmp_path: Path) -> None:
    sources = [
        _source("vctk/a", "speech", "train", 1800.0, "a.wav"),
        _source("vctk/b", "speech", "train", 1800.0, "a.wav"),  # same file, another segment
        _source("vctk/c", "speech", "validation", 360.0, "c.wav"),
        _source("esc50/d", "sound", "train", 5.0, "a.wav"),  # same path, other dataset: another file
    ]
    write_jsonl(sources, tmp_path / "sources.jsonl")
    generated = [
        CorpusRecord(**{**_source("nsynth/e", "music", "train", 4.0, "e.wav").to_dict(), "prompt": "Which pitch?"}),
        CorpusRecord(**{**_source("nsynth/f", "music", "train", 4.0, "f.wav").to_dict(), "prompt": "Which pitch?"}),
        CorpusRecord(**{**_source("nsynth/g", "music", "validation", 4.0, "g.wav").to_dict(), "prompt": "Loud?"}),
    ]
    write_parquet(generated, tmp_path / "corpus.parquet")
    table = corpus_stats([tmp_path / "sources.jsonl", tmp_path / "corpus.parquet"]).table()
    rows = {row["name"]: row for row in table}
    assert list(rows) == ["speech", "sound", "music", "Total"]  # the paper's order
    assert rows["speech"]["instances"] == {"total": 3, "train": 2, "validation": 1}
    assert rows["speech"]["hours"] == {"total": 1.1, "train": 1.0, "validation": 0.1}
    assert rows["speech"]["unique_audio"] == {"total": 2, "train": 1, "validation": 1}
    assert rows["music"]["unique_prompts"] == {"total": 2, "train": 1, "validation": 1}
    assert rows["speech"]["unique_prompts"] == {"total": 0, "train": 0, "validation": 0}
    assert rows["Total"]["instances"] == {"total": 7, "train": 5, "validation": 2}
    assert rows["Total"]["unique_audio"]["total"] == 6
    by_dataset = {row["name"] for row in corpus_stats([tmp_path / "sources.jsonl"], by="dataset").table()}
    assert by_dataset == {"esc50", "vctk", "Total"}


# -- metadata layouts --------------------------------------------------------------------------


def test_official_metadata_layout_on_fabricated_records() -> None:
    from alarm.corpus.collection import Turn, render_metadata

    speech = render_metadata(2.6, text="Please call Stella.", text_label="transcript", fields=(("Gender", "female"),))
    assert speech == "[00:00.0-00:02.6] transcript: Please call Stella.\nduration: 2.6 s; Gender: female"
    # official: whole seconds by round(), spoken words as they are, names lower-cased, one line
    assert render_metadata(
        2.6, text="Please call Stella.", text_label="transcript", fields=(("Gender", "female"), ("age", "23")),
        layout="official",
    ) == "[00:00-00:03] Please call Stella. (duration: 3s, gender: female, age: 23)"  # fmt: skip
    # any other text is a caption, between bars; minutes run past 59
    assert render_metadata(3725.0, text="a dog barks", text_label="sound event", layout="official") == (
        "[00:00-62:05] |a dog barks| (duration: 3725s)"
    )
    # timed turns (utterances): [start-end, speaker] text; the duration is where the last turn ends
    turns = (Turn(0.2, 1.4, "speaker 1", "okay"), Turn(2.1, 4.0, "speaker 2", "see it", (("emotion", "joy"),)))
    assert render_metadata(4.5, turns=turns, fields=(("speakers", "2"),), layout="official") == (
        "[00:00-00:01, speaker 1] okay [00:02-00:04, speaker 2, emotion: joy] see it (duration: 4s, speakers: 2)"
    )
    assert render_metadata(1.0, fields=(("genre", "jazz"),), layout="official") == "(duration: 1s, genre: jazz)"
    with pytest.raises(ValueError, match="layout"):
        render_metadata(1.0, text="x", layout="paper")


def test_collector_writes_the_layout_it_is_given(tmp_path: Path) -> None:
    wav(tmp_path / "a.wav", 2.0)
    (tmp_path / "clips.csv").write_text("clip,file,label,start,length\ndog,a.wav,dog barking,0,2\n")
    ours, _ = run(toy_spec(), tmp_path)
    official, _ = run(toy_spec(), tmp_path, metadata_layout="official")
    assert ours[0].metadata == "[00:00.0-00:02.0] label: dog barking\nduration: 2.0 s"
    assert official[0].metadata == "[00:00-00:02] |dog barking| (duration: 2s)"
    with pytest.raises(ValueError, match="metadata_layout"):
        CollectOptions(metadata_layout="paper")
