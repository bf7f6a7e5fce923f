"""The workspace schema as named steps: from blank, from the previous version's shape, and refusals."""

from __future__ import annotations

import sqlite3

import pytest

from cards import migrations
from cards.errors import WorkspaceError
from cards.store import DB_NAME, SCHEMA_VERSION, Store


def _v1_workspace(folder) -> sqlite3.Connection:
    """A workspace exactly as the first released schema left it, with one exported draft."""
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / DB_NAME, isolation_level=None)
    db.execute("BEGIN")
    migrations.m001_initial(db)
    db.execute("PRAGMA user_version = 1")
    db.execute("COMMIT")
    db.execute(
        "INSERT INTO drafts(id, generation_id, note_id, episode, kind, front, back, quote, tags, generator,"
        " model, prompt_version, status, note_text, created, updated, exported, edited)"
        " VALUES ('guid-exported', 'g1', 'n1', 'ep', 'basic', 'Q?', 'A', 'q', '[]', 'offline', 'm', 'v',"
        " 'approved', 'note', 100.0, 150.0, 200.0, 1)")
    db.execute("INSERT INTO episodes(slug, title, updated) VALUES ('ep', 'An episode', 1.0)")
    return db


def test_blank_workspace_gets_every_step(tmp_path):
    with Store(tmp_path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(migrations.STEPS)
        assert store.db.execute("PRAGMA application_id").fetchone()[0] == migrations.APPLICATION_ID
        cols = {r[1] for r in store.db.execute("PRAGMA table_info(drafts)")}
        assert {"lineage", "revision_of", "changed"} <= cols
    assert not list(tmp_path.glob("*.bak-*"))  # nothing to back up in a new workspace


def test_previous_version_keeps_exported_guids_and_is_backed_up(tmp_path):
    _v1_workspace(tmp_path).close()
    with Store(tmp_path) as store:
        row = store.db.execute("SELECT lineage, changed FROM drafts WHERE id='guid-exported'").fetchone()
        assert row["lineage"] == "guid-exported"
        assert row["changed"] == 150.0  # edited: its content changed when it was last updated
        lin = store.db.execute("SELECT * FROM lineages WHERE guid='guid-exported'").fetchone()
        assert lin["exported"] == 200.0 and lin["exported_front"] == "Q?"
        assert store.db.execute("SELECT titles FROM episodes").fetchone()[0] == '["An episode"]'
    backup = tmp_path / f"{DB_NAME}.bak-2"
    assert backup.exists()
    old = sqlite3.connect(backup)
    assert old.execute("PRAGMA user_version").fetchone()[0] == 1
    old.close()


def test_a_failed_step_leaves_the_workspace_as_it_was(tmp_path, monkeypatch):
    _v1_workspace(tmp_path).close()

    def broken(db):
        db.execute("ALTER TABLE drafts ADD COLUMN lineage TEXT")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(migrations, "STEPS", [migrations.STEPS[0],
                                              migrations.Step(2, "broken", broken, True)])
    with pytest.raises(WorkspaceError):
        Store(tmp_path)
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "lineage" not in {r[1] for r in db.execute("PRAGMA table_info(drafts)")}


def test_newer_workspace_is_refused(tmp_path):
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(WorkspaceError, match="newer than this cards"):
        Store(tmp_path)


def test_another_programs_database_is_refused_untouched(tmp_path):
    path = tmp_path / DB_NAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE col (id INTEGER PRIMARY KEY, crt INTEGER)")  # like an Anki collection
    db.commit()
    db.close()
    with pytest.raises(WorkspaceError, match="not a cards workspace"):
        Store(tmp_path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    db.close()


def test_transactions_nest_as_savepoints(tmp_path):
    with Store(tmp_path) as store:
        with store.tx() as db:
            db.execute("INSERT INTO episodes(slug, title, updated) VALUES ('a', 'A', 0)")
            with pytest.raises(RuntimeError):
                with store.tx() as inner:
                    inner.execute("INSERT INTO episodes(slug, title, updated) VALUES ('b', 'B', 0)")
                    raise RuntimeError("inner fails")
        slugs = [r[0] for r in store.db.execute("SELECT slug FROM episodes")]
    assert slugs == ["a"]


def test_upgrading_a_workspace_from_before_lineages_buys_nothing_again(tmp_path):
    """Build the old shape from a real run's data, upgrade it, and run generate again."""
    import json

    from conftest import EXAMPLES
    from fakeserver import no_network

    from cards.config import build_settings
    from cards.models import Context, stable_id
    from cards.pipeline import generate, load

    notes, transcript = EXAMPLES / "notes.md", EXAMPLES / "latent-space-dylan-patel.txt"
    new_ws, old_ws = tmp_path / "new", tmp_path / "old"
    with no_network():
        s = build_settings(workspace=new_ws, offline=True)
        generate(load([notes], [transcript], s), s)
    db = _v1_workspace(old_ws)
    db.execute("DELETE FROM drafts")
    db.execute("DELETE FROM episodes")
    db.execute(f"ATTACH DATABASE '{new_ws / DB_NAME}' AS src")
    cols = {t: [r[1] for r in db.execute(f"PRAGMA main.table_info({t})")] for t in ("episodes", "notes", "drafts",
                                                                                  "generations")}
    for table, names in cols.items():
        db.execute(f"INSERT INTO main.{table} ({','.join(names)}) SELECT {','.join(names)} FROM src.{table}")
    for gid, gen, model, version, text, ctx in db.execute(
            "SELECT g.id, g.generator, g.model, g.prompt_version, n.text, n.context FROM generations g"
            " JOIN notes n ON n.id = g.note_id").fetchall():
        passage = Context.from_dict(json.loads(ctx)).text if ctx else ""
        db.execute("UPDATE generations SET spec=? WHERE id=?", (stable_id(gen, model, version, text, passage), gid))
    db.execute("DETACH DATABASE src")
    live_before = {r[0] for r in db.execute("SELECT id FROM drafts WHERE superseded=0")}
    db.close()

    with no_network():
        s = build_settings(workspace=old_ws, offline=True)
        summary = generate(load([notes], [transcript], s), s)
    assert summary.total["requests"] == 0 and summary.skipped == 8  # every note of the example
    # The kept passages are from the aligner of their time: said, not acted on.
    assert any("older aligner" in n for n in summary.notices)
    with Store(old_ws) as store:
        assert {d.id for d in store.drafts(include_superseded=False)} == live_before
        assert all(d.lineage == d.id for d in store.drafts())


def test_an_exported_episode_keeps_the_deck_its_first_title_named(tmp_path):
    db = _v1_workspace(tmp_path)
    db.execute("INSERT INTO episodes(slug, title, updated) VALUES ('fresh', 'Never exported', 1.0)")
    db.close()
    with Store(tmp_path) as store:
        assert store.episode("ep").deck == "An episode"  # Anki knows its deck by this name
        assert store.episode("fresh").deck is None and store.episode("fresh").deck_title == "Never exported"


def test_a_workspace_from_before_batches_and_claims_gets_their_tables_and_keeps_its_cards(tmp_path):
    db = _v1_workspace(tmp_path)
    for s in migrations.STEPS[1:4]:  # lineages, the file cache and deck titles: the shape before batches
        db.execute("BEGIN")
        s.apply(db)
        db.execute(f"PRAGMA user_version = {s.number}")
        db.execute("COMMIT")
    db.close()
    with Store(tmp_path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"batches", "batch_requests", "extractions"} <= tables
        assert [d.id for d in store.drafts()] == ["guid-exported"]
    assert not list(tmp_path.glob(f"{DB_NAME}.bak-[56]"))  # only new tables: nothing rewritten, no backup
