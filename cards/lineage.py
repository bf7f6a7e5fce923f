"""Card lineage: a card's identity in Anki, carried through every regeneration of its note.

A lineage is one Anki note. Its GUID is the id of the first draft that started it,
and every later draft that replaces that card takes the same GUID ("replace and
carry forward"). At any time a lineage has at most one *current* draft (what export
writes) and at most one *pending revision* (a regenerated card waiting for review).

When a note is regenerated, for whatever reason (an edited bullet, a new prompt or
model, offline to LLM, --force, a refreshed passage), each new card is matched to the
previous card it corresponds to: by content first, by position as the tie-break.

- A matched card takes over its predecessor's lineage (its GUID). If the predecessor
  was approved, edited or exported, the new card is a pending revision: export keeps
  writing the predecessor until the revision is accepted, and rejecting it keeps the
  old text. Otherwise the new card simply replaces the predecessor.
- A new card with no predecessor starts a lineage; a predecessor with no successor ends
  its lineage. An ended (or rejected) lineage that was ever exported is *left in
  Anki*: Anki never deletes on import, so the listener is told its GUID and front.

Fields carried forward from the predecessor: the GUID, the lineage's creation time
and a rejection of the same card. Fields taken fresh: kind, front, back, quote, tags,
passage. `changed` is the time the card's content last changed in `cards` (creation,
an edit, an accepted revision); export writes it as the Anki note's modification
time, so Anki's default import ("update if newer") leaves the listener's own edits in
Anki alone until the card really changes here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from cards.check import content_stems, unclozed
from cards.models import Draft, normalise

# Two cards about the same fact share at least this share of their content words.
MATCH_THRESHOLD = 0.3
# Above this, a regenerated card is the same card (a rejection carries over).
SAME_CARD = 0.9


# -- matching (pure) ------------------------------------------------------------------------------

def _stems(d: Draft) -> set[str]:
    return content_stems(f"{unclozed(d.front)} {d.back}")


def similarity(a: Draft, b: Draft) -> float:
    """Share of content words two cards have in common (Jaccard over light stems), 0..1."""
    if normalise(a.front) == normalise(b.front) and normalise(a.back) == normalise(b.back):
        return 1.0
    sa, sb = _stems(a), _stems(b)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


def match(old: Sequence[Draft], new: Sequence[Draft],
          threshold: float = MATCH_THRESHOLD) -> dict[int, tuple[int, float]]:
    """For each new card (by index), the old card it continues and how alike they are.

    Greedy over all pairs from the most alike down; equal similarity goes to the pair
    whose positions are closest. Each old card continues at most one new card.
    """
    pairs = []
    for i, n in enumerate(new):
        for j, o in enumerate(old):
            s = similarity(o, n)
            if s >= threshold:
                pairs.append((-s, abs(i - j), i, j, s))
    pairs.sort()
    out: dict[int, tuple[int, float]] = {}
    used: set[int] = set()
    for _, _, i, j, s in pairs:
        if i not in out and j not in used:
            out[i] = (j, s)
            used.add(j)
    return out


def same_content(a: Draft, b: Draft) -> bool:
    return (a.kind == b.kind and normalise(a.front) == normalise(b.front)
            and normalise(a.back) == normalise(b.back))


# -- what the workspace knows about lineages ------------------------------------------------------

def needs_review(old: Draft, exported: bool) -> bool:
    """Whether a replacement for this card must wait for the listener: it was decided or is in Anki."""
    return old.status == "approved" or old.edited or exported


@dataclass
class Carried:
    """The outcome of carrying a note's cards forward, for the run summary."""

    continued: int = 0
    revisions: int = 0
    started: int = 0
    ended: list[str] = field(default_factory=list)  # GUIDs


def _exported_guids(db: sqlite3.Connection, guids: Iterable[str]) -> set[str]:
    guids = list(guids)
    if not guids:
        return set()
    q = f"SELECT guid FROM lineages WHERE exported IS NOT NULL AND guid IN ({','.join('?' * len(guids))})"
    return {r[0] for r in db.execute(q, guids)}


