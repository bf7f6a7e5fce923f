"""Batches: the same requests as a live run, sent through the Batch API at half the price.

A batch is written as JSONL (one line per request, `custom_id` = the request's response-cache
key), uploaded, and created; its id and which note each request is for go into the workspace
before anything else happens, so a process killed after that loses nothing. Collecting reads
each line of the output and error files through the generator's own reply validation and hands
the result to the caller, which stores it exactly as it stores a live reply. Lines are matched
by `custom_id`, in whatever order they come, and a request is imported once.

A batch that expired or was cancelled keeps the results it finished; its other requests are
no longer waited for, so the next run sends them again (live, or in a new batch).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# The Batch API's price, as a share of the live price.
PRICE_FACTOR = 0.5
FINAL_STATES = ("completed", "expired", "cancelled", "failed")
# The id a batch has in the workspace between uploading its file and the server creating it.
PENDING = "pending:"
# Error codes of lines the batch never ran.
UNANSWERED = ("batch_expired", "batch_cancelled")


@dataclass(frozen=True)
class BatchRecord:
    """A batch as the workspace knows it."""

    id: str
    created: float
    model: str
    prompt_version: str
    mode: str
    requests: int
    status: str
    completed: int
    failed: int
    imported: int  # requests whose result is in the workspace
    closed: float | None  # when its results were imported and it was done with

    def as_dict(self) -> dict:
        return {"id": self.id, "created": self.created, "model": self.model, "prompt_version": self.prompt_version,
                "requests": self.requests, "status": self.status, "completed": self.completed,
                "failed": self.failed, "imported": self.imported, "open": self.closed is None}


@dataclass
class Collected:
    """What one collection did."""

    batches: list[str] = field(default_factory=list)  # batches finished and imported
    imported: int = 0  # results stored (cards or recorded failures)
    failed: int = 0  # of those, failures
    skipped: int = 0  # lines already imported, or for notes done or gone since
    unfinished: int = 0  # requests of expired or cancelled batches with no result: sent again next run
    still_open: list[str] = field(default_factory=list)


def split(lines: list[bytes], max_requests: int, max_bytes: int) -> list[list[bytes]]:
    """Lines grouped into files within the Batch API's limits, in order."""
    files: list[list[bytes]] = []
    size = 0
    for line in lines:
        if not files or len(files[-1]) >= max_requests or size + len(line) > max_bytes:
            files.append([])
            size = 0
        files[-1].append(line)
        size += len(line)
    return files


def submit(store, client, generator, jobs: Iterable, prompt_version: str, *,
           max_requests: int | None = None, max_bytes: int | None = None) -> list[str]:
    """Send the jobs' requests as batches; each batch is recorded in the workspace as soon as it exists."""
    from cards.generate import openai_batch

    max_requests = max_requests or openai_batch.MAX_REQUESTS
    max_bytes = max_bytes or openai_batch.MAX_BYTES
    by_key: dict[str, list] = {}
    lines: list[bytes] = []
    for job in jobs:
        line = generator.batch_line(job.request)
        key = line["custom_id"]
        if key not in by_key:  # two notes asking exactly the same thing share one request
            by_key[key] = []
            lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        by_key[key].append(job)
    ids = []
    for n, chunk in enumerate(split(lines, max_requests, max_bytes), 1):
        keys = [json.loads(line)["custom_id"] for line in chunk]
        file_id = client.upload(b"".join(chunk), f"cards-batch-{n}.jsonl")
        # Recorded under the input file before the batch is created, so a process killed in between
        # leaves a row that the next collection resolves (the server lists the batch) or drops.
        pending = PENDING + file_id
        with store.tx() as db:
            db.execute("INSERT INTO batches(id, created, model, prompt_version, mode, input_file, requests, status)"
                       " VALUES (?,?,?,?,?,?,?, 'creating')",
                       (pending, store.clock(), generator.model, prompt_version, generator.mode, file_id, len(chunk)))
            db.executemany("INSERT OR IGNORE INTO batch_requests(batch_id, custom_id, note_id, episode, spec, parts)"
                           " VALUES (?,?,?,?,?,?)",
                           [(pending, key, j.note.id, j.episode.slug, j.spec, json.dumps(j.parts, sort_keys=True))
                            for key in keys for j in by_key[key]])
        batch_id = client.create(file_id, {"made_by": "cards", "prompt_version": prompt_version})
        _created(store, pending, batch_id)
        ids.append(batch_id)
    return ids


def _created(store, pending: str, batch_id: str) -> None:
    with store.tx() as db:
        db.execute("UPDATE batches SET id=?, status='validating' WHERE id=?", (batch_id, pending))
        db.execute("UPDATE batch_requests SET batch_id=? WHERE batch_id=?", (batch_id, pending))


def _resolve_pending(store, client) -> None:
    """Batches whose creation a killed process did not see: adopted if the server has them, else dropped
    (their requests are then sent again by the next run)."""
    for b in batches(store, open_only=True):
        if not b.id.startswith(PENDING):
            continue
        found = client.find(b.id[len(PENDING):])
        if found:
            _created(store, b.id, found)
        else:
            with store.tx() as db:
                db.execute("DELETE FROM batch_requests WHERE batch_id=?", (b.id,))
                db.execute("DELETE FROM batches WHERE id=?", (b.id,))


