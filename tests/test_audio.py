"""Audio clips: each card's moment cut from the episode's audio, shipped in its deck, and
received by a real Anki collection's media folder."""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cards import clips
from cards.cli import app
from cards.errors import ExportError
from cards.export import sound_tag
from cards.models import Draft, Segment

av = pytest.importorskip("av")
collection = pytest.importorskip("anki.collection")

from cards import audio  # noqa: E402
from fakeanki import import_package  # noqa: E402


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def draft(quote: str, start: float | None = 10.0, end: float | None = 60.0, note: str = "") -> Draft:
    return Draft(id="a1b2c3d4e5f60718", note_id="n", episode="ep", kind="basic", front="Q?", back="A",
                 quote=quote, tags=[], generator="offline", model="none", prompt_version="1", note_text=note,
                 context_start=start, context_end=end)


SEGMENTS = [
    Segment("Welcome back to the show.", 1, 0.0, 10.0),
    Segment("Today we talk about sodium reactors.", 2, 10.0, 14.0),
    Segment("The reactor in Kemmerer runs at 345 megawatts", 3, 14.0, 18.5),
    Segment("of electric power, and it replaces a coal plant.", 4, 18.5, 23.0),
    Segment("Storage is molten salt in big tanks.", 5, 23.0, 30.0),
    Segment("A very long answer " * 10, 6, 30.0, 59.0),
]


def test_the_moment_is_the_quotes_segments_padded_a_second_each_side():
    assert clips.moment(draft("the reactor in Kemmerer runs at 345 megawatts of electric power"), SEGMENTS) \
        == (13.0, 24.0)
    # The quote from the note itself (the offline generator's) still finds where it was said.
    assert clips.moment(draft("kemmerer: 345 MW", note="kemmerer reactor 345 megawatts"), SEGMENTS) == (13.0, 19.5)


def test_a_moment_is_capped_and_needs_times_and_words():
    start, end = clips.moment(draft("a very long answer"), SEGMENTS)
    assert (start, end) == (29.0, 29.0 + clips.LONGEST)
    assert clips.moment(draft("345 megawatts", start=None, end=None), SEGMENTS) is None  # no times, no clip
    untimed = [Segment(s.text, s.line) for s in SEGMENTS]
    assert clips.moment(draft("345 megawatts"), untimed) is None
    assert clips.moment(draft("tomato blight in gardens"), SEGMENTS) is None  # said nowhere in its passage
    # Only inside the passage the note was aligned to.
    assert clips.moment(draft("welcome back to the show"), SEGMENTS) is None


def test_clip_names_are_ours_and_stable():
    name = clips.clip_name("reactor-talk", "a1b2c3d4e5f60718", b"mp3 bytes")
    assert name == clips.clip_name("reactor-talk", "a1b2c3d4e5f60718", b"mp3 bytes")
    assert name.startswith("cards-reactor-talk-a1b2c3d4e5f60718-") and name.endswith(".mp3")
    assert name != clips.clip_name("reactor-talk", "a1b2c3d4e5f60718", b"other bytes")
    assert sound_tag(name) == f"[sound:{name}]"
    for bad in ("../x.mp3", "a]b.mp3", "x.mp3][sound:y.mp3", "<b>.mp3", ""):
        with pytest.raises(ExportError):
            sound_tag(bad)


def _decoded(data: bytes, tmp_path: Path) -> tuple[float, int, int, str]:
    path = tmp_path / "clip.mp3"
    path.write_bytes(data)
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(stream))
        return samples / stream.rate, stream.rate, stream.channels, stream.codec_context.name


@pytest.fixture(scope="module")
def tone_file(tmp_path_factory) -> Path:
    """Seventy seconds of tone as WAV, quick to write; the episode transcripts end at 1:07."""
    return audio.tone(tmp_path_factory.mktemp("audio") / "tone.wav", 70.0, codec="pcm_s16le")


