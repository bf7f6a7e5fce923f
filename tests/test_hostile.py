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
    notes.write_text(f"# {heading}\n- the model has 256 experts [/i]\n", encoding="utf-8")
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
    assert "[/i]" in run("drafts", "-w", ws, env={"COLUMNS": "200"}).stdout
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