def batches(store, *, open_only: bool = False) -> list[BatchRecord]:
    q = ("SELECT b.*, (SELECT count(*) FROM batch_requests r WHERE r.batch_id=b.id AND r.imported IS NOT NULL)"
         " AS imported FROM batches b")
    if open_only:
        q += " WHERE b.closed IS NULL"
    rows = store.db.execute(q + " ORDER BY b.created, b.rowid").fetchall()
    return [BatchRecord(r["id"], r["created"], r["model"], r["prompt_version"], r["mode"], r["requests"], r["status"],
                        r["completed"], r["failed"], r["imported"], r["closed"]) for r in rows]


def waiting(store) -> dict[str, str]:
    """Note id -> the spec an open batch is working on for it: these are not sent again meanwhile."""
    return {r[0]: r[1] for r in store.db.execute(
        "SELECT r.note_id, r.spec FROM batch_requests r JOIN batches b ON b.id = r.batch_id"
        " WHERE b.closed IS NULL AND r.imported IS NULL")}


def done_since(store, note_id: str, spec: str, since: float) -> bool:
    """Whether the note got cards for this spec after `since` (a live run while its batch was out)."""
    return store.db.execute("SELECT 1 FROM generations WHERE note_id=? AND spec=? AND ok=1 AND created>? LIMIT 1",
                            (note_id, spec, since)).fetchone() is not None


def _save_state(store, state) -> None:
    with store.tx() as db:
        db.execute("UPDATE batches SET status=?, completed=?, failed=?, output_file=?, error_file=?, checked=?"
                   " WHERE id=?", (state.status, state.completed, state.failed, state.output_file, state.error_file,
                                  store.clock(), state.id))


def refresh(store, client) -> list[BatchRecord]:
    """Ask the server about every open batch and remember what it says."""
    for b in batches(store, open_only=True):
        if not b.id.startswith(PENDING):
            _save_state(store, client.state(b.id))
    return batches(store)


def cancel(store, client, ids: list[str] | None = None) -> list[BatchRecord]:
    """Cancel open batches (all, or those named); what they finished is still collected."""
    known = {b.id: b for b in batches(store)}
    for i in ids or []:
        if i not in known:
            from cards.errors import InputError

            raise InputError(f"no batch {i!r} in the workspace (known: {', '.join(known) or 'none'})")
    for b in batches(store, open_only=True):
        if ids and b.id not in ids:
            continue
        if b.status in ("validating", "in_progress", "finalizing") and not b.id.startswith(PENDING):
            _save_state(store, client.cancel(b.id))
    return batches(store)


def _lines(data: bytes) -> Iterable[tuple[dict, int]]:
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # a broken line cannot be matched to a request; its request is sent again later
        if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
            yield line, len(raw)


# record(note_id, episode, spec, parts, result, batch) -> bool: stores one result; False if the note is
# gone or already done another way.
Record = Callable[[str, str, str, dict, object, BatchRecord], bool]


async def collect(store, client, reader: Callable[[BatchRecord], object], record: Record) -> Collected:
    """Import the results of every finished open batch; open ones are only checked.

    `reader(batch)` gives a generator whose `read_batch_line` validates a line as a live reply is
    validated; `record` stores the result through the same path as a live reply.
    """
    out = Collected()
    _resolve_pending(store, client)
    for b in batches(store, open_only=True):
        state = client.state(b.id)
        _save_state(store, state)
        if state.status not in FINAL_STATES:
            out.still_open.append(b.id)
            continue
        todo: dict[str, list] = {}
        for r in store.db.execute("SELECT custom_id, note_id, episode, spec, parts FROM batch_requests"
                                  " WHERE batch_id=? AND imported IS NULL", (b.id,)):
            todo.setdefault(r[0], []).append((r[1], r[2], r[3], json.loads(r[4])))
        generator = reader(b)
        try:
            for file_id in (state.output_file, state.error_file):
                if not file_id or not todo:
                    continue
                for line, size in _lines(client.content(file_id)):
                    error = line.get("error")
                    if isinstance(error, dict) and error.get("code") in UNANSWERED:
                        continue  # never run: sent again by the next run, not recorded as the note's failure
                    for note_id, episode, spec, parts in todo.pop(line["custom_id"], ()):
                        result = await generator.read_batch_line(note_id, line, b.mode, size)
                        # The result and the mark that it was imported are one transaction: a process killed
                        # between the two cannot import a line twice.
                        with store.tx() as db:
                            stored = record(note_id, episode, spec, parts, result, b)
                            db.execute("UPDATE batch_requests SET imported=? WHERE batch_id=? AND custom_id=?"
                                       " AND note_id=?", (store.clock(), b.id, line["custom_id"], note_id))
                        if stored:
                            out.imported += 1
                            out.failed += 0 if result.ok else 1
                        else:
                            out.skipped += 1
        finally:
            await generator.aclose()
        out.unfinished += sum(len(v) for v in todo.values())
        with store.tx() as db:
            db.execute("UPDATE batches SET closed=? WHERE id=?", (store.clock(), b.id))
        out.batches.append(b.id)
    return out


__all__ = ["BatchRecord", "Collected", "PRICE_FACTOR", "batches", "cancel", "collect", "refresh", "split",
           "submit", "waiting"]
