"""Editing in the review app: fields take several lines, lint is redone at once, and ctrl+c ends the
review as an interrupt rather than being swallowed."""

from __future__ import annotations

import signal

from test_review import SIZE, draft, run, shown, workspace
from textual.widgets import TextArea

from cards.review import ReviewApp
from cards.store import Store

YES_NO = "yes-no: a yes/no question; ask for the fact itself"


def test_an_edit_is_linted_again_at_once_and_undo_lints_the_old_text(tmp_path):
    store = workspace(tmp_path, [draft(1)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            assert "no warnings" in shown(app, "#warnings")
            await pilot.press("e")
            app.query_one("#edit-front", TextArea).load_text("Is the reactor in Kemmerer big?")
            await pilot.press("ctrl+s")
            assert not app.editing
            assert YES_NO in shown(app, "#warnings")  # before: shown only after the review ended
            assert store.draft(draft(1).id).warnings == [YES_NO]
            await pilot.press("u")
            assert "no warnings" in shown(app, "#warnings")
            assert store.draft(draft(1).id).warnings == []

    run(scenario)


def test_fields_take_several_lines(tmp_path):
    store = workspace(tmp_path, [draft(1)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("e", "tab", "end", "enter", *"and more", "ctrl+s")
            assert not app.editing

    run(scenario)
    with Store(tmp_path) as other:
        assert other.draft(draft(1).id).back == "Answer 1\nand more"


def test_ctrl_c_ends_the_review_as_an_interrupt_even_while_editing(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("a", "e", "ctrl+c")
        assert app.stopped_by == signal.SIGINT
        assert app.return_value["approved"] == 1  # what was decided stays decided

    run(scenario)
