"""Every collector against a tiny fixture in its dataset's official on-disk layout.

Each test writes a few annotation files exactly as the dataset ships them and a few seconds
of synthetic audio, runs the real spec, and checks the exact records: ids, audio paths,
segments, splits, metadata text and context.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from alarm.corpus.collection import CollectOptions, Collector, hash_split
from alarm.corpus.collectors import all_specs, get_spec

RATE = 8000


def wav(path: Path, seconds: float, rate: int = RATE, fmt: str | None = None) -> Path:
    """A quiet tone of ``seconds`` at ``path`` (format from the suffix unless given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * rate))) / rate
    subtype = {"OGG": "OPUS", "MP3": "MPEG_LAYER_III"}.get(fmt or "", "PCM_16")
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format=fmt, subtype=subtype)
    return path


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def rec(
    rid: str,
    audio: str,
    duration: float,
    metadata: str,
    category: str,
    split: str = "train",
    offset: float = 0.0,
    context: tuple = (),
) -> dict:
    return {
        "id": rid,
        "dataset": rid.split("/")[0],
        "category": category,
        "split": split,
        "audio_path": audio,
        "offset_s": offset,
        "duration_s": duration,
        "metadata": metadata,
        "context": [dict(t) for t in context],
    }


def run(name: str, root: Path, **options) -> tuple[list[dict], Collector]:
    options = {"validation_fraction": 0.0, "progress": False, "workers": 1, **options}
    collector = Collector(get_spec(name), root, CollectOptions(**options))
    return [r.to_dict() for r in collector.records()], collector


# -- sound ---------------------------------------------------------------------------------


def build_esc50(root: Path) -> None:
    write(
        root / "meta/esc50.csv",
        "filename,fold,target,category,esc10,src_file,take\n"
        "1-100032-A-0.wav,1,0,dog,True,100032,A\n"
        "2-102414-B-38.wav,2,38,chirping_birds,False,102414,B\n",
    )
    wav(root / "audio/1-100032-A-0.wav", 1.0)
    wav(root / "audio/2-102414-B-38.wav", 0.5)


def test_esc50(tmp_path: Path) -> None:
    build_esc50(tmp_path)
    records, collector = run("esc50", tmp_path)
    assert records == [
        rec(
            "esc50/1-100032-A-0",
            "audio/1-100032-A-0.wav",
            1.0,
            "[00:00.0-00:01.0] sound event: dog\nduration: 1.0 s",
            "sound",
        ),
        rec(
            "esc50/2-102414-B-38",
            "audio/2-102414-B-38.wav",
            0.5,
            "[00:00.0-00:00.5] sound event: chirping birds\nduration: 0.5 s",
            "sound",
        ),
    ]
    assert collector.rejects == []


def build_audiocaps(root: Path) -> None:
    write(
        root / "train.csv",
        "audiocap_id,youtube_id,start_time,caption\n"
        "91139,r1nicOVtvkQ,130,A woman talks nearby as water pours\n"
        "58146,UDGBjjwyaqE,20,Multiple clanging  and clanking sounds\n"
        "11,gone0000000,0,A clip that could not be downloaded\n",
    )
    wav(root / "audio/train/r1nicOVtvkQ.wav", 1.0)
    wav(root / "train/58146.wav", 0.5)  # another downloader's layout, found through the second template


def test_audiocaps(tmp_path: Path) -> None:
    build_audiocaps(tmp_path)
    records, collector = run("audiocaps", tmp_path)
    assert records == [
        rec(
            "audiocaps/91139",
            "audio/train/r1nicOVtvkQ.wav",
            1.0,
            "[00:00.0-00:01.0] caption: A woman talks nearby as water pours\nduration: 1.0 s",
            "sound",
        ),
        rec(
            "audiocaps/58146",
            "train/58146.wav",
            0.5,
            "[00:00.0-00:00.5] caption: Multiple clanging and clanking sounds\nduration: 0.5 s",
            "sound",
        ),
    ]
    # A clip missing on disk (unavailable on YouTube) is a reject naming the first layout's path.
    assert [(r.id, r.reason, r.audio_path) for r in collector.rejects] == [
        ("audiocaps/11", "missing audio", "audio/train/gone0000000.wav")
    ]


def build_clotho(root: Path) -> None:
    write(
        root / "clotho_captions_development.csv",
        "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
        '"Distorted AM Radio noise.wav",A radio hisses.,"Static, then a tuning whine.",Radio noise fades.,'
        "Someone tunes a radio.,A loud crackle.\n",
    )
    write(
        root / "clotho_metadata_development.csv",
        "file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license\n"
        '"Distorted AM Radio noise.wav",am;radio;noise,12345,https://freesound.org/people/x/sounds/12345,'
        "[0 441000],Zoom,http://creativecommons.org/publicdomain/zero/1.0/\n",
    )
    wav(root / "development/Distorted AM Radio noise.wav", 1.5)


def test_clotho_one_record_per_caption(tmp_path: Path) -> None:
    build_clotho(tmp_path)
    records, _ = run("clotho", tmp_path)
    captions = [
        "A radio hisses.",
        "Static, then a tuning whine.",
        "Radio noise fades.",
        "Someone tunes a radio.",
        "A loud crackle.",
    ]
    assert records == [
        rec(
            f"clotho/Distorted AM Radio noise/{k}",
            "development/Distorted AM Radio noise.wav",
            1.5,
            f"[00:00.0-00:01.5] caption: {caption}\nduration: 1.5 s; tags: am, radio, noise",
            "sound",
        )
        for k, caption in enumerate(captions, 1)
    ]


def build_fsd50k(root: Path) -> None:
    write(
        root / "FSD50K.ground_truth/dev.csv",
        "fname,labels,mids,split\n"
        '64760,"Electric_guitar,Guitar,Plucked_string_instrument,Musical_instrument,Music",'
        '"/m/02sgy,/m/0342h,/m/0fx80y,/m/04szw,/m/04rlf",train\n'
        '16399,"Breathing,Respiratory_sounds,Human_voice","/m/0lyf6,/m/02cjck,/m/09l8g",val\n',
    )
    wav(root / "FSD50K.dev_audio/64760.wav", 1.0)
    wav(root / "FSD50K.dev_audio/16399.wav", 1.0)


def test_fsd50k_keeps_the_training_part(tmp_path: Path) -> None:
    build_fsd50k(tmp_path)
    records, collector = run("fsd50k", tmp_path)
    assert records == [
        rec(
            "fsd50k/64760",
            "FSD50K.dev_audio/64760.wav",
            1.0,
            "[00:00.0-00:01.0] sound events: Electric guitar, Guitar, Plucked string instrument, "
            "Musical instrument, Music\nduration: 1.0 s",
            "sound",
        )
    ]
    assert sum(collector.summary.filtered.values()) == 1 and collector.rejects == []


# -- music ---------------------------------------------------------------------------------


def build_gtzan(root: Path) -> None:
    wav(root / "genres_original/blues/blues.00000.wav", 1.0)
    wav(root / "genres_original/hiphop/hiphop.00001.wav", 0.5)
    write(root / "genres_original/jazz/jazz.00054.wav", "not a wave file")  # the copy's known broken file


def test_gtzan(tmp_path: Path) -> None:
    build_gtzan(tmp_path)
    records, collector = run("gtzan", tmp_path)
    assert records == [
        rec(
            "gtzan/blues.00000",
            "genres_original/blues/blues.00000.wav",
            1.0,
            "[00:00.0-00:01.0] music\nduration: 1.0 s; genre: blues",
            "music",
        ),
        rec(
            "gtzan/hiphop.00001",
            "genres_original/hiphop/hiphop.00001.wav",
            0.5,
            "[00:00.0-00:00.5] music\nduration: 0.5 s; genre: hip-hop",
            "music",
        ),
    ]
    assert [(r.id, r.reason) for r in collector.rejects] == [("gtzan/jazz.00054", "unreadable audio")]


def test_gtzan_original_au_release(tmp_path: Path) -> None:
    wav(tmp_path / "genres/rock/rock.00003.au", 0.5, fmt="AU")
    records, _ = run("gtzan", tmp_path)
    assert [(r["id"], r["audio_path"], r["metadata"]) for r in records] == [
        ("gtzan/rock.00003", "genres/rock/rock.00003.au", "[00:00.0-00:00.5] music\nduration: 0.5 s; genre: rock")
    ]


