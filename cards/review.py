"""The review app: one card at a time, every decision saved the moment it is made.

The person sees a draft next to what it came from (their own note, the supporting
quote and the transcript passage with the quote highlighted) and approves, rejects,
edits or skips it. A pending revision is shown old → new, with what changed marked;
approving takes the new text and rejecting keeps the old.

What the keys do lives in `cards.review_session.ReviewSession`, which knows nothing of
the screen: each decision is written to the workspace at once through
`Store.update_draft`, so quitting (or a crash) loses nothing, and `u` undoes this
session's decisions one by one. This module only draws the session and binds keys.

All text shown here comes from notes, transcripts or an LLM, so it is never parsed
as markup: every widget gets a `rich.text.Text` built from plain strings, each made
inert for the terminal first (`cards.terminal.visible`: an ESC or a bidi override is
shown as `\x1b` or `\u202e`, not obeyed).

Ctrl-C, SIGINT, SIGTERM and SIGHUP end the app the way `q` does, so the terminal leaves
the alternate screen and mouse mode; `run_review` then says which signal it was, and
the command exits 128 + its number (130 for Ctrl-C).
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import re
import signal

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Label, Static, TextArea

from cards.check import GROUNDED
from cards.models import Draft, format_span
from cards.review_session import Notice, ReviewSession, Revision
from cards.store import Store
from cards.terminal import visible

_BADGES = {
    "draft": "bold black on yellow",
    "approved": "bold white on dark_green",
    "rejected": "bold white on red3",
    "duplicate": "bold black on dark_orange",
    "revision": "bold black on cyan",
}
_REMOVED = "bold red strike"
_ADDED = "bold green"


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


_SHOWN_FIELDS = ("id", "episode", "front", "back", "quote", "generator", "model", "prompt_version", "note_text",
                 "context_text", "duplicate_of", "claim", "reason")


def shown(d: Draft) -> Draft:
    """A copy of the draft for the screen: every text field made inert for the terminal."""
    changes = {f: visible(getattr(d, f)) for f in _SHOWN_FIELDS if getattr(d, f)}
    return dataclasses.replace(d, warnings=[visible(w) for w in d.warnings], **changes)


def _shown_revision(rev: Revision | None) -> Revision | None:
    return None if rev is None else dataclasses.replace(rev, old=shown(rev.old), new=shown(rev.new))


# Signals that end the review like `q` does (the terminal restored), and the exit status each gives.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _labels(d: Draft) -> tuple[str, str]:
    return ("Cloze", "Extra") if d.kind == "cloze" else ("Front", "Back")


def word_diff(old: str, new: str) -> tuple[Text, Text]:
    """Both texts with the words that differ marked: removed ones in the old, added ones in the new."""
    a, b = re.findall(r"\w+|[^\w\s]+|\s+", old), re.findall(r"\w+|[^\w\s]+|\s+", new)
    was, now = Text(), Text()
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            was.append("".join(a[i1:i2]))
            now.append("".join(b[j1:j2]))
        else:
            was.append("".join(a[i1:i2]), style=_REMOVED)
            now.append("".join(b[j1:j2]), style=_ADDED)
    return was, now


_REVISION_HEAD = {
    "pending": "a takes the new text · r keeps the old",
    "accepted": "accepted: the new text replaced the old",
    "kept": "rejected: the old text is kept",
}


def revision_view(rev: Revision) -> Group:
    """A revision as old → new in two columns, the changed words marked."""
    head = Text("Revision", style="bold")
    reasons = rev.reasons()
    if reasons:
        head.append(f" of an {', '.join(reasons)} card")  # approved, edited, exported
    head.append(f" — {_REVISION_HEAD[rev.state]}")
    if rev.old.kind != rev.new.kind:
        head.append(f"\nkind {rev.old.kind} → {rev.new.kind}", style="bold")
    if rev.old.lineage != rev.new.lineage and rev.old.exported is not None:
        head.append("\naccepting adds a new note to Anki; the old one is left there to delete", style="bold")
    table = Table(box=None, expand=True, pad_edge=False, show_edge=False)
    table.add_column(Text(""), no_wrap=True, width=6)
    table.add_column(Text("Was", style="bold"), ratio=1)
    table.add_column(Text("Now", style="bold"), ratio=1)
    labels = _labels(rev.new)
    for label, old, new in ((labels[0], rev.old.front, rev.new.front), (labels[1], rev.old.back, rev.new.back)):
        was, now = word_diff(old, new)
        if not old:
            was = Text("(empty)", style="dim")
        if not new:
            now = Text("(empty)", style="dim")
        table.add_row(Text(label, style="bold"), was, now)
    return Group(head, table)


def _note(d: Draft, revision: Revision | None) -> Text:
    """The reviewer's note; for a revision whose bullet was reworded, what it said before too."""
    if revision is None or revision.old.note_text == d.note_text:
        from cards.extract import is_extracted

        title = "Extracted from the transcript (not your note)" if is_extracted(d.note_text) else "Your note"
        return _section(title, d.note_text or "(no note text)")
    was, now = word_diff(revision.old.note_text, d.note_text)
    body = Text("was  ", style="bold")
    body.append(was)
    body.append("\nnow  ", style="bold")
    body.append(now)
    return _section("Your note (reworded since the old card)", body)


