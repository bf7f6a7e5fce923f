"""The workspace's file cache: a cached run gives exactly what an uncached one gives, and parses only what changed."""

from __future__ import annotations

import sqlite3
import json
import zlib
from pathlib import Path

import pytest

import cards.cache
import cards.errors
import cards.ingest.notes
import cards.ingest.transcripts
from cards.config import build_settings
from cards.pipeline import load
from cards.store import DB_NAME

NOTES_A = """# Ada Abbott on Lex (7/28)

- the fab in arizona costs forty billion dollars to build
- gross margins on inference are seventy five percent
- sparse experts leave some gpus idle

# Boris Brandt on Dwarkesh (8/2)

- reinforcement learning from verifiable rewards scales with compute
- the tokenizer merges numbers badly
"""
NOTES_B = """# Ada Abbott, Lex episode (7/28)

- the fab in arizona costs forty billion dollars to build
- gross margins on inference are seventy five percent
- export controls slow the chinese labs
"""
T_ADA = """Transcript
AbCdEfGhIjK • Ada Abbott | Lex Fridman Podcast
/x/ada.txt
Kind: captions
Language: en
the following is a conversation with ada abbott
the new fab in arizona costs about forty billion dollars to build
and their gross margins on inference are roughly seventy five percent
with sparse experts some gpus sit idle
export controls slow down the chinese labs a lot
"""
T_BORIS = """[00:00:00.000 --> 00:00:04.000]   Welcome, Boris Brandt, to the show.
[00:00:04.000 --> 00:00:09.000]   Reinforcement learning from verifiable rewards scales with compute.
[00:00:09.000 --> 00:00:14.000]   The tokenizer merges numbers badly, which hurts arithmetic.
"""


def _snapshot(loaded) -> list:
    """Everything an episode carries, with the transcript as its path and segments."""
    out = []
    for e in loaded.episodes:
        t = e.transcript
        out.append((e.slug, e.title, e.sources, e.items, e.match_score, e.url, e.video_id, e.date,
                    None if t is None else (t.path, t.format, t.title, t.video_id, t.segments)))
    return out


@pytest.fixture
def archive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "ts").mkdir()
    (tmp_path / "notes" / "a.md").write_text(NOTES_A, encoding="utf-8")
    (tmp_path / "notes" / "b.md").write_text(NOTES_B, encoding="utf-8")
    (tmp_path / "ts" / "ada.txt").write_text(T_ADA, encoding="utf-8")
    (tmp_path / "ts" / "boris.txt").write_text(T_BORIS, encoding="utf-8")
    return tmp_path


@pytest.fixture
def parses(monkeypatch):
    """Counts of real parses (notes, transcripts) from here on."""
    counts = {"notes": 0, "transcripts": 0}
    real_notes, real_t = cards.ingest.notes.parse_notes_text, cards.ingest.transcripts.parse_transcript_text

    def notes(text, path):
        counts["notes"] += 1
        return real_notes(text, path)

    def transcript(text, path):
        counts["transcripts"] += 1
        return real_t(text, path)

    monkeypatch.setattr(cards.ingest.notes, "parse_notes_text", notes)
    monkeypatch.setattr(cards.ingest.transcripts, "parse_transcript_text", transcript)
    return counts


def _settings(root: Path, workspace: str):
    return build_settings(config_path=root / "cards.toml", workspace=root / workspace)


def _run(root: Path, notes=("notes",), ts=("ts",), *, cached=True):
    """A load with the workspace cache (made if missing), or one in a folder with no workspace."""
    settings = _settings(root, "ws" if cached else "none")
    loaded = load([root / n for n in notes], [root / t for t in ts], settings, create_workspace=cached)
    assert (root / "none").exists() is False
    return _snapshot(loaded)


def test_a_rerun_parses_nothing_and_gives_the_same(archive, parses):
    first = _run(archive)
    assert parses == {"notes": 2, "transcripts": 2}
    assert len(first) == 2 and all(ep[-1] is not None for ep in first)  # both matched
    assert _run(archive) == first == _run(archive, cached=False)
    assert parses == {"notes": 4, "transcripts": 4}  # the uncached run only