def _nsynth_note(family: str, source: str, pitch: int, velocity: int, qualities: list[str]) -> dict:
    names = ["bright", "dark", "distortion", "fast_decay", "long_release", "multiphonic"]
    names += ["nonlinear_env", "percussive", "reverb", "tempo-synced"]
    return {
        "note": 1,
        "instrument": 2,
        "instrument_str": f"{family}_{source}_001",
        "pitch": pitch,
        "velocity": velocity,
        "sample_rate": 16000,
        "qualities": [int(q in qualities) for q in names],
        "qualities_str": qualities,
        "instrument_family": 0,
        "instrument_family_str": family,
        "instrument_source": 2,
        "instrument_source_str": source,
    }


def build_nsynth(root: Path) -> None:
    notes = {
        "bass_synthetic_033-022-050": _nsynth_note("bass", "synthetic", 22, 50, ["dark", "percussive"]),
        "synth_lead_synthetic_000-100-127": _nsynth_note("synth_lead", "synthetic", 100, 127, []),
    }
    for name, note in notes.items():
        note["note_str"] = name
        wav(root / f"audio/{name}.wav", 1.0)
    write(root / "examples.json", json.dumps(notes))


def test_nsynth(tmp_path: Path) -> None:
    build_nsynth(tmp_path)
    records, _ = run("nsynth", tmp_path)
    assert records == [
        rec(
            "nsynth/bass_synthetic_033-022-050",
            "audio/bass_synthetic_033-022-050.wav",
            1.0,
            "[00:00.0-00:01.0] instrument note: bass\nduration: 1.0 s; MIDI pitch: 22 of 127; "
            "MIDI velocity: 50 of 127; instrument source: synthetic; instrument family: bass; "
            "qualities: dark (little high-frequency content: muted, bassy, warm); "
            "percussive (a loud non-harmonic attack at the onset)",
            "music",
        ),
        rec(
            "nsynth/synth_lead_synthetic_000-100-127",
            "audio/synth_lead_synthetic_000-100-127.wav",
            1.0,
            "[00:00.0-00:01.0] instrument note: synth lead\nduration: 1.0 s; MIDI pitch: 100 of 127; "
            "MIDI velocity: 127 of 127; instrument source: synthetic; instrument family: synth lead",
            "music",
        ),
    ]


# -- speech --------------------------------------------------------------------------------


def test_vctk_both_releases(tmp_path: Path) -> None:
    old = tmp_path / "VCTK-Corpus"  # 0.80, the paper's release
    write(
        old / "speaker-info.txt",
        "ID  AGE  GENDER  ACCENTS  REGION\n"
        "225  23  F    English    Southern  England\n"
        "226  22  M    English    Surrey\n",
    )
    write(old / "txt/p225/p225_001.txt", "Please call Stella.\n")
    write(old / "txt/p226/p226_002.txt", "Ask her to bring these things\nwith her from the store.\n")
    wav(old / "wav48/p225/p225_001.wav", 1.0)
    wav(old / "wav48/p226/p226_002.wav", 0.5)
    records, _ = run("vctk", old)
    assert records == [
        rec(
            "vctk/p225_001",
            "wav48/p225/p225_001.wav",
            1.0,
            "[00:00.0-00:01.0] transcript: Please call Stella.\n"
            "duration: 1.0 s; gender: female; age: 23; accent: English; region: Southern England",
            "speech",
        ),
        rec(
            "vctk/p226_002",
            "wav48/p226/p226_002.wav",
            0.5,
            "[00:00.0-00:00.5] transcript: Ask her to bring these things with her from the store.\n"
            "duration: 0.5 s; gender: male; age: 22; accent: English; region: Surrey",
            "speech",
        ),
    ]

    new = tmp_path / "VCTK-Corpus-0.92"
    write(
        new / "speaker-info.txt",
        "ID  AGE  GENDER  ACCENTS  REGION COMMENTS \np280  25  F    Unknown    France (mic2 files unavailable)\n",
    )
    write(new / "txt/p280/p280_001.txt", "Please call Stella.")
    wav(new / "wav48_silence_trimmed/p280/p280_001_mic1.flac", 0.5)
    wav(new / "wav48_silence_trimmed/p280/p280_001_mic2.flac", 0.5)
    records, _ = run("vctk", new)
    assert [(r["id"], r["audio_path"], r["metadata"]) for r in records] == [
        (
            "vctk/p280_001",
            "wav48_silence_trimmed/p280/p280_001_mic1.flac",
            "[00:00.0-00:00.5] transcript: Please call Stella.\n"
            "duration: 0.5 s; gender: female; age: 25; accent: Unknown; region: France",
        )
    ]


def build_librispeech(root: Path) -> None:
    write(
        root / "SPEAKERS.TXT",
        "; LibriSpeech speakers\n"
        ";ID  |SEX| SUBSET           |MINUTES| NAME\n"
        "19   | F | train-clean-100  | 25.19 | Kara Shallenberg\n"
        "84   | F | dev-clean        |  8.02 | Christie Nowak\n"
        "103  | F | train-clean-100  | 25.23 | Karen Savage\n",
    )
    chapter = root / "train-clean-100/19/198"
    write(chapter / "19-198.trans.txt", "19-198-0000 NORTHANGER ABBEY\n19-198-0001 THIS LITTLE WORK WAS FINISHED\n")
    wav(chapter / "19-198-0000.flac", 1.0)
    wav(chapter / "19-198-0001.flac", 0.5)
    write(root / "train-other-500/103/1240/103-1240.trans.txt", "103-1240-0000 CHAPTER ONE\n")
    wav(root / "train-other-500/103/1240/103-1240-0000.flac", 0.5)
    # A held-out subset: not a training partition, never read.
    write(root / "dev-clean/84/121123/84-121123.trans.txt", "84-121123-0000 GO DO YOU HEAR\n")
    wav(root / "dev-clean/84/121123/84-121123-0000.flac", 0.5)


def test_librispeech(tmp_path: Path) -> None:
    build_librispeech(tmp_path)
    records, collector = run("librispeech", tmp_path)
    assert records == [
        rec(
            "librispeech/19-198-0000",
            "train-clean-100/19/198/19-198-0000.flac",
            1.0,
            "[00:00.0-00:01.0] transcript: northanger abbey\nduration: 1.0 s; gender: female",
            "speech",
        ),
        rec(
            "librispeech/19-198-0001",
            "train-clean-100/19/198/19-198-0001.flac",
            0.5,
            "[00:00.0-00:00.5] transcript: this little work was finished\nduration: 0.5 s; gender: female",
            "speech",
        ),
        rec(
            "librispeech/103-1240-0000",
            "train-other-500/103/1240/103-1240-0000.flac",
            0.5,
            "[00:00.0-00:00.5] transcript: chapter one\nduration: 0.5 s; gender: female",
            "speech",
        ),
    ]
    assert collector.rejects == [] and not collector.summary.filtered


def build_vocalsound(root: Path) -> None:
    write(root / "meta/tr_meta.csv", "f0003,Female,37,USA,English,No\n")
    wav(root / "audio_16k/f0003_0_cough.wav", 1.0)
    wav(root / "audio_16k/f0003_0_throatclearing.wav", 0.5)
    wav(root / "audio_16k/m0100_0_laughter.wav", 0.5)  # a test-set speaker: not in tr_meta.csv


def test_vocalsound_training_speakers_only(tmp_path: Path) -> None:
    build_vocalsound(tmp_path)
    records, collector = run("vocalsound", tmp_path)
    fields = "speaker gender: female; speaker age: 30s; health condition that may affect the voice: no"
    assert records == [
        rec(
            "vocalsound/f0003_0_cough",
            "audio_16k/f0003_0_cough.wav",
            1.0,
            f"[00:00.0-00:01.0] vocal sound: cough\nduration: 1.0 s; {fields}",
            "speech",
        ),
        rec(
            "vocalsound/f0003_0_throatclearing",
            "audio_16k/f0003_0_throatclearing.wav",
            0.5,
            f"[00:00.0-00:00.5] vocal sound: throat clearing\nduration: 0.5 s; {fields}",
            "speech",
        ),
    ]
    assert dict(collector.summary.filtered) == {"no meta entry": 1}


def build_meld(root: Path) -> None:
    header = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
    write(
        root / "train_sent_emo.csv",
        header + '1,"also I was the point person on my company\x92s transition from the KL-5 to GR-6 system.",'
        'Chandler,neutral,neutral,0,0,8,21,"00:16:16,059","00:16:21,731"\n'
        '2,"You must\x92ve had your hands full.",The Interviewer,surprise,positive,0,1,8,21,'
        '"00:16:21,940","00:16:23,442"\n',
    )
    wav(root / "train_splits_wav/dia0_utt0.wav", 1.0)
    write(root / "train_splits/dia0_utt1.mp4", "....ftypmp42 video bytes")  # audio not extracted yet