def carry_forward(db: sqlite3.Connection, old: list[Draft], new: list[Draft], now: float,
                  pending: list[Draft]) -> Carried:
    """Give each new draft its lineage and status; retire what it replaces. Runs inside the caller's transaction.

    `old` are the current drafts of the note (and of the bullet it was edited from),
    `pending` their pending revisions, which a newer generation replaces. The new
    drafts are modified in place and must be inserted by the caller.
    """
    out = Carried()
    exported = _exported_guids(db, (o.lineage for o in old))
    matched = match(old, new)
    superseded: list[str] = [p.id for p in pending]
    kept: set[int] = set()
    for i, n in enumerate(new):
        if i not in matched:
            n.lineage = n.id
            out.started += 1
            db.execute("INSERT OR IGNORE INTO lineages(guid, episode, created) VALUES (?,?,?)",
                       (n.id, n.episode, now))
            continue
        j, sim = matched[i]
        o = old[j]
        kept.add(j)
        n.lineage = o.lineage
        n.created = o.created
        if o.status == "rejected":
            n.status = "rejected" if sim >= SAME_CARD else "draft"
            superseded.append(o.id)
            out.continued += 1
        elif needs_review(o, o.lineage in exported):
            if same_content(o, n):
                n.superseded = True  # nothing to review: the current card already says this
            else:
                n.revision_of = o.id
                out.revisions += 1
        else:
            superseded.append(o.id)
            out.continued += 1
    for j, o in enumerate(old):
        if j not in kept:
            superseded.append(o.id)
            out.ended.append(o.lineage)
    db.executemany("UPDATE drafts SET superseded=1, updated=? WHERE id=?", [(now, i) for i in superseded])
    return out


def decide(draft: Draft, status: str, now: float) -> list[tuple[str, dict]]:
    """The changes that approve or reject a draft; a pending revision is accepted or dropped whole.

    Accepting a revision retires the card it revises and dates the content change now,
    so the next export updates the note in Anki. Rejecting one keeps the old card.
    """
    if draft.revision_of and status == "approved":
        return [(draft.revision_of, {"superseded": True}),
                (draft.id, {"status": "approved", "revision_of": None, "changed": now})]
    if draft.revision_of and status == "rejected":
        return [(draft.id, {"status": "rejected", "superseded": True})]
    return [(draft.id, {"status": status})]


def redecide(old: Draft, new: Draft, status: str, now: float) -> list[tuple[str, dict]]:
    """The changes that decide a revision again, whatever was decided before.

    Approving leaves the new card the only live one; rejecting brings the old card
    back and keeps the new one as a dropped revision of it. Either way the lineage's
    content changed now, so the next export tells Anki.
    """
    if status == "approved":
        return [(old.id, {"superseded": True}),
                (new.id, {"status": "approved", "superseded": False, "revision_of": None, "changed": now})]
    return [(old.id, {"superseded": False, "changed": now}),
            (new.id, {"status": "rejected", "superseded": True, "revision_of": old.id})]


# -- export ---------------------------------------------------------------------------------------

@dataclass
class ExportPlan:
    """What an export writes for one episode and what Anki will do with it."""

    cards: list[Draft] = field(default_factory=list)  # current drafts, GUID = draft.lineage
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    left_in_anki: list[dict] = field(default_factory=list)  # {"guid", "front", "episode"}
    left_out: int = 0  # undecided drafts not exported (without --include-drafts)
    pending_revisions: int = 0

    def counts(self) -> dict:
        return {"new": self.new, "updated": self.updated, "unchanged": self.unchanged,
                "left_in_anki": len(self.left_in_anki), "unreviewed_left_out": self.left_out,
                "pending_revisions": self.pending_revisions}


_EXPORTABLE = {"approved", "draft"}


