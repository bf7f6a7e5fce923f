"""Hostile and broken input: untrusted text never acts as markup, media or a path, and faults end in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cards.cli import app


def run(*args: str | Path, env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def one_error(result, *names: str, code: int = 2) -> str:
    """The single error line of a failed run; it must name every one of `names`."""
    assert "Traceback" not in result.output
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.startswith("cards: error:")]
    assert len(lines) == 1, result.output
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# -- rich markup in untrusted text ----------------------------------------------------------------

@pytest.mark.parametrize("heading", ["Show [/foo]", "Show [/]", "Show [bold red]loud[/bold red] [link=x]"])
def test_markup_in_a_heading_is_printed_as_typed(tmp_path, heading):
    notes = tmp_path / "h.md"
    notes.write_text(f"# {heading}\n- the fuel is HALEU, enriched to almost 20 percent uranium 235\n"
                     "- and a note with [/i] markup [bold]in it\n", encoding="utf-8")
    ws = tmp_path / "ws"
    for args in (["episodes", notes], ["align", notes], ["estimate", notes, "-w", ws],
                 ["generate", notes, "-w", ws], ["drafts", "-w", ws], ["dedupe", "-w", ws]):
        result = run(*args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, (args, result.output)
        assert "Traceback" not in result.output and "MarkupError" not in result.output
    # The generate run committed its draft, and the heading reached the tables as typed.
    assert heading in run("episodes", notes, env={"COLUMNS": "200"}).stdout
    listed = json.loads(run("drafts", "-w", ws, "--json").stdout)
    assert len(listed) == 1
    assert "[/i] markup [bold]in it" in run("align", notes, env={"COLUMNS": "200"}).stdout
    edited = run("edit", listed[0]["id"][:8], "--back", "[/oops] [bold]x", "-w", ws)
    assert edited.exit_code == 0, edited.output
    assert run("export", "-w", ws, "--include-drafts", env={"COLUMNS": "200"}).exit_code == 0


def test_markup_in_a_progress_label_does_not_crash(tmp_path):
    from cards.cli import _Progress
    from cards.models import Episode

    progress = _Progress(True)
    ep = Episode(slug="s", title="[/]")

    class Job:
        episode = ep

    progress.start([ep], [Job()])
    progress.advance(Job(), True)
    progress.stop()
    assert progress.bars == {"s": 0}


# -- Anki media, LaTeX and markup from untrusted text ---------------------------------------------

HOSTILE_NOTES = """\
# <b>Evil</b> {{Front}} <script>

