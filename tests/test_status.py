"""`cards status`, export's counts, and nothing bought by accident: passages kept, episodes remembered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import EXAMPLES
from fakeserver import no_network
from typer.testing import CliRunner

from cards import align as align_module
from cards.cli import app
from cards.store import Store

runner = CliRunner()
TRANSCRIPT = EXAMPLES / "latent-space-dylan-patel.txt"
NOTES = """\
# Dylan Patel on Latent Space

- dylan has been in the semiconductor industry since 2017, started the semianalysis blog in nov 2021
- amazon's edge is the custom infra behind aws: efficiency that azure and google cloud don't match
- 400k-500k H100s manufactured last quarter, ~530k this quarter

# Gardening with Monty

- copper fungicide only slows the blight, it never cures an infected plant
- tomatoes need 8 hours of direct sun to fruit well
"""


def cli(*args: str, columns: int = 80) -> tuple[int, str, str]:
    with no_network():
        r = runner.invoke(app, list(args), env={"COLUMNS": str(columns)})
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def notes(tmp_path) -> Path:
    path = tmp_path / "notes.md"
    path.write_text(NOTES, encoding="utf-8")
    return path


def gen(notes: Path, ws: Path, *extra: str, transcript: bool = True) -> dict:
    args = ["generate", str(notes), "-w", str(ws), "--offline", "--json", *extra]
    if transcript:
        args += ["-t", str(TRANSCRIPT)]
    code, out, err = cli(*args)
    assert code == 0, err
    return json.loads(out)


def status(ws: Path, *args: str) -> dict:
    code, out, err = cli("status", *args, "-w", str(ws), "--json")
    assert code == 0, err
    return json.loads(out)


def by_episode(data: dict) -> dict:
    return {e["episode"]: e for e in data["episodes"]}


def test_status_says_what_generate_would_send_and_export_agrees(notes, tmp_path):
    ws = tmp_path / "ws"
    code, _, err = cli("status", "-w", str(ws))
    assert code == 2 and "no workspace here yet" in err

    gen(notes, ws)
    s = by_episode(status(ws, str(notes), "-t", str(TRANSCRIPT)))
    lex = s["dylan-patel-on-latent-space"]
    assert lex["notes"]["up to date"] == 3 and lex["next_generate"]["requests"] == 0
    assert lex["export"]["unreviewed_left_out"] == lex["drafts"]["draft"] > 0

    code, _, err = cli("approve", "--episode", "dylan-patel-on-latent-space", "--all", "-w", str(ws))
    assert code == 0, err
    code, out, err = cli("export", "-w", str(ws), "--out", str(tmp_path / "out"), "--json")
    first = {w["episode"]: w for w in json.loads(out)}["dylan-patel-on-latent-space"]
    assert first["new"] == first["cards"] > 0 and first["updated"] == first["unchanged"] == 0

    after = by_episode(status(ws))["dylan-patel-on-latent-space"]
    assert after["export"]["unchanged"] == first["cards"] and after["export"]["new"] == 0
    assert "notes" not in after  # without notes files, only what the workspace knows

    # A new bullet: status names it; the next generate sends exactly that.
    notes.write_text(NOTES.replace("- tomatoes", "- basil hates wet roots\n- tomatoes"), encoding="utf-8")
    garden = by_episode(status(ws, str(notes), "-t", str(TRANSCRIPT)))["gardening-with-monty"]
    assert garden["next_generate"] == {"requests": 1, "reasons": {"new note": 1}}
    assert gen(notes, ws)["reasons"] == {"new note": 1}


def test_export_table_prints_the_four_counts_and_what_it_left_out(notes, tmp_path):
    ws = tmp_path / "ws"
    gen(notes, ws)
    # Wide enough for the headers to stay on one line (at 80 columns "left in Anki" wraps).
    code, out, err = cli("export", "-w", str(ws), "--out", str(tmp_path / "out"), columns=120)
    assert code == 0, err
    assert "No cards to export" in out and "unreviewed drafts" in out
    for word in ("new", "updated", "unchanged", "left in Anki"):
        assert word in out


def test_a_forgotten_transcript_keeps_the_passages_and_buys_nothing(notes, tmp_path):
    ws = tmp_path / "ws"
    gen(notes, ws)
    with Store(ws) as st:
        before = {n.id: n.context for n in st.notes("dylan-patel-on-latent-space").values()}
        live = {d.id for d in st.drafts(include_superseded=False)}
    assert any(before.values())
    notes.write_text(NOTES.replace("- amazon", "- nvidia sells the whole rack now\n- amazon"), encoding="utf-8")
    run = gen(notes, ws, transcript=False)
    assert run["total"]["requests"] == 0 and run["waiting"] == 1
    assert any("no transcript given" in n and "1 new note wait" in n for n in run["notices"])
    with Store(ws) as st:
        kept = {n.id: n.context for n in st.notes("dylan-patel-on-latent-space").values() if n.id in before}
        assert kept == before
        assert {d.id for d in st.drafts(include_superseded=False)} == live
    # With the transcript again, only the waiting note is sent, with its passage.
    assert gen(notes, ws)["reasons"] == {"new note": 1}
    with Store(ws) as st:
        [waited] = [n for n in st.notes("dylan-patel-on-latent-space").values() if n.id not in before]
        assert "nvidia" in waited.text and waited.context is not None


def test_a_changed_transcript_realigns_and_sends_only_notes_whose_passage_changed(notes, tmp_path):
    ws = tmp_path / "ws"
    gen(notes, ws)
    changed = tmp_path / "transcript.txt"
    text = TRANSCRIPT.read_text(encoding="utf-8")
    changed.write_text(text + "\n[01:00:00.000 --> 01:00:05.000]   and that is all from us today\n",
                       encoding="utf-8")
    code, out, err = cli("generate", str(notes), "-t", str(changed), "-w", str(ws), "--offline", "--json")
    assert code == 0, err
    run = json.loads(out)
    assert any("transcript changed" in n for n in run["notices"])
    assert set(run["reasons"]) <= {"passage changed"}


def test_a_new_aligner_is_shown_and_acts_only_on_request(notes, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    gen(notes, ws)
    monkeypatch.setattr(align_module, "ALIGN_VERSION", "a-newer-aligner", raising=False)
    s = status(ws, str(notes), "-t", str(TRANSCRIPT))
    assert any("older aligner" in n for n in s["notices"])
    assert sum(e["next_generate"]["requests"] for e in s["episodes"] if "next_generate" in e) == 0
    run = gen(notes, ws, "--realign")
    with Store(ws) as st:
        versions = {n.align_version for n in st.notes("dylan-patel-on-latent-space").values()}
    assert versions == {"a-newer-aligner"}
    assert not any("older aligner" in n for n in run["notices"])


def test_a_reworded_heading_keeps_its_episode_and_a_vanished_one_is_reported(notes, tmp_path):
    ws = tmp_path / "ws"
    gen(notes, ws)
    notes.write_text(NOTES.replace("# Gardening with Monty", "# Monty Don on a wet summer"), encoding="utf-8")
    run = gen(notes, ws)
    assert run["total"]["requests"] == 0
    assert any("heading reworded" in n and "gardening-with-monty" in n for n in run["notices"])
    code, out, _ = cli("episodes", str(notes), "-t", str(TRANSCRIPT), "-w", str(ws), "--json")
    slugs = {e["slug"]: e["title"] for e in json.loads(out)}
    assert slugs.get("gardening-with-monty") == "Monty Don on a wet summer"
    with Store(ws) as st:
        assert st.episode("gardening-with-monty").titles == ("Gardening with Monty", "Monty Don on a wet summer")

    cli("approve", "--episode", "gardening-with-monty", "--all", "-w", str(ws))
    cli("export", "-w", str(ws), "--out", str(tmp_path / "out"))
    notes.write_text(NOTES.split("# Gardening")[0], encoding="utf-8")
    run = gen(notes, ws)
    assert any("gardening-with-monty: no longer in your notes" in n for n in run["notices"])
    garden = by_episode(status(ws))["gardening-with-monty"]
    assert garden["missing"] and garden["export"]["left_in_anki"] == garden["export"]["left_in_anki"] > 0
    code, out, _ = cli("export", "-w", str(ws), "--out", str(tmp_path / "out"), "--json")
    [row] = [w for w in json.loads(out) if w["episode"] == "gardening-with-monty"]
    assert row["path"] is None and row["cards"] == 0 and len(row["left_in_anki_cards"]) > 0


def test_the_status_table_lists_only_episodes_with_something_to_do(notes, tmp_path):
    ws = tmp_path / "ws"
    gen(notes, ws)
    cli("approve", "--episode", "dylan-patel-on-latent-space", "--all", "-w", str(ws))
    cli("export", "-w", str(ws), "--out", str(tmp_path / "out"))
    wide = {"COLUMNS": "160"}  # whole slugs on one line, to find them in the text
    r = runner.invoke(app, ["status", "-w", str(ws)], env=wide)
    assert r.exit_code == 0, r.stderr
    assert "gardening-with-monty" in r.stdout and "dylan-patel-on-latent-space" not in r.stdout
    assert "1 more episode with nothing to do" in r.stdout
    r = runner.invoke(app, ["status", "-w", str(ws), "--all"], env=wide)
    assert "dylan-patel-on-latent-space" in r.stdout
