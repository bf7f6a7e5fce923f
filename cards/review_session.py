"""Review logic without a screen: which cards are up, where the reviewer is, what each choice does.

A `ReviewSession` holds one review pass over the workspace: the cards up for review,
the one being looked at, the decisions made (each written through `Store.update_draft`
the moment it is made) and the undo history. It never draws anything. A view (the
Textual app in `cards.review`) shows `current` and turns keys into calls here; tests
drive the same calls directly. The view is told what to say through the `Notice`s
the calls return, never by exceptions or prints. A decision on a card that a `generate`
run superseded meanwhile is refused with a notice naming the card that replaced it.

Pending revisions (see `cards.lineage`) are reviewed like any undecided card, as a
pair: `revision(d)` gives the current card beside the regenerated one. Approving a
revision accepts the new text, rejecting it keeps the old; either is one undo step.
The card a pending revision would replace is never listed on its own: it is shown
inside the revision.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cards.check import check_drafts, edit_problem
from cards.errors import SupersededError
from cards.models import Draft
from cards.store import Store

UNDECIDED = ("draft", "duplicate")
DECIDED = ("approved", "rejected")


class Choice(Enum):
    """What a reviewer can decide about the current card."""

    APPROVE = "approve"
    REJECT = "reject"
    SKIP = "skip"


@dataclass(frozen=True)
class Notice:
    """A short message for the reviewer; severity is "information", "warning" or "error"."""

    text: str
    severity: str = "information"


@dataclass(frozen=True)
class Revision:
    """A regenerated card beside the current card it would replace.

    `state` is "pending" (undecided), "accepted" (the new text replaced the old) or
    "kept" (the revision was rejected and the old text stays).
    """

    old: Draft
    new: Draft
    state: str

    def reasons(self) -> list[str]:
        """Why the old card needs the reviewer's word before it is replaced."""
        out = []
        if self.old.status == "approved":
            out.append("approved")
        if self.old.edited:
            out.append("edited")
        if self.old.exported is not None:
            out.append("exported")
        return out


@dataclass(frozen=True)
class Position:
    """Where the current card sits: episode k of n, card i of m within its episode."""

    episode: str
    episode_number: int
    episodes: int
    card_number: int
    cards: int