- sound test: [sound:evil.mp3] plays a file when the card is shown
- the fuel [sound:fuel.mp3] is HALEU, enriched to almost 20 percent [$]x[/$] uranium 235
- the model reads [latex]\\input{/etc/passwd}[/latex] as a LaTeX image
- inline [$]x^2[/$] and display [$$]\\int y[/$$] maths, [SOUND:Upper.mp3] in capitals
- speech [anki:tts lang=en_US]say this[/anki:tts] and <img src=x onerror=alert(1)> an image
"""


REPLY_FRONTS = {  # distinct questions, so that none is taken for a duplicate of another
    "sound test": ("Which file does the sound test [sound:reply.mp3] play?", "evil.mp3, when the card shows"),
    "reads": ("What does the model read [latex]x[/latex] as?", "a LaTeX image from the passwd file"),
    "inline": ("Which two maths forms [$$]y[/$$] does the note list?", "inline and display maths"),
    "speech": ("What does the [anki:tts]speech tag[/anki:tts] say aloud?", "the words say this"),
    "fuel": ("How far is HALEU fuel [sound:f.mp3] enriched?", "almost 20 percent uranium 235"),
}


def hostile_reply(body: dict) -> dict:
    from fakeserver import user_text

    note = user_text(body).split("<note>")[-1]
    front, back = next(v for k, v in REPLY_FRONTS.items() if k in note)
    return {"claims": ["A claim with <b>markup</b> and [sound:x.mp3]."], "cards": [{
        "claim": 1,
        "kind": "basic",
        "front": front,
        "back": f"{back} [latex]\\input{{/etc/shadow}}[/latex] <img src=x onerror=alert(2)> [$]a[/$] "
                "<script>x</script>",
        "quote": "[sound:quote.mp3]",
        "tags": ["<x>", "../..", "tag::sub", "{{Tags}}", "ok-tag"],
    }]}


def import_and_render(apkgs: list[Path], tmp_path: Path):
    collection = pytest.importorskip("anki.collection")
    from anki.import_export_pb2 import ImportAnkiPackageUpdateCondition

    condition = ImportAnkiPackageUpdateCondition.IMPORT_ANKI_PACKAGE_UPDATE_CONDITION_IF_NEWER
    options = collection.ImportAnkiPackageOptions(update_notes=condition, update_notetypes=condition,
                                                  merge_notetypes=False, with_scheduling=False)
    rendered = []
    for n, apkg in enumerate(apkgs):  # a collection each: decks from two workspaces share card identities
        col = collection.Collection(str(tmp_path / f"render{n}.anki2"))
        col.import_anki_package(collection.ImportAnkiPackageRequest(package_path=str(apkg), options=options))
        for cid in col.find_cards(""):
            card = col.get_card(cid)
            rendered.append({
                "question": card.question(), "answer": card.answer(),
                "av": list(card.question_av_tags()) + list(card.answer_av_tags()),
                "deck": col.decks.name(card.did), "tags": card.note().tags,
            })
        col.close()
    return rendered


def test_hostile_text_from_notes_replies_and_edits_is_inert_in_anki(tmp_path):
    from fakeserver import FakeOpenAI, no_network

    notes = tmp_path / "evil.md"
    notes.write_text(HOSTILE_NOTES, encoding="utf-8")
    offline_ws, llm_ws, out = tmp_path / "offline", tmp_path / "llm", tmp_path / "out"
    assert run("generate", notes, "-w", offline_ws).exit_code == 0
    with FakeOpenAI(responder=hostile_reply) as srv, no_network():
        result = run("generate", notes, "-w", llm_ws, "--base-url", srv.base_url,
                     env={"OPENAI_API_KEY": "sk-test"})
    assert result.exit_code == 0, result.output
    first = json.loads(run("drafts", "-w", llm_ws, "--json").stdout)[0]["id"]
    edited = run("edit", first, "-w", llm_ws, "--front", "Edited [sound:edit.mp3] [$$]e[/$$] <img src=y>?")
    assert edited.exit_code == 0, edited.output
    apkgs = []
    for ws in (offline_ws, llm_ws):
        written = json.loads(run("export", "-w", ws, "--out", out / ws.name, "--include-drafts",
                                 "--json").stdout)
        apkgs += [Path(w["path"]) for w in written]
    cards = import_and_render(apkgs, tmp_path)
    assert len(cards) >= 7
    for card in cards:
        html = card["question"] + card["answer"]
        assert card["av"] == [], card["av"]  # no sound, video or text-to-speech tag
        assert "<img" not in html and "latex-" not in html  # no LaTeX image, no image at all
        assert "<script" not in html.lower()
        assert "<b>" not in card["deck"] and "{{" not in card["deck"] and "<" not in card["deck"]
        for tag in card["tags"]:
            assert all(c.isalnum() or c in "-_" for c in tag), tag
    everything = " ".join(c["question"] + c["answer"] for c in cards)
    # Still readable: the text is there, only its bracket is an entity.
    for shown in ("&#91;sound:evil.mp3]", "&#91;sound:fuel.mp3]", "&#91;latex]\\input{/etc/passwd}&#91;/latex]", "&#91;$]x^2&#91;/$]",
                  "&#91;SOUND:Upper.mp3]", "&#91;sound:f.mp3]", "&#91;anki:tts]speech tag&#91;/anki:tts]",
                  "&#91;sound:edit.mp3]", "&lt;img src=y&gt;"):
        assert shown in everything, shown
    llm_tags = {t for c in cards for t in c["tags"]}
    assert {"x", "tag-sub", "Tags", "ok-tag"} <= llm_tags and not any("." in t or ":" in t for t in llm_tags)


def test_anki_syntax_is_neutralised_whatever_its_case():
    from cards.export import _html

    assert _html("[Sound:a.mp3] [LaTeX]x[/LATEX] [$]y[/$] [/$$]") == (
        "&#91;Sound:a.mp3] &#91;LaTeX]x&#91;/LATEX] &#91;$]y&#91;/$] &#91;/$$]")
    assert _html("a [1] list [x] and [soundless]") == "a [1] list [x] and [soundless]"


# -- inputs that are not regular files, or far too big -------------------------------------------

NOTES = "# Ada Quill on Reactor Talk\n- the sodium reactor in Kemmerer runs at 345 megawatts\n"


@pytest.fixture
def fifo(tmp_path):
    """A named pipe. A writer thread waits on it, so that code which wrongly opens it for reading
    gets end-of-file (and the test fails) instead of hanging; the writer is released at the end."""
    import os
    import threading

    path = tmp_path / "pipe.md"
    os.mkfifo(path)

    def writer():
        with open(path, "wb"):
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    yield path
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer's open return
    thread.join(5)
    os.close(fd)


def test_a_fifo_is_refused_as_notes_and_as_transcript_without_reading_it(tmp_path, fifo):
    notes = tmp_path / "n.md"
    notes.write_text(NOTES, encoding="utf-8")
    line = one_error(run("episodes", fifo), str(fifo), "not a regular file")
    assert "empty" not in line
    one_error(run("episodes", notes, "-t", fifo), str(fifo), "not a regular file")
    one_error(run("generate", notes, "-t", fifo, "-w", tmp_path / "ws"), str(fifo), "not a regular file")


def test_a_device_is_refused_without_reading_it():
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    one_error(run("episodes", "/dev/zero"), "/dev/zero", "not a regular file")


def test_a_file_past_the_size_limit_is_refused(tmp_path):
    from cards.ingest.text import MAX_INPUT_BYTES

    notes = tmp_path / "n.md"
    notes.write_text(NOTES, encoding="utf-8")
    big = tmp_path / "huge.txt"
    with open(big, "wb") as fh:  # sparse: no disk or time spent
        fh.truncate(MAX_INPUT_BYTES + 1)
    one_error(run("episodes", big), str(big), "64 MiB")
    one_error(run("align", notes, "-t", big), str(big), "64 MiB")
    at_limit = tmp_path / "ok.md"
    at_limit.write_text(NOTES, encoding="utf-8")
    assert run("episodes", at_limit).exit_code == 0


# -- SRT with negative, unreadable or overlapping times ------------------------------------------

SRT_ONE_BAD = """\
1
00:00:00,000 --> 00:00:02,000
Welcome to the show about reactors.