class CardView(VerticalScroll):
    """The scrolling card area; focused so up/down/page keys scroll it."""


class ReviewApp(App[dict]):
    """Draw a `ReviewSession` and turn keys into its calls; decisions go straight to the workspace."""

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
    #qa.revision { border: round $secondary; }
    #editor { display: none; height: auto; border: round $warning; padding: 0 1; margin-bottom: 1; }
    #editor TextArea { height: auto; min-height: 3; max-height: 12; margin-bottom: 0; }
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
        # Textual's own ctrl+c only says how to quit; here it quits, as an interrupt.
        Binding("ctrl+c", "interrupt", "Quit", show=False, priority=True),
    ]

    _OWN_ACTIONS = frozenset(b.action for b in BINDINGS)
    _EDIT_ACTIONS = frozenset({"save", "cancel_edit"})
    _ALWAYS = frozenset({"quit_review", "toggle_all", "interrupt"})

    def __init__(self, store: Store, episode: str | None = None, *, session: ReviewSession | None = None):
        super().__init__()
        self.session = session or ReviewSession(store, episode)
        self.editing = False
        self.stopped_by: int | None = None  # the signal (SIGINT for ctrl+c) that ended the review, if one did
        self._signals: list[int] = []

    @property
    def current(self) -> Draft | None:
        return self.session.current

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
                yield TextArea(id="edit-front", soft_wrap=True, tab_behavior="focus")
                yield Label(Text("Back"), id="edit-back-label")
                yield TextArea(id="edit-back", soft_wrap=True, tab_behavior="focus")
                yield Label(Text("ctrl+s saves · enter starts a new line · escape cancels · tab moves", style="dim"))
            yield Static(id="dup")
            yield Static(id="warnings")
            yield Static(id="note")
            yield Static(id="quote")
            yield Static(id="context")
        yield Footer()

    def on_mount(self) -> None:
        # Without these a SIGTERM or SIGHUP kills the process with the terminal still in the alternate
        # screen and mouse mode, and a SIGINT ends the app as if the review had simply finished.
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            try:
                loop.add_signal_handler(sig, self.stop, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
                continue
            self._signals.append(sig)
        self._show()
        self.query_one(CardView).focus()

    def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals = []

    def stop(self, sig: int) -> None:
        """End the review because of a signal (or ctrl+c); every decision is already saved."""
        if self.stopped_by is None:
            self.stopped_by = sig
        self.exit(self.session.summary())

    def _show(self) -> None:
        """Redraw everything from the current draft; untrusted text only ever as Text."""
        s = self.session
        reviewed, total = s.progress()
        progress = Text(f"{reviewed}/{total} reviewed")
        if s.show_all:
            progress.append(" · showing all", style="italic")
        self.query_one("#progress", Static).update(progress)

        banner = self.query_one("#banner", Static)
        card = self.query_one(CardView)
        d = s.current
        if d is not None:
            d = shown(d)
        if d is None:
            self.query_one("#where", Static).update(Text("cards review", style="bold"))
            banner.update(Text("Nothing to review — press q to quit"))
            banner.set_classes("show empty")
            card.display = False
            self.refresh_bindings()
            return
        card.display = True
        if reviewed == total:
            banner.update(Text(f"All {total} card{'' if total == 1 else 's'} reviewed — press q to quit"))
            banner.set_classes("show")
        else:
            banner.set_classes("")

        pos = s.position()
        where = Text("cards review  ", style="bold")
        where.append(visible(s.title(s.current.episode)), style="bold cyan")
        where.append(f"  · episode {pos.episode_number}/{pos.episodes} · card {pos.card_number}/{pos.cards}")
        self.query_one("#where", Static).update(where)

        revision = _shown_revision(s.revision(s.current))
        self.query_one("#meta", Static).update(self._meta(d, revision))
        qa = self.query_one("#qa", Static)
        qa.set_class(revision is not None, "revision")
        qa.update(self._qa(d) if revision is None else revision_view(revision))

        dup = self.query_one("#dup", Static)
        dup.update(self._duplicate(d))
        dup.display = d.duplicate_of is not None

        warnings = Text()
        for w in d.warnings:
            warnings.append("⚠ ", style="yellow")
            warnings.append(w)
            warnings.append("\n")
        warnings.rstrip()
        lint = warnings if d.warnings else Text("no warnings", style="dim")
        if d.claim or d.reason:  # the claim the card tests, and why it was set aside or rewritten when made
            head = Text()
            if d.claim:
                head.append("Claim: ", style="bold")
                head.append(d.claim)
                head.append("\n")
            if d.reason:
                head.append("Set aside: " if d.status == "rejected" else "Note: ", style="bold magenta")
                head.append(d.reason)
                head.append("\n")
            lint = head + lint
        self.query_one("#warnings", Static).update(_section("Lint", lint))

        self.query_one("#note", Static).update(_note(d, revision))
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

    @staticmethod
    def _qa(d: Draft) -> Text:
        front_label, back_label = _labels(d)
        qa = Text()
        qa.append(f"{front_label:<6} ", style="bold")
        qa.append(d.front)
        qa.append(f"\n{back_label:<6} ", style="bold")
        qa.append(d.back if d.back else "(empty)", style="" if d.back else "dim")
        return qa

    @staticmethod
    def _meta(d: Draft, revision: Revision | None) -> Text:
        t = Text()
        if revision is not None:
            t.append(" REVISION ", style=_BADGES["revision"])
            t.append(" ")
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
        other = self.session.duplicate_target(d)
        t = Text("duplicate of ", style="bold dark_orange")
        if other is None:
            t.append(f"a card that no longer exists ({d.duplicate_of})")
        else:
            t.append(f"“{visible(other.front)}”")
            t.append(f" ({other.id})", style="dim")
        t.append("  — press d if it is not", style="dim")
        return t

    # -- bindings -----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # True: shown and enabled; None: shown dimmed, disabled; False: hidden, disabled.
        if action not in self._OWN_ACTIONS or action == "interrupt":
            return True
        if self.editing:
            return action in self._EDIT_ACTIONS
        if action in self._EDIT_ACTIONS:
            return False
        current = self.session.current
        if current is None:
            return action in self._ALWAYS
        if action == "undup":
            return current.duplicate_of is not None
        if action == "undo":
            return True if self.session.can_undo else None
        return True

    # -- actions: each calls the session, says what it returned, and redraws --------------

    def _after(self, notice: Notice | None) -> None:
        if notice is not None:
            timeout = 3 if notice.severity == "error" else 2
            self.notify(visible(notice.text), severity=notice.severity, timeout=timeout, markup=False)
        self._show()

    def action_approve(self) -> None:
        self._after(self.session.approve())

    def action_reject(self) -> None:
        self._after(self.session.reject())

    def action_skip(self) -> None:
        self._after(self.session.skip())

    def action_next(self) -> None:
        self._after(self.session.next())

    def action_prev(self) -> None:
        self._after(self.session.prev())

    def action_next_episode(self) -> None:
        self._after(self.session.next_episode())

    def action_prev_episode(self) -> None:
        self._after(self.session.prev_episode())

    def action_undup(self) -> None:
        self._after(self.session.undup())

    def action_undo(self) -> None:
        self._after(self.session.undo())

    def action_toggle_all(self) -> None:
        self.session.toggle_all()
        self._show()

    def action_edit(self) -> None:
        d = self.session.current
        if d is None:
            return
        front_label, back_label = _labels(d)
        self.query_one("#edit-front-label", Label).update(Text(front_label))
        self.query_one("#edit-back-label", Label).update(Text(back_label))
        self.query_one("#edit-front", TextArea).load_text(visible(d.front))
        self.query_one("#edit-back", TextArea).load_text(visible(d.back))
        self.editing = True
        self.query_one(CardView).add_class("editing")
        self.query_one("#edit-front", TextArea).focus()
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
        if not self.editing or self.session.current is None:
            return
        d = self.session.current
        # A field left as shown keeps its text as stored, control characters and all.
        front, back = (self.query_one(f"#edit-{f}", TextArea).text for f in ("front", "back"))
        refused = self.session.edit(d.front if front == visible(d.front) else front,
                                    d.back if back == visible(d.back) else back)
        if refused is not None:
            self.notify(visible(refused.text), severity=refused.severity, timeout=3, markup=False)
            return
        self._close_editor()

    def action_quit_review(self) -> None:
        self.exit(self.session.summary())

    def action_interrupt(self) -> None:
        self.stop(signal.SIGINT)


def run_review(store: Store, episode: str | None = None) -> dict:
    """Run the review app and return what the session did; with nothing to review, don't start it.

    The summary (`ReviewSession.summary`) has `approved`, `rejected`, `edited`, `undup`,
    `skipped` (left undecided after a skip), `remaining` (still undecided), `total`
    (cards up for review; 0 means there was nothing to review and the app never
    started), and `revisions_accepted` / `revisions_kept` (of the approved / rejected,
    how many were revisions), and `signal`: the number of the signal that ended the review
    (SIGINT for ctrl+c), or None when it ended with `q`.
    """
    session = ReviewSession(store, episode)
    stopped_by = None
    if session.drafts:
        app = ReviewApp(store, episode, session=session)
        app.run()
        stopped_by = app.stopped_by
    return {**session.summary(), "signal": stopped_by}