def test_a_changed_notes_file_is_parsed_again(archive, parses):
    _run(archive)
    (archive / "notes" / "b.md").write_text(NOTES_B + "- the chips are made in taiwan\n", encoding="utf-8")
    got = _run(archive)
    assert parses["notes"] == 3
    assert got == _run(archive, cached=False)
    # Matching again took each transcript's words from the cache.
    db = sqlite3.connect(archive / "ws" / DB_NAME)
    assert db.execute("SELECT count(*) FROM file_cache WHERE kind='words'").fetchone()[0] == 2
    assert any("taiwan" in i.text for ep in got for i in ep[3])


def test_a_moved_file_is_found_by_its_content_under_its_new_path(archive, parses):
    _run(archive)
    (archive / "old").mkdir()
    (archive / "notes" / "b.md").rename(archive / "old" / "b-2024.md")
    (archive / "ts" / "boris.txt").rename(archive / "old" / "boris.txt")
    got = _run(archive, notes=("notes", "old/b-2024.md"), ts=("ts/ada.txt", "old/boris.txt"))
    assert parses == {"notes": 2, "transcripts": 2}  # nothing parsed again
    assert got == _run(archive, notes=("notes", "old/b-2024.md"), ts=("ts/ada.txt", "old/boris.txt"), cached=False)
    assert str(archive / "old" / "b-2024.md") in got[0][2]
    assert got[1][-1][0] == str(archive / "old" / "boris.txt")


def test_a_removed_file_is_gone_from_the_result(archive, parses):
    before = _run(archive)
    (archive / "notes" / "b.md").unlink()
    (archive / "ts" / "boris.txt").unlink()
    got = _run(archive)
    assert got == _run(archive, cached=False)
    assert got != before
    assert all(str(archive / "notes" / "b.md") not in ep[2] for ep in got)
    assert all(ep[-1] is None or "boris" not in ep[-1][0] for ep in got)


def test_a_changed_transcript_is_parsed_and_matched_again(archive, parses):
    before = _run(archive)
    # Boris's transcript now carries Ada's episode: the matching must follow, not be served from the cache.
    (archive / "ts" / "boris.txt").write_text(T_ADA.replace("AbCdEfGhIjK", "ZyXwVuTsRqP"), encoding="utf-8")
    (archive / "ts" / "ada.txt").write_text(T_BORIS, encoding="utf-8")
    got = _run(archive)
    assert parses["transcripts"] == 3  # ada.txt now holds content parsed before, under another name
    assert got == _run(archive, cached=False)
    assert got != before
    ada = next(ep for ep in got if ep[0].startswith("ada"))
    assert ada[-1][0].endswith("boris.txt") and ada[6] == "ZyXwVuTsRqP"


def test_a_new_code_version_parses_again(archive, parses, monkeypatch):
    _run(archive)
    # A parser that reads differently, released with its version bumped.
    real = cards.ingest.notes.parse_notes_text
    monkeypatch.setattr(cards.ingest.notes, "parse_notes_text",
                        lambda text, path: real(text.replace("forty", "fifty"), path))
    monkeypatch.setattr(cards.cache, "PARSE_VERSION", cards.cache.PARSE_VERSION + "-next")
    got = _run(archive)
    assert got == _run(archive, cached=False)
    assert any("fifty billion" in i.text for ep in got for i in ep[3])
    # Entries of the old version are dropped once the new ones are written.
    db = sqlite3.connect(archive / "ws" / DB_NAME)
    versions = {v for (v,) in db.execute("SELECT DISTINCT version FROM file_cache WHERE kind='notes'")}
    assert versions == {cards.cache.parse_version()}


def test_the_version_follows_the_parsing_code(monkeypatch):
    v = cards.cache.parse_version()
    monkeypatch.setattr(cards.cache, "_source_hash", lambda *modules: "edited")
    assert cards.cache.parse_version() != v