2
-00:00:01,000 --> 00:00:02,000
This cue has a negative start.

3
00:00:03,000 --> 00:00:05,000
The sodium reactor runs at 345 megawatts.

4
00:00:04,000 --> -00:00:06,000
This cue has a negative end.

5
00:00:07,000 --> 00:00:09,000
Fuel is HALEU.
"""


def test_a_cue_with_a_negative_time_is_skipped_and_never_glued_into_another():
    from cards.ingest.transcripts import parse_transcript_text

    t = parse_transcript_text(SRT_ONE_BAD, "talk.srt")
    assert t.format == "srt"
    assert [s.text for s in t.segments] == ["Welcome to the show about reactors.",
                                            "The sodium reactor runs at 345 megawatts.", "Fuel is HALEU."]
    assert [(s.start, s.end) for s in t.segments] == [(0.0, 2.0), (3.0, 5.0), (7.0, 9.0)]
    assert not any("-->" in s.text or "negative" in s.text for s in t.segments)


def test_whisper_with_a_negative_time_skips_that_line():
    from cards.ingest.transcripts import parse_transcript_text

    text = ("[00:00:00.000 --> 00:00:02.000]  First line.\n[-00:00:01.000 --> 00:00:02.000]  Broken.\n"
            "[00:00:03.000 --> 00:00:04.000]  Third line.\n")
    t = parse_transcript_text(text, "w.txt")
    assert [s.text for s in t.segments] == ["First line.", "Third line."]


@pytest.mark.parametrize("name", ["all.srt", "all.txt"])
def test_an_srt_whose_times_are_all_negative_is_recognised_and_refused_at_its_first_bad_line(tmp_path, name):
    text = "".join(f"{i}\n-00:00:0{i},000 --> -00:00:0{i + 1},000\nline {i} of speech\n\n" for i in range(1, 6))
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    notes = tmp_path / "n.md"
    notes.write_text(NOTES, encoding="utf-8")
    line = one_error(run("episodes", notes, "-t", path), f"{path}:2:", "malformed timestamp")
    assert "-00:00:01,000" in line


def test_overlapping_cues_are_kept_in_order_and_align(tmp_path):
    from cards.ingest.transcripts import parse_transcript_text

    text = ("1\n00:00:00,000 --> 00:00:05,000\nWelcome to Reactor Talk with Ada Quill.\n\n"
            "2\n00:00:03,000 --> 00:00:08,000\nThe sodium reactor in Kemmerer runs at 345 megawatts.\n\n"
            "3\n00:00:02,000 --> 00:00:04,000\nIt replaces a coal plant.\n")
    t = parse_transcript_text(text, "o.srt")
    assert [(s.start, s.end) for s in t.segments] == [(0.0, 5.0), (3.0, 8.0), (2.0, 4.0)]
    path = tmp_path / "reactor-talk.srt"
    path.write_text(text, encoding="utf-8")
    notes = tmp_path / "n.md"
    notes.write_text(NOTES, encoding="utf-8")
    result = run("align", notes, "-t", path, "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert "345 megawatts" in row["context"]["text"]


# -- leftovers of a killed export ------------------------------------------------------------------

def test_an_export_removes_temporaries_a_killed_export_left_but_nothing_else(tmp_path):
    import fcntl
    import os

    from cards.export import DeckInfo, export_deck
    from cards.models import Draft

    out = tmp_path / "out"
    out.mkdir()
    left = [out / f".ep.{r}.apkg.tmp" for r in ("abcd1234", "zz_9yy8x")]
    for p in left:
        p.write_bytes(b"")
    in_use = out / ".ep.inuse123.apkg.tmp"
    in_use.write_bytes(b"")
    holder = os.open(in_use, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # an export still writing it
    keep = [out / ".other.abcd1234.apkg.tmp", out / ".ep.toolongname.apkg.tmp", out / "ep.apkg.tmp",
            out / ".ep.abcd1234.apkg", out / "notes.md"]
    for p in keep:
        p.write_text("mine", encoding="utf-8")
    (tmp_path / "victim").write_text("precious", encoding="utf-8")
    link = out / ".ep.link1234.apkg.tmp"
    link.symlink_to(tmp_path / "victim")
    draft = Draft(id="0" * 16, note_id="n", episode="ep", kind="basic", front="Q?", back="A", quote="",
                  tags=[], generator="offline", model="none", prompt_version="1")
    try:
        export_deck([draft], DeckInfo("ep", "Ep"), out, now=1_700_000_000)
    finally:
        os.close(holder)
    assert not any(p.exists() for p in left)
    assert in_use.exists() and link.is_symlink() and (tmp_path / "victim").read_text() == "precious"
    assert all(p.read_text(encoding="utf-8") == "mine" for p in keep)
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == sorted(
        [".ep.inuse123.apkg.tmp", ".ep.link1234.apkg.tmp", ".other.abcd1234.apkg.tmp",
         ".ep.toolongname.apkg.tmp", "ep.apkg.tmp"])
    assert (out / "ep.apkg").exists()


# -- a damaged workspace, and a database that is not a workspace ----------------------------------

def _damaged_workspace(tmp_path: Path) -> tuple[Path, Path]:
    import os

    notes = tmp_path / "n.md"
    notes.write_text(NOTES + "- molten salt storage boosts output to 500 megawatts\n"
                     "- the fuel is HALEU, enriched to almost 20 percent\n", encoding="utf-8")
    ws = tmp_path / "ws"
    assert run("generate", notes, "-w", ws).exit_code == 0
    db = ws / "cards.sqlite"
    size, page = db.stat().st_size, 4096
    assert size > page * 4
    with open(db, "r+b") as fh:  # the header page stays, so the file still opens
        fh.seek(page * 2)
        fh.write(os.urandom(size - page * 3))
    return notes, ws


def test_garbage_in_the_middle_of_the_workspace_is_one_line_for_every_command(tmp_path):
    notes, ws = _damaged_workspace(tmp_path)
    for args in (["drafts"], ["dedupe"], ["export"], ["generate", notes], ["estimate", notes],
                 ["approve", "--episode", "ada-quill-on-reactor-talk", "--all"], ["edit", "abc", "--back", "x"]):
        line = one_error(run(*args, "-w", ws), str(ws / "cards.sqlite"))
        assert "restore it from a backup, or start a new workspace with --workspace DIR" in line, (args, line)


def test_an_anki_collection_is_refused_as_a_workspace_and_left_untouched(tmp_path):
    import shutil
    import sqlite3

    collection = pytest.importorskip("anki.collection")
    col = collection.Collection(str(tmp_path / "collection.anki2"))
    col.close()
    con = sqlite3.connect(tmp_path / "collection.anki2")
    assert con.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    con.close()
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(tmp_path / "collection.anki2", ws / "cards.sqlite")
    before = (ws / "cards.sqlite").read_bytes()
    for args in (["drafts", "-w", ws], ["generate", tmp_path / "n.md", "-w", ws]):
        (tmp_path / "n.md").write_text(NOTES, encoding="utf-8")
        one_error(run(*args), str(ws / "cards.sqlite"), "not a cards workspace")
    assert (ws / "cards.sqlite").read_bytes() == before
    assert sorted(p.name for p in ws.iterdir()) == ["cards.sqlite"]  # no -wal or -shm beside it
    con = sqlite3.connect(ws / "cards.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


# -- a very long note ------------------------------------------------------------------------------

def test_a_very_long_note_is_cut_in_the_prompt_and_warned_about_before_sending(tmp_path):
    from fakeserver import FakeOpenAI, no_network, user_text

    from cards.pipeline import MAX_NOTE_CHARS

    long_text = "the reactor" + " and then it ran" * 20_000
    notes = tmp_path / "long.md"
    notes.write_text(f"{NOTES}- {long_text}\n", encoding="utf-8")
    ws = tmp_path / "ws"
    env = {"OPENAI_API_KEY": "sk-test"}
    with FakeOpenAI() as srv, no_network():
        estimate = run("estimate", notes, "-w", ws, "--base-url", srv.base_url, env=env)
        assert estimate.exit_code == 0, estimate.output
        assert srv.count == 0
        assert f"note of {len(long_text):,} characters" in estimate.stderr and "long.md:3" in estimate.stderr
        result = run("generate", notes, "-w", ws, "--base-url", srv.base_url, env=env)
        assert result.exit_code == 0, result.output
        warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]
        assert len(warnings) == 1 and "long.md:3" in warnings[0] and f"{MAX_NOTE_CHARS:,}" in warnings[0]
        sent = [user_text(r.json) for r in srv.requests]
    assert len(sent) == 2
    longest = max(sent, key=len)
    assert "the rest of this note was cut" in longest
    assert len(longest) < MAX_NOTE_CHARS + 6000  # the cut note plus the passage and instructions
    # The note keeps its identity: the same id as the whole bullet, and its whole text in the workspace.
    aligned = json.loads(run("align", notes, "--json").stdout)
    drafts = json.loads(run("drafts", "-w", ws, "--json").stdout)
    assert {d["note_id"] for d in drafts} == {a["note_id"] for a in aligned}


# -- no silent minutes -----------------------------------------------------------------------------

def test_reading_grouping_and_aligning_report_each_step(tmp_path):
    from cards.config import build_settings
    from cards.pipeline import align, load

    notes = tmp_path / "n.md"
    notes.write_text(NOTES, encoding="utf-8")
    transcript = tmp_path / "reactor-talk.txt"
    transcript.write_text("[00:00:00.000 --> 00:00:04.000]  The sodium reactor in Kemmerer runs at 345 megawatts.\n",
                          encoding="utf-8")
    steps: list[str] = []
    settings = build_settings(workspace=tmp_path / "ws")
    loaded = load([notes], [transcript], settings, on_step=steps.append)
    align(loaded.episodes, settings, on_step=steps.append)
    assert steps == ["reading notes 1/1: n.md", "reading transcripts 1/1: reactor-talk.txt",
                     "grouping 1 note section into episodes",
                     "aligning 1/1: ada-quill-on-reactor-talk (1 note)"]


def test_the_busy_display_is_transient_on_a_terminal_and_silent_elsewhere(monkeypatch):
    import io

    from rich.console import Console

    from cards import cli

    screen = io.StringIO()
    monkeypatch.setattr(cli, "_console", lambda stderr=False: Console(file=screen, force_terminal=True, width=80))
    with cli._Busy() as busy:
        busy("grouping [/] 10,000 note sections")
        busy.progress.refresh()
    assert "grouping [/] 10,000 note sections" in screen.getvalue()
    assert busy.progress is None
    piped = io.StringIO()
    monkeypatch.setattr(cli, "_console", lambda stderr=False: Console(file=piped, force_terminal=False))
    with cli._Busy() as busy:
        busy("reading notes")
    assert piped.getvalue() == "" and busy.progress is None


def test_the_temporary_file_of_an_export_killed_mid_write_goes_at_the_next_export(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    script = f"""
import os, signal
from pathlib import Path
from cards import export
from cards.models import Draft

