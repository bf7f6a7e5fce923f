"""The workspace: one SQLite file holding notes, drafts, review decisions, the LLM cache and runs.

Every write is its own short transaction, so an interrupted run keeps all that
finished. WAL mode lets the review app read while a run writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cards import migrations
from cards.errors import WorkspaceError
from cards.models import Context, Draft, NoteItem

DB_NAME = "cards.sqlite"
SCHEMA_VERSION = migrations.SCHEMA_VERSION

_DRAFT_COLS = (
    "id", "note_id", "episode", "kind", "front", "back", "quote", "tags", "generator", "model",
    "prompt_version", "status", "duplicate_of", "warnings", "grounding", "edited", "superseded",
    "note_text", "context_text", "context_start", "context_end", "created", "updated", "exported",
)
_JSON_COLS = {"tags", "warnings"}
_BOOL_COLS = {"edited", "superseded"}
EDITABLE = {"front", "back", "status", "duplicate_of", "warnings", "grounding", "superseded", "exported"}


def _row_to_draft(row: sqlite3.Row) -> Draft:
    values = {}
    for col in _DRAFT_COLS:
        v = row[col]
        if col in _JSON_COLS:
            v = json.loads(v)
        elif col in _BOOL_COLS:
            v = bool(v)
        values[col] = v
    return Draft(**values)


class Store:
    """A workspace folder's database. Use as a context manager or call close()."""

    def __init__(self, folder: Path, *, create: bool = True, clock=time.time):
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        self.clock = clock
        if not create and not self.path.exists():
            raise WorkspaceError("no workspace here yet (run `cards generate` first)", path=str(self.path))
        self._depth = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            # Look before changing anything: another program's SQLite file is left exactly as it was.
            if not migrations.is_ours(self.db):
                self.db.close()
                raise WorkspaceError("not a cards workspace (another program's database?); "
                                     "use --workspace to choose another folder", path=str(self.path))
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                self.db.close()
                raise WorkspaceError(f"workspace schema {version} is newer than this cards ({SCHEMA_VERSION})",
                                     path=str(self.path))
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if version < SCHEMA_VERSION:
                migrations.migrate(self.db, self.path)
        except sqlite3.DatabaseError as e:
            raise WorkspaceError(f"cannot open workspace: {e}", path=str(self.path)) from None
        except OSError as e:
            raise WorkspaceError(f"cannot create workspace: {e.strerror}", path=str(self.folder)) from None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic write; nested calls are savepoints. Disk-full and similar errors become a WorkspaceError."""
        if self._depth:
            name = f"sp{self._depth}"
            self.db.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self.db
            except BaseException:
                self.db.execute(f"ROLLBACK TO {name}")
                self.db.execute(f"RELEASE {name}")
                raise
            finally:
                self._depth -= 1
            self.db.execute(f"RELEASE {name}")
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as e:
            raise WorkspaceError(f"cannot write workspace: {e}", path=str(self.path)) from None

    # -- notes and episodes ----------------------------------------------------------

    def sync_episode(self, slug: str, title: str, url: str | None, video_id: str | None,
                     transcript: str | None, items: list[NoteItem], contexts: list[Context | None],
                     read_files: set[str]) -> list[str]:
        """Record an episode's current notes; retire notes gone from files that were read.

        Returns the ids of retired notes (their drafts are marked superseded).
        """
        now = self.clock()
        retired: list[str] = []
        with self.tx() as db:
            db.execute(
                "INSERT INTO episodes(slug, title, url, video_id, transcript, updated) VALUES (?,?,?,?,?,?)"
                " ON CONFLICT(slug) DO UPDATE SET title=excluded.title, url=excluded.url,"
                " video_id=excluded.video_id, transcript=excluded.transcript, updated=excluded.updated",
                (slug, title, url, video_id, transcript, now),
            )
            current = {i.id for i in items}
            returning = [r[0] for r in db.execute("SELECT id FROM notes WHERE episode=? AND active=0", (slug,))
                         if r[0] in current]
            for item, ctx in zip(items, contexts):
                db.execute(
                    "INSERT INTO notes(id, episode, text, kind, section, position, sources, context, active, seen)"
                    " VALUES (?,?,?,?,?,?,?,?,1,?) ON CONFLICT(id) DO UPDATE SET position=excluded.position,"
                    " sources=excluded.sources, context=excluded.context, active=1, seen=excluded.seen,"
                    " section=excluded.section",
                    (item.id, slug, item.text, item.kind, item.section, item.position,
                     json.dumps([[s.path, s.line_start, s.line_end] for s in item.sources]),
                     None if ctx is None else json.dumps(ctx.as_dict()), now),
                )
            for row in db.execute("SELECT id, sources FROM notes WHERE episode=? AND active=1", (slug,)).fetchall():
                if row["id"] in current:
                    continue
                if any(src[0] in read_files for src in json.loads(row["sources"])):
                    retired.append(row["id"])
            for nid in retired:
                db.execute("UPDATE notes SET active=0 WHERE id=?", (nid,))
                db.execute("UPDATE drafts SET superseded=1, updated=? WHERE note_id=? AND superseded=0",
                           (now, nid))
            # A note back in the files (an edit undone, a bullet restored) gets its last result's
            # drafts back, review decisions included: its generation still counts as done, so
            # nothing would regenerate them.
            for nid in returning:
                db.execute(
                    "UPDATE drafts SET superseded=0, updated=? WHERE note_id=? AND generation_id=(SELECT id FROM"
                    " generations WHERE note_id=? AND ok=1 ORDER BY created DESC, rowid DESC LIMIT 1)",
                    (now, nid, nid))
        return retired

    def episodes(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM episodes ORDER BY slug").fetchall()

    # -- generations and the response cache -----------------------------------------------

    def done_specs(self, note_ids: Iterable[str]) -> set[tuple[str, str]]:
        """(note id, spec) pairs that already have a successful generation."""
        ids = list(note_ids)
        out: set[tuple[str, str]] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = f"SELECT note_id, spec FROM generations WHERE ok=1 AND note_id IN ({','.join('?' * len(chunk))})"
            out.update((r[0], r[1]) for r in self.db.execute(q, chunk))
        return out

    def cached_response(self, key: str) -> str | None:
        row = self.db.execute("SELECT body FROM responses WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def record_generation(self, *, gen_id: str, note: NoteItem, spec: str, generator: str, model: str,
                          prompt_version: str, key: str, error: str | None, drafts: list[Draft],
                          tokens_in: int, tokens_out: int, cached_tokens: int, requests: int,
                          from_cache: bool, raw: str | None, run_id: int | None) -> None:
        """Store one note's result atomically: cache entry, generation, drafts, superseding older drafts."""
        now = self.clock()
        with self.tx() as db:
            if error is None and raw is not None and not from_cache:
                db.execute("INSERT OR REPLACE INTO responses(key, model, prompt_version, body, created)"
                           " VALUES (?,?,?,?,?)", (key, model, prompt_version, raw, now))
            db.execute(
                "INSERT INTO generations(id, note_id, spec, generator, model, prompt_version, key, ok, error,"
                " cards, tokens_in, tokens_out, cached_tokens, requests, from_cache, run_id, created)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (gen_id, note.id, spec, generator, model, prompt_version, key, int(error is None), error,
                 len(drafts), tokens_in, tokens_out, cached_tokens, requests, int(from_cache), run_id, now),
            )
            if error is None:
                db.execute("UPDATE drafts SET superseded=1, updated=? WHERE note_id=? AND superseded=0",
                           (now, note.id))
                for d in drafts:
                    self._insert_draft(db, d, gen_id, note.position)

    def _insert_draft(self, db: sqlite3.Connection, d: Draft, gen_id: str, position: int) -> None:
        values = {c: getattr(d, c) for c in _DRAFT_COLS}
        for c in _JSON_COLS:
            values[c] = json.dumps(values[c])
        for c in _BOOL_COLS:
            values[c] = int(values[c])
        values["generation_id"] = gen_id
        values["position"] = position
        cols = list(values)
        db.execute(f"INSERT OR IGNORE INTO drafts({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                   [values[c] for c in cols])

    def failed_generations(self, run_id: int) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT g.*, n.text AS note_text, n.episode FROM generations g JOIN notes n ON n.id = g.note_id"
            " WHERE g.run_id=? AND g.ok=0", (run_id,)).fetchall()

    # -- runs ---------------------------------------------------------------------------

    def start_run(self, generator: str, model: str, prompt_version: str) -> int:
        with self.tx() as db:
            cur = db.execute("INSERT INTO runs(started, generator, model, prompt_version, status)"
                             " VALUES (?,?,?,?, 'running')", (self.clock(), generator, model, prompt_version))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str, cost: float) -> sqlite3.Row:
        with self.tx() as db:
            db.execute(
                "UPDATE runs SET finished=?, status=?, cost=?,"
                " notes=(SELECT count(*) FROM generations WHERE run_id=?),"
                " cards=(SELECT coalesce(sum(cards),0) FROM generations WHERE run_id=? AND ok=1),"
                " requests=(SELECT coalesce(sum(requests),0) FROM generations WHERE run_id=?),"
                " cached=(SELECT count(*) FROM generations WHERE run_id=? AND from_cache=1),"
                " failed=(SELECT count(*) FROM generations WHERE run_id=? AND ok=0),"
                " tokens_in=(SELECT coalesce(sum(tokens_in),0) FROM generations WHERE run_id=?),"
                " tokens_out=(SELECT coalesce(sum(tokens_out),0) FROM generations WHERE run_id=?),"
                " cached_tokens=(SELECT coalesce(sum(cached_tokens),0) FROM generations WHERE run_id=?)"
                " WHERE id=?",
                (self.clock(), status, cost, *([run_id] * 8), run_id),
            )
        return self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()

    def run_usage_by_episode(self, run_id: int) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT n.episode, count(*) AS notes, coalesce(sum(g.cards),0) AS cards,"
            " sum(g.from_cache) AS cached, sum(1 - g.ok) AS failed, sum(g.tokens_in) AS tokens_in,"
            " sum(g.tokens_out) AS tokens_out, sum(g.cached_tokens) AS cached_tokens"
            " FROM generations g JOIN notes n ON n.id = g.note_id WHERE g.run_id=? GROUP BY n.episode",
            (run_id,)).fetchall()

    # -- drafts --------------------------------------------------------------------------

    def drafts(self, *, episode: str | None = None, status: str | None = None,
               include_superseded: bool = True, ids: Iterable[str] | None = None) -> list[Draft]:
        q = "SELECT * FROM drafts WHERE 1=1"
        args: list = []
        if episode:
            q += " AND episode=?"
            args.append(episode)
        if status:
            q += " AND status=?"
            args.append(status)
        if not include_superseded:
            q += " AND superseded=0"
        if ids is not None:
            ids = list(ids)
            q += f" AND id IN ({','.join('?' * len(ids))})"
            args.extend(ids)
        q += " ORDER BY episode, position, created, id"
        return [_row_to_draft(r) for r in self.db.execute(q, args)]

    def draft(self, draft_id: str) -> Draft | None:
        row = self.db.execute("SELECT * FROM drafts WHERE id=?", (draft_id,)).fetchone()
        return _row_to_draft(row) if row else None

    def resolve_ids(self, prefixes: Iterable[str]) -> list[str]:
        """Full draft ids from ids or unambiguous prefixes (as shown in tables)."""
        out = []
        for p in prefixes:
            rows = self.db.execute("SELECT id FROM drafts WHERE id LIKE ? || '%' ESCAPE '\\'",
                                   (p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),)).fetchall()
            if len(rows) != 1:
                raise WorkspaceError(f"no draft with id {p!r}" if not rows else f"draft id {p!r} is ambiguous")
            out.append(rows[0][0])
        return out

    def update_draft(self, draft_id: str, *, action: str, **fields) -> Draft:
        """Change a draft, remembering its previous state so the change can be undone."""
        bad = set(fields) - EDITABLE
        if bad:
            raise ValueError(f"not editable: {sorted(bad)}")
        before = self.draft(draft_id)
        if before is None:
            raise WorkspaceError(f"no draft with id {draft_id!r}")
        now = self.clock()
        sets = dict(fields)
        if "front" in sets or "back" in sets:
            sets["edited"] = True
        for c in _JSON_COLS & set(sets):
            sets[c] = json.dumps(sets[c])
        for c in _BOOL_COLS & set(sets):
            sets[c] = int(sets[c])
        sets["updated"] = now
        with self.tx() as db:
            db.execute("INSERT INTO events(draft_id, action, before, at) VALUES (?,?,?,?)",
                       (draft_id, action, json.dumps(before.as_dict()), now))
            db.execute(f"UPDATE drafts SET {', '.join(f'{k}=?' for k in sets)} WHERE id=?",
                       [*sets.values(), draft_id])
        return self.draft(draft_id)  # type: ignore[return-value]

    def undo_last(self, draft_ids: Iterable[str] | None = None) -> Draft | None:
        """Restore the state before the most recent decision (optionally among some drafts)."""
        q = "SELECT * FROM events"
        args: list = []
        if draft_ids is not None:
            ids = list(draft_ids)
            q += f" WHERE draft_id IN ({','.join('?' * len(ids))})"
            args = ids
        row = self.db.execute(q + " ORDER BY id DESC LIMIT 1", args).fetchone()
        if row is None:
            return None
        b = json.loads(row["before"])
        with self.tx() as db:
            db.execute(
                "UPDATE drafts SET front=?, back=?, status=?, duplicate_of=?, edited=?, updated=? WHERE id=?",
                (b["front"], b["back"], b["status"], b["duplicate_of"], int(b["edited"]), self.clock(),
                 row["draft_id"]),
            )
            db.execute("DELETE FROM events WHERE id=?", (row["id"],))
        return self.draft(row["draft_id"])

    def set_checks(self, results: dict[str, tuple[list[str], float]]) -> None:
        with self.tx() as db:
            db.executemany("UPDATE drafts SET warnings=?, grounding=? WHERE id=?",
                           [(json.dumps(w), g, i) for i, (w, g) in results.items()])

    def set_duplicates(self, mapping: dict[str, str], cleared: Iterable[str]) -> None:
        """Mark drafts as duplicates of others; drafts in `cleared` go back to draft."""
        now = self.clock()
        with self.tx() as db:
            db.executemany("UPDATE drafts SET status='draft', duplicate_of=NULL, updated=? WHERE id=?"
                           " AND status='duplicate'", [(now, i) for i in cleared])
            db.executemany("UPDATE drafts SET status='duplicate', duplicate_of=?, updated=? WHERE id=?"
                           " AND status IN ('draft', 'duplicate')",
                           [(keep, now, dup) for dup, keep in mapping.items()])

    def mark_exported(self, draft_ids: Iterable[str], when: float) -> None:
        with self.tx() as db:
            db.executemany("UPDATE drafts SET exported=? WHERE id=?", [(when, i) for i in draft_ids])