class ReviewSession:
    """One pass of review over a workspace (or one episode of it)."""

    def __init__(self, store: Store, episode: str | None = None):
        self.store = store
        self.episode = episode
        self.show_all = False
        self.index = 0
        self._titles: dict[str, str] = {e.slug: e.title for e in store.episodes()}
        self._known: dict[str, Draft] = {}
        # Revision id -> the card it would replace, remembered after the decision
        # (accepting clears `revision_of` in the workspace).
        self._revises: dict[str, str] = {}
        # This session's changes, newest last, with how many undo groups each wrote:
        # what undo walks back through.
        self._log: list[tuple[str, str, int]] = []
        self._skipped: set[str] = set()
        self._review_ids: list[str] | None = None
        self.drafts: list[Draft] = self._load()
        self._review_ids = [d.id for d in self.drafts]

    # -- reading ------------------------------------------------------------------------

    def _load(self) -> list[Draft]:
        if self._review_ids is None:
            drafts = self.store.drafts(episode=self.episode, include_superseded=False)
        elif self.show_all:
            # Everything live, plus this session's cards that a decision retired (a
            # rejected revision), so they stay reachable.
            keep = set(self._review_ids)
            drafts = [d for d in self.store.drafts(episode=self.episode)
                      if not d.superseded or d.id in keep]
        else:
            # The set under review stays fixed for the session, so decided cards stay
            # reachable with previous/next and count towards the progress.
            drafts = self.store.drafts(ids=self._review_ids) if self._review_ids else []
        for d in drafts:
            self._known[d.id] = d
            if d.revision_of:
                self._revises[d.id] = d.revision_of
        # A card with a pending revision is shown inside that revision, not on its own.
        replaced = {d.revision_of for d in drafts if d.revision_of and not d.superseded}
        drafts = [d for d in drafts if d.id not in replaced]
        if self._review_ids is None:
            drafts = [d for d in drafts if d.status in UNDECIDED]
        return drafts

    def _draft(self, draft_id: str) -> Draft | None:
        d = self._known.get(draft_id)
        if d is None:
            d = self.store.draft(draft_id)
            if d is not None:
                self._known[draft_id] = d
        return d

    @property
    def current(self) -> Draft | None:
        return self.drafts[self.index] if self.drafts else None

    def revision(self, d: Draft) -> Revision | None:
        """The old → new pair when this card is (or was, in this session) a pending revision."""
        old_id = self._revises.get(d.id)
        old = self._draft(old_id) if old_id else None
        if old is None:
            return None
        if d.revision_of and not d.superseded:
            state = "pending"
        elif d.status == "approved":
            state = "accepted"
        else:
            state = "kept"
        return Revision(old, d, state)

    def duplicate_target(self, d: Draft) -> Draft | None:
        """The card this one duplicates, if it still exists."""
        return self._draft(d.duplicate_of) if d.duplicate_of else None

    def title(self, slug: str) -> str:
        return self._titles.get(slug) or slug

    def position(self) -> Position | None:
        d = self.current
        if d is None:
            return None
        episodes = self._episode_order()
        in_episode = [x.id for x in self.drafts if x.episode == d.episode]
        return Position(d.episode, episodes.index(d.episode) + 1, len(episodes),
                        in_episode.index(d.id) + 1, len(in_episode))

    def progress(self) -> tuple[int, int]:
        """(reviewed, total) for the cards on show; reviewed means approved or rejected."""
        return sum(d.status in DECIDED for d in self.drafts), len(self.drafts)

    @property
    def can_undo(self) -> bool:
        return bool(self._log)

    def summary(self) -> dict:
        """What this session did; counts are net of undos and later changes of mind.

        `approved` and `rejected` include revisions; `revisions_accepted` and
        `revisions_kept` say how many of them were revisions (accepted new text, or
        rejected so the old text stays).
        """
        decided = {i for i, a, _ in self._log if a in ("approve", "reject")}
        status = {i: d.status for i, d in self._known.items()}
        ids = self._review_ids or []
        revisions = decided & set(self._revises)
        return {
            "approved": sum(status.get(i) == "approved" for i in decided),
            "rejected": sum(status.get(i) == "rejected" for i in decided),
            "edited": len({i for i, a, _ in self._log if a == "edit"}),
            "undup": len({i for i, a, _ in self._log if a == "undup"}),
            "skipped": sum(status.get(i) in UNDECIDED for i in self._skipped),
            "remaining": sum(status.get(i) in UNDECIDED for i in ids),
            "total": len(ids),
            "revisions_accepted": sum(status.get(i) == "approved" for i in revisions),
            "revisions_kept": sum(status.get(i) == "rejected" for i in revisions),
        }

    def _episode_order(self) -> list[str]:
        return list(dict.fromkeys(d.episode for d in self.drafts))

    def _next_undecided(self, *, include_current: bool) -> int | None:
        n = len(self.drafts)
        for k in range(1, n + 1 if include_current else n):
            i = (self.index + k) % n
            if self.drafts[i].status in UNDECIDED:
                return i
        return None

    # -- writing ------------------------------------------------------------------------

    def _pair(self, draft_id: str) -> list[str]:
        """The card and, for a revision, the card it revises: what one decision can change."""
        return [draft_id, self._revises[draft_id]] if draft_id in self._revises else [draft_id]

    def _refresh(self, draft_id: str) -> Draft | None:
        """Re-read a card and the other half of its revision pair after the workspace changed them."""
        for d in self.store.drafts(ids=self._pair(draft_id)):
            self._known[d.id] = d
            for i, x in enumerate(self.drafts):
                if x.id == d.id:
                    self.drafts[i] = d
        return self._known.get(draft_id)

    def _update(self, draft_id: str, action: str, **fields) -> Notice | None:
        """Write one change; a card a generate run replaced meanwhile is refused, naming its successor."""
        try:
            self.store.update_draft(draft_id, action=action, **fields)
        except SupersededError as e:
            self._refresh(draft_id)
            return Notice(f"Not saved: {e.message}.", "error")
        self._refresh(draft_id)
        self._log.append((draft_id, action, 1))
        return None

    def _redecide(self, rev: Revision, status: str, action: str) -> None:
        """Change the mind about a revision decided earlier, as if it were still pending (one undo)."""
        self.store.redecide(rev.old.id, rev.new.id, status, action=action)
        self._refresh(rev.new.id)
        self._log.append((rev.new.id, action, 1))

    def choose(self, choice: Choice) -> Notice | None:
        """Decide the current card and move on; approve/reject go to the next undecided card."""
        d = self.current
        if d is None:
            return None
        if choice is Choice.SKIP:
            if d.status in UNDECIDED:
                self._skipped.add(d.id)
            nxt = self._next_undecided(include_current=False)
            self.index = min(self.index + 1, len(self.drafts) - 1) if nxt is None else nxt
            return None
        status = "approved" if choice is Choice.APPROVE else "rejected"
        rev = self.revision(d)
        if rev is not None and rev.state != "pending":
            if rev.state != {"approved": "accepted", "rejected": "kept"}[status]:
                self._redecide(rev, status, choice.value)
        elif d.status != status:
            refused = self._update(d.id, choice.value, status=status)
            if refused:
                return refused
        nxt = self._next_undecided(include_current=True)
        if nxt is not None:
            self.index = nxt
        return None

    def approve(self) -> Notice | None:
        return self.choose(Choice.APPROVE)

    def reject(self) -> Notice | None:
        return self.choose(Choice.REJECT)

    def skip(self) -> Notice | None:
        return self.choose(Choice.SKIP)

    def edit(self, front: str, back: str) -> Notice | None:
        """Replace the current card's text (a revision's own text); an error notice refuses it."""
        d = self.current
        if d is None:
            return None
        front, back = front.strip(), back.strip()
        problem = edit_problem(d.kind, front, back)
        if problem:
            return Notice(problem[0].upper() + problem[1:] + ".", "error")
        changed = {k: v for k, v in (("front", front), ("back", back)) if v != getattr(d, k)}
        if changed:
            notice = self._update(d.id, "edit", **changed)
            if notice is not None:
                return notice
            self._recheck(d)
        return None

    def _recheck(self, d: Draft) -> None:
        """Lint and ground a card again after its text changed (with its note's other live cards), so the
        warnings shown are about the text as it is now."""
        siblings = [x for x in self.store.drafts(episode=d.episode, include_superseded=False)
                    if x.note_id == d.note_id]
        results = check_drafts(siblings, {x.id for x in siblings})
        if results:
            self.store.set_checks(results)
        for x in siblings:
            self._refresh(x.id)

    def undup(self) -> Notice | None:
        """The current card is not a duplicate after all."""
        d = self.current
        if d is None or d.duplicate_of is None:
            return None
        status = "draft" if d.status == "duplicate" else d.status
        return self._update(d.id, "undup", status=status, duplicate_of=None)

    def undo(self) -> Notice:
        """Walk back this session's most recent change (a revision's decision restores both cards)."""
        if not self._log:
            return Notice("Nothing to undo in this session.")
        draft_id, action, groups = self._log.pop()
        with self.store.tx():
            undone = [self.store.undo_last(self._pair(draft_id)) for _ in range(groups)]
        restored = self._refresh(draft_id)
        if action == "edit" and restored is not None:
            self._recheck(restored)
        if None in undone:
            return Notice("That change was already undone elsewhere.", "warning")
        for i, d in enumerate(self.drafts):
            if d.id == draft_id:
                self.index = i
        if draft_id in self._revises and action in ("approve", "reject"):
            action = {"approve": "accepting the revision", "reject": "keeping the old text"}[action]
        return Notice(f"Undid {action}.")

    # -- moving -------------------------------------------------------------------------

    def next(self) -> Notice | None:
        if self.drafts and self.index < len(self.drafts) - 1:
            self.index += 1
            return None
        return Notice("This is the last card.") if self.drafts else None

    def prev(self) -> Notice | None:
        if self.index > 0:
            self.index -= 1
            return None
        return Notice("This is the first card.") if self.drafts else None

    def jump_episode(self, step: int) -> Notice | None:
        d = self.current
        if d is None:
            return None
        episodes = self._episode_order()
        k = episodes.index(d.episode) + step
        if not 0 <= k < len(episodes):
            return Notice("No more episodes that way.")
        self.index = next(i for i, x in enumerate(self.drafts) if x.episode == episodes[k])
        return None

    def next_episode(self) -> Notice | None:
        return self.jump_episode(1)

    def prev_episode(self) -> Notice | None:
        return self.jump_episode(-1)

    def toggle_all(self) -> None:
        """Show every live card (approved and rejected too), or back to the cards under review."""
        keep = self.current.id if self.current else None
        self.show_all = not self.show_all
        self.drafts = self._load()
        ids = [d.id for d in self.drafts]
        self.index = ids.index(keep) if keep in ids else 0
