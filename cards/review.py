"""The review app: one card at a time, every decision saved the moment it is made.

The person sees a draft next to what it came from (their own note, the supporting
quote and the transcript passage with the quote highlighted) and approves, rejects,
edits or skips it. Each decision is written to the workspace at once through
`Store.update_draft`, so quitting (or a crash) loses nothing, and `u` undoes this
session's decisions one by one.

All text shown here comes from notes, transcripts or an LLM, so it is never parsed
as markup: every widget gets a `rich.text.Text` built from plain strings.
"""

from __future__ import annotations

import re

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Input, Label, Static

from cards.check import GROUNDED, edit_problem
from cards.models import Draft, format_span
from cards.store import Store

UNDECIDED = ("draft", "duplicate")
DECIDED = ("approved", "rejected")

_BADGES = {
    "draft": "bold black on yellow",
    "approved": "bold white on dark_green",
    "rejected": "bold white on red3",
    "duplicate": "bold black on dark_orange",
}


def find_quote(passage: str, quote: str) -> tuple[int, int] | None:
    """Where the quote occurs in the passage, ignoring case and runs of whitespace."""
    words = quote.split()
    if not words:
        return None
    start = passage.find(quote.strip())
    if start >= 0:
        return start, start + len(quote.strip())
    m = re.search(r"\s+".join(re.escape(w) for w in words), passage, re.IGNORECASE)
    return (m.start(), m.end()) if m else None


def passage_text(passage: str, quote: str) -> Text:
    """The transcript passage with the supporting quote highlighted when it is found."""
    text = Text(passage)
    span = find_quote(passage, quote)
    if span:
        text.stylize("bold black on khaki1", *span)
    return text


def _section(title: str, body: Text | str, style: str = "") -> Text:
    out = Text(title, style="bold underline")
    out.append("\n")
    out.append(body if isinstance(body, Text) else Text(body, style=style))
    return out


def _labels(d: Draft) -> tuple[str, str]:
    return ("Cloze", "Extra") if d.kind == "cloze" else ("Front", "Back")


class CardView(VerticalScroll):
    """The scrolling card area; focused so up/down/page keys scroll it."""