def export_plan(drafts: list[Draft], lineages: dict[str, sqlite3.Row], include_drafts: bool,
                media_changed: dict[str, float] | None = None) -> ExportPlan:
    """Choose, per lineage, the card to write, and compare it with what Anki was last given.

    `drafts` are one episode's live drafts; `lineages` maps GUID to its row. A lineage
    once exported keeps being written while it lives (it is in Anki either way, and
    staying in the file keeps its updates flowing); one that ended or was rejected
    after export is left in Anki. `media_changed` gives, per GUID, when the note's media
    (its audio clip, `cards.clips`) last changed: the note's time is the later of that
    and its content's.
    """
    plan = ExportPlan()
    live: dict[str, Draft] = {}
    for d in drafts:
        if d.superseded:
            continue
        if d.revision_of:
            plan.pending_revisions += 1
            continue
        if media_changed and media_changed.get(d.lineage, 0) > d.changed:
            d = replace(d, changed=media_changed[d.lineage])
        live[d.lineage] = d
    for d in live.values():
        row = lineages.get(d.lineage)
        was_exported = row is not None and row["exported"] is not None
        if d.status not in _EXPORTABLE:
            continue
        if d.status == "draft" and not include_drafts and not was_exported:
            plan.left_out += 1
            continue
        plan.cards.append(d)
        if not was_exported:
            plan.new += 1
        elif row["exported_mtime"] is None or int(d.changed) > int(row["exported_mtime"]):
            # Whole seconds, as the deck stores them and Anki compares them.
            plan.updated += 1
        else:
            plan.unchanged += 1
    for guid, row in lineages.items():
        if row["exported"] is None:
            continue
        d = live.get(guid)
        if d is None or d.status not in _EXPORTABLE:
            plan.left_in_anki.append({"guid": guid, "front": row["exported_front"], "episode": row["episode"]})
    return plan


def record_export(db: sqlite3.Connection, cards: list[Draft], when: float) -> None:
    db.executemany(
        "UPDATE lineages SET exported=?, exported_mtime=?, exported_front=? WHERE guid=?",
        [(when, d.changed, d.front, d.lineage) for d in cards])
    db.executemany("UPDATE drafts SET exported=? WHERE id=?", [(when, d.id) for d in cards])


# -- notes: a lightly edited bullet is the same note ----------------------------------------------

# rapidfuzz ratio (0-100) of the normalised texts for an edited bullet, anywhere in the
# episode or at (nearly) the same position.
EDITED_ANYWHERE = 75
EDITED_IN_PLACE = 50


@dataclass
class NoteChanges:
    """How an episode's current notes relate to the ones the workspace knows."""

    new: list[str] = field(default_factory=list)  # never seen, or back after being retired
    edited: dict[str, str] = field(default_factory=dict)  # new id -> the retired bullet it rewords
    retired: list[str] = field(default_factory=list)  # gone from notes files that were read
    returning: list[str] = field(default_factory=list)  # known, retired, and back as they were


def note_changes(stored: dict, items: Sequence, read_files: set[str]) -> NoteChanges:
    """Compare current note items with stored notes (objects with id, text, position, active, sources)."""
    from rapidfuzz import fuzz

    out = NoteChanges()
    current = {i.id for i in items}
    for item in items:
        known = stored.get(item.id)
        if known is None:
            out.new.append(item.id)
        elif not known.active:
            out.returning.append(item.id)
    out.retired = [n.id for n in stored.values() if n.active and n.id not in current
                   and any(src in read_files for src in n.sources)]
    if not out.retired or not (out.new or out.returning):
        return out
    by_id = {i.id: i for i in items}
    gone = [stored[r] for r in out.retired]
    pairs = []
    for nid in out.new + out.returning:
        item = by_id[nid]
        for g in gone:
            score = fuzz.ratio(normalise(item.text), normalise(g.text))
            near = abs(item.position - g.position) <= 1
            if score >= EDITED_ANYWHERE or (near and score >= EDITED_IN_PLACE):
                pairs.append((-score, abs(item.position - g.position), nid, g.id))
    pairs.sort()
    taken: set[str] = set()
    for _, _, nid, gid in pairs:
        if nid not in out.edited and gid not in taken:
            out.edited[nid] = gid
            taken.add(gid)
    return out
