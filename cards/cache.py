"""What each input file yields, kept in the workspace so an unchanged file is not parsed again.

Entries are keyed by the file's content hash and by the version of the code that
made them: `PARSE_VERSION` (bump it when parsing output changes on purpose) plus
a hash of the parsing modules' source, so an edited parser never serves an old
result even when nobody remembered to bump. Paths are not part of the key: a
moved or copied file is found by its content, and its new path is filled in on
the way out. Episode matchings are kept the same way, keyed by the episodes'
notes and the transcripts' hashes, and so are the transcripts' words as matching
reads them, so that matching again after a new episode does not read every
transcript again.

Values are zlib-compressed JSON, never pickle: a workspace is a file a person may
be handed, and reading one must not run code. An entry that does not decode is
treated as absent. Entries unused for `KEEP_DAYS`, or made by another code
version, are dropped when a run writes new ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from cards.errors import WorkspaceError
from cards.ingest.text import decode, read_bytes, repair
from cards.models import NoteSection, RawItem, Segment, Transcript

PARSE_VERSION = "1"  # bump when notes or transcript parsing changes what it returns
MATCH_VERSION = "1"  # bump when episode matching changes its answers
KEEP_DAYS = 30
_TOUCH_AFTER = 86400.0  # a hit refreshes its entry's last use at most once a day


def _source_hash(*modules: str) -> str:
    """A hash of the named modules' source, or '' where the source is not shipped."""
    import importlib

    h = hashlib.sha256()
    for name in modules:
        path = getattr(importlib.import_module(name), "__file__", None)
        try:
            h.update(Path(path).read_bytes() if path else b"")
        except OSError:
            pass
    return h.hexdigest()[:12]


def parse_version() -> str:
    return f"{PARSE_VERSION}/" + _source_hash("cards.models", "cards.ingest.text", "cards.ingest.notes",
                                             "cards.ingest.transcripts")


def match_version(parsed: str | None = None) -> str:
    """The matching code's version; `parsed` is parse_version(), when the caller has it already."""
    return f"{MATCH_VERSION}/{parsed or parse_version()}/" + _source_hash("cards.episodes", "cards.lexicon")


# -- encoding: plain JSON of the frozen dataclasses, fields by name ---------------------------

_SECTION = [f.name for f in dataclasses.fields(NoteSection)]
_RAW = [f.name for f in dataclasses.fields(RawItem)]
_TRANSCRIPT = [f.name for f in dataclasses.fields(Transcript)]
_SEGMENT = [f.name for f in dataclasses.fields(Segment)]


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def encode_sections(sections: list[NoteSection]) -> dict:
    rows = []
    for s in sections:
        row = {k: getattr(s, k) for k in _SECTION if k not in ("path", "items")}
        row["items"] = [[getattr(i, k) for k in _RAW] for i in s.items]
        rows.append(row)
    return {"sections": rows}


# An entry is read as untrusted: every field must have the type the parsers give it, or it is a miss.
_OPT_STR = (str, type(None))
_OPT_NUM = (int, float, type(None))


def _expect(ok: bool) -> None:
    if not ok:
        raise ValueError("cache entry of another shape")


def _row(r, *types) -> list:
    _expect(isinstance(r, list) and len(r) == len(types)
            and all(isinstance(v, t) and not (isinstance(v, bool) and t is not bool) for v, t in zip(r, types)))
    return r


def decode_sections(data: dict, path: str) -> list[NoteSection]:
    out = []
    for row in data["sections"]:
        items = tuple(RawItem(*_row(r, str, str, _OPT_STR, int, int)) for r in row["items"])
        rest = {k: _tuples(v) for k, v in row.items() if k != "items"}
        _expect(isinstance(rest.get("heading"), _OPT_STR) and isinstance(rest.get("line"), int)
                and isinstance(rest.get("date"), _OPT_STR)
                and all(isinstance(x, str) for x in rest.get("links", ())))
        out.append(NoteSection(path=path, items=items, **rest))
    return out


