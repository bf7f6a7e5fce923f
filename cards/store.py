"""The workspace: one SQLite file holding notes, drafts, review decisions, the LLM cache and runs.

Every write is its own short transaction, so an interrupted run keeps all that
finished. WAL mode lets the review app read while a run writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cards import migrations
from cards.errors import BusyError, SupersededError, WorkspaceError, WorkspaceFullError
from cards.models import Context, Draft, NoteItem, shorten

DB_NAME = "cards.sqlite"
LOCK_NAME = "cards.lock"
SCHEMA_VERSION = migrations.SCHEMA_VERSION

_DRAFT_COLS = (
    "id", "note_id", "episode", "kind", "front", "back", "quote", "tags", "generator", "model",
    "prompt_version", "status", "duplicate_of", "warnings", "grounding", "edited", "superseded",
    "note_text", "context_text", "context_start", "context_end", "created", "updated", "exported",
    "lineage", "revision_of", "changed", "claim", "reason",
)
_JSON_COLS = {"tags", "warnings"}
_BOOL_COLS = {"edited", "superseded"}
EDITABLE = {"front", "back", "status", "duplicate_of", "warnings", "grounding", "superseded", "exported"}
# What an undo puts back: the review state and text of each draft a decision touched.
_UNDOABLE = ("front", "back", "status", "duplicate_of", "edited", "superseded", "revision_of", "changed")


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


@dataclass(frozen=True)
class EpisodeRecord:
    """An episode as the workspace remembers it."""

    slug: str
    title: str
    titles: tuple[str, ...]  # every title it has had, oldest first
    url: str | None
    video_id: str | None
    transcript: str | None
    transcript_hash: str | None
    missing: bool  # gone from notes files that were read
    deck: str | None = None  # the title its deck was first exported under, which Anki knows it by

    @property
    def deck_title(self) -> str:
        """The title for the episode's deck and its cards' Episode line: the same for its whole life."""
        return self.deck or self.title


def _row_to_episode(row: sqlite3.Row) -> EpisodeRecord:
    return EpisodeRecord(row["slug"], row["title"], tuple(json.loads(row["titles"] or "[]")), row["url"],
                         row["video_id"], row["transcript"], row["transcript_hash"], bool(row["missing"]),
                         row["deck"])


@dataclass(frozen=True)
class GenerationState:
    """A note's latest successful generation (spec None if none) and whether a later attempt failed."""

    spec: str | None
    parts_json: str | None  # what the spec was made of (see cards.models.generation_spec)
    failed_since: bool

    @property
    def parts(self) -> dict | None:
        return json.loads(self.parts_json) if self.parts_json else None


@dataclass(frozen=True)
class StoredNote:
    """A note as the workspace last saw it, with the passage it was aligned to."""

    id: str
    episode: str
    text: str
    position: int
    sources: tuple[str, ...]  # file paths
    spans: tuple[tuple[str, int, int], ...]  # (path, first line, last line) per source
    section: str | None
    context: Context | None
    active: bool
    predecessor: str | None
    align_version: str | None


def _row_to_note(row: sqlite3.Row) -> StoredNote:
    ctx = json.loads(row["context"]) if row["context"] else None
    spans = tuple((src[0], src[1], src[2]) for src in json.loads(row["sources"]))
    return StoredNote(row["id"], row["episode"], row["text"], row["position"], tuple(src[0] for src in spans),
                      spans, row["section"], None if ctx is None else Context.from_dict(ctx), bool(row["active"]),
                      row["predecessor"], row["align_version"])


def _open_readonly(path: Path) -> sqlite3.Connection:
    """The database opened for reading only. Where nothing may be created beside it (a read-only mount
    or folder), SQLite cannot make the WAL index it needs to read, so the file is opened immutable:
    nothing else can be writing it there either."""
    uri = path.resolve().as_uri()
    if os.access(path.parent, os.W_OK) and os.access(path, os.W_OK):
        return sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, isolation_level=None)
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size:
        # Commits still in the WAL (a copy taken while a run wrote) are read when SQLite can use the WAL
        # index beside it; immutable would not see them.
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, isolation_level=None)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)