class ReviewApp(App[dict]):
    """Review drafts one card at a time; decisions go straight to the workspace."""

    TITLE = "cards review"
    # The palette's ctrl+p would only crowd the footer; every command here has a key.
    ENABLE_COMMAND_PALETTE = False

    CSS = """
    #topbar { dock: top; height: 1; background: $panel; }
    #where { width: 1fr; padding: 0 1; }
    #progress { width: auto; padding: 0 1; text-style: bold; }
    #banner { display: none; padding: 0 1; background: $success 30%; text-style: bold; }
    #banner.show { display: block; }
    #banner.empty { background: $warning 30%; }
    CardView { padding: 0 1; }
    CardView > Static { margin-bottom: 1; }
    #qa { border: round $accent; padding: 0 1; }
    #editor { display: none; height: auto; border: round $warning; padding: 0 1; margin-bottom: 1; }
    #editor Input { margin-bottom: 0; }
    #card.editing #editor { display: block; }
    #card.editing #qa { display: none; }
    #context { color: $text-muted; }
    """

    _CARD = Binding.Group("Card", compact=True)
    _EPISODE = Binding.Group("Episode", compact=True)
    BINDINGS = [
        Binding("a", "approve", "Approve"),
        Binding("r", "reject", "Reject"),
        Binding("e", "edit", "Edit"),
        Binding("s", "skip", "Skip"),
        Binding("space", "skip", "Skip", show=False),
        Binding("u", "undo", "Undo"),
        Binding("p", "prev", "Previous card", group=_CARD),
        Binding("n", "next", "Next card", group=_CARD),
        Binding("left", "prev", "Previous card", show=False),
        Binding("right", "next", "Next card", show=False),
        Binding("[", "prev_episode", "Previous episode", group=_EPISODE),
        Binding("]", "next_episode", "Next episode", group=_EPISODE),
        Binding("q", "quit_review", "Quit"),
        Binding("d", "undup", "Not dup"),
        Binding("t", "toggle_all", "All"),
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel_edit", "Cancel"),
    ]

    _OWN_ACTIONS = frozenset(b.action for b in BINDINGS)
    _EDIT_ACTIONS = frozenset({"save", "cancel_edit"})
    _ALWAYS = frozenset({"quit_review", "toggle_all"})

    def __init__(self, store: Store, episode: str | None = None):
        super().__init__()
        self.store = store
        self.episode = episode
        self.show_all = False
        self.editing = False
        self.index = 0
        self._titles: dict[str, str] = {e.slug: e.title for e in store.episodes()}
        self._known: dict[str, Draft] = {}
        # This session's decisions, newest last: what `u` walks back through.
        self._log: list[tuple[str, str]] = []
        self._skipped: set[str] = set()
        self._review_ids: list[str] | None = None
        self.drafts: list[Draft] = self._load(show_all=False)
        self._review_ids = [d.id for d in self.drafts]

    # -- data ---------------------------------------------------------------------------

    def _load(self, *, show_all: bool) -> list[Draft]:
        drafts = self.store.drafts(episode=self.episode, include_superseded=False)
        if show_all:
            chosen = drafts
        elif self._review_ids is not None:
            # The set under review stays fixed for the session, so decided cards stay
            # reachable with p/n and count towards the progress.
            keep = set(self._review_ids)
            chosen = [d for d in drafts if d.id in keep]
        else:
            chosen = [d for d in drafts if d.status in UNDECIDED]
        for d in chosen:
            self._known[d.id] = d
        return chosen

    @property
    def current(self) -> Draft | None:
        return self.drafts[self.index] if self.drafts else None

    def _replace(self, draft: Draft) -> None:
        self._known[draft.id] = draft
        for i, d in enumerate(self.drafts):
            if d.id == draft.id:
                self.drafts[i] = draft

    def progress(self) -> tuple[int, int]:
        """(reviewed, total) for the cards on show; reviewed means approved or rejected."""
        return sum(d.status in DECIDED for d in self.drafts), len(self.drafts)

    def summary(self) -> dict:
        """What this session did; counts are net of undos and later changes of mind."""
        decided = {i for i, a in self._log if a in ("approve", "reject")}
        status = {i: d.status for i, d in self._known.items()}
        ids = self._review_ids or []
        remaining = sum(status.get(i) in UNDECIDED for i in ids)
        return {
            "approved": sum(status.get(i) == "approved" for i in decided),
            "rejected": sum(status.get(i) == "rejected" for i in decided),
            "edited": len({i for i, a in self._log if a == "edit"}),
            "undup": len({i for i, a in self._log if a == "undup"}),
            "skipped": sum(status.get(i) in UNDECIDED for i in self._skipped),
            "remaining": remaining,
            "total": len(ids),
        }

    def _title(self, slug: str) -> str:
        return self._titles.get(slug) or slug

    def _episode_order(self) -> list[str]:
        return list(dict.fromkeys(d.episode for d in self.drafts))

    def _next_undecided(self, *, include_current: bool) -> int | None:
        n = len(self.drafts)
        for k in range(1, n + 1 if include_current else n):
            i = (self.index + k) % n
            if self.drafts[i].status in UNDECIDED:
                return i
        return None

    # -- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="topbar"):
            yield Static(id="where")
            yield Static(id="progress")
        yield Static(id="banner")
        with CardView(id="card"):
            yield Static(id="meta")
            yield Static(id="qa")
            with Vertical(id="editor"):
                yield Label(Text("Front"), id="edit-front-label")
                yield Input(id="edit-front")
                yield Label(Text("Back"), id="edit-back-label")
                yield Input(id="edit-back")
                yield Label(Text("enter or ctrl+s saves · escape cancels · tab moves", style="dim"))
            yield Static(id="dup")
            yield Static(id="warnings")
            yield Static(id="note")
            yield Static(id="quote")
            yield Static(id="context")
        yield Footer()

    def on_mount(self) -> None:
        self._show()
        self.query_one(CardView).focus()

    def _show(self) -> None:
        """Redraw everything from the current draft; untrusted text only ever as Text."""
        reviewed, total = self.progress()
        progress = Text(f"{reviewed}/{total} reviewed")
        if self.show_all:
            progress.append(" · showing all", style="italic")
        self.query_one("#progress", Static).update(progress)

        banner = self.query_one("#banner", Static)
        card = self.query_one(CardView)
        d = self.current
        if d is None:
            self.query_one("#where", Static).update(Text("cards review", style="bold"))
            banner.update(Text("Nothing to review — press q to quit"))
            banner.set_classes("show empty")
            card.display = False
            self.refresh_bindings()
            return
        card.display = True
        if reviewed == total:
            banner.update(Text(f"All {total} cards reviewed — press q to quit"))
            banner.set_classes("show")
        else:
            banner.set_classes("")

        episodes = self._episode_order()
        in_episode = [x.id for x in self.drafts if x.episode == d.episode]
        where = Text("cards review  ", style="bold")
        where.append(self._title(d.episode), style="bold cyan")
        where.append(f"  · episode {episodes.index(d.episode) + 1}/{len(episodes)}"
                     f" · card {in_episode.index(d.id) + 1}/{len(in_episode)}")
        self.query_one("#where", Static).update(where)

        self.query_one("#meta", Static).update(self._meta(d))
        front_label, back_label = _labels(d)
        qa = Text()
        qa.append(f"{front_label:<6} ", style="bold")
        qa.append(d.front)
        qa.append(f"\n{back_label:<6} ", style="bold")
        qa.append(d.back if d.back else "(empty)", style="" if d.back else "dim")
        self.query_one("#qa", Static).update(qa)

        dup = self.query_one("#dup", Static)
        dup.update(self._duplicate(d))
        dup.display = d.duplicate_of is not None

        warnings = Text()
        for w in d.warnings:
            warnings.append("⚠ ", style="yellow")
            warnings.append(w)
            warnings.append("\n")
        warnings.rstrip()
        self.query_one("#warnings", Static).update(
            _section("Lint", warnings if d.warnings else Text("no warnings", style="dim")))

        self.query_one("#note", Static).update(
            _section("Your note", d.note_text or "(no note text)"))
        self.query_one("#quote", Static).update(
            _section("Quote", Text(d.quote, style="italic") if d.quote else Text("(none)", style="dim")))

        title = "Transcript"
        span = format_span(d.context_start, d.context_end)
        if span:
            title += f" {span}"
        body = passage_text(d.context_text, d.quote) if d.context_text else Text(
            "(no transcript passage for this note)", style="dim")
        self.query_one("#context", Static).update(_section(title, body))
        card.scroll_home(animate=False)
        self.refresh_bindings()

    def _meta(self, d: Draft) -> Text:
        t = Text()
        t.append(f" {d.status.upper()} ", style=_BADGES.get(d.status, "reverse"))
        if d.edited:
            t.append(" edited", style="bold magenta")
        t.append(f"  {d.kind}  ")
        if d.generator == "offline":
            t.append(" offline generator ", style="bold white on magenta")
            t.append(" (extractive fallback, no LLM)", style="magenta")
        else:
            t.append(f"{d.generator} · {d.model} · prompt {d.prompt_version}")
        t.append("  grounding ")
        if d.grounding is None:
            t.append("not checked", style="dim")
        else:
            t.append(f"{d.grounding:.2f}", style="green" if d.grounding >= GROUNDED else "bold red")
        t.append(f"  id {d.id}", style="dim")
        return t

    def _duplicate(self, d: Draft) -> Text:
        if d.duplicate_of is None:
            return Text()
        other = self._known.get(d.duplicate_of) or self.store.draft(d.duplicate_of)
        t = Text("duplicate of ", style="bold dark_orange")
        if other is None:
            t.append(f"a card that no longer exists ({d.duplicate_of})")
        else:
            t.append(f"“{other.front}”")
            t.append(f" ({other.id})", style="dim")
        t.append("  — press d if it is not", style="dim")
        return t

    # -- bindings -----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # True: shown and enabled; None: shown dimmed, disabled; False: hidden, disabled.
        if action not in self._OWN_ACTIONS:
            return True
        if self.editing:
            return action in self._EDIT_ACTIONS
        if action in self._EDIT_ACTIONS:
            return False
        if self.current is None:
            return action in self._ALWAYS
        if action == "undup":
            return self.current.duplicate_of is not None
        if action == "undo":
            return True if self._log else None
        return True

    # -- actions ------------------------------------------------------------------------

    def _go(self, index: int) -> None:
        self.index = index
        self._show()

    def _decide(self, status: str, action: str) -> None:
        d = self.current
        if d is None:
            return
        if d.status != status:
            self._replace(self.store.update_draft(d.id, action=action, status=status))
            self._log.append((d.id, action))
        nxt = self._next_undecided(include_current=True)
        if nxt is None:
            self._show()
        else:
            self._go(nxt)

    def action_approve(self) -> None:
        self._decide("approved", "approve")

    def action_reject(self) -> None:
        self._decide("rejected", "reject")

    def action_skip(self) -> None:
        d = self.current
        if d is None:
            return
        if d.status in UNDECIDED:
            self._skipped.add(d.id)
        nxt = self._next_undecided(include_current=False)
        if nxt is None:
            nxt = min(self.index + 1, len(self.drafts) - 1)
        self._go(nxt)

    def action_next(self) -> None:
        if self.drafts and self.index < len(self.drafts) - 1:
            self._go(self.index + 1)
        elif self.drafts:
            self.notify("This is the last card.", timeout=2)

    def action_prev(self) -> None:
        if self.index > 0:
            self._go(self.index - 1)
        elif self.drafts:
            self.notify("This is the first card.", timeout=2)

    def _jump_episode(self, step: int) -> None:
        d = self.current
        if d is None:
            return
        episodes = self._episode_order()
        k = episodes.index(d.episode) + step
        if not 0 <= k < len(episodes):
            self.notify("No more episodes that way.", timeout=2)
            return
        self._go(next(i for i, x in enumerate(self.drafts) if x.episode == episodes[k]))

    def action_next_episode(self) -> None:
        self._jump_episode(1)

    def action_prev_episode(self) -> None:
        self._jump_episode(-1)

    def action_undup(self) -> None:
        d = self.current
        if d is None or d.duplicate_of is None:
            return
        status = "draft" if d.status == "duplicate" else d.status
        self._replace(self.store.update_draft(d.id, action="undup", status=status, duplicate_of=None))
        self._log.append((d.id, "undup"))
        self._show()

    def action_undo(self) -> None:
        if not self._log:
            self.notify("Nothing to undo in this session.", timeout=2)
            return
        draft_id, action = self._log.pop()
        restored = self.store.undo_last([draft_id])
        if restored is None:
            self.notify("That change was already undone elsewhere.", severity="warning")
            return
        self._replace(restored)
        for i, d in enumerate(self.drafts):
            if d.id == draft_id:
                self.index = i
        self.notify(f"Undid {action}.", timeout=2)
        self._show()

    def action_toggle_all(self) -> None:
        keep = self.current.id if self.current else None
        self.show_all = not self.show_all
        self.drafts = self._load(show_all=self.show_all)
        ids = [d.id for d in self.drafts]
        self.index = ids.index(keep) if keep in ids else 0
        self._show()

    def action_edit(self) -> None:
        d = self.current
        if d is None:
            return
        front_label, back_label = _labels(d)
        self.query_one("#edit-front-label", Label).update(Text(front_label))
        self.query_one("#edit-back-label", Label).update(Text(back_label))
        self.query_one("#edit-front", Input).value = d.front
        self.query_one("#edit-back", Input).value = d.back
        self.editing = True
        self.query_one(CardView).add_class("editing")
        self.query_one("#edit-front", Input).focus()
        self.refresh_bindings()

    def _close_editor(self) -> None:
        self.editing = False
        self.query_one(CardView).remove_class("editing")
        self.query_one(CardView).focus()
        self._show()

    def action_cancel_edit(self) -> None:
        if self.editing:
            self._close_editor()

    def action_save(self) -> None:
        d = self.current
        if not self.editing or d is None:
            return
        front = self.query_one("#edit-front", Input).value.strip()
        back = self.query_one("#edit-back", Input).value.strip()
        problem = edit_problem(d.kind, front, back)
        if problem:
            self.notify(problem[0].upper() + problem[1:] + ".", severity="error", timeout=3)
            return
        changed = {k: v for k, v in (("front", front), ("back", back)) if v != getattr(d, k)}
        if changed:
            self._replace(self.store.update_draft(d.id, action="edit", **changed))
            self._log.append((d.id, "edit"))
        self._close_editor()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def action_quit_review(self) -> None:
        self.exit(self.summary())


def run_review(store: Store, episode: str | None = None) -> dict:
    """Run the review app and return what the session did; with nothing to review, don't start it.

    The summary has `approved`, `rejected`, `edited`, `undup`, `skipped` (left undecided
    after a skip), `remaining` (still undecided) and `total` (cards up for review; 0
    means there was nothing to review and the app never started).
    """
    app = ReviewApp(store, episode)
    if app.drafts:
        app.run()
    return app.summary()