def encode_transcript(t: Transcript) -> dict:
    row = {k: getattr(t, k) for k in _TRANSCRIPT if k not in ("path", "segments")}
    row["segments"] = [[getattr(s, k) for k in _SEGMENT] for s in t.segments]
    return row


def decode_transcript(data: dict, path: str) -> Transcript:
    from cards.ingest.transcripts import (
        _segment,  # the fast constructor transcripts are parsed with
    )

    make = _segment if _SEGMENT == ["text", "line", "start", "end"] else Segment
    segments = tuple(make(*_row(r, str, int, _OPT_NUM, _OPT_NUM)) for r in data["segments"])
    rest = {k: _tuples(v) for k, v in data.items() if k != "segments"}
    _expect(isinstance(rest.get("format"), str) and all(isinstance(rest.get(k), _OPT_STR)
                                                        for k in ("title", "video_id")))
    return Transcript(path=path, segments=segments, **rest)


def _pack(value) -> bytes:
    return zlib.compress(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), 1)


# What an entry may inflate to: well above the parse of the largest input accepted
# (cards.ingest.text.MAX_INPUT_BYTES), so a crafted entry cannot exhaust memory.
_MAX_ENTRY = 256 * 1024 * 1024


def _unpack(body: bytes):
    inflate = zlib.decompressobj()
    raw = inflate.decompress(body, _MAX_ENTRY)
    if inflate.unconsumed_tail or not inflate.eof:
        raise ValueError("cache entry too large or cut short")
    return json.loads(raw.decode("utf-8"))


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileCache:
    """Parsed files and matchings in one workspace; writes are gathered and made in one transaction."""

    def __init__(self, store=None):
        self.store = store  # None: nothing to read yet, only to write when flushed
        self.parse_version = parse_version()
        self.match_version = match_version(self.parse_version)
        self.hashes: dict[str, str] = {}  # path as given -> content hash, for the files read this run
        self.hits = self.misses = 0
        self._writes: list[tuple[str, str, str, bytes]] = []
        self._touch: list[tuple[str, str, str]] = []
        self._now = time.time()

    # -- lookups --------------------------------------------------------------------

    def _get(self, kind: str, key: str, version: str):
        if self.store is None:
            return None
        try:
            row = self.store.db.execute("SELECT body, used FROM file_cache WHERE kind=? AND hash=? AND version=?",
                                        (kind, key, version)).fetchone()
        except sqlite3.DatabaseError:
            # A damaged workspace is only a missing cache here; the command's own use of it says what is wrong.
            self.store = None
            return None
        if row is None:
            return None
        try:
            value = _unpack(row["body"])
        except (ValueError, zlib.error, TypeError, RecursionError, MemoryError):
            return None  # damaged or foreign: parse again, and the new entry replaces it
        if not isinstance(row["used"], (int, float)) or row["used"] < self._now - _TOUCH_AFTER:
            self._touch.append((kind, key, version))
        return value

    def _put(self, kind: str, key: str, version: str, value) -> None:
        self._writes.append((kind, key, version, _pack(value)))

    def _file(self, path: Path, kind: str, parse: Callable[[str, str], object], encode, decode_):
        data = read_bytes(path)
        self.hashes[str(path)] = _hash(data)
        # The parsers read the file's suffix too (a .srt is read as SRT), so it is part of the key.
        key = self.hashes[str(path)] + Path(path).suffix.lower()
        cached = self._get(kind, key, self.parse_version)
        if cached is not None:
            try:
                value = decode_(cached, str(path))
            except Exception:  # noqa: BLE001 - an entry of any other shape is only a cache miss
                value = None
            if value is not None:
                self.hits += 1
                return value
        self.misses += 1
        value = parse(repair(decode(data, str(path))), str(path))
        self._put(kind, key, self.parse_version, encode(value))
        return value

    def notes(self, path: Path) -> list[NoteSection]:
        """The sections of a notes file, parsed only if this content was never parsed by this code."""
        from cards.ingest.notes import parse_notes_text

        return self._file(path, "notes", parse_notes_text, encode_sections, decode_sections)

    def transcript(self, path: Path) -> Transcript:
        """A parsed transcript, parsed only if this content was never parsed by this code."""
        from cards.ingest.transcripts import parse_transcript_text

        return self._file(path, "transcript", parse_transcript_text, encode_transcript, decode_transcript)

    def match(self, groups: list[tuple[str, list[str], set[str]]], transcripts: list[Transcript], compute):
        """`compute(groups, transcripts, tokens=...)`, remembered for the same notes against the same
        transcripts; `tokens` gives each transcript's words from the cache."""
        hashes = [self.hashes.get(t.path) for t in transcripts]
        if None in hashes:
            return compute(groups, transcripts)
        spec = [[slug, texts, sorted(names)] for slug, texts, names in groups]
        key = _hash(json.dumps([spec, [[t.path, h] for t, h in zip(transcripts, hashes)]],
                               ensure_ascii=False).encode("utf-8"))
        cached = self._get("match", key, self.match_version)
        by_path = {t.path: t for t in transcripts}
        try:
            out = {slug: (by_path[p], float(conf)) for slug, (p, conf) in cached.items()}
        except Exception:  # noqa: BLE001 - none, or an entry of another shape: a miss
            out = None
        if out is not None:
            self.hits += 1
            return out
        self.misses += 1
        out = compute(groups, transcripts, tokens=self._words)
        self._put("match", key, self.match_version, {slug: [t.path, conf] for slug, (t, conf) in out.items()})
        return out

    def _words(self, transcript: Transcript) -> list[str]:
        """A transcript's words as matching reads them, kept so that matching again after a new
        episode does not read every transcript again."""
        from cards.lexicon import words

        key = self.hashes[transcript.path]
        cached = self._get("words", key, self.match_version)
        if isinstance(cached, str):
            return cached.split()
        found = words(transcript.text)
        self._put("words", key, self.match_version, " ".join(found))
        return found

    # -- writing --------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return bool(self._writes or self._touch)

    def flush(self, store=None) -> None:
        """Write what this run parsed into `store` (or the one read from); drop entries of other
        code versions and long unused ones. A workspace that cannot be written only loses the cache.
        """
        store = store or self.store
        if store is None or not self.dirty or getattr(store, "readonly", False):
            return
        try:
            with store.tx() as db:
                db.executemany("INSERT OR REPLACE INTO file_cache(kind, hash, version, body, used)"
                               " VALUES (?,?,?,?,?)", [(*w, self._now) for w in self._writes])
                db.executemany("UPDATE file_cache SET used=? WHERE kind=? AND hash=? AND version=?",
                               [(self._now, *t) for t in self._touch])
                if self._writes:
                    db.execute("DELETE FROM file_cache WHERE (kind IN ('match', 'words') AND version<>?)"
                               " OR (kind NOT IN ('match', 'words') AND version<>?) OR used<?",
                               (self.match_version, self.parse_version, self._now - KEEP_DAYS * 86400))
        except (WorkspaceError, sqlite3.DatabaseError):
            pass
        self._writes, self._touch = [], []


def open_store(workspace: Path):
    """The workspace to read the cache from, or None when there is no usable one.

    Only a workspace already at this code's schema: reading notes never creates
    or upgrades one (the commands that write the workspace do that, and say what
    is wrong with one they cannot use).
    """
    from cards.migrations import APPLICATION_ID, SCHEMA_VERSION
    from cards.store import DB_NAME, Store

    path = Path(workspace) / DB_NAME
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            app_id, version = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("application_id", "user_version"))
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None
    if app_id != APPLICATION_ID or version != SCHEMA_VERSION:
        return None
    # The parse cache is written back where it can be; a read-only workspace (a backup mount) is read.
    writable = os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)
    try:
        return Store(workspace, create=False, readonly=not writable)
    except WorkspaceError:
        return None