DAMAGED_HINT = "restore it from a backup, or start a new workspace with --workspace DIR"


def _full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def damaged(exc: sqlite3.Error, path: Path) -> WorkspaceError:
    """The one-line error for a database error met while using a workspace."""
    if _full(exc):
        return WorkspaceFullError(f"cannot write workspace: {exc}", path=str(path))
    if isinstance(exc, sqlite3.OperationalError):  # locked, disk I/O: not damage
        return WorkspaceError(f"workspace database error: {exc}", path=str(path))
    return WorkspaceError(f"workspace database is damaged ({exc}); {DAMAGED_HINT}", path=str(path))


class Store:
    """A workspace folder's database. Use as a context manager or call close()."""

    # The clock every Store uses unless given one; tests replace it to order events deterministically.
    default_clock = staticmethod(time.time)

    def __init__(self, folder: Path, *, create: bool = True, clock=None, readonly: bool = False):
        """`readonly` opens the database for reading only (the commands that only show things), so a
        workspace on a read-only mount or a backup still answers; a write then fails in one line."""
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        self.clock = clock or self.default_clock
        self.readonly = readonly
        if (readonly or not create) and not self.path.exists():
            raise WorkspaceError("no workspace here yet (run `cards generate` first)", path=str(self.path))
        self._depth = 0
        self._verified = False
        try:
            if readonly:
                self.db = _open_readonly(self.path)
            else:
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
            if readonly:
                if version < SCHEMA_VERSION:
                    self.db.close()
                    raise WorkspaceError(f"workspace schema {version} needs upgrading to {SCHEMA_VERSION}, "
                                         "which this read-only command does not do; run `cards generate` "
                                         "once where the workspace is writable", path=str(self.path))
            else:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                if version < SCHEMA_VERSION:
                    migrations.migrate(self.db, self.path)
        except sqlite3.OperationalError as e:
            raise WorkspaceError(f"cannot open workspace: {e}", path=str(self.path)) from None
        except sqlite3.DatabaseError as e:
            raise damaged(e, self.path) from None
        except OSError as e:
            raise WorkspaceError(f"cannot create workspace: {e.strerror}", path=str(self.folder)) from None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        except sqlite3.Error:
            pass
        # A damaged page can surface in any query; whatever read it, it is one line naming the workspace.
        if isinstance(exc, sqlite3.DatabaseError):
            raise damaged(exc, self.path) from None

    def close(self) -> None:
        self.db.close()

    def verify(self) -> None:
        """Refuse a damaged workspace before writing to it: `PRAGMA quick_check` reads every page, so damage
        in the middle of the file (which the queries of a run may never touch) is found before more is
        written on top of it. Done once per Store; the first write does it if the command did not."""
        if self._verified:
            return
        try:
            rows = [r[0] for r in self.db.execute("PRAGMA quick_check(3)")]
        except sqlite3.DatabaseError as e:
            raise damaged(e, self.path) from None
        if rows != ["ok"]:
            # SQLite's report starts "*** in database main ***" and runs over lines: one line, the first finding.
            found = " ".join(" ".join(rows).replace("*** in database main ***", "").split())
            raise damaged(sqlite3.DatabaseError(f"quick_check: {shorten(found, 100)}"), self.path)
        self._verified = True

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic write; nested calls are savepoints. Disk-full and similar errors become a WorkspaceError."""
        if not self._depth and not self.readonly:
            self.verify()
        if self._depth:
            name = f"sp{self._depth}"
            self.db.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self.db
            except BaseException:
                if self.db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
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
                if self.db.in_transaction:  # else SQLite rolled back already, and says why in what is raised
                    self.db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as e:
            error = WorkspaceFullError if _full(e) else WorkspaceError
            raise error(f"cannot write workspace: {e}", path=str(self.path)) from None

    @contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        """Hold the workspace's run lock; a second run at the same time is refused, not doubled.

        The lock is an advisory lock on `cards.lock` beside the database: the operating
        system releases it when the process ends, however it ends.
        """
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform
            yield
            return
        path = self.folder / LOCK_NAME
        try:
            fh = open(path, "a+")
        except OSError as e:
            raise WorkspaceError(f"cannot create lock: {e.strerror}", path=str(path)) from None
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise BusyError(f"another {what} is using this workspace; wait for it to finish",
                                path=str(self.folder)) from None
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        finally:
            fh.close()

    # -- notes and episodes ----------------------------------------------------------

    def episodes(self) -> list[EpisodeRecord]:
        return [_row_to_episode(r) for r in self.db.execute("SELECT * FROM episodes ORDER BY slug")]

    def episode(self, slug: str) -> EpisodeRecord | None:
        row = self.db.execute("SELECT * FROM episodes WHERE slug=?", (slug,)).fetchone()
        return _row_to_episode(row) if row else None

    def notes(self, episode: str) -> dict[str, StoredNote]:
        """Every note the workspace has seen for an episode, active or retired, by id."""
        return {r["id"]: _row_to_note(r)
                for r in self.db.execute("SELECT * FROM notes WHERE episode=? ORDER BY position", (episode,))}

    def active_note_texts(self) -> dict[str, list[str]]:
        """Each episode's current note texts, for recognising an episode under a reworded heading."""
        out: dict[str, list[str]] = {}
        for r in self.db.execute("SELECT episode, text FROM notes WHERE active=1"):
            out.setdefault(r[0], []).append(r[1])
        return out

    def sync_episode(self, ep, contexts: list[Context | None], changes, *, align_versions: list[str | None],
                     transcript_hash: str | None, waiting: set[str] = frozenset()) -> None:
        """Record an episode's current notes and passages, and retire notes gone from files that were read.

        `changes` is `cards.lineage.note_changes` for these items. A retired note that was
        reworded keeps its cards until the reworded note is generated (they carry its
        lineages); one that was deleted has its cards retired, ending their lineages.
        Notes `waiting` for a passage are not recorded yet, so they are new when it comes.
        """
        now = self.clock()
        with self.tx() as db:
            known = self.episode(ep.slug)
            titles = list(known.titles) if known else []
            if ep.title not in titles:
                titles.append(ep.title)
            db.execute(
                "INSERT INTO episodes(slug, title, url, video_id, transcript, updated, titles, transcript_hash,"
                " missing) VALUES (?,?,?,?,?,?,?,?,0) ON CONFLICT(slug) DO UPDATE SET title=excluded.title,"
                " url=coalesce(excluded.url, url), video_id=coalesce(excluded.video_id, video_id),"
                " transcript=coalesce(excluded.transcript, transcript), updated=excluded.updated,"
                " titles=excluded.titles, transcript_hash=coalesce(excluded.transcript_hash, transcript_hash),"
                " missing=0",
                (ep.slug, ep.title, ep.url, ep.video_id, ep.transcript.path if ep.transcript else None, now,
                 json.dumps(titles), transcript_hash),
            )
            for item, ctx, version in zip(ep.items, contexts, align_versions):
                if item.id in waiting:
                    continue
                db.execute(
                    "INSERT INTO notes(id, episode, text, kind, section, position, sources, context, active, seen,"
                    " predecessor, align_version) VALUES (?,?,?,?,?,?,?,?,1,?,?,?) ON CONFLICT(id) DO UPDATE SET"
                    " position=excluded.position, sources=excluded.sources, context=excluded.context, active=1,"
                    " seen=excluded.seen, section=excluded.section,"
                    " predecessor=coalesce(excluded.predecessor, predecessor), align_version=excluded.align_version",
                    (item.id, ep.slug, item.text, item.kind, item.section, item.position,
                     json.dumps([[s.path, s.line_start, s.line_end] for s in item.sources]),
                     None if ctx is None else json.dumps(ctx.as_dict()), now, changes.edited.get(item.id), version),
                )
            # A bullet moved here from another heading brings its cards: they belong to this
            # episode (and deck) from now on, and their Episode line changed, so Anki is told.
            for nid, old in changes.moved_in.items():
                if nid in waiting:
                    continue
                db.execute("UPDATE lineages SET episode=? WHERE guid IN"
                           " (SELECT lineage FROM drafts WHERE note_id=? AND superseded=0)", (ep.slug, old))
                db.execute("UPDATE drafts SET episode=?, changed=?, updated=? WHERE note_id=? AND superseded=0",
                           (ep.slug, now, now, old))
            reworded = set(changes.edited.values()) | changes.moved_out
            for nid in changes.retired:
                db.execute("UPDATE notes SET active=0 WHERE id=?", (nid,))
                if nid not in reworded:
                    db.execute("UPDATE drafts SET superseded=1, updated=? WHERE note_id=? AND superseded=0",
                               (now, nid))
            # A bullet back as it was (an edit undone, a bullet restored) gets its last result's cards
            # back, unless their lineages went on without it: its generation still counts as done.
            for nid in changes.returning:
                if nid in changes.edited:
                    # Its edit was undone: revisions that edit prompted are moot.
                    db.execute(
                        "UPDATE drafts SET superseded=1, updated=? WHERE note_id=? AND superseded=0 AND revision_of IN"
                        " (SELECT id FROM drafts WHERE note_id=?)", (now, changes.edited[nid], nid))
                    continue
                db.execute(
                    "UPDATE drafts SET superseded=0, updated=? WHERE note_id=? AND revision_of IS NULL"
                    " AND generation_id=(SELECT id FROM generations WHERE note_id=? AND ok=1"
                    " ORDER BY created DESC, rowid DESC LIMIT 1)"
                    " AND NOT EXISTS (SELECT 1 FROM drafts o WHERE o.lineage=drafts.lineage AND o.superseded=0)",
                    (now, nid, nid))

    def mark_missing(self, slugs: Iterable[str]) -> None:
        """Episodes gone from notes files that were read: their notes retire and their cards' lineages end."""
        now = self.clock()
        with self.tx() as db:
            for slug in slugs:
                db.execute("UPDATE episodes SET missing=1, updated=? WHERE slug=?", (now, slug))
                db.execute("UPDATE notes SET active=0 WHERE episode=?", (slug,))
                db.execute("UPDATE drafts SET superseded=1, updated=? WHERE episode=? AND superseded=0", (now, slug))

    def note_sources(self) -> dict[str, set[str]]:
        """Each episode's notes files, as last read."""
        out: dict[str, set[str]] = {}
        for r in self.db.execute("SELECT episode, sources FROM notes WHERE active=1"):
            out.setdefault(r[0], set()).update(src[0] for src in json.loads(r[1]))
        return out

    # -- generations and the response cache -----------------------------------------------

    def generation_states(self, note_ids: Iterable[str]) -> dict[str, GenerationState]:
        """Each note's latest successful generation, and whether an attempt since then failed."""
        ids = list(note_ids)
        out: dict[str, GenerationState] = {}
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            q = (f"SELECT note_id, spec, parts, ok, created FROM generations"
                 f" WHERE note_id IN ({','.join('?' * len(chunk))}) ORDER BY created, rowid")
            for note_id, spec, parts, ok, created in self.db.execute(q, chunk):
                if ok:
                    out[note_id] = GenerationState(spec, parts, False)
                else:
                    prev = out.get(note_id)
                    out[note_id] = GenerationState(prev.spec if prev else None, prev.parts_json if prev else None,
                                                   True)
        return out

    def cache_response(self, key: str, model: str, prompt_version: str, body: str) -> None:
        """Keep a reply that is not a note's generation (the critic's) in the response cache."""
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO responses(key, model, prompt_version, body, created)"
                       " VALUES (?,?,?,?,?)", (key, model, prompt_version, body, self.clock()))

    def cached_response(self, key: str) -> str | None:
        row = self.db.execute("SELECT body FROM responses WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def _note_chain(self, note_id: str) -> list[str]:
        """The note and the bullets it was edited from, newest first."""
        chain = [note_id]
        while len(chain) < 50:
            row = self.db.execute("SELECT predecessor FROM notes WHERE id=?", (chain[-1],)).fetchone()
            if row is None or not row[0] or row[0] in chain:
                break
            chain.append(row[0])
        return chain

    def record_generation(self, *, gen_id: str, note: NoteItem, spec: str, parts: dict, generator: str, model: str,
                          prompt_version: str, key: str, error: str | None, drafts: list[Draft],
                          tokens_in: int, tokens_out: int, cached_tokens: int, requests: int,
                          from_cache: bool, raw: str | None, run_id: int | None) -> None:
        """Store one note's result atomically: cache entry, generation, and its cards carried into their lineages."""
        from cards import lineage

        now = self.clock()
        with self.tx() as db:
            if error is None and raw is not None and not from_cache:
                db.execute("INSERT OR REPLACE INTO responses(key, model, prompt_version, body, created)"
                           " VALUES (?,?,?,?,?)", (key, model, prompt_version, raw, now))
            db.execute(
                "INSERT INTO generations(id, note_id, spec, generator, model, prompt_version, key, ok, error,"
                " cards, tokens_in, tokens_out, cached_tokens, requests, from_cache, run_id, created, parts)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (gen_id, note.id, spec, generator, model, prompt_version, key, int(error is None), error,
                 sum(1 for d in drafts if d.status != "rejected"), tokens_in, tokens_out, cached_tokens, requests, int(from_cache), run_id, now,
                 json.dumps(parts, sort_keys=True)),
            )
            if error is None:
                chain = self._note_chain(note.id)
                live = self.drafts(note_ids=chain, include_superseded=False)
                current = [d for d in live if d.revision_of is None]
                pending = [d for d in live if d.revision_of is not None]
                lineage.carry_forward(db, current, drafts, now, pending)
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
               include_superseded: bool = True, ids: Iterable[str] | None = None,
               note_ids: Iterable[str] | None = None) -> list[Draft]:
        q = "SELECT * FROM drafts WHERE 1=1"
        args: list = []
        if note_ids is not None:
            note_ids = list(note_ids)
            q += f" AND note_id IN ({','.join('?' * len(note_ids))})"
            args.extend(note_ids)
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
        q += " ORDER BY episode, position, created, rowid"
        return [_row_to_draft(r) for r in self.db.execute(q, args)]

    def draft(self, draft_id: str) -> Draft | None:
        row = self.db.execute("SELECT * FROM drafts WHERE id=?", (draft_id,)).fetchone()
        return _row_to_draft(row) if row else None

    def resolve_ids(self, prefixes: Iterable[str]) -> list[str]:
        """Full draft ids from ids or unambiguous prefixes (as shown in tables)."""
        out = []
        for p in prefixes:
            rows = self.db.execute("SELECT id FROM drafts WHERE id LIKE ? || '%' ESCAPE '\\' ORDER BY id",
                                   (p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),)).fetchall()
            if not rows:
                raise WorkspaceError(f"no draft with id {p!r}")
            if len(rows) > 1:
                shown = ", ".join(r[0][:12] for r in rows[:5])
                shown += f" and {len(rows) - 5} more" if len(rows) > 5 else ""
                raise WorkspaceError(f"draft id {p!r} is ambiguous: it starts {len(rows)} draft ids ({shown});"
                                     " give more characters")
            out.append(rows[0][0])
        return out

    def _apply(self, db: sqlite3.Connection, action: str, changes: list[tuple[str, dict]], now: float) -> None:
        """Write changes to drafts, remembering each one's previous state as one undoable group."""
        grp = db.execute("SELECT coalesce(max(grp), 0) + 1 FROM events").fetchone()[0]
        for draft_id, sets in changes:
            before = self.draft(draft_id)
            if before is None:
                raise WorkspaceError(f"no draft with id {draft_id!r}")
            db.execute("INSERT INTO events(draft_id, action, before, at, grp) VALUES (?,?,?,?,?)",
                       (draft_id, action, json.dumps({k: getattr(before, k) for k in _UNDOABLE}), now, grp))
            sets = {k: (json.dumps(v) if k in _JSON_COLS else int(v) if k in _BOOL_COLS else v)
                    for k, v in sets.items()}
            sets["updated"] = now
            db.execute(f"UPDATE drafts SET {', '.join(f'{k}=?' for k in sets)} WHERE id=?",
                       [*sets.values(), draft_id])

    def update_draft(self, draft_id: str, *, action: str, **fields) -> Draft:
        """Change a draft, remembering its previous state so the change can be undone.

        Approving or rejecting goes through `cards.lineage.decide`, so a pending revision
        is accepted (or dropped) as a whole; an edit of the text dates the card's content.
        """
        from cards import lineage

        bad = set(fields) - EDITABLE
        if bad:
            raise ValueError(f"not editable: {sorted(bad)}")
        with self.tx() as db:
            # Read inside the write transaction: a generate run may supersede the card meanwhile.
            current = self.draft(draft_id)
            if current is None:
                raise WorkspaceError(f"no draft with id {draft_id!r}")
            problem = lineage.decidable(db, current)
            if problem:
                raise SupersededError(problem)
            now = self.clock()
            sets = dict(fields)
            if "front" in sets or "back" in sets:
                sets.update(edited=True, changed=now)
            changes = [(draft_id, sets)]
            if sets.get("status") in ("approved", "rejected"):
                status = sets.pop("status")
                changes = lineage.decide(current, status, now)
                if sets:
                    changes.append((draft_id, sets))
            self._apply(db, action, changes, now)
        return self.draft(draft_id)  # type: ignore[return-value]

    def redecide(self, old_id: str, new_id: str, status: str, *, action: str) -> None:
        """Decide a revision pair again (`cards.lineage.redecide`), as one undoable change."""
        from cards import lineage

        old, new = self.draft(old_id), self.draft(new_id)
        if old is None or new is None:
            raise WorkspaceError(f"no draft with id {old_id if old is None else new_id!r}")
        now = self.clock()
        with self.tx() as db:
            self._apply(db, action, lineage.redecide(old, new, status, now), now)

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
        group = (self.db.execute("SELECT * FROM events WHERE grp=? ORDER BY id DESC", (row["grp"],)).fetchall()
                 if row["grp"] is not None else [row])
        with self.tx() as db:
            for ev in group:
                b = json.loads(ev["before"])
                sets = {k: (int(b[k]) if k in _BOOL_COLS else b[k]) for k in _UNDOABLE if k in b}
                sets["updated"] = self.clock()
                db.execute(f"UPDATE drafts SET {', '.join(f'{k}=?' for k in sets)} WHERE id=?",
                           [*sets.values(), ev["draft_id"]])
                db.execute("DELETE FROM events WHERE id=?", (ev["id"],))
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

    # -- lineages and export ---------------------------------------------------------------

    def lineages(self, episode: str | None = None) -> dict[str, dict[str, sqlite3.Row]]:
        """Lineage rows by episode, then GUID (one episode's, or all)."""
        q, args = "SELECT * FROM lineages", ()
        if episode is not None:
            q, args = q + " WHERE episode=?", (episode,)
        out: dict[str, dict[str, sqlite3.Row]] = {}
        for r in self.db.execute(q, args):
            out.setdefault(r["episode"], {})[r["guid"]] = r
        return out

    def export_plan(self, episode: str, include_drafts: bool, media_changed: dict[str, float] | None = None):
        """What exporting this episode writes and what Anki will make of it (`cards.lineage.ExportPlan`)."""
        from cards import lineage

        return lineage.export_plan(self.drafts(episode=episode, include_superseded=False),
                                   self.lineages(episode).get(episode, {}), include_drafts, media_changed)

    def record_export(self, cards: list[Draft], when: float, *, episode: str | None = None,
                      deck: str | None = None) -> None:
        """Remember what Anki was given, and the deck title an episode's first export used."""
        from cards import lineage

        with self.tx() as db:
            lineage.record_export(db, cards, when)
            if episode is not None and deck is not None:
                db.execute("UPDATE episodes SET deck=coalesce(deck, ?) WHERE slug=?", (deck, episode))
