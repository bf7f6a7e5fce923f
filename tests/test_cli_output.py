"""What the commands print for a person at an 80-column terminal: whole slugs, the matched part of a
passage, cuts marked with an ellipsis, counts in the right number, and candidates for an ambiguous id."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cards.cli import app, matched_part
from cards.models import plural, shorten

SLUG = "dylan-patel-nathan-lambert-on-latent-space-deepseek"
NOTES = f"""\
# Dylan Patel Nathan Lambert on Latent Space DeepSeek

- the sodium reactor in Kemmerer runs at 345 megawatts
- molten salt storage lets the plant boost output to 500 megawatts for five hours
- the plant in Kemmerer replaced a coal plant that had been running on the same grid connection for over 40 years
- the fuel is HALEU, enriched to almost 20 percent uranium 235
"""
FILLER = " ".join(f"and then we talked about gardens number {i} for a while" for i in range(12))
WHISPER = f"""\
[00:00:00.000 --> 00:00:30.000]   Welcome to Latent Space with Dylan Patel and Nathan Lambert, {FILLER}
[00:00:30.000 --> 00:00:35.000]   The sodium reactor in Kemmerer runs at 345 megawatts electric.
[00:00:35.000 --> 00:01:05.000]   {FILLER}
"""


def run(*args, columns: int = 80):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})


def write(tmp_path: Path) -> tuple[Path, Path]:
    notes = tmp_path / "n.md"
    notes.write_text(NOTES, encoding="utf-8")
    transcript = tmp_path / f"{SLUG}.txt"
    transcript.write_text(WHISPER, encoding="utf-8")
    return notes, transcript


def test_slugs_stay_whole_at_80_columns(tmp_path):
    notes, transcript = write(tmp_path)
    ws = tmp_path / "ws"
    outputs = [run("episodes", notes, "-t", transcript), run("align", notes, "-t", transcript),
               run("generate", notes, "-t", transcript, "-w", ws), run("drafts", "-w", ws),
               run("estimate", notes, "-t", transcript, "-w", ws, "--force")]
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout
        assert slug_column_values(result.stdout)[0] == SLUG, result.stdout


def slug_column_values(table: str) -> list[str]:
    """The values of the slug (or episode) column, each rebuilt from the lines it was broken over;
    a piece that continues on the next line must end in a hyphen (broken after one, never mid-word)."""
    header = [[c.strip() for c in line.split("┃")] for line in table.splitlines() if line.startswith("┃")]
    column = next(i for names in header for i, name in enumerate(names) if name in ("slug", "episode"))
    values: list[str] = []
    open_value = False
    for line in table.splitlines():
        if not line.startswith("│"):
            continue
        cell = line.split("│")[column].strip()
        if not cell:
            continue
        if open_value:
            values[-1] += cell
        else:
            values.append(cell)
        open_value = cell.endswith("-")
    return values


def test_align_shows_the_part_of_the_passage_that_matched(tmp_path):
    notes, transcript = write(tmp_path)
    result = run("align", notes, "-t", transcript, columns=200)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "sodium reactor in Kemmerer runs" in line)
    assert "345 megawatts electric" in row
    assert "gardens number 0 " not in row  # not the passage's opening talk


def test_matched_part_picks_the_window_with_most_note_words():
    passage = ("we opened with small talk about the weather and the traffic on the way in " * 3
               + "then the fuel is HALEU enriched to almost 20 percent uranium 235 he said " + "and more chat " * 10)
    part = matched_part(passage, "fuel is HALEU, enriched to almost 20% U-235", width=80)
    assert "HALEU enriched to almost 20 percent uranium 235" in part
    assert part.startswith("…") and part.endswith("…") and len(part) <= 80
    assert matched_part("short passage", "anything") == "short passage"


def test_cuts_are_marked_and_counts_agree_in_number(tmp_path):
    assert shorten("abcdef", 4) == "abc…" and shorten("abc", 4) == "abc"
    assert shorten("one two three four five", 16) == "one two three…"
    assert plural(1, "duplicate") == "1 duplicate" and plural(2, "draft") == "2 drafts"
    notes, transcript = write(tmp_path)
    ws = tmp_path / "ws"
    generated = run("generate", notes, "-t", transcript, "-w", ws, columns=200)
    assert "0 duplicates marked" in generated.stdout
    drafts = json.loads(run("drafts", "-w", ws, "--json").stdout)
    long_front = max(drafts, key=lambda d: len(d["front"]))
    assert len(long_front["front"]) > 80
    table = run("drafts", "-w", ws, columns=400).stdout
    assert shorten(long_front["front"], 80) in table and long_front["front"] not in table
    approved = run("approve", drafts[0]["id"], "-w", ws)
    assert approved.stdout.strip() == "1 draft approved."


def test_an_ambiguous_id_prefix_lists_its_candidates(tmp_path):
    notes, transcript = write(tmp_path)
    ws = tmp_path / "ws"
    assert run("generate", notes, "-t", transcript, "-w", ws).exit_code == 0
    ids = sorted(d["id"] for d in json.loads(run("drafts", "-w", ws, "--json").stdout))
    assert len(ids) >= 2
    a, b = max(((x, y) for x in ids for y in ids if x < y),
               key=lambda p: len(next((p[0][:k] for k in range(16, -1, -1) if p[1].startswith(p[0][:k])), "")))
    prefix = next(a[:k] for k in range(16, -1, -1) if b.startswith(a[:k]))
    result = run("approve", prefix, "-w", ws)
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("cards: error:")]
    assert "ambiguous" in line and a[:12] in line and b[:12] in line


def test_review_approve_and_reject_refuse_an_unknown_episode_listing_the_known(tmp_path):
    notes, transcript = write(tmp_path)
    ws = tmp_path / "ws"
    assert run("generate", notes, "-t", transcript, "-w", ws).exit_code == 0
    for args in (["review"], ["approve", "--all"], ["reject", "--all"], ["export"]):
        result = run(*args, "--episode", "nope", "-w", ws)
        assert result.exit_code == 2, (args, result.output)
        (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("cards: error:")]
        assert "no episode 'nope'" in line and f"known: {SLUG}" in line, line
    assert json.loads(run("drafts", "-w", ws, "--json", "--status", "draft").stdout)  # nothing was decided