def test_a_damaged_entry_is_parsed_again(archive, parses):
    first = _run(archive)
    db = sqlite3.connect(archive / "ws" / DB_NAME)
    db.execute("UPDATE file_cache SET body=? WHERE kind='notes'", (zlib.compress(b'{"sections": [{"x": 1}]}'),))
    db.execute("UPDATE file_cache SET body=? WHERE kind='transcript'", (b"not zlib",))
    db.commit()
    db.close()
    assert _run(archive) == first
    assert parses == {"notes": 4, "transcripts": 4}


def test_reading_never_creates_a_workspace(archive):
    settings = _settings(archive, "ws")
    load([archive / "notes"], [archive / "ts"], settings)
    assert not (archive / "ws").exists()


def test_a_bad_input_file_leaves_no_workspace_behind(archive):
    (archive / "notes" / "empty.md").write_text("", encoding="utf-8")
    with pytest.raises(cards.errors.InputError):
        load([archive / "notes"], [archive / "ts"], _settings(archive, "ws"), create_workspace=True)
    assert not (archive / "ws").exists()


def test_an_entry_of_another_shape_or_a_bomb_is_only_a_miss(archive, parses, monkeypatch):
    first = _run(archive)
    monkeypatch.setattr(cards.cache, "_MAX_ENTRY", 64 * 1024)  # the real bound, scaled down
    db = sqlite3.connect(archive / "ws" / DB_NAME)
    deep = zlib.compress(b"[" * 50_000 + b"]" * 50_000)  # nesting deep enough to exhaust a parser's stack
    db.execute("UPDATE file_cache SET body=? WHERE kind='notes'", (deep,))
    db.execute("UPDATE file_cache SET body=? WHERE kind='transcript'", (zlib.compress(b" " * 2**20),))
    db.execute("UPDATE file_cache SET body=? WHERE kind='match'", (zlib.compress(b'{"ada": [[1], "x"]}'),))
    db.commit()
    db.close()
    assert _run(archive) == first
    assert parses == {"notes": 4, "transcripts": 4}


def test_the_same_bytes_under_another_suffix_are_parsed_as_that_kind_of_file(tmp_path):
    """A transcript's format is read partly from its suffix, so a .txt copy of an .srt is not an SRT."""
    from cards.cache import FileCache
    from cards.ingest.transcripts import parse_transcript
    from cards.store import Store

    srt = tmp_path / "talk.srt"
    # Dots in the times: named .srt it is SRT, named .txt the same text reads as WebVTT.
    srt.write_text("1\n00:00:01.000 --> 00:00:03.000\nhello there\n\n2\n00:00:04.000 --> 00:00:06.000\n"
                   "general kenobi\n", encoding="utf-8")
    txt = tmp_path / "talk.txt"
    txt.write_bytes(srt.read_bytes())
    with Store(tmp_path / "ws") as store:
        cache = FileCache(store)
        assert cache.transcript(srt).format == parse_transcript(srt).format
        cache.flush(store)
        again = FileCache(store)
        assert parse_transcript(txt).format != parse_transcript(srt).format
        assert again.transcript(txt).format == parse_transcript(txt).format
        assert again.transcript(srt).format == parse_transcript(srt).format


def test_an_entry_whose_fields_have_the_wrong_types_is_only_a_miss(archive, parses):
    first = _run(archive)
    db = sqlite3.connect(archive / "ws" / DB_NAME)
    rows = db.execute("SELECT kind, body FROM file_cache WHERE kind IN ('notes', 'transcript')").fetchall()
    for kind, body in rows:
        value = json.loads(zlib.decompress(body))
        if kind == "notes":
            value["sections"][0]["items"][0][0] = 42  # an item's text that is not text
        else:
            value["segments"][0][2] = "soon"  # a start time that is not a number
        db.execute("UPDATE file_cache SET body=?, used='x' WHERE kind=? AND body=?",
                   (zlib.compress(json.dumps(value).encode()), kind, body))
    db.commit()
    db.close()
    assert _run(archive) == first
    assert parses == {"notes": 4, "transcripts": 4}