def test_a_clip_is_mono_mp3_at_44k_of_the_spans_length_and_small(tmp_path):
    mp3 = audio.tone(tmp_path / "episode.mp3", 32.0)  # what podcasts come as
    got = audio.cut(mp3, [("a", 5.0, 12.5), ("b", 11.0, 31.0), ("past-the-end", 40.0, 45.0)])
    assert set(got) == {"a", "b"}  # nothing left past the end: no clip
    seconds, rate, channels, codec = _decoded(got["a"], tmp_path)
    assert (rate, channels) == (44100, 1) and codec.startswith("mp3")
    assert seconds == pytest.approx(7.5, abs=0.06)  # an mp3 frame is 26 ms
    assert _decoded(got["b"], tmp_path)[0] == pytest.approx(20.0, abs=0.06)
    assert len(got["b"]) <= 200_000  # the longest clip stays within the size goal
    assert audio.cut(mp3, [("a", 5.0, 12.5)])["a"] == got["a"]  # same cut, same bytes, same name


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A workspace with the conftest example generated offline, made once and copied per test."""
    from conftest import offline_workspace

    return offline_workspace(tmp_path_factory.mktemp("template"))


def _workspace_with_drafts(tmp_path: Path, template: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "ws"))


def _notes(col) -> dict:
    return {n.guid: n for n in (col.get_note(i) for i in col.find_notes(""))}


def test_export_with_audio_plays_the_moment_from_the_source_field_after_an_import(tmp_path, template, tone_file):
    ws = _workspace_with_drafts(tmp_path, template)
    folder = tmp_path / "audio"
    folder.mkdir()
    shutil.copy(tone_file, folder / "reactor-talk.wav")  # named like its transcript, reactor-talk.txt

    data = json.loads(run("export", "-w", str(ws), "--include-drafts", "--audio", str(folder), "--json").stdout)
    assert [r["episode"] for r in data] == ["ada-quill-on-reactor-talk"]  # the garden notes make no card
    reactor = data[0]
    assert reactor["clips"] == reactor["cards"] >= 2
    assert max(reactor["clip_bytes"]) <= 200_000

    apkg = Path(reactor["path"])
    with zipfile.ZipFile(apkg) as z:
        media = json.loads(z.read("media"))
    assert len(media) == reactor["clips"]

    col = collection.Collection(str(tmp_path / "c.anki2"))
    try:
        import_package(col, str(apkg))
        notes = _notes(col)
        folder_files = sorted(p.name for p in Path(col.media.dir()).iterdir())
        assert folder_files == sorted(media.values())
        for note in notes.values():
            sound = note["Source"].split("]")[0] + "]"
            assert sound.startswith("[sound:cards-ada-quill-on-reactor-talk-") and note.guid in sound
            assert sound[len("[sound:"):-1] in folder_files
            assert all("[sound:" not in note.fields[i] for i in range(5))  # only Source plays it
        # The clip is the quote's moment: padded, capped, a few seconds long.
        for name in folder_files:
            seconds = _decoded((Path(col.media.dir()) / name).read_bytes(), tmp_path)[0]
            assert 2.0 < seconds <= clips.LONGEST + 0.05

        # Exporting again names every clip the same: re-importing adds no copy, and no note.
        again = json.loads(run("export", "-w", str(ws), "--include-drafts", "--audio", str(folder),
                               "--json").stdout)
        assert next(r for r in again if r["episode"] == reactor["episode"])["unchanged"] == reactor["cards"]
        import_package(col, str(apkg))
        assert sorted(p.name for p in Path(col.media.dir()).iterdir()) == folder_files
        assert len(col.find_notes("")) == len(notes)
    finally:
        col.close()


def test_a_clip_added_after_the_first_import_reaches_the_note_once(tmp_path, template, tone_file):
    ws = _workspace_with_drafts(tmp_path, template)
    sound = tone_file
    first = json.loads(run("export", "-w", str(ws), "--include-drafts", "-e", "ada-quill-on-reactor-talk",
                           "--json").stdout)[0]
    col = collection.Collection(str(tmp_path / "c.anki2"))
    try:
        import_package(col, first["path"])
        assert all("[sound:" not in n["Source"] for n in _notes(col).values())
        with_audio = json.loads(run("export", "-w", str(ws), "--include-drafts", "-e", "ada-quill-on-reactor-talk",
                                    "--audio", str(sound), "--json").stdout)[0]
        assert with_audio["updated"] == with_audio["clips"] == first["cards"]
        import_package(col, with_audio["path"])
        assert all(n["Source"].startswith("[sound:") for n in _notes(col).values())
        later = json.loads(run("export", "-w", str(ws), "--include-drafts", "-e", "ada-quill-on-reactor-talk",
                               "--audio", str(sound), "--json").stdout)[0]
        assert later["unchanged"] == first["cards"] and later["updated"] == 0
        # Without --audio the notes keep their clips (Anki has the files); the deck carries no media.
        plain = json.loads(run("export", "-w", str(ws), "--include-drafts", "-e", "ada-quill-on-reactor-talk",
                               "--json").stdout)[0]
        assert plain["unchanged"] == first["cards"]
        with zipfile.ZipFile(plain["path"]) as z:
            assert json.loads(z.read("media")) == {}
        sources = {n.guid: n["Source"] for n in _notes(col).values()}
        fresh = collection.Collection(str(tmp_path / "fresh.anki2"))
        try:
            import_package(fresh, plain["path"])
            assert {n.guid: n["Source"] for n in _notes(fresh).values()} == sources
        finally:
            fresh.close()
        again = json.loads(run("export", "-w", str(ws), "--include-drafts", "-e", "ada-quill-on-reactor-talk",
                               "--audio", str(sound), "--json").stdout)[0]
        assert again["unchanged"] == first["cards"]  # with the audio again: still nothing new for Anki
    finally:
        col.close()


def test_an_untimed_transcript_gives_no_clips(tmp_path, tone_file):
    notes = tmp_path / "notes.md"
    notes.write_text("# Ada Quill on Reactor Talk\n\n- the sodium reactor in Kemmerer runs at 345 megawatts\n",
                     encoding="utf-8")
    transcript = tmp_path / "reactor-talk.txt"
    transcript.write_text("Welcome to Reactor Talk with Ada Quill.\nThe sodium cooled reactor in Kemmerer runs at "
                          "345 megawatts electric.\nIt replaces a coal plant.\n", encoding="utf-8")
    ws = tmp_path / "ws"
    run("generate", str(notes), "-t", str(transcript), "-w", str(ws), "--offline")
    sound = tone_file
    result = run("export", "-w", str(ws), "--include-drafts", "--audio", str(sound))
    assert "No clips for ada-quill-on-reactor-talk: its transcript has no timestamps." in result.stdout
    with zipfile.ZipFile(ws / "ada-quill-on-reactor-talk.apkg") as z:
        assert json.loads(z.read("media")) == {}


def test_audio_pinned_in_cards_toml(tmp_path, template, tone_file):
    ws = _workspace_with_drafts(tmp_path, template)
    (tmp_path / "sounds").mkdir()
    shutil.copy(tone_file, tmp_path / "sounds" / "reactor.wav")
    (tmp_path / "cards.toml").write_text('[episodes.ada-quill-on-reactor-talk]\naudio = "sounds/reactor.wav"\n',
                                         encoding="utf-8")
    (row,) = json.loads(run("export", "-w", str(ws), "--include-drafts", "--json").stdout)
    assert Path(row["audio"]).resolve() == tmp_path / "sounds" / "reactor.wav"  # relative to cards.toml
    assert row["clips"] == row["cards"] >= 2


def test_bad_audio_input_is_one_line(tmp_path, template, tone_file):
    ws = _workspace_with_drafts(tmp_path, template)
    sound = tone_file
    several = run("export", "-w", str(ws), "--include-drafts", "--audio", str(sound), ok=False)
    assert several.exit_code == 2 and "--audio FILE is for one episode" in several.stderr
    missing = run("export", "-w", str(ws), "--include-drafts", "--audio", str(tmp_path / "nope"), ok=False)
    assert missing.exit_code == 2 and missing.stderr.count("\n") == 1 and "no such file" in missing.stderr
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"not audio at all" * 100)
    broken = run("export", "-w", str(ws), "--include-drafts", "-e", "ada-quill-on-reactor-talk", "--audio",
                 str(junk), ok=False)
    assert broken.exit_code == 2 and broken.stderr.startswith("cards: error: ") and "Traceback" not in broken.output
    assert broken.stderr.count("\n") == 1


def test_without_pyav_audio_is_one_line_naming_the_extra(tmp_path, template, monkeypatch):
    ws = _workspace_with_drafts(tmp_path, template)
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    sound = tmp_path / "a.mp3"
    sound.write_bytes(b"x")
    result = run("export", "-w", str(ws), "--include-drafts", "-e", "ada-quill-on-reactor-talk", "--audio",
                 str(sound), ok=False)
    assert result.exit_code == 2
    assert result.stderr == "cards: error: audio clips need PyAV: pip install 'cards[audio]'\n"
    # Nothing is lost: export without audio still works.
    run("export", "-w", str(ws), "--include-drafts")


def test_a_workspace_from_before_clips_gains_their_table(tmp_path, template):
    import sqlite3

    from cards.store import DB_NAME, Store

    ws = _workspace_with_drafts(tmp_path, template)
    db = sqlite3.connect(ws / DB_NAME)
    db.execute("DROP TABLE clips")
    db.execute("PRAGMA user_version = 7")  # the shape before the clips step
    db.commit()
    db.close()
    with Store(ws, create=False) as store:
        assert store.db.execute("SELECT count(*) FROM clips").fetchone()[0] == 0
        assert len(store.drafts()) == 2


def _cues(kind: str) -> str:
    """The reactor transcript of conftest as SRT or VTT cues."""
    from conftest import REACTOR

    out = ["WEBVTT", ""] if kind == "vtt" else []
    sep = "." if kind == "vtt" else ","
    for i, line in enumerate(REACTOR.strip().splitlines(), 1):
        times, text = line[1:].split("]", 1)
        start, end = (t.strip().replace(".", sep) for t in times.split("-->"))
        out += ([str(i)] if kind == "srt" else []) + [f"{start} --> {end}", text.strip(), ""]
    return "\n".join(out)


@pytest.mark.parametrize("kind", ["srt", "vtt"])
def test_srt_and_vtt_transcripts_give_clips_too(tmp_path, tone_file, kind):
    from conftest import NOTES

    notes = tmp_path / "notes.md"
    notes.write_text(NOTES, encoding="utf-8")
    transcript = tmp_path / f"reactor-talk.{kind}"
    transcript.write_text(_cues(kind), encoding="utf-8")
    ws = tmp_path / "ws"
    run("generate", str(notes), "-t", str(transcript), "-w", str(ws), "--offline")
    (row,) = json.loads(run("export", "-w", str(ws), "--include-drafts", "-e", "ada-quill-on-reactor-talk",
                            "--audio", str(tone_file), "--json").stdout)
    assert row["clips"] == row["cards"] >= 2


def test_only_our_clip_plays_untrusted_text_stays_inert():
    from cards.export import DeckInfo, build_deck

    hostile = draft("[sound:../../evil.mp3] <img src=x onerror=alert(1)>", note="[SOUND:x.mp3] note")
    hostile.front = "What is <b>[sound:a.mp3]</b>?"
    name = clips.clip_name("ep", hostile.lineage, b"clip")
    deck = build_deck([hostile], DeckInfo("ep", "Ep [sound:t.mp3]", "https://example.com/ep"),
                      sounds={hostile.lineage: name})
    fields = dict(zip(["Front", "Back", "Quote", "Note", "Episode", "Source"], deck.notes[0].fields))
    assert fields["Source"].startswith(f"[sound:{name}] <a href=")
    everything = "".join(fields.values())
    assert everything.lower().count("[sound:") == 1  # ours; every other bracket is &#91;
    assert "<img" not in everything and "<b>" not in everything