def test_meld(tmp_path: Path) -> None:
    build_meld(tmp_path)
    records, collector = run("meld", tmp_path)
    assert records == [
        rec(
            "meld/dia0_utt0",
            "train_splits_wav/dia0_utt0.wav",
            1.0,
            "[00:00.0-00:01.0] transcript: also I was the point person on my company's transition from the KL-5 "
            "to GR-6 system.\nduration: 1.0 s; emotion: neutral; sentiment: neutral",
            "speech",
        )
    ]
    assert [(r.id, r.reason, r.audio_path) for r in collector.rejects] == [
        ("meld/dia0_utt1", "unreadable audio", "train_splits/dia0_utt1.mp4")
    ]


AMI_NS = 'xmlns:nite="http://nite.sourceforge.net/"'


def _ami_words(meeting: str, agent: str, words: list[tuple[str, float, float, str | None]]) -> str:
    rows = []
    for i, (text, start, end, kind) in enumerate(words):
        wid = f'nite:id="{meeting}.{agent}.words{i}" starttime="{start}" endtime="{end}"'
        if kind == "vocalsound":
            rows.append(f'<vocalsound {wid} type="laugh"/>')
        else:
            punc = ' punc="true"' if kind == "punc" else ""
            rows.append(f"<w {wid}{punc}>{text}</w>")
    return f'<nite:root nite:id="{meeting}.{agent}.words" {AMI_NS}>\n' + "\n".join(rows) + "\n</nite:root>\n"


def _ami_segments(meeting: str, agent: str, spans: list[tuple[float, float, int, int]]) -> str:
    rows = []
    for k, (start, end, first, last) in enumerate(spans):
        href = f"{meeting}.{agent}.words.xml#id({meeting}.{agent}.words{first})"
        if last != first:
            href += f"..id({meeting}.{agent}.words{last})"
        rows.append(
            f'<segment nite:id="{meeting}.sync.{agent}{k}" transcriber_start="{start}" transcriber_end="{end}">'
            f'<nite:child href="{href}"/></segment>'
        )
    return f'<nite:root nite:id="{meeting}.{agent}.segs" {AMI_NS}>\n' + "\n".join(rows) + "\n</nite:root>\n"


def build_ami(root: Path) -> None:
    ann = root / "ami_public_manual_1.6.2"
    write(
        ann / "corpusResources/meetings.xml",
        f'<?xml version="1.0" encoding="ISO-8859-1"?>\n<nite:root {AMI_NS}>\n'
        '<meeting observation="ES2002a" type="scenario">'
        '<speaker nxt_agent="A" global_name="MEE006" channel="1" role="UI"/>'
        '<speaker nxt_agent="B" global_name="FEE005" channel="0" role="PM"/></meeting>\n'
        '<meeting observation="ES2004a" type="scenario">'
        '<speaker nxt_agent="A" global_name="MEE014" channel="0" role="PM"/></meeting>\n</nite:root>\n',
    )
    a_words = [
        ("Okay", 0.5, 0.9, None),
        (".", 0.9, 0.9, "punc"),
        ("", 1.0, 1.2, "vocalsound"),
        ("Sure", 3.5, 5.0, None),
        ("", 12.0, 12.5, "vocalsound"),
        ("Let's", 41.0, 45.0, None),
        ("wrap", 45.0, 50.0, None),
        ("up", 50.0, 52.0, None),
    ]
    write(ann / "words/ES2002a.A.words.xml", _ami_words("ES2002a", "A", a_words))
    a_segments = [(0.5, 1.2, 0, 2), (3.5, 5.0, 3, 3), (12.0, 12.5, 4, 4), (41.0, 52.0, 5, 7)]
    write(ann / "segments/ES2002a.A.segments.xml", _ami_segments("ES2002a", "A", a_segments))
    b_words = [
        ("Does", 2.0, 2.2, None),
        ("anyone", 2.2, 2.6, None),
        ("want", 2.6, 2.8, None),
        ("feedback", 2.8, 4.0, None),
        ("?", 4.0, 4.0, "punc"),
        ("A", 20.0, 25.0, None),
        ("long", 25.0, 30.0, None),
        ("one", 30.0, 34.0, None),
        ("Next", 36.0, 40.0, None),
    ]
    write(ann / "words/ES2002a.B.words.xml", _ami_words("ES2002a", "B", b_words))
    b_segments = [(2.0, 4.0, 0, 4), (20.0, 34.0, 5, 7), (36.0, 40.0, 8, 8)]
    write(ann / "segments/ES2002a.B.segments.xml", _ami_segments("ES2002a", "B", b_segments))
    wav(root / "amicorpus/ES2002a/audio/ES2002a.Mix-Headset.wav", 53.0, rate=1000)
    # A test-set meeting of the full-corpus-asr partition: annotated, but never used for training.
    write(ann / "words/ES2004a.A.words.xml", _ami_words("ES2004a", "A", [("Hello", 1.0, 2.0, None)]))
    write(ann / "segments/ES2004a.A.segments.xml", _ami_segments("ES2004a", "A", [(1.0, 2.0, 0, 0)]))


def test_ami_windows_follow_the_segment_times(tmp_path: Path) -> None:
    build_ami(tmp_path)
    records, collector = run("ami", tmp_path)
    audio = "amicorpus/ES2002a/audio/ES2002a.Mix-Headset.wav"
    assert records == [
        # Overlapping speech stays in order of start; times are relative to the window start.
        rec(
            "ami/ES2002a/0",
            audio,
            4.5,
            "[00:00.0-00:00.7] speaker 1: Okay.\n"
            "[00:01.5-00:03.5] speaker 2: Does anyone want feedback?\n"
            "[00:03.0-00:04.5] speaker 1: Sure\n"
            "duration: 4.5 s; speakers: 2; speaker 1 gender: male; speaker 2 gender: female",
            "speech",
            offset=0.5,
        ),
        # 15 s of silence (> max_gap_s) starts a new window; the laugh-only segment is not an utterance.
        rec(
            "ami/ES2002a/1",
            audio,
            20.0,
            "[00:00.0-00:14.0] speaker 1: A long one\n[00:16.0-00:20.0] speaker 1: Next\n"
            "duration: 20.0 s; speakers: 1; speaker 1 gender: female",
            "speech",
            offset=20.0,
        ),
        # Adding 41-52 s would make the window 32 s > 30 s: it opens the next one.
        rec(
            "ami/ES2002a/2",
            audio,
            11.0,
            "[00:00.0-00:11.0] speaker 1: Let's wrap up\nduration: 11.0 s; speakers: 1; speaker 1 gender: male",
            "speech",
            offset=41.0,
        ),
    ]
    assert collector.rejects == []
    assert sum(collector.summary.filtered.values()) == 1  # the ES2004a utterance


# -- speech instructions -------------------------------------------------------------------


