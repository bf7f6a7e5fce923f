"""Listings a person can read at 80 columns: whole slugs in `episodes`, a bounded `drafts`, and deciding
every episode's drafts at once after saying how many."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cards.cli import app
from cards.store import Store

DRAFTS_SHOWN = 50  # the table's default page
LONG = "Dylan Patel and Nathan Lambert on the Latent Space podcast about DeepSeek"
SLUG = "dylan-patel-and-nathan-lambert-on-the-latent-space-podcast-about-deepseek"


def run(*args, columns: int = 80, input: str | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)}, input=input)


def two_episodes(tmp_path: Path, bullets: int = 3) -> Path:
    notes = tmp_path / "n.md"
    text = ""
    for heading in (LONG, "Ada Quill on Reactor Talk"):
        text += f"# {heading}\n\n" + "".join(f"- {heading.split()[0]} said the plant number {i} runs at "
                                              f"{100 + i} megawatts\n" for i in range(bullets)) + "\n"
    notes.write_text(text, encoding="utf-8")
    return notes


def test_episodes_prints_each_slug_whole_on_one_line_at_80_columns(tmp_path):
    notes = two_episodes(tmp_path)
    result = run("episodes", notes)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    assert any(SLUG in line for line in lines), result.stdout  # whole, not broken over lines
    assert any("ada-quill-on-reactor-talk" in line for line in lines)
    wide = run("episodes", notes, columns=200)
    assert "people" in wide.stdout and "date" in wide.stdout  # every column when there is room


def test_drafts_shows_a_bounded_page_and_says_how_to_see_the_rest(tmp_path):
    notes = two_episodes(tmp_path, bullets=30)
    ws = tmp_path / "ws"
    assert run("generate", notes, "-w", ws, "--offline").exit_code == 0
    with Store(ws, create=False) as store:
        total = len(store.drafts(include_superseded=False))
    assert total > DRAFTS_SHOWN
    table = run("drafts", "-w", ws)
    assert table.exit_code == 0
    assert table.stdout.count("│ draft") <= DRAFTS_SHOWN and f"{total} drafts, the first {DRAFTS_SHOWN}" in table.stdout
    assert "--limit 0 shows every one" in table.stdout
    assert run("drafts", "-w", ws, "--limit", "0").stdout.count("│ draft") == total
    assert run("drafts", "-w", ws, "-n", "3").stdout.count("│ draft") == 3
    assert len(json.loads(run("drafts", "-w", ws, "--json").stdout)) == total  # JSON is data: all of it


def test_approve_all_without_an_episode_asks_with_the_count(tmp_path):
    notes = two_episodes(tmp_path)
    ws = tmp_path / "ws"
    assert run("generate", notes, "-w", ws, "--offline").exit_code == 0
    with Store(ws, create=False) as store:
        n = len(store.drafts(status="draft", include_superseded=False))

    declined = run("approve", "--all", "-w", ws, input="n\n")
    assert declined.exit_code == 2
    assert f"Approve {n} undecided drafts in 2 episodes?" in declined.stderr
    assert "nothing changed" in declined.stderr
    no_answer = run("approve", "--all", "-w", ws)  # a script with nothing on stdin
    assert no_answer.exit_code == 2 and "--yes" in no_answer.stderr
    with Store(ws, create=False) as store:
        assert not store.drafts(status="approved")

    confirmed = run("approve", "--all", "-w", ws, input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert f"{n} drafts approved." in confirmed.stdout
    assert run("reject", "--all", "--yes", "-w", ws).stdout.strip() == "0 drafts rejected."
