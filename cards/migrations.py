"""The workspace schema as named steps, applied in order, each in one transaction.

`PRAGMA user_version` is the number of steps applied. A workspace made by a newer
`cards` (a higher number than this code knows) is refused rather than guessed at.
A step that rewrites existing rows is marked `rewrites=True`: the workspace is
copied with SQLite's backup API first, to `cards.sqlite.bak-<step>`, so a failed or
regretted upgrade can be undone by hand.

Add a step by appending a decorated function; never edit a released step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Identifies a cards workspace among SQLite files ("crds"); set by step 1.
APPLICATION_ID = 0x63726473


@dataclass(frozen=True)
class Step:
    number: int
    name: str
    apply: Callable[[sqlite3.Connection], None]
    rewrites: bool


STEPS: list[Step] = []


def step(*, rewrites: bool = False):
    def register(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
        STEPS.append(Step(len(STEPS) + 1, fn.__name__, fn, rewrites))
        return fn

    return register


def _script(db: sqlite3.Connection, sql: str) -> None:
    # executescript would COMMIT the surrounding transaction; run statement by statement.
    for stmt in sql.split(";"):
        if stmt.strip():
            db.execute(stmt)


@step()
def m001_initial(db: sqlite3.Connection) -> None:
    _script(db, """
    CREATE TABLE IF NOT EXISTS episodes (
        slug TEXT PRIMARY KEY, title TEXT NOT NULL, url TEXT, video_id TEXT, transcript TEXT,
        updated REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS notes (
        id TEXT PRIMARY KEY, episode TEXT NOT NULL, text TEXT NOT NULL, kind TEXT NOT NULL,
        section TEXT, position INTEGER NOT NULL, sources TEXT NOT NULL,
        context TEXT, active INTEGER NOT NULL DEFAULT 1, seen REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS notes_episode ON notes(episode, position);
    CREATE TABLE IF NOT EXISTS generations (
        id TEXT PRIMARY KEY, note_id TEXT NOT NULL, spec TEXT NOT NULL, generator TEXT NOT NULL,
        model TEXT NOT NULL, prompt_version TEXT NOT NULL, key TEXT NOT NULL, ok INTEGER NOT NULL,
        error TEXT, cards INTEGER NOT NULL DEFAULT 0, tokens_in INTEGER NOT NULL DEFAULT 0,
        tokens_out INTEGER NOT NULL DEFAULT 0, cached_tokens INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0, from_cache INTEGER NOT NULL DEFAULT 0,
        run_id INTEGER, created REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS generations_note ON generations(note_id, spec, ok);
    CREATE TABLE IF NOT EXISTS responses (
        key TEXT PRIMARY KEY, model TEXT NOT NULL, prompt_version TEXT NOT NULL, body TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS drafts (
        id TEXT PRIMARY KEY, generation_id TEXT NOT NULL, note_id TEXT NOT NULL, episode TEXT NOT NULL,
        kind TEXT NOT NULL, front TEXT NOT NULL, back TEXT NOT NULL, quote TEXT NOT NULL,
        tags TEXT NOT NULL, generator TEXT NOT NULL, model TEXT NOT NULL, prompt_version TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'draft', duplicate_of TEXT, warnings TEXT NOT NULL DEFAULT '[]',
        grounding REAL, edited INTEGER NOT NULL DEFAULT 0, superseded INTEGER NOT NULL DEFAULT 0,
        note_text TEXT NOT NULL, context_text TEXT, context_start REAL, context_end REAL,
        position INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, updated REAL NOT NULL, exported REAL
    );
    CREATE INDEX IF NOT EXISTS drafts_episode ON drafts(episode, status);
    CREATE INDEX IF NOT EXISTS drafts_note ON drafts(note_id);
    CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY, started REAL NOT NULL, finished REAL, generator TEXT, model TEXT,
        prompt_version TEXT, notes INTEGER DEFAULT 0, cards INTEGER DEFAULT 0, requests INTEGER DEFAULT 0,
        cached INTEGER DEFAULT 0, failed INTEGER DEFAULT 0, tokens_in INTEGER DEFAULT 0,
        tokens_out INTEGER DEFAULT 0, cached_tokens INTEGER DEFAULT 0, cost REAL DEFAULT 0, status TEXT
    );
    CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY, draft_id TEXT NOT NULL, action TEXT NOT NULL, before TEXT NOT NULL,
        at REAL NOT NULL
    )
    """)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


@step(rewrites=True)
def m002_lineage(db: sqlite3.Connection) -> None:
    """Card lineages, per-card content times, remembered episodes and passages.

    Every existing draft starts a lineage whose GUID is its own id, which is the GUID
    it was exported under, so decks already in Anki keep updating in place.
    """
    _script(db, """
    ALTER TABLE drafts ADD COLUMN lineage TEXT;
    ALTER TABLE drafts ADD COLUMN revision_of TEXT;
    ALTER TABLE drafts ADD COLUMN changed REAL;
    UPDATE drafts SET lineage = id, changed = CASE WHEN edited THEN updated ELSE created END;
    CREATE INDEX drafts_lineage ON drafts(lineage);
    CREATE TABLE lineages (
        guid TEXT PRIMARY KEY, episode TEXT NOT NULL, created REAL NOT NULL,
        exported REAL, exported_mtime REAL, exported_front TEXT
    );
    INSERT INTO lineages(guid, episode, created, exported, exported_mtime, exported_front)
        SELECT id, episode, created, exported, CASE WHEN exported IS NULL THEN NULL ELSE changed END,
               CASE WHEN exported IS NULL THEN NULL ELSE front END
        FROM drafts;
    ALTER TABLE notes ADD COLUMN predecessor TEXT;
    ALTER TABLE notes ADD COLUMN align_version TEXT;
    ALTER TABLE generations ADD COLUMN parts TEXT;
    ALTER TABLE episodes ADD COLUMN titles TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE episodes ADD COLUMN transcript_hash TEXT;
    ALTER TABLE episodes ADD COLUMN missing INTEGER NOT NULL DEFAULT 0;
    UPDATE episodes SET titles = json_array(title);
    UPDATE notes SET align_version = '1' WHERE context IS NOT NULL;
    ALTER TABLE events ADD COLUMN grp INTEGER
    """)
    _respec(db)


def _respec(db: sqlite3.Connection) -> None:
    """Re-key earlier generations with the tagged spec, where the old key can be verified.

    The old key hashed (generator, model, prompt version, note text, passage text). Where
    recomputing it from the note and its stored passage gives the stored key, the new key
    is exact, so an upgrade buys nothing again; any other generation was already out of
    date and stays so.
    """
    import json

    from cards.models import Context, generation_spec, stable_id

    rows = db.execute("SELECT g.rowid AS rid, g.spec, g.generator, g.model, g.prompt_version, n.text, n.context"
                      " FROM generations g JOIN notes n ON n.id = g.note_id").fetchall()
    for r in rows:
        ctx = Context.from_dict(json.loads(r[6])) if r[6] else None
        if stable_id(r[2], r[3], r[4], r[5], ctx.text if ctx else "") != r[1]:
            continue
        spec, parts = generation_spec(r[2], r[3], r[4], r[5], ctx)
        db.execute("UPDATE generations SET spec=?, parts=? WHERE rowid=?", (spec, json.dumps(parts, sort_keys=True),
                                                                            r[0]))


@step()
def m003_file_cache(db: sqlite3.Connection) -> None:
    """What each input file yields (by content hash and parser version), and episode matchings."""
    _script(db, """
    CREATE TABLE file_cache (
        kind TEXT NOT NULL, hash TEXT NOT NULL, version TEXT NOT NULL, body BLOB NOT NULL,
        used REAL NOT NULL, PRIMARY KEY (kind, hash, version)
    )
    """)


@step()
def m004_deck_title(db: sqlite3.Connection) -> None:
    """The title an episode's deck was first exported under: Anki finds decks by name.

    Episodes exported before take their first title, the name their first cards went to.
    """
    _script(db, """
    ALTER TABLE episodes ADD COLUMN deck TEXT;
    UPDATE episodes SET deck = json_extract(titles, '$[0]')
        WHERE slug IN (SELECT episode FROM lineages WHERE exported IS NOT NULL)
    """)


@step()
def m005_batches(db: sqlite3.Connection) -> None:
    """Batch API jobs sent and not yet imported: each batch, and which note each of its requests is for."""
    _script(db, """
    CREATE TABLE batches (
        id TEXT PRIMARY KEY, created REAL NOT NULL, model TEXT NOT NULL, prompt_version TEXT NOT NULL,
        mode TEXT NOT NULL, input_file TEXT NOT NULL, requests INTEGER NOT NULL, status TEXT NOT NULL,
        completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, output_file TEXT,
        error_file TEXT, checked REAL, closed REAL
    );
    CREATE TABLE batch_requests (
        batch_id TEXT NOT NULL, custom_id TEXT NOT NULL, note_id TEXT NOT NULL, episode TEXT NOT NULL,
        spec TEXT NOT NULL, parts TEXT NOT NULL, imported REAL, PRIMARY KEY (batch_id, custom_id, note_id)
    );
    CREATE INDEX batch_requests_note ON batch_requests(note_id)
    """)


@step()
def m006_extracted_claims(db: sqlite3.Connection) -> None:
    """Claims found in transcripts without notes (cards.extract), one row per stretch asked about."""
    _script(db, """
    CREATE TABLE extractions (
        key TEXT PRIMARY KEY, transcript_hash TEXT NOT NULL, episode TEXT NOT NULL, chunk INTEGER NOT NULL,
        model TEXT NOT NULL, prompt_version TEXT NOT NULL, claims TEXT NOT NULL, dropped INTEGER NOT NULL,
        tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, created REAL NOT NULL
    );
    CREATE INDEX extractions_transcript ON extractions(transcript_hash, created)
    """)


@step()
def m007_draft_claims(db: sqlite3.Connection) -> None:
    """The claim a draft tests, and why it was set aside when it was made (by the critic, or naming no claim)."""
    _script(db, """
    ALTER TABLE drafts ADD COLUMN claim TEXT;
    ALTER TABLE drafts ADD COLUMN reason TEXT
    """)


@step()
def m008_clips(db: sqlite3.Connection) -> None:
    # Per note GUID, the audio clip last written into its deck and when it first was (cards.clips).
    db.execute("CREATE TABLE IF NOT EXISTS clips (guid TEXT PRIMARY KEY, name TEXT NOT NULL, added REAL NOT NULL)")


def is_ours(db: sqlite3.Connection) -> bool:
    """True for a blank database or a cards workspace; False for any other SQLite file."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    if app_id == APPLICATION_ID:
        return True
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return app_id == 0
    # Workspaces made before the application id was set: known by their tables.
    return app_id == 0 and {"drafts", "generations", "notes", "episodes"} <= tables


def pending(db: sqlite3.Connection) -> list[Step]:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    return [s for s in STEPS if s.number > version]


def backup(db: sqlite3.Connection, target: Path) -> None:
    """A consistent copy of the database, taken with SQLite's online backup API."""
    out = sqlite3.connect(target)
    try:
        db.backup(out)
    finally:
        out.close()


def migrate(db: sqlite3.Connection, path: Path) -> list[str]:
    """Apply every step this workspace lacks; returns their names. The caller checks the version first."""
    applied = []
    existing = db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0] > 0
    for s in pending(db):
        if s.rewrites and existing:
            backup(db, path.with_name(f"{path.name}.bak-{s.number}"))
        db.execute("BEGIN IMMEDIATE")
        try:
            s.apply(db)
            db.execute(f"PRAGMA user_version = {s.number}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        applied.append(s.name)
    return applied


SCHEMA_VERSION = len(STEPS)
