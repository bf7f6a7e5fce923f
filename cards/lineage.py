"""Card lineage: a card's identity in Anki, carried through every regeneration of its note.

A lineage is one Anki note. Its GUID is the id of the first draft that started it,
and every later draft that replaces that card takes the same GUID ("replace and
carry forward"). At any time a lineage has at most one *current* draft (what export
writes) and at most one *pending revision* (a regenerated card waiting for review).

When a note is regenerated, for whatever reason (an edited bullet, a new prompt or
model, offline to LLM, --force, a refreshed passage), each new card is matched to the
previous card it corresponds to: by content first, by position as the tie-break.

A GUID belongs to one Anki note type: Anki's importer skips ("conflicting") a note whose
type changed, so the old text would stay in Anki while cards says it was updated. So
cards are matched within their note type (`anki_kind`) first. A card that changes kind
(cloze <-> Q/A) is a *replacement*: it starts a new lineage, and the old lineage ends when
the replacement takes over (at once for an undecided draft; when the listener accepts it
for an approved, edited or exported card, which stays current until then). Besides shared
content words, a cloze deletion equal to another card's answer is strong evidence of the
same fact. An offline placeholder is taken over by its note's best LLM card of its kind.

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

import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from cards.check import answer_of, cloze_deletions, content_stems, plain, unclozed
from cards.models import Draft, normalise

# Two cards about the same fact share at least this share of their content words.
MATCH_THRESHOLD = 0.3
# Above this, a regenerated card is the same card (a rejection carries over).
SAME_CARD = 0.9
# Two cards of one note with the same answer (a cloze deletion equal to a question's back)
# ask for the same fact: as alike as this, whatever their other words.
SAME_ANSWER = 0.6
OFFLINE = "offline"

# What Anki cannot show: control characters and white space only.
_BLANK = re.compile(r"[\x00-\x1f\x7f-\x9f\s]+")


def anki_kind(kind: str, front: str) -> str:
    """The Anki note type a card is written as: a cloze needs a deletion, anything else is Q/A."""
    return "cloze" if kind == "cloze" and cloze_deletions(front) else "basic"


def writable(front: str) -> bool:
    """Whether a card has a front to write; a card without one never reaches a deck."""
    return bool(_BLANK.sub("", front or ""))


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


def _answer(d: Draft) -> str:
    return plain(answer_of(anki_kind(d.kind, d.front), d.front, d.back))


def likeness(a: Draft, b: Draft) -> float:
    """How surely two cards of one note ask for the same fact: shared words, or the same answer."""
    s = similarity(a, b)
    ans = _answer(a)
    if ans and ans == _answer(b):
        s = max(s, SAME_ANSWER)
    return s


def _kind(d: Draft) -> str:
    return anki_kind(d.kind, d.front)


def _greedy(pairs: list[tuple], out: dict[int, tuple[int, float]], used: set[int]) -> None:
    pairs.sort()
    for _, _, i, j, s in pairs:
        if i not in out and j not in used:
            out[i] = (j, s)
            used.add(j)


def match(old: Sequence[Draft], new: Sequence[Draft],
          threshold: float = MATCH_THRESHOLD, last: frozenset[int] = frozenset()) -> dict[int, tuple[int, float]]:
    """For each new card (by index), the old card of the same note type it continues and how alike they are.

    Greedy over all pairs from the most alike down; equal likeness goes to the pair
    whose positions are closest. Each old card continues at most one new card. New cards
    in `last` (set aside when made) take only the old cards no other new card continues. An
    offline card left over is taken over by the most alike LLM card of its kind left.
    """
    out: dict[int, tuple[int, float]] = {}
    used: set[int] = set()
    for phase in (False, True):
        pairs = []
        for i, n in enumerate(new):
            if (i in last) != phase:
                continue
            for j, o in enumerate(old):
                if _kind(o) == _kind(n):
                    s = likeness(o, n)
                    if s >= threshold:
                        pairs.append((-s, abs(i - j), i, j, s))
        _greedy(pairs, out, used)
    # An offline placeholder stands for whatever the LLM makes of its note.
    pairs = [(-likeness(o, n), abs(i - j), i, j, likeness(o, n))
             for i, n in enumerate(new) if i not in out and n.generator != OFFLINE
             for j, o in enumerate(old) if j not in used and o.generator == OFFLINE and _kind(o) == _kind(n)]
    _greedy(pairs, out, used)
    return out


def replacements(old: Sequence[Draft], new: Sequence[Draft], matched: dict[int, tuple[int, float]],
                 threshold: float = MATCH_THRESHOLD) -> dict[int, tuple[int, float]]:
    """For new cards `match` left over, the old card of the other note type each replaces (same fact)."""
    used = {j for j, _ in matched.values()}
    pairs = [(-likeness(o, n), abs(i - j), i, j, likeness(o, n))
             for i, n in enumerate(new) if i not in matched
             for j, o in enumerate(old) if j not in used and _kind(o) != _kind(n) and likeness(o, n) >= threshold]
    out: dict[int, tuple[int, float]] = {}
    _greedy(pairs, out, used)
    return out


def same_content(a: Draft, b: Draft) -> bool:
    return (_kind(a) == _kind(b) and normalise(a.front) == normalise(b.front)
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
    drafts are modified in place and must be inserted by the caller. A new card of
    another note type than the card it replaces (`replacements`) starts its own
    lineage; when the old card needs the listener's word it waits as a pending
    revision of it, and accepting it ends the old lineage.
    """
    out = Carried()
    exported = _exported_guids(db, (o.lineage for o in old))
    # Cards set aside when made (by the critic, or naming no claim) stay rejected whatever they continue.
    aside = frozenset(i for i, n in enumerate(new) if n.status == "rejected" and n.reason)
    matched = match(old, new, last=aside)
    replacing = replacements(old, new, matched)
    superseded: list[str] = [p.id for p in pending]
    kept: set[int] = set()
    episode_moves: list[tuple[str, str]] = []
    for i, n in enumerate(new):
        if i not in matched and i not in replacing:
            n.lineage = n.id
            out.started += 1
            db.execute("INSERT OR IGNORE INTO lineages(guid, episode, created) VALUES (?,?,?)",
                       (n.id, n.episode, now))
            continue
        j, sim = matched[i] if i in matched else replacing[i]
        o = old[j]
        kept.add(j)
        if i in matched:
            n.lineage = o.lineage
            n.created = o.created
            if o.episode != n.episode:  # a bullet moved to another heading takes its cards along
                episode_moves.append((n.episode, o.lineage))
        else:
            # Another note type: a new Anki note. The old one ends when this one takes over.
            n.lineage = n.id
            out.started += 1
            db.execute("INSERT OR IGNORE INTO lineages(guid, episode, created) VALUES (?,?,?)",
                       (n.id, n.episode, now))
        if i in aside and needs_review(o, o.lineage in exported):
            n.revision_of = o.id  # a dropped revision: the decided card stays as it is
            n.superseded = True
        elif o.status == "rejected":
            n.status = "rejected" if sim >= SAME_CARD or i in aside else "draft"
            superseded.append(o.id)
            out.continued += 1
        elif needs_review(o, o.lineage in exported):
            if i in matched and same_content(o, n):
                n.superseded = True  # nothing to review: the current card already says this
            else:
                n.revision_of = o.id
                out.revisions += 1
        else:
            superseded.append(o.id)
            if i in matched:
                out.continued += 1
            else:
                out.ended.append(o.lineage)
    for j, o in enumerate(old):
        if j not in kept:
            superseded.append(o.id)
            out.ended.append(o.lineage)
    db.executemany("UPDATE drafts SET superseded=1, updated=? WHERE id=?", [(now, i) for i in superseded])
    db.executemany("UPDATE lineages SET episode=? WHERE guid=?", episode_moves)
    return out


