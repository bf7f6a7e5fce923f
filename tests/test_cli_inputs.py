"""The CLI on bad and odd input: one line naming the file, exit status 2, never a traceback."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cards.cli import app

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"

NOTES = """\
# Ada Quill on Reactor Talk
- the sodium reactor in Kemmerer runs at 345 megawatts
- molten salt storage boosts output to 500 megawatts for five hours
"""
WHISPER = """\
[00:00:00.000 --> 00:00:04.000]   Welcome to Reactor Talk, I'm here with Ada Quill.
[00:00:04.000 --> 00:00:09.000]   The sodium reactor in Kemmerer runs at 345 megawatts electric.
[00:00:09.000 --> 00:00:15.000]   It replaces a coal plant, so the grid connection is already there.
[00:00:15.000 --> 00:00:21.000]   Molten salt storage lets the plant boost output to 500 megawatts for five hours.
[00:00:21.000 --> 00:00:27.000]   The fuel is HALEU, enriched to almost 20 percent uranium 235.
"""


def run(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error(result, *names: str) -> str:
    """The single error line of a failed run; it must name every one of `names`."""
    assert "Traceback" not in result.output
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.startswith("cards: error:")]
    assert len(lines) == 1, result.output
    assert result.stdout == ""
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def notes(tmp_path) -> Path:
    path = tmp_path / "notes.md"
    path.write_text(NOTES, encoding="utf-8")
    return path


@pytest.fixture
def whisper(tmp_path) -> Path:
    path = tmp_path / "reactor.txt"
    path.write_text(WHISPER, encoding="utf-8")
    return path


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["episodes", "align"])
def test_missing_path(tmp_path, command):
    one_error(run(command, tmp_path / "nope.md"), "nope.md", "no such file")


def test_missing_transcript(notes, tmp_path):
    one_error(run("episodes", notes, "-t", tmp_path / "gone.txt"), "gone.txt")


def test_folder_with_no_notes(tmp_path):
    folder = tmp_path / "empty-folder"
    folder.mkdir()
    (folder / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    one_error(run("episodes", folder), "empty-folder", "no notes files")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    one_error(run("episodes", path), "empty.md", "empty")


def test_binary_file(tmp_path):
    path = tmp_path / "photo.md"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x00")
    one_error(run("episodes", path), "photo.md", "binary")


def test_undecodable_file(tmp_path):
    path = tmp_path / "cut.md"
    path.write_bytes(codecs.BOM_UTF16_LE + "# Ep\n- a bullet".encode("utf-16-le")[:-1])
    one_error(run("episodes", path), "cut.md", "utf-16")


def test_notes_with_nothing_in_them(tmp_path):
    path = tmp_path / "front.md"
    path.write_text("---\ntitle: x\n---\n", encoding="utf-8")
    one_error(run("episodes", path), "front.md", "no notes found")


def test_transcript_with_only_malformed_timestamps_names_file_and_line(notes, tmp_path):
    path = tmp_path / "broken.txt"
    path.write_text("[00:00:01.000 --> 00:00:0x.000]   hello\n"
                    "[00:00:aa.000 --> 00:00:03.000]   there\n", encoding="utf-8")
    line = one_error(run("episodes", notes, "-t", path), "broken.txt", "timestamp")
    assert f"{path}:1:" in line


def test_unknown_episode_is_one_line(notes, whisper):
    line = one_error(run("align", notes, "-t", whisper, "--episode", "unknown"), "unknown")
    assert "ada-quill-on-reactor-talk" in line  # it says which episodes there are


def test_bad_cards_toml_is_one_line(notes, tmp_path, monkeypatch):
    (tmp_path / "cards.toml").write_text("[episodes.x\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    one_error(run("episodes", notes), "cards.toml")


# -- odd but valid input ------------------------------------------------------------------------

def test_latin1_notes(tmp_path):
    path = tmp_path / "latin.md"
    path.write_bytes(b"# Caf\xe9 Talk\n- caf\xe9 \x93quoted\x94 and na\xefve\n")
    result = run("episodes", path, "--json")
    assert result.exit_code == 0, result.output
    (ep,) = json.loads(result.stdout)
    assert ep["title"] == "Café Talk"
    assert ep["notes"] == 1
    result = run("align", path, "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["note"] == "café “quoted” and naïve"


def test_transcript_with_one_broken_timestamp(notes, tmp_path):
    path = tmp_path / "mostly-good.txt"
    lines = WHISPER.splitlines()
    lines.insert(2, "[00:00:0x.000 --> 00:00:09.500]   a cue with a broken time")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run("episodes", notes, "-t", path, "--json")
    assert result.exit_code == 0, result.output
    (ep,) = json.loads(result.stdout)
    assert ep["transcript"] == str(path)


def test_megabyte_single_line_bullet(tmp_path):
    path = tmp_path / "big.md"
    body = "word " * 200_000
    path.write_text("# Big\n- " + body + "\n- small\n", encoding="utf-8")
    result = run("episodes", path, "--json")
    assert result.exit_code == 0, result.output
    (ep,) = json.loads(result.stdout)
    assert ep["notes"] == 2
    result = run("align", path, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows[0]["note"]) == len(body.strip())


def test_crlf_utf16_notes(tmp_path):
    path = tmp_path / "windows.md"
    path.write_bytes(codecs.BOM_UTF16_LE + "# Ep\r\n- one\r\n- two\r\n".encode("utf-16-le"))
    result = run("episodes", path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["notes"] == 2


# -- JSON shapes --------------------------------------------------------------------------------

def test_episodes_json_keys(notes, whisper):
    result = run("episodes", notes, "-t", whisper, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, list) and len(data) == 1
    ep = data[0]
    assert {"slug", "title", "notes", "sources", "transcript"} <= set(ep)
    assert ep["slug"] == "ada-quill-on-reactor-talk"
    assert ep["title"] == "Ada Quill on Reactor Talk"
    assert ep["notes"] == 2
    assert ep["sources"] == [str(notes)]
    assert ep["transcript"] == str(whisper)


def test_align_json_without_transcript(notes):
    result = run("align", notes, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 2
    for row in rows:
        assert {"episode", "note", "context"} <= set(row)
        assert row["episode"] == "ada-quill-on-reactor-talk"
        assert row["context"] is None


def test_align_json_with_whisper_times(notes, whisper):
    result = run("align", notes, "-t", whisper, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["note"] for r in rows] == [
        "the sodium reactor in Kemmerer runs at 345 megawatts",
        "molten salt storage boosts output to 500 megawatts for five hours",
    ]
    for row in rows:
        ctx = row["context"]
        assert ctx is not None
        assert isinstance(ctx["text"], str) and ctx["text"]
        assert isinstance(ctx["start"], (int, float)) and isinstance(ctx["end"], (int, float))
        assert 0 <= ctx["start"] < ctx["end"] <= 27
    assert "345 megawatts" in rows[0]["context"]["text"]
    assert "500 megawatts" in rows[1]["context"]["text"]


def test_align_json_on_untimed_seed_transcript():
    notes = SEEDS / "000_afbeb462ed58c10d.txt"
    captions = SEEDS / "002_0fe13fd03e9aaf95.txt"
    if not (notes.exists() and captions.exists()):
        pytest.skip("seed notes and transcripts not present")
    result = run("align", notes, "-t", captions, "--episode", "dylan-nathan-on-lex", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 36
    for row in rows:
        ctx = row["context"]
        assert ctx is None or (ctx["start"] is None and ctx["end"] is None and isinstance(ctx["text"], str))
    assert sum(r["context"] is not None for r in rows) >= 30


def test_json_survives_a_stdout_that_cannot_encode(tmp_path, monkeypatch):
    import io
    import sys

    from cards import cli

    path = tmp_path / "emoji.md"
    path.write_text("# Ep 👀 café\n- a note\n", encoding="utf-8")
    buf = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buf, encoding="ascii"))
    cli._print_json({"title": "Ep 👀 café"})
    sys.stdout.flush()
    assert json.loads(buf.getvalue().decode("ascii")) == {"title": "Ep 👀 café"}
