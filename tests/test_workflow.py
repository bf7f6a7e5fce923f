"""The whole path a person takes, through the CLI: generate, decide, export, import into Anki,
edit, re-export, re-import; and new notes that repeat an exported card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cards.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTES = EXAMPLES / "notes.md"
TRANSCRIPT = EXAMPLES / "latent-space-dylan-patel.txt"

anki_collection = pytest.importorskip("anki.collection")


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, getattr(result, "stderr", ""))
    return result.stdout


def import_into(col, apkg: Path) -> None:
    from anki.collection import ImportAnkiPackageOptions, ImportAnkiPackageRequest
    from anki.import_export_pb2 import ImportAnkiPackageUpdateCondition

    newer = ImportAnkiPackageUpdateCondition.IMPORT_ANKI_PACKAGE_UPDATE_CONDITION_IF_NEWER
    col.import_anki_package(ImportAnkiPackageRequest(
        package_path=str(apkg),
        options=ImportAnkiPackageOptions(update_notes=newer, update_notetypes=newer, merge_notetypes=False,
                                         with_scheduling=False)))


def notes_by_guid(col) -> dict:
    return {col.get_note(nid).guid: col.get_note(nid) for nid in col.find_notes("")}


def test_generate_review_export_import_edit_reexport(tmp_path):
    ws = tmp_path / "ws"
    run("generate", str(NOTES), "-t", str(TRANSCRIPT), "-w", str(ws), "--offline", "--json")
    drafts = json.loads(run("drafts", "-w", str(ws), "--json"))
    assert len(drafts) >= 3
    # Edit a question/answer card: the edit below replaces its question.
    basic = next(d for d in drafts if d["kind"] == "basic")
    others = [d for d in drafts if d is not basic]
    keep, drop = [basic, others[0]], others[1]
    run("approve", keep[0]["id"][:8], keep[1]["id"], "-w", str(ws))
    run("reject", drop["id"], "-w", str(ws))
    statuses = {d["id"]: d["status"] for d in json.loads(run("drafts", "-w", str(ws), "--json"))}
    assert statuses[keep[0]["id"]] == statuses[keep[1]["id"]] == "approved"
    assert statuses[drop["id"]] == "rejected"

    out = tmp_path / "out"
    written = json.loads(run("export", "-w", str(ws), "--out", str(out), "--json"))
    assert [w["cards"] for w in written] == [2]
    apkg = Path(written[0]["path"])
    assert apkg.parent == out and apkg.name == "dylan-patel-on-latent-space.apkg"

    col = anki_collection.Collection(str(tmp_path / "collection.anki2"))
    try:
        import_into(col, apkg)
        notes = notes_by_guid(col)
        assert set(notes) == {keep[0]["id"], keep[1]["id"]}  # the rejected card never reached Anki
        assert {col.decks.name(c.did) for n in notes.values() for c in n.cards()} == {
            "Podcasts::Dylan Patel on Latent Space"}
        models_before = sorted(m["name"] for m in col.models.all())

        # Edit one card in the workspace a while later, export, import again: the same note changes.
        new_front = "How many H100s were manufactured last quarter, according to Dylan Patel?"
        edited = json.loads(run("edit", keep[0]["id"], "--front", new_front, "--back", "400k to 500k",
                                "-w", str(ws), "--json"))
        assert edited["id"] == keep[0]["id"] and edited["front"] == new_front
        from cards.config import build_settings
        from cards.pipeline import export
        from cards.store import Store

        with Store(ws, clock=lambda: 4_000_000_000.0) as later:  # the edit lands in a later second
            later.update_draft(keep[0]["id"], action="edit", front=new_front)
        again = export(build_settings(workspace=ws), out=out, now=4_000_000_001.0)
        import_into(col, Path(again[0]["path"]))
        after = notes_by_guid(col)
        assert set(after) == set(notes)  # updated, not duplicated
        assert after[keep[0]["id"]].fields[0] == new_front
        assert sorted(m["name"] for m in col.models.all()) == models_before  # no second note type
    finally:
        col.close()


def test_new_notes_repeating_an_exported_card_are_marked_duplicates(tmp_path):
    ws = tmp_path / "ws"
    run("generate", str(NOTES), "-t", str(TRANSCRIPT), "-w", str(ws), "--offline", "--json")
    run("approve", "--episode", "dylan-patel-on-latent-space", "--all", "-w", str(ws))
    run("export", "-w", str(ws), "--json")
    exported = {d["id"]: d for d in json.loads(run("drafts", "-w", str(ws), "--json"))}
    assert exported and all(d["exported"] for d in exported.values())

    # The same fact noted again next week, worded a little differently.
    notes = tmp_path / "notes.md"
    shutil.copy(NOTES, notes)
    target = next(d for d in exported.values() if d["kind"] == "cloze")
    with notes.open("a", encoding="utf-8") as f:
        f.write("- " + target["note"].split("\n")[0].upper() + "!!\n")
    summary = json.loads(run("generate", str(notes), "-t", str(TRANSCRIPT), "-w", str(ws), "--offline", "--json"))
    assert summary["total"]["notes"] == 1  # only the new bullet was generated
    new = [d for d in json.loads(run("drafts", "-w", str(ws), "--json")) if d["id"] not in exported]
    assert new and all(d["status"] == "duplicate" and d["duplicate_of"] == target["id"] for d in new)
    # The exported card itself stays as it was.
    assert json.loads(run("drafts", "-w", str(ws), "--json", "--status", "approved"))


def test_reject_all_of_an_episode_leaves_nothing_to_export(tmp_path):
    ws = tmp_path / "ws"
    run("generate", str(NOTES), "-t", str(TRANSCRIPT), "-w", str(ws), "--offline")
    run("reject", "--episode", "dylan-patel-on-latent-space", "--all", "-w", str(ws))
    assert json.loads(run("export", "-w", str(ws), "--json", "--include-drafts")) == []


def test_decisions_need_ids_or_an_episode(tmp_path):
    ws = tmp_path / "ws"
    run("generate", str(NOTES), "-t", str(TRANSCRIPT), "-w", str(ws), "--offline")
    for args in (["approve", "-w", str(ws)], ["reject", "abc", "--all", "-w", str(ws)], ["approve", "zzzz", "-w", str(ws)],
                 ["edit", "zzzz", "--front", "x", "-w", str(ws)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2
        assert result.stderr.startswith("cards: error:") and "Traceback" not in result.output


def test_commands_on_a_missing_workspace_say_so(tmp_path):
    result = CliRunner().invoke(app, ["drafts", "-w", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "no workspace here yet" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_editing_a_cloze_card_keeps_a_deletion(tmp_path):
    ws = tmp_path / "ws"
    run("generate", str(NOTES), "-t", str(TRANSCRIPT), "-w", str(ws), "--offline")
    cloze = next(d for d in json.loads(run("drafts", "-w", str(ws), "--json")) if d["kind"] == "cloze")
    refused = CliRunner().invoke(app, ["edit", cloze["id"], "--front", "No deletion here", "-w", str(ws)])
    assert refused.exit_code == 2 and "needs a deletion" in refused.stderr
    edited = json.loads(run("edit", cloze["id"], "--front", "Dylan started {{c1::SemiAnalysis}} in 2021.",
                            "-w", str(ws), "--json"))
    assert edited["front"] == "Dylan started {{c1::SemiAnalysis}} in 2021." and edited["edited"] is True


def test_a_run_that_cannot_start_says_only_why(tmp_path):
    result = CliRunner().invoke(app, ["generate", str(NOTES), "-w", str(tmp_path / "ws"), "--offline",
                                      "--prompts", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"cards: error: {tmp_path / 'nowhere' / 'cards.md'}: prompt template not found"]