def decidable(db: sqlite3.Connection, d: Draft) -> str | None:
    """Why a decision or edit cannot apply to this draft any more, naming what replaced it; None if it can.

    A draft superseded by a newer generation (while it sat in a review, or by the id a
    listing showed) is history: a decision on it would change nothing in any deck. The
    one superseded draft still open to decisions is a rejected revision of a live card
    (a listener changing their mind about keeping the old text).
    """
    if not d.superseded:
        return None
    if d.revision_of is not None:
        row = db.execute("SELECT superseded FROM drafts WHERE id=?", (d.revision_of,)).fetchone()
        if row is not None and not row[0]:
            return None
    rows = db.execute("SELECT id FROM drafts WHERE lineage=? AND superseded=0 ORDER BY revision_of IS NOT NULL,"
                      " created DESC", (d.lineage,)).fetchall()
    if not rows:
        rows = db.execute("SELECT id FROM drafts WHERE note_id=? AND superseded=0 AND revision_of IS NULL"
                          " ORDER BY created DESC", (d.note_id,)).fetchall()
    if len(rows) == 1:
        return f"draft {d.id[:8]} was replaced by {rows[0][0][:8]}; decide that one instead"
    if rows:
        return (f"draft {d.id[:8]} was replaced by a newer generation of its note "
                f"({', '.join(r[0][:8] for r in rows)}); decide those instead")
    return f"draft {d.id[:8]} is no longer current (its note was regenerated or removed)"


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
        if d.status not in _EXPORTABLE or not writable(d.front):
            continue  # a card without a front never reaches a deck, so it is never in Anki
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
        if d is None or d.status not in _EXPORTABLE or not writable(d.front):
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
    moved_in: dict[str, str] = field(default_factory=dict)  # new id -> the same bullet under another heading
    moved_out: set[str] = field(default_factory=set)  # retired here, its cards carried to another episode


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


def note_moves(changes: dict[str, NoteChanges], items: dict[str, Sequence], stored: dict[str, dict],
               gone: Sequence = (), skip: set[str] = frozenset()) -> dict[str, str]:
    """Bullets moved word for word to another heading: each new note -> the note it was, elsewhere.

    `changes`, `items` and `stored` are by episode slug (see `note_changes`); `gone` are
    the active notes of episodes gone from the notes; notes in `skip` (waiting for a
    transcript, so not recorded yet) are not moved. A new note whose normalised text
    equals exactly a note that left another episode in this reading is that note: it is
    recorded as an edit of it (`edited`, `moved_in` here, `moved_out` there), so its
    cards carry their lineages, and with them their review history, to the new episode.
    """
    left: dict[str, list] = {}
    for slug, c in changes.items():
        reworded = set(c.edited.values())
        for rid in c.retired:
            if rid not in reworded:
                left.setdefault(normalise(stored[slug][rid].text), []).append((slug, stored[slug][rid]))
    for n in gone:
        left.setdefault(normalise(n.text), []).append((n.episode, n))
    moves: dict[str, str] = {}
    if not left:
        return moves
    for slug, c in changes.items():
        by_id = {i.id: i for i in items[slug]}
        for nid in c.new:
            if nid in c.edited or nid not in by_id or nid in skip:
                continue
            candidates = left.get(normalise(by_id[nid].text), [])
            for k, (src, old) in enumerate(candidates):
                if src != slug:
                    del candidates[k]
                    c.edited[nid] = c.moved_in[nid] = moves[nid] = old.id
                    if src in changes:
                        changes[src].moved_out.add(old.id)
                    break
    return moves
