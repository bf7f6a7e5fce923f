"""Episode slugs come from the heading's text in any script (never from its position), Latin slugs stay
as they were, and notes and transcripts can share a folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cards.cli import app
from cards.episodes import slugify
from cards.store import Store

HEADINGS = {
    "人工智能的未来": None,  # CJK: a hash
    "東京の夜": None,
    "Интервью с Павлом": "intervyu-s-pavlom",  # Cyrillic: spelled out
    "Σωκράτης και Πλάτων": "sokratis-kai-platon",  # Greek: spelled out
    "עתיד הבינה המלאכותית": None,  # Hebrew: a hash
}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def notes_text(order: list[str]) -> str:
    number = {h: i for i, h in enumerate(HEADINGS)}  # each section's bullet is its own, wherever it stands
    return "\n".join(f"# {h}\n\n- bullet {number[h]} about {h} says the reactor runs at {300 + number[h]} "
                     "megawatts\n" for h in order)


def slugs_by_title(notes: Path) -> dict[str, str]:
    result = run("episodes", notes, "--json")
    assert result.exit_code == 0, result.output
    return {e["title"]: e["slug"] for e in json.loads(result.stdout)}


def test_non_latin_headings_get_slugs_from_their_text_whatever_their_order(tmp_path):
    notes = tmp_path / "n.md"
    order = list(HEADINGS)
    notes.write_text(notes_text(order), encoding="utf-8")
    first = slugs_by_title(notes)
    notes.write_text(notes_text(order[::-1]), encoding="utf-8")
    assert slugs_by_title(notes) == first  # reordering the sections moves nothing
    assert len(set(first.values())) == len(HEADINGS)
    for title, slug in first.items():
        assert not slug.startswith("episode-") or len(slug) == len("episode-") + 8, slug
        assert slug != "episode" and slug.isascii()
        if HEADINGS[title]:
            assert slug == HEADINGS[title]
    assert slugify("人工智能的未来") == first["人工智能的未来"]  # stable: a hash of the text
    assert slugify("  人工智能的未来 ") == slugify("人工智能的未来")  # of the normalised text


def test_reordered_non_latin_sections_keep_their_cards(tmp_path):
    notes = tmp_path / "n.md"
    order = list(HEADINGS)
    notes.write_text(notes_text(order), encoding="utf-8")
    ws = tmp_path / "ws"
    assert run("generate", notes, "-w", ws, "--offline").exit_code == 0
    with Store(ws, create=False) as store:
        before = {d.id: d.episode for d in store.drafts()}
    notes.write_text(notes_text(order[::-1]), encoding="utf-8")
    again = run("generate", notes, "-w", ws, "--offline")
    assert again.exit_code == 0, again.output
    with Store(ws, create=False) as store:
        after = {d.id: d.episode for d in store.drafts()}
    assert after == before  # no card changed episode, none was made again


@pytest.mark.parametrize("heading, slug", [
    ("Dylan Patel on Latent Space", "dylan-patel-on-latent-space"),
    ("Café Society: Ünïcode & Ærø", "caf-society-n-code-r"),
    ("Lex #459 — DeepSeek, China (2/3/25)", "lex-459-deepseek-china-2-3-25"),
    ("O'Brien's Ñandú", "obriens-and"),
    ("", "episode"),
    ("???", "episode"),
])
def test_latin_slugs_do_not_change(heading, slug):
    assert slugify(heading) == slug  # identity: decks and GUIDs hang on these


# -- 15: one folder for notes and transcripts ---------------------------------------------------

NOTES = """\
# Ada Quill on Reactor Talk

- the sodium reactor in Kemmerer runs at 345 megawatts
- fuel is HALEU, enriched to almost 20 percent uranium 235
"""
WHISPER = """\
[00:00:00.000 --> 00:00:10.000]   Welcome to Reactor Talk with Ada Quill.
[00:00:10.000 --> 00:00:20.000]   The sodium reactor in Kemmerer runs at 345 megawatts electric.
[00:00:20.000 --> 00:00:30.000]   The fuel is HALEU, enriched to almost 20 percent uranium 235.
"""


def test_notes_and_transcripts_in_one_folder(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "notes.md").write_text(NOTES, encoding="utf-8")
    (folder / "reactor-talk.txt").write_text(WHISPER, encoding="utf-8")
    ws = tmp_path / "ws"
    result = run("generate", folder, "-t", folder, "-w", ws, "--offline", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["total"]["notes"] == 2
    episodes = json.loads(run("episodes", folder, "-t", folder, "--json").stdout)
    assert [(e["notes"], Path(e["transcript"]).name) for e in episodes] == [(2, "reactor-talk.txt")]


def test_a_run_that_finds_no_notes_says_so_with_exit_2(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "reactor-talk.txt").write_text(WHISPER, encoding="utf-8")  # a transcript, and no notes
    result = run("generate", folder, "-t", folder, "-w", tmp_path / "ws", "--offline")
    assert result.exit_code == 2, result.output
    [line] = [x for x in result.stderr.splitlines() if x.startswith("cards: error:")]
    assert "no notes found" in line and "reactor-talk.txt" in line