def write_then_die(package, target, timestamp):
    with open(target, "wb") as fh:
        fh.write(b"PK half a deck")
    os.kill(os.getpid(), signal.SIGKILL)

export._write_apkg = write_then_die
d = Draft(id="0" * 16, note_id="n", episode="ep", kind="basic", front="Q?", back="A", quote="", tags=[],
          generator="offline", model="none", prompt_version="1")
export.export_deck([d], export.DeckInfo("ep", "Ep"), Path({str(out)!r}), now=1_700_000_000)
"""
    for _ in range(3):
        killed = subprocess.run([sys.executable, "-c", script], capture_output=True)
        assert killed.returncode == -9, killed.stderr
    # Each export first removes what the one killed before it left: three kills leave one file, not three.
    left = sorted(p.name for p in out.iterdir())
    assert len(left) == 1 and left[0].startswith(".ep.") and left[0].endswith(".apkg.tmp")
    from cards.export import DeckInfo, export_deck
    from cards.models import Draft

    d = Draft(id="0" * 16, note_id="n", episode="ep", kind="basic", front="Q?", back="A", quote="", tags=[],
              generator="offline", model="none", prompt_version="1")
    export_deck([d], DeckInfo("ep", "Ep"), out, now=1_700_000_001)
    assert sorted(p.name for p in out.iterdir()) == ["ep.apkg"]


def test_anki_syntax_in_an_episode_link_is_inert(tmp_path):
    from cards.export import DeckInfo, export_deck
    from cards.models import Draft

    deck = DeckInfo("ep", "Ep", url="https://example.com/ep/[sound:x.mp3]/[$]x^2[/$]")
    draft = Draft(id="d1", note_id="n1", episode="ep", kind="basic", front="Q?", back="A", quote="",
                  tags=[], generator="offline", model="m", prompt_version="1", created=1.7e9)
    [card] = import_and_render([export_deck([draft], deck, tmp_path, now=1.7e9)], tmp_path)
    html = card["question"] + card["answer"]
    assert card["av"] == [] and "latex-" not in html and "<img" not in html
    assert "https://example.com/ep/%5Bsound:x.mp3%5D" in html