def _wav_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(seconds * RATE), np.float32) + 0.01, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def build_heysquad_human(root: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def row(qid: str, question: str, context: str, seconds: float) -> dict:
        return {
            "audio": {"bytes": _wav_bytes(seconds), "path": f"{qid}.wav"},
            "transcription": question.lower(),
            "question": question,
            "context": context,
            "answers": [{"answer_start": 0, "text": "x"}],
            "is_impossible": False,
            "id": qid,
            "plausible_answers": [],
        }

    (root / "data").mkdir(parents=True)
    passage = "Beyonce Giselle Knowles-Carter is an American singer.  She was born in Houston."
    train = [row("56be85543aeaaa14008c9063", "When did Beyonce start becoming popular?", passage, 1.0)]
    validation = [
        row("56ddde6b9a695914005b9628", "In what country is Normandy located?", "Normandy is in France.", 0.5)
    ]
    pq.write_table(pa.Table.from_pylist(train), root / "data/train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(validation), root / "data/validation-00000-of-00001.parquet")


def test_heysquad_human_twice_with_and_without_the_passage(tmp_path: Path) -> None:
    build_heysquad_human(tmp_path)
    records, _ = run("heysquad_human", tmp_path, validation_fraction=0.5)
    train_audio = "_alarm_audio/heysquad_human/train/56be85543aeaaa14008c9063.wav"
    val_audio = "_alarm_audio/heysquad_human/validation/56ddde6b9a695914005b9628.wav"
    question = "When did Beyonce start becoming popular?"
    passage = "Beyonce Giselle Knowles-Carter is an American singer. She was born in Houston."
    # The split is the source's own, whatever the hash fraction says.
    assert records == [
        rec("heysquad_human/56be85543aeaaa14008c9063/question", train_audio, 1.0, question, "instruction"),
        rec(
            "heysquad_human/56be85543aeaaa14008c9063/context",
            train_audio,
            1.0,
            question,
            "instruction",
            context=({"role": "user", "content": passage},),
        ),
        rec(
            "heysquad_human/56ddde6b9a695914005b9628/question",
            val_audio,
            0.5,
            "In what country is Normandy located?",
            "instruction",
            split="validation",
        ),
        rec(
            "heysquad_human/56ddde6b9a695914005b9628/context",
            val_audio,
            0.5,
            "In what country is Normandy located?",
            "instruction",
            split="validation",
            context=({"role": "user", "content": "Normandy is in France."},),
        ),
    ]
    extracted = tmp_path / train_audio
    assert sf.info(str(extracted)).frames == RATE
    stamp = extracted.stat().st_mtime_ns
    again, _ = run("heysquad_human", tmp_path)
    assert again == records and extracted.stat().st_mtime_ns == stamp  # extracted once, reused


def build_instructs2s(root: Path) -> None:
    def turn(role: str, text: str, speech: str) -> dict:
        return {"from": role, "text": text, "speech": speech, "unit": [1, 2, 3]}

    conversations = [
        {
            "id": "alpaca_0",
            "conversation": [
                turn("human", "Give three tips for staying healthy.", "/data/en/wav/0/alpaca_0_0.wav"),
                turn("gpt", "Eat well, move, sleep.", "/data/en/wav/0/alpaca_0_1.wav"),
            ],
        },
        {
            "id": "ultra_1",
            "conversation": [
                turn("human", "What is a black hole?", "/data/en/wav/1/ultra_1_0.wav"),
                turn("gpt", "A region where gravity traps light.", "/data/en/wav/1/ultra_1_1.wav"),
                turn("human", "How do  they form?", "/data/en/wav/1/ultra_1_2.wav"),
                turn("gpt", "From collapsing massive stars.", "/data/en/wav/1/ultra_1_3.wav"),
            ],
        },
    ]
    write(root / "instruct_en_200k_data_cosy2.json", json.dumps(conversations, indent=1))
    wav(root / "en/wav/0/alpaca_0_0.wav", 1.0)
    wav(root / "en/wav/1/ultra_1_0.wav", 0.5)
    wav(root / "en/wav/1/ultra_1_2.wav", 0.5)


def test_instructs2s_last_query_spoken_earlier_turns_as_context(tmp_path: Path) -> None:
    build_instructs2s(tmp_path)
    records, _ = run("instructs2s", tmp_path)
    assert records == [
        rec(
            "instructs2s/alpaca_0/0",
            "en/wav/0/alpaca_0_0.wav",
            1.0,
            "Give three tips for staying healthy.",
            "instruction",
        ),
        rec("instructs2s/ultra_1/0", "en/wav/1/ultra_1_0.wav", 0.5, "What is a black hole?", "instruction"),
        rec(
            "instructs2s/ultra_1/2",
            "en/wav/1/ultra_1_2.wav",
            0.5,
            "How do they form?",
            "instruction",
            context=(
                {"role": "user", "content": "What is a black hole?"},
                {"role": "assistant", "content": "A region where gravity traps light."},
            ),
        ),
    ]


# -- more speech -----------------------------------------------------------------------------


def test_mls_opus_and_flac_releases(tmp_path: Path) -> None:
    header = " SPEAKER   |   GENDER   | PARTITION  |  MINUTES   |  BOOK ID   |   TITLE   |   CHAPTER\n"
    write(
        tmp_path / "mls_dutch_opus/metainfo.txt",
        header + "  10087    |     F      |   train    |   41.8  | 10388 | Een boek | 1\n",
    )
    write(
        tmp_path / "mls_dutch_opus/train/transcripts.txt", "10087_10388_000000\twees niet bevreesd ik ben de speelman\n"
    )
    wav(tmp_path / "mls_dutch_opus/train/audio/10087/10388/10087_10388_000000.opus", 1.0, rate=16000, fmt="OGG")
    write(tmp_path / "mls_polish/metainfo.txt", header + "  5190  |  M  |  train  |  12.0  | 1234 | Ksiazka | 2\n")
    write(tmp_path / "mls_polish/train/transcripts.txt", "5190_1234_000001\tczy to prawda\n")
    wav(tmp_path / "mls_polish/train/audio/5190/1234/5190_1234_000001.flac", 0.5)
    records, _ = run("mls", tmp_path)
    assert records == [
        rec(
            "mls/dutch/10087_10388_000000",
            "mls_dutch_opus/train/audio/10087/10388/10087_10388_000000.opus",
            1.0,
            "[00:00.0-00:01.0] transcript: wees niet bevreesd ik ben de speelman\n"
            "duration: 1.0 s; language: Dutch; gender: female",
            "speech",
        ),
        rec(
            "mls/polish/5190_1234_000001",
            "mls_polish/train/audio/5190/1234/5190_1234_000001.flac",
            0.5,
            "[00:00.0-00:00.5] transcript: czy to prawda\nduration: 0.5 s; language: Polish; gender: male",
            "speech",
        ),
    ]


def test_asvspoof2019(tmp_path: Path) -> None:
    write(
        tmp_path / "LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.train.trn.txt",
        "LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1271820 - A01 spoof\n",
    )
    wav(tmp_path / "LA/ASVspoof2019_LA_train/flac/LA_T_1138215.flac", 0.5)
    wav(tmp_path / "LA/ASVspoof2019_LA_train/flac/LA_T_1271820.flac", 1.0)
    records, _ = run("asvspoof2019", tmp_path)
    assert records == [
        rec(
            "asvspoof2019/LA_T_1138215",
            "LA/ASVspoof2019_LA_train/flac/LA_T_1138215.flac",
            0.5,
            "[00:00.0-00:00.5] speech\nduration: 0.5 s; authenticity: bona fide (real human speech)",
            "speech",
        ),
        rec(
            "asvspoof2019/LA_T_1271820",
            "LA/ASVspoof2019_LA_train/flac/LA_T_1271820.flac",
            1.0,
            "[00:00.0-00:01.0] speech\nduration: 1.0 s; authenticity: spoofed (machine-generated); "
            "spoofing method: text-to-speech with a WaveNet neural vocoder",
            "speech",
        ),
    ]


def test_asvspoof5(tmp_path: Path) -> None:
    write(
        tmp_path / "ASVspoof5_protocols/ASVspoof5.train.tsv",
        "T_4850 T_0000000000 F - - - bonafide bonafide bonafide -\nT_2134 T_0000000001 M - - - AC3 A05 spoof -\n",
    )
    wav(tmp_path / "flac_T/T_0000000000.flac", 0.5)
    wav(tmp_path / "flac_T/T_0000000001.flac", 0.5)
    records, _ = run("asvspoof5", tmp_path)
    assert [(r["id"], r["audio_path"], r["metadata"]) for r in records] == [
        (
            "asvspoof5/T_0000000000",
            "flac_T/T_0000000000.flac",
            "[00:00.0-00:00.5] speech\nduration: 0.5 s; authenticity: bona fide (real human speech); "
            "speaker gender: female",
        ),
        (
            "asvspoof5/T_0000000001",
            "flac_T/T_0000000001.flac",
            "[00:00.0-00:00.5] speech\nduration: 0.5 s; authenticity: spoofed (machine-generated); "
            "spoofing method: text-to-speech (GradTTS); speaker gender: male",
        ),
    ]


def test_nisqa_training_sets_only(tmp_path: Path) -> None:
    write(
        tmp_path / "NISQA_corpus_file.csv",
        "db,con,file,con_description,filename_deg,filename_ref,source,lang,votes,mos,noi,col,dis,loud\n"
        "NISQA_TRAIN_SIM,1,f1,Bandpass filter,c00001_deg.wav,c00001_ref.wav,AusTalk,en,5,2.75,"
        "2.557522,3.028485,2.344617,2.6302881\n"
        "NISQA_TEST_FOR,2,f2,VoIP,c00002_deg.wav,,x,en,5,3.1,3,3,3,3\n",
    )
    wav(tmp_path / "NISQA_TRAIN_SIM/deg/c00001_deg.wav", 1.0)
    records, collector = run("nisqa", tmp_path)
    assert records == [
        rec(
            "nisqa/NISQA_TRAIN_SIM/c00001_deg",
            "NISQA_TRAIN_SIM/deg/c00001_deg.wav",
            1.0,
            "[00:00.0-00:01.0] speech\nduration: 1.0 s; overall quality (MOS, 1-5): 2.75; "
            "noisiness (1-5, 5 = no noise): 2.56; coloration (1-5, 5 = no coloration): 3.03; "
            "discontinuity (1-5, 5 = no interruptions): 2.34; loudness (1-5, 5 = optimal): 2.63; "
            "degradation: Bandpass filter",
            "speech",
        )
    ]
    assert sum(collector.summary.filtered.values()) == 1


def test_noisy_vctk_noisy_and_clean(tmp_path: Path) -> None:
    write(tmp_path / "log_trainset_28spk.txt", "p226_001 restaurant 2.5\np226_002 ssn 7.5\n")
    write(tmp_path / "trainset_28spk_txt/p226_001.txt", "Please call Stella.\n")
    write(tmp_path / "trainset_28spk_txt/p226_002.txt", "Ask her.\n")
    wav(tmp_path / "noisy_trainset_28spk_wav/p226_001.wav", 0.5)
    wav(tmp_path / "clean_trainset_28spk_wav/p226_001.wav", 0.5)
    wav(tmp_path / "noisy_trainset_28spk_wav/p226_002.wav", 0.5)  # its clean twin is missing
    records, collector = run("noisy_vctk", tmp_path)
    base = "[00:00.0-00:00.5] transcript: {}\nduration: 0.5 s; background noise: {}"
    assert [(r["id"], r["audio_path"], r["metadata"]) for r in records] == [
        (
            "noisy_vctk/trainset_28spk/p226_001/noisy",
            "noisy_trainset_28spk_wav/p226_001.wav",
            base.format("Please call Stella.", "restaurant; SNR: 2.5 dB"),
        ),
        (
            "noisy_vctk/trainset_28spk/p226_001/clean",
            "clean_trainset_28spk_wav/p226_001.wav",
            base.format("Please call Stella.", "none (clean recording)"),
        ),
        (
            "noisy_vctk/trainset_28spk/p226_002/noisy",
            "noisy_trainset_28spk_wav/p226_002.wav",
            base.format("Ask her.", "speech-shaped noise; SNR: 7.5 dB"),
        ),
    ]
    assert [(r.id, r.reason) for r in collector.rejects] == [
        ("noisy_vctk/trainset_28spk/p226_002/clean", "missing audio")
    ]


def test_mucs_segments_of_long_recordings(tmp_path: Path) -> None:
    transcripts = tmp_path / "Hindi-English/train/transcripts"
    write(transcripts / "segments", "utt1 rec1 0.50 2.00\nutt2 rec1 2.50 3.50\nutt3 rec1 3.00 9.00\n")
    write(transcripts / "text", "utt1 दोस्तों bash में\nutt2 nested if statement\nutt3 too long\n")
    wav(tmp_path / "Hindi-English/train/rec1.wav", 4.0)
    records, collector = run("mucs", tmp_path)
    language = "language: Hindi-English code-switching"
    assert records == [
        rec(
            "mucs/Hindi-English/utt1",
            "Hindi-English/train/rec1.wav",
            1.5,
            f"[00:00.0-00:01.5] transcript: दोस्तों bash में\nduration: 1.5 s; {language}",
            "speech",
            offset=0.5,
        ),
        rec(
            "mucs/Hindi-English/utt2",
            "Hindi-English/train/rec1.wav",
            1.0,
            f"[00:00.0-00:01.0] transcript: nested if statement\nduration: 1.0 s; {language}",
            "speech",
            offset=2.5,
        ),
    ]
    assert [(r.id, r.reason) for r in collector.rejects] == [("mucs/Hindi-English/utt3", "segment outside the audio")]


def test_voxceleb1_development_speakers(tmp_path: Path) -> None:
    write(
        tmp_path / "vox1_meta.csv",
        "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
        "id10001\tA.J._Buckley\tm\tIreland\tdev\nid10270\tEric_McCormack\tm\tCanada\ttest\n",
    )
    wav(tmp_path / "wav/id10001/1zcIwhmdeo4/00001.wav", 0.5)
    wav(tmp_path / "wav/id10270/5r0dWxy17C8/00001.wav", 0.5)
    records, collector = run("voxceleb1", tmp_path)
    assert records == [
        rec(
            "voxceleb1/id10001/1zcIwhmdeo4/00001",
            "wav/id10001/1zcIwhmdeo4/00001.wav",
            0.5,
            "[00:00.0-00:00.5] speech\nduration: 0.5 s; speaker gender: male; speaker nationality: Ireland",
            "speech",
        )
    ]
    assert sum(collector.summary.filtered.values()) == 1


def _parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_cameo(tmp_path: Path) -> None:
    row = {
        "file_id": "1001_DFA_ANG_XX.wav",
        "audio": {"bytes": _wav_bytes(0.5), "path": "1001_DFA_ANG_XX.wav"},
        "emotion": "anger",
        "transcription": "Don't forget a jacket.",
        "speaker_id": "1001",
        "gender": "Male",
        "age": "51",
        "dataset": "crema_d",
        "language": "english",
        "license": "ODbL",
    }
    _parquet(tmp_path / "data/crema_d-00000-of-00001.parquet", [row])
    records, _ = run("cameo", tmp_path)
    assert records == [
        rec(
            "cameo/crema_d/1001_DFA_ANG_XX",
            "_alarm_audio/cameo/crema_d/1001_DFA_ANG_XX.wav",
            0.5,
            "[00:00.0-00:00.5] transcript: Don't forget a jacket.\n"
            "duration: 0.5 s; emotion: anger; gender: male; age: 51; language: English",
            "speech",
        )
    ]


def test_globe_v3_keeps_common_voice_attributes_only(tmp_path: Path) -> None:
    def row(name: str, gender: str) -> dict:
        return {
            "audio": {"bytes": _wav_bytes(0.5), "path": f"{name}.wav"},
            "common_voice_path": f"{name}.mp3",
            "common_voice_sentence": "Please look up the song, Twist of shadows.",
            "common_voice_sentence_id": "abc",
            "common_voice_gender": gender,
            "common_voice_accents": "Canadian English",
            "common_voice_age": "twenties",
            "predicted_gender": "male",
            "predicted_accent": "Canadian English",
            "predicted_age": "twenties",
            "utmos": 4.035799026489258,
            "snr": 100.0,
        }

    _parquet(
        tmp_path / "data/train-00000-of-00001.parquet",
        [row("common_voice_en_1", "male_masculine"), row("common_voice_en_2", "nan")],
    )
    records, collector = run("globe_v3", tmp_path)
    assert records == [
        rec(
            "globe_v3/common_voice_en_1",
            "_alarm_audio/globe_v3/common_voice_en_1.wav",
            0.5,
            "[00:00.0-00:00.5] transcript: Please look up the song, Twist of shadows.\n"
            "duration: 0.5 s; gender: male; accent: Canadian English; age: twenties; predicted MOS (UTMOS): 4.04; "
            "SNR: 100.0 dB",
            "speech",
        )
    ]
    assert sum(collector.summary.filtered.values()) == 1
    # A filtered row's embedded audio is never written out.
    assert sorted(p.name for p in (tmp_path / "_alarm_audio/globe_v3").iterdir()) == ["common_voice_en_1.wav"]


# -- more music ----------------------------------------------------------------------------


def test_mridangam(tmp_path: Path) -> None:
    wav(tmp_path / "B/224030__akshaylaya__bheem-b-001.wav", 0.5)
    wav(tmp_path / "C#/224100__akshaylaya__cha-c#-002.wav", 0.5)
    write(tmp_path / "README.txt", "not audio")
    records, _ = run("mridangam", tmp_path)
    assert [(r["id"], r["audio_path"], r["metadata"]) for r in records] == [
        (
            "mridangam/B/224030__akshaylaya__bheem-b-001",
            "B/224030__akshaylaya__bheem-b-001.wav",
            "[00:00.0-00:00.5] mridangam stroke: Bheem\nduration: 0.5 s; tonic: B",
        ),
        (
            "mridangam/C#/224100__akshaylaya__cha-c#-002",
            "C#/224100__akshaylaya__cha-c#-002.wav",
            "[00:00.0-00:00.5] mridangam stroke: Cha\nduration: 0.5 s; tonic: C#",
        ),
    ]


def test_opensinger(tmp_path: Path) -> None:
    wav(tmp_path / "ManRaw/0_光年之外/0_光年之外_0.wav", 0.5)
    write(tmp_path / "ManRaw/0_光年之外/0_光年之外_0.txt", "感受停在我发端的指尖\n")
    wav(tmp_path / "WomanRaw/10_爱情转移/10_爱情转移_3.wav", 0.5)
    write(tmp_path / "WomanRaw/10_爱情转移/10_爱情转移_3.txt", "把一个人的温暖转移到另一个的胸膛")
    records, _ = run("opensinger", tmp_path)
    assert [(r["id"], r["metadata"]) for r in records] == [
        (
            "opensinger/0_光年之外_0",
            "[00:00.0-00:00.5] sung lyrics: 感受停在我发端的指尖\n"
            "duration: 0.5 s; song title: 光年之外; singer gender: male",
        ),
        (
            "opensinger/10_爱情转移_3",
            "[00:00.0-00:00.5] sung lyrics: 把一个人的温暖转移到另一个的胸膛\n"
            "duration: 0.5 s; song title: 爱情转移; singer gender: female",
        ),
    ]


def test_singmos_joins_scores_and_systems(tmp_path: Path) -> None:
    write(tmp_path / "info/split.json", json.dumps({"singmos": {"train": ["sys1_utt1", "gt_utt2"], "test": ["x"]}}))
    scores = {
        "sys1_utt1": {"sys_id": "sys1", "score": {"mos": 3.4}},
        "gt_utt2": {"sys_id": "gt", "score": {"mos": 4.123}},
    }
    write(tmp_path / "info/score.json", json.dumps({"utterance": scores}))
    write(tmp_path / "info/sys_info.json", json.dumps({"sys1": {"type": "svs"}, "gt": {"type": "gt"}}))
    wav(tmp_path / "wavs/sys1_utt1.wav", 0.5)
    wav(tmp_path / "wavs/gt_utt2.wav", 0.5)
    records, _ = run("singmos", tmp_path)
    assert [(r["id"], r["audio_path"], r["metadata"]) for r in records] == [
        (
            "singmos/sys1_utt1",
            "wavs/sys1_utt1.wav",
            "[00:00.0-00:00.5] singing\nduration: 0.5 s; MOS (1-5): 3.40; real or synthesized: synthesized; "
            "generation method: singing voice synthesis",
        ),
        (
            "singmos/gt_utt2",
            "wavs/gt_utt2.wav",
            "[00:00.0-00:00.5] singing\nduration: 0.5 s; MOS (1-5): 4.12; real or synthesized: real recording",
        ),
    ]


# -- the rest ------------------------------------------------------------------------------

TEXTGRID = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 10
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "R0003_M0046_F_SPK0093"
        xmin = 0
        xmax = 10
        intervals: size = 3
        intervals [1]:
            xmin = 0
            xmax = 1.5
            text = ""
        intervals [2]:
            xmin = 1.5
            xmax = 4.2
            text = "嗯，最近呢。"
        intervals [3]:
            xmin = 4.2
            xmax = 10
            text = ""
    item [2]:
        class = "IntervalTier"
        name = "M_SPK0094"
        xmin = 0
        xmax = 10
        intervals: size = 2
        intervals [1]:
            xmin = 0
            xmax = 3
            text = ""
        intervals [2]:
            xmin = 3
            xmax = 6
            text = "他说""好""。"
"""


def test_alimeeting_windows_from_textgrid(tmp_path: Path) -> None:
    # Praat leaves a blank at the end of most lines; keep that quirk in the fixture.
    praat = "".join(line + " \n" for line in TEXTGRID.splitlines())
    write(tmp_path / "Train_Ali_far/textgrid_dir/R0003_M0046.TextGrid", praat)
    wav(tmp_path / "Train_Ali_far/audio_dir/R0003_M0046_MS002.wav", 10.0, rate=1000)
    records, collector = run("alimeeting", tmp_path)
    assert records == [
        rec(
            "alimeeting/R0003_M0046/0",
            "Train_Ali_far/audio_dir/R0003_M0046_MS002.wav",
            4.5,
            '[00:00.0-00:02.7] speaker 1: 嗯，最近呢。\n[00:01.5-00:04.5] speaker 2: 他说"好"。\n'
            "duration: 4.5 s; speakers: 2; speaker 1 gender: female; speaker 2 gender: male",
            "speech",
            offset=1.5,
        )
    ]
    assert collector.rejects == []


def test_fma_stacked_header_and_training_split(tmp_path: Path) -> None:
    write(
        tmp_path / "fma_metadata/tracks.csv",
        ",album,album,artist,set,set,track,track,track,track\n"
        ",title,tracks,name,split,subset,genre_top,language_code,tags,title\n"
        "track_id,,,,,,,,,\n"
        "2,AWOL - A Way Of Life,7,AWOL,training,small,Hip-Hop,en,\"['awol', 'hip hop']\",Food\n"
        "3,AWOL - A Way Of Life,7,AWOL,test,small,Hip-Hop,en,[],Electric Ave\n",
    )
    wav(tmp_path / "fma_large/000/000002.mp3", 1.0, fmt="MP3")
    records, collector = run("fma", tmp_path)
    assert records == [
        rec(
            "fma/2",
            "fma_large/000/000002.mp3",
            1.0,
            "[00:00.0-00:01.0] music\nduration: 1.0 s; genre: Hip-Hop; title: Food; artist: AWOL; "
            "album: AWOL - A Way Of Life; language: en; tags: awol, hip hop",
            "music",
        )
    ]
    assert sum(collector.summary.filtered.values()) == 1


def test_audioset_labels_by_name(tmp_path: Path) -> None:
    head = "# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids=2\n"
    head += "# YTID, start_seconds, end_seconds, positive_labels\n"
    write(
        tmp_path / "balanced_train_segments.csv",
        head + '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/05zppz"\n--ZhevVpy1s, 50.000, 60.000, "/m/012xff"\n',
    )
    write(tmp_path / "unbalanced_train_segments.csv", head + '---1_cCGK4M, 0.000, 10.000, "/m/01g50p,/m/0284vy3"\n')
    write(
        tmp_path / "class_labels_indices.csv",
        'index,mid,display_name\n0,/m/09x0r,Speech\n1,/m/05zppz,"Male speech, man speaking"\n'
        '2,/m/01g50p,"Railroad car, train wagon"\n3,/m/0284vy3,Train horn\n4,/m/012xff,Toothbrush\n',
    )
    wav(tmp_path / "audio/--PJHxphWEs_30.wav", 1.0)
    wav(tmp_path / "audio/Y---1_cCGK4M.wav", 0.5)
    records, collector = run("audioset", tmp_path)
    assert records == [
        rec(
            "audioset/--PJHxphWEs_30",
            "audio/--PJHxphWEs_30.wav",
            1.0,
            "[00:00.0-00:01.0] sound events: Speech; Male speech, man speaking\nduration: 1.0 s",
            "sound",
        ),
        rec(
            "audioset/---1_cCGK4M_0",
            "audio/Y---1_cCGK4M.wav",
            0.5,
            "[00:00.0-00:00.5] sound events: Railroad car, train wagon; Train horn\nduration: 0.5 s",
            "sound",
        ),
    ]
    assert [(r.id, r.reason) for r in collector.rejects] == [("audioset/--ZhevVpy1s_50", "missing audio")]


def test_disfluencyspeech(tmp_path: Path) -> None:
    row = {
        "audio": {"bytes": _wav_bytes(0.5), "path": None},
        "transcript_annotated": "California is the biggest {C but } Texas, {F uh, } adopts [ it, + it ] all",
        "transcript_a": "California is the biggest but Texas uh adopts it it all",
        "transcript_b": "x",
        "transcript_c": "California is the biggest but Texas adopts it all",
    }
    _parquet(tmp_path / "data/train-00000-of-00001.parquet", [row])
    records, _ = run("disfluencyspeech", tmp_path)
    assert records == [
        rec(
            "disfluencyspeech/train-00000-of-00001-1",
            "_alarm_audio/disfluencyspeech/train-00000-of-00001-1.wav",
            0.5,
            "[00:00.0-00:00.5] annotated transcript: California is the biggest {C but } Texas, {F uh, } adopts "
            "[ it, + it ] all\nduration: 0.5 s; annotation marks: {F ...} filled pause, {E ...} editing term, "
            "{D ...} discourse marker, {C ...} coordinating conjunction, {A ...} aside, "
            "[ ... + ... ] restart (the words before + are repaired after it)",
            "speech",
        )
    ]


def test_ascend(tmp_path: Path) -> None:
    row = {
        "id": "ses1_utt1",
        "path": "ses1_utt1.wav",
        "audio": {"bytes": _wav_bytes(0.5), "path": "ses1_utt1.wav"},
        "transcription": "我刚刚开始record",
        "duration": 0.5,
        "language": "mixed",
        "original_speaker_id": 3,
        "session_id": 1,
        "topic": "education",
    }
    # The repository's layout: shards under main/ (the config name).
    _parquet(tmp_path / "main/train-00000-of-00003.parquet", [row])
    _parquet(tmp_path / "main/test-00000-of-00001.parquet", [{**row, "id": "held_out"}])  # never read
    _parquet(tmp_path / "main/validation-00000-of-00001.parquet", [{**row, "id": "held_out_2"}])  # never read
    records, _ = run("ascend", tmp_path)
    assert records == [
        rec(
            "ascend/ses1_utt1",
            "_alarm_audio/ascend/ses1_utt1.wav",
            0.5,
            "[00:00.0-00:00.5] transcript: 我刚刚开始record\n"
            "duration: 0.5 s; language: Chinese-English code-switching; topic: education",
            "speech",
        )
    ]


# -- dialogues, mixtures, degraded music ---------------------------------------------------


def _dailytalk_turn(dialogue: int, turn: int, speaker: int, text: str, emotion: str, act: str | int) -> dict:
    return {
        "index": f"{turn}_{speaker}_d{dialogue}",
        "dialog_idx": dialogue,
        "utterance_idx": turn,
        "speaker": speaker,
        "text": text,
        "emotion": emotion,
        "act": act,
    }


def build_dailytalk(root: Path) -> None:
    metadata = {
        "0": {
            "0": _dailytalk_turn(0, 0, 0, "Do you like  ice skating?", "no emotion", "question"),
            "1": _dailytalk_turn(0, 1, 1, "Yes, I love it!", "happiness", "inform"),
            "2": _dailytalk_turn(0, 2, 0, "Then let's go on Sunday.", "no emotion", 3),  # DailyDialog's act code
        },
        "7": {
            "0": _dailytalk_turn(7, 0, 1, "Excuse me, where is the station?", "no emotion", "question"),
            "1": _dailytalk_turn(7, 1, 0, "Over there.", "no emotion", "inform"),
        },
        "5": {
            "0": _dailytalk_turn(5, 0, 1, "This turn was never recorded.", "no emotion", "inform"),
            "1": _dailytalk_turn(5, 1, 0, "This file is broken.", "sadness", "inform"),
        },
    }
    write(root / "metadata.json", json.dumps(metadata))
    for dialogue, turns in metadata.items():
        for turn, info in turns.items():
            stem = root / f"data/{dialogue}/{turn}_{info['speaker']}_d{dialogue}"
            write(stem.with_suffix(".txt"), info["text"])
            if dialogue == "5" and turn == "1":
                write(stem.with_suffix(".wav"), "RIFF, but not really")
            elif dialogue != "5":
                wav(stem.with_suffix(".wav"), 1.0 if turn == "0" else 0.5)


def test_dailytalk_one_record_per_turn(tmp_path: Path) -> None:
    build_dailytalk(tmp_path)
    records, collector = run("dailytalk", tmp_path)
    assert records == [
        rec(
            "dailytalk/0/0",
            "data/0/0_0_d0.wav",
            1.0,
            "[00:00.0-00:01.0] transcript: Do you like ice skating?\n"
            "duration: 1.0 s; emotion: neutral; speech act: question",
            "speech",
        ),
        rec(
            "dailytalk/0/1",
            "data/0/1_1_d0.wav",
            0.5,
            "[00:00.0-00:00.5] transcript: Yes, I love it!\nduration: 0.5 s; emotion: happiness; speech act: inform",
            "speech",
        ),
        rec(
            "dailytalk/0/2",
            "data/0/2_0_d0.wav",
            0.5,
            "[00:00.0-00:00.5] transcript: Then let's go on Sunday.\n"
            "duration: 0.5 s; emotion: neutral; speech act: directive",
            "speech",
        ),
        rec(
            "dailytalk/7/0",
            "data/7/0_1_d7.wav",
            1.0,
            "[00:00.0-00:01.0] transcript: Excuse me, where is the station?\n"
            "duration: 1.0 s; emotion: neutral; speech act: question",
            "speech",
        ),
        rec(
            "dailytalk/7/1",
            "data/7/1_0_d7.wav",
            0.5,
            "[00:00.0-00:00.5] transcript: Over there.\nduration: 0.5 s; emotion: neutral; speech act: inform",
            "speech",
        ),
    ]
    assert [(r.id, r.reason) for r in collector.rejects] == [
        ("dailytalk/5/0", "missing audio"),
        ("dailytalk/5/1", "unreadable audio"),
    ]


def test_dailytalk_keeps_each_dialogue_in_one_split(tmp_path: Path) -> None:
    build_dailytalk(tmp_path)
    records, _ = run("dailytalk", tmp_path, validation_fraction=0.5)
    splits = {r["id"]: r["split"] for r in records}
    for dialogue, turns in (("0", 3), ("7", 2)):
        ids = [f"dailytalk/{dialogue}/{t}" for t in range(turns)]
        expected = hash_split(f"dailytalk/{dialogue}", 0.5)
        assert {splits[i] for i in ids} == {expected}
        # Hashing each turn alone would have split this dialogue: the test would notice.
        assert any(hash_split(i, 0.5) != expected for i in ids)


LIBRISPEECH_SPEAKERS = (
    "; LibriSpeech speakers\n"
    ";ID  |SEX| SUBSET           |MINUTES| NAME\n"
    "19   | F | train-clean-100  | 25.19 | Kara Shallenberg\n"
    "26   | M | train-clean-100  | 25.08 | Denny Sayers\n"
    "103  | F | train-clean-100  | 25.23 | Karen Savage\n"
)


def build_librimix(root: Path) -> None:
    speech = root / "LibriSpeech"
    write(speech / "SPEAKERS.TXT", LIBRISPEECH_SPEAKERS)
    utterances = {
        "19-198-0001": ("THIS LITTLE WORK WAS FINISHED", 1.0),
        "26-495-0004": ("I SAW IT", 0.6),
        "103-1240-0000": ("CHAPTER ONE", 0.8),
    }
    for utt, (text, seconds) in utterances.items():
        speaker, chapter, _ = utt.split("-")
        folder = speech / f"train-clean-100/{speaker}/{chapter}"
        transcripts = folder / f"{speaker}-{chapter}.trans.txt"
        old = transcripts.read_text() if transcripts.exists() else ""
        write(transcripts, old + f"{utt} {text}\n")
        wav(folder / f"{utt}.flac", seconds)
    wav(speech / "train-clean-100/103/1240/103-1240-0009.flac", 0.5)  # audio, but no line in the transcripts

    two = root / "Libri2Mix/wav16k/max"
    write(
        two / "metadata/metrics_train-100_mix_clean.csv",
        "mixture_ID,source_1_SNR,source_2_SNR\n"
        "19-198-0001_26-495-0004,1.2345,-1.2345\n"
        "19-198-0001_103-1240-0000,0.5,-0.5\n"  # its mixture was never generated
        "26-495-0004_103-1240-0009,0.1,-0.1\n",  # a source without a transcript
    )
    wav(two / "train-100/mix_clean/19-198-0001_26-495-0004.wav", 1.0)
    wav(two / "train-100/mix_clean/26-495-0004_103-1240-0009.wav", 0.6)
    # Never read: a held-out set, the 'min' mode (sources cut to the shortest) and the 8 kHz copy.
    write(two / "metadata/metrics_test_mix_clean.csv", "mixture_ID,source_1_SNR,source_2_SNR\n1-2-3_4-5-6,0,0\n")
    write(
        root / "Libri2Mix/wav16k/min/metadata/metrics_train-100_mix_clean.csv",
        "mixture_ID,source_1_SNR,source_2_SNR\n19-198-0001_26-495-0004,1.2,-1.2\n",
    )
    write(
        root / "Libri2Mix/wav8k/max/metadata/metrics_train-100_mix_clean.csv",
        "mixture_ID,source_1_SNR,source_2_SNR\n19-198-0001_26-495-0004,1.2,-1.2\n",
    )

    # Newer LibriMix scripts add original_mixture_ID (hashed names for 10+ sources).
    three = root / "Libri3Mix/wav16k/max"
    mixture = "26-495-0004_19-198-0001_103-1240-0000"
    write(
        three / "metadata/metrics_train-100_mix_clean.csv",
        f"mixture_ID,original_mixture_ID,source_1_SNR,source_2_SNR,source_3_SNR\n{mixture},{mixture},-5.04,2.96,0\n",
    )
    wav(three / f"train-100/mix_clean/{mixture}.wav", 1.0)


def test_librimix_speakers_of_a_mixture_with_their_own_times(tmp_path: Path) -> None:
    build_librimix(tmp_path)
    records, collector = run("librimix", tmp_path)
    assert records == [
        rec(
            "librimix/Libri2Mix/train-100/19-198-0001_26-495-0004",
            "Libri2Mix/wav16k/max/train-100/mix_clean/19-198-0001_26-495-0004.wav",
            1.0,
            "[00:00.0-00:01.0] speaker 1: this little work was finished\n"
            "[00:00.0-00:00.6] speaker 2: i saw it\n"
            "duration: 1.0 s; speakers: 2; background noise: none; speaker 1 gender: female; "
            "speaker 1 level over the others: 1.2 dB; speaker 2 gender: male; speaker 2 level over the others: -1.2 dB",
            "speech",
        ),
        rec(
            "librimix/Libri3Mix/train-100/26-495-0004_19-198-0001_103-1240-0000",
            "Libri3Mix/wav16k/max/train-100/mix_clean/26-495-0004_19-198-0001_103-1240-0000.wav",
            1.0,
            "[00:00.0-00:00.6] speaker 1: i saw it\n"
            "[00:00.0-00:01.0] speaker 2: this little work was finished\n"
            "[00:00.0-00:00.8] speaker 3: chapter one\n"
            "duration: 1.0 s; speakers: 3; background noise: none; speaker 1 gender: male; "
            "speaker 1 level over the others: -5.0 dB; speaker 2 gender: female; speaker 2 level over the others: "
            "3.0 dB; speaker 3 gender: female; speaker 3 level over the others: 0.0 dB",
            "speech",
        ),
    ]
    rejects = {r.id: (r.reason, r.detail) for r in collector.rejects}
    assert sorted(rejects) == [
        "librimix/Libri2Mix/train-100/19-198-0001_103-1240-0000",
        "librimix/Libri2Mix/train-100/26-495-0004_103-1240-0009",
    ]
    assert rejects["librimix/Libri2Mix/train-100/19-198-0001_103-1240-0000"][0] == "missing audio"
    # A speaker whose transcript is missing rejects the mixture instead of describing one speaker.
    reason, detail = rejects["librimix/Libri2Mix/train-100/26-495-0004_103-1240-0009"]
    assert reason == "bad annotation" and "s2.text" in detail


def _flac_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(seconds * RATE), np.float32) + 0.01, RATE, format="FLAC")
    return buffer.getvalue()


def _sonicmaster_row(clip_id: str, meta: dict | str, seconds: float = 1.0, plain_bytes: bool = False) -> dict:
    degraded = _flac_bytes(seconds)
    return {
        "id": clip_id,
        "input_flac": degraded if plain_bytes else {"bytes": degraded, "path": None},
        "input_sr": RATE,
        "gt_flac": {"bytes": _flac_bytes(seconds), "path": None},
        "gt_sr": RATE,
        "meta": meta if isinstance(meta, str) else json.dumps(meta),
    }


def _sonicmaster_meta(name: str, split: str, vocal: str, gender: str, tracking: dict) -> dict:
    kinds = ("Reverb", "EQ", "Amplitude", "Dynamics", "Stereo")
    return {
        "name": name,
        "genres": ["pop", "rock"],
        "vocalinstrumental": vocal,
        "gender": gender,
        "vartags": ["happy", "energetic"],
        "degradations": [f"{k}_{v[0]}".lower() for k, v in tracking.items()],
        "degradation_tracking": {kind: tracking.get(kind, []) for kind in kinds},
        "split": split,
    }


def test_sonicmaster_degradations_of_training_clips(tmp_path: Path) -> None:
    vocal = _sonicmaster_meta(
        "Summer  Song", "train", "vocal", "female", {"Reverb": ["big", 0.7], "Dynamics": ["comp"]}
    )
    instrumental = _sonicmaster_meta(
        "Night Drive", "train", "instrumental", "male", {"EQ": ["dark", 9.5], "Stereo": ["stereo"]}
    )
    # A column holds either Audio structs or plain bytes: one shard of each.
    _parquet(
        tmp_path / "data/train-00000-of-00002.parquet",
        [
            _sonicmaster_row("1001", vocal),
            _sonicmaster_row("1003", _sonicmaster_meta("Held Out", "test", "vocal", "male", {"Reverb": ["small"]})),
            _sonicmaster_row("1004", "{not json"),
        ],
    )
    _parquet(
        tmp_path / "data/train-00001-of-00002.parquet",
        [
            _sonicmaster_row("1002", instrumental, seconds=0.5, plain_bytes=True),
            _sonicmaster_row("1002", instrumental, plain_bytes=True),  # the same id twice
        ],
    )
    records, collector = run("sonicmaster", tmp_path)
    assert records == [
        rec(
            "sonicmaster/1001",
            "_alarm_audio/sonicmaster/1001.flac",
            1.0,
            "[00:00.0-00:01.0] music\nduration: 1.0 s; title: Summer Song; genres: pop, rock; vocals: with vocals; "
            "singer gender: female; tags: happy, energetic; reverb added: reverberation of a simulated large room; "
            "dynamics: squashed by heavy compression (ratio 6-45, threshold -45 to -38 dB, 16-25 dB make-up gain)",
            "music",
        ),
        rec(
            "sonicmaster/1002",
            "_alarm_audio/sonicmaster/1002.flac",
            0.5,
            # The instrumental clip's gender field is not shown: it says nothing about the audio.
            "[00:00.0-00:00.5] music\nduration: 0.5 s; title: Night Drive; genres: pop, rock; vocals: instrumental; "
            "tags: happy, energetic; tonal balance: too bright (high shelf at 6 kHz boosted by 6-15 dB); "
            "stereo image: collapsed to mono (left and right channels combined)",
            "music",
        ),
    ]
    assert [(r.id, r.reason) for r in collector.rejects] == [
        ("sonicmaster/1004", "bad annotation"),
        ("sonicmaster/1002", "duplicate id"),
    ]
    assert "'meta' is not JSON text" in collector.rejects[0].detail
    assert collector.summary.filtered == {"{meta.split} not in ['train']": 1}
    # Only the degraded input is extracted; the clean reference stays in the shard.
    assert sorted(p.name for p in (tmp_path / "_alarm_audio/sonicmaster").iterdir()) == ["1001.flac", "1002.flac"]


# -- coverage ------------------------------------------------------------------------------

TESTED = {
    "alimeeting",
    "dailytalk",
    "librimix",
    "sonicmaster",
    "ascend",
    "audioset",
    "disfluencyspeech",
    "fma",
    "ami",
    "asvspoof2019",
    "asvspoof5",
    "cameo",
    "globe_v3",
    "mls",
    "mridangam",
    "mucs",
    "nisqa",
    "noisy_vctk",
    "opensinger",
    "singmos",
    "voxceleb1",
    "audiocaps",
    "clotho",
    "esc50",
    "fsd50k",
    "gtzan",
    "heysquad_human",
    "instructs2s",
    "librispeech",
    "meld",
    "nsynth",
    "vctk",
    "vocalsound",
}


def test_every_collector_has_a_fixture_test() -> None:
    assert set(all_specs()) == TESTED


@pytest.mark.parametrize("name", sorted(TESTED))
def test_every_collector_documents_itself(name: str) -> None:
    spec = get_spec(name)
    assert spec.licence and spec.homepage and spec.layout and spec.yields
    assert name in spec.describe() and spec.category in spec.describe()


def test_docs_list_every_collector_as_done() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs/datasets.md").read_text(encoding="utf-8")
    missing = [name for name in all_specs() if f"| `{name}` | done |" not in text]
    assert not missing, f"docs/datasets.md does not list these collectors as done: {missing}"
