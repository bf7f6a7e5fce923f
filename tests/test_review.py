"""The review app saves every decision at once, navigates cards and episodes, and shows text literally."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.geometry import Region
from textual.widgets import Footer, TextArea
from textual.widgets._footer import FooterKey

from cards import review
from cards.lineage import NoteChanges
from cards.models import Draft, Episode, NoteItem
from cards.models import format_span, format_time
from cards.review import ReviewApp, find_quote, passage_text, run_review, word_diff
from cards.store import Store

SIZE = (160, 60)


def draft(n: int, episode: str = "ep-a", **kw) -> Draft:
    values = dict(
        id=f"{n:016x}",
        note_id=f"note{n}",
        episode=episode,
        kind="basic",
        front=f"Question {n}?",
        back=f"Answer {n}",
        quote=f"quote number {n}",
        tags=[],
        generator="openai",
        model="gpt-test",
        prompt_version="1",
        note_text=f"my note {n}",
        context_text=f"Some talk before. Then quote number {n} is said. More talk.",
        context_start=65.0,
        context_end=80.0,
        grounding=0.95,
        created=float(n),
        updated=float(n),
    )
    values.update(kw)
    return Draft(**values)


def workspace(folder: Path, drafts: list[Draft], titles: dict[str, str] | None = None) -> Store:
    """A workspace holding these drafts, built the way a generate run builds one."""
    store = Store(folder)
    for slug, title in (titles or {"ep-a": "Episode A", "ep-b": "Episode B"}).items():
        store.sync_episode(Episode(slug, title), [], NoteChanges(), align_versions=[], transcript_hash=None)
    for pos, d in enumerate(drafts):
        note = NoteItem(d.note_id, d.episode, d.note_text, "bullet", None, (), pos)
        store.record_generation(gen_id=f"gen{pos}", note=note, spec="spec", parts={}, generator=d.generator,
                                model=d.model, prompt_version=d.prompt_version, key=f"key{pos}", error=None,
                                drafts=[d], tokens_in=0, tokens_out=0, cached_tokens=0, requests=1,
                                from_cache=False, raw=None, run_id=None)
    return store


def regenerate(store: Store, old: Draft, position: int, n: int, **kw) -> Draft:
    """Generate the note of `old` again (at its position) with one card; lineage decides what it becomes."""
    new = draft(n, old.episode, note_id=old.note_id, note_text=old.note_text, **kw)
    note = NoteItem(old.note_id, old.episode, old.note_text, "bullet", None, (), position)
    store.record_generation(gen_id=f"regen{n}", note=note, spec="spec2", parts={}, generator=new.generator,
                            model=new.model, prompt_version=new.prompt_version, key=f"regen{n}", error=None,
                            drafts=[new], tokens_in=0, tokens_out=0, cached_tokens=0, requests=1,
                            from_cache=False, raw=None, run_id=None)
    return store.draft(new.id)


EXPERTS = {"front": "How many experts does DeepSeek V3 have?", "back": "256 experts"}
EXPERTS_AGAIN = {"front": "How many experts are in DeepSeek V3?", "back": "256 routed experts"}


def with_revision(folder: Path, extra: list[Draft] = ()) -> tuple[Store, Draft, Draft]:
    """A workspace whose first card was approved and then regenerated: (store, old card, its revision)."""
    store = workspace(folder, [draft(1, **EXPERTS), *extra])
    old = store.update_draft(draft(1).id, action="approve", status="approved")
    rev = regenerate(store, old, 0, 9, **EXPERTS_AGAIN)
    assert rev.revision_of == old.id and rev.lineage == old.lineage and rev.status == "draft"
    return store, old, rev


def shown(app: ReviewApp, selector: str) -> str:
    """The text a widget actually renders, line by line (after any markup processing)."""
    w = app.query_one(selector)
    lines = w.render_lines(Region(0, 0, *w.outer_size))
    return "\n".join(line.text.strip() for line in lines)


def status_in_db(folder: Path, draft_id: str) -> str:
    """Read through a second connection, as another process would."""
    with Store(folder) as other:
        return other.draft(draft_id).status


def run(scenario) -> None:
    asyncio.run(scenario())


def test_approve_is_saved_immediately_and_moves_to_the_next_card(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2), draft(3)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            assert shown(app, "#progress") == "0/3 reviewed"
            await pilot.press("a")
            assert status_in_db(tmp_path, draft(1).id) == "approved"
            assert app.current.id == draft(2).id
            assert shown(app, "#progress") == "1/3 reviewed"
            await pilot.press("r")
            assert status_in_db(tmp_path, draft(2).id) == "rejected"
            assert app.current.id == draft(3).id
            assert shown(app, "#progress") == "2/3 reviewed"

    run(scenario)


def test_skip_leaves_the_status_and_comes_back_around(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2), draft(3)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("s")
            assert app.current.id == draft(2).id
            assert status_in_db(tmp_path, draft(1).id) == "draft"
            await pilot.press("space")
            assert app.current.id == draft(3).id
            await pilot.press("a")  # wraps around to the first undecided card
            assert app.current.id == draft(1).id
            assert shown(app, "#progress") == "1/3 reviewed"
            await pilot.press("q")
        assert app.return_value["skipped"] == 2
        assert app.return_value["approved"] == 1
        assert app.return_value["remaining"] == 2

    run(scenario)


def test_undo_restores_the_last_decision_in_the_database(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("r")
            assert status_in_db(tmp_path, draft(1).id) == "rejected"
            await pilot.press("u")
            assert status_in_db(tmp_path, draft(1).id) == "draft"
            assert app.current.id == draft(1).id
            assert shown(app, "#progress") == "0/2 reviewed"
            await pilot.press("q")
        assert app.return_value["rejected"] == 0

    run(scenario)


def test_edit_changes_the_front_in_place_and_keeps_the_id(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("e")
            front = app.query_one("#edit-front", TextArea)
            assert app.focused is front
            front.load_text("")
            await pilot.press(*"Tap?", "ctrl+s")  # 'a' and 'p' type text; they don't approve or page
            assert not app.editing
            await pilot.press("q")
        assert app.return_value["edited"] == 1

    run(scenario)
    with Store(tmp_path) as other:
        saved = other.draft(draft(1).id)
        assert saved.front == "Tap?"
        assert saved.back == "Answer 1"
        assert saved.edited is True
        assert saved.status == "draft"
        assert len(other.drafts()) == 2


def test_a_cloze_edit_without_a_deletion_is_refused(tmp_path):
    store = workspace(tmp_path, [draft(1, kind="cloze", front="V3 has {{c1::256}} experts.", back="")])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("e")
            app.query_one("#edit-front", TextArea).load_text("V3 has 256 experts.")
            await pilot.press("ctrl+s")
            assert app.editing  # still open: nothing saved
            await pilot.press("escape", "q")

    run(scenario)
    with Store(tmp_path) as other:
        saved = other.draft(draft(1).id)
        assert saved.front == "V3 has {{c1::256}} experts." and saved.edited is False


def test_edit_back_saves_with_ctrl_s_and_escape_cancels(tmp_path):
    store = workspace(tmp_path, [draft(1)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("e", "tab")
            assert app.focused is app.query_one("#edit-back", TextArea)
            await pilot.press("end", "!", "ctrl+s")
            assert store.draft(draft(1).id).back == "Answer 1!"
            assert "Answer 1!" in shown(app, "#qa")

            await pilot.press("e", "j", "escape")
            assert not app.editing
            assert store.draft(draft(1).id).front == "Question 1?"
            assert "Question 1?j" not in shown(app, "#qa")

    run(scenario)


def test_next_previous_card_and_episode_navigation(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2), draft(3, "ep-b"), draft(4, "ep-b")])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            assert "Episode A" in shown(app, "#where")
            await pilot.press("]")
            assert app.current.id == draft(3).id
            assert "Episode B" in shown(app, "#where")
            assert "episode 2/2" in shown(app, "#where")
            await pilot.press("n")
            assert app.current.id == draft(4).id
            await pilot.press("[")
            assert app.current.id == draft(1).id
            await pilot.press("right", "right")
            assert app.current.id == draft(3).id
            await pilot.press("left", "p")
            assert app.current.id == draft(1).id

    run(scenario)


def test_one_episode_only_when_asked(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2, "ep-b")])
    app = ReviewApp(store, "ep-b")
    assert [d.id for d in app.session.drafts] == [draft(2).id]


def test_all_reviewed_message_and_summary_on_quit(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            assert "reviewed —" not in shown(app, "#banner")
            await pilot.press("a", "r")
            assert shown(app, "#banner").strip() == "All 2 cards reviewed — press q to quit"
            await pilot.press("q")
        assert app.return_value == {"approved": 1, "rejected": 1, "edited": 0, "undup": 0,
                                    "skipped": 0, "remaining": 0, "total": 2,
                                    "revisions_accepted": 0, "revisions_kept": 0}

    run(scenario)


def test_decided_and_superseded_drafts_are_left_out_until_show_all(tmp_path):
    store = workspace(tmp_path, [draft(1, status="approved"), draft(2), draft(3, superseded=True),
                                 draft(4, status="duplicate", duplicate_of=draft(2).id)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            assert [d.id for d in app.session.drafts] == [draft(2).id, draft(4).id]
            await pilot.press("t")
            assert [d.id for d in app.session.drafts] == [draft(1).id, draft(2).id, draft(4).id]
            assert shown(app, "#progress") == "1/3 reviewed · showing all"
            assert app.current.id == draft(2).id  # stays on the card it was on
            await pilot.press("t")
            assert shown(app, "#progress") == "0/2 reviewed"

    run(scenario)


def test_not_a_duplicate_clears_the_link(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2, status="duplicate", duplicate_of=draft(1).id)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("d")  # not a duplicate: nothing happens on the first card
            assert status_in_db(tmp_path, draft(1).id) == "draft"
            await pilot.press("n")
            assert f"duplicate of “Question 1?” ({draft(1).id})" in shown(app, "#dup")
            assert "DUPLICATE" in shown(app, "#meta")
            await pilot.press("d")
            with Store(tmp_path) as other:
                d = other.draft(draft(2).id)
                assert (d.status, d.duplicate_of) == ("draft", None)
            assert not app.query_one("#dup").display
            await pilot.press("u")
            assert status_in_db(tmp_path, draft(2).id) == "duplicate"

    run(scenario)


def test_untrusted_text_is_shown_literally(tmp_path):
    nasty = draft(
        1, "ep-x",
        front="[bold]x[/bold] <script>alert(1)</script>",
        back="[/] [link=http://evil]y[/link]",
        note_text="[red]my note[/red] & <b>",
        quote="[i]said[/i]",
        context_text="Before [i]said[/i] after [/bold]",
        warnings=["front: [blink]too long[/blink]"],
    )
    store = workspace(tmp_path, [nasty], {"ep-x": "[b]Title[/b] <i>"})

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE):
            assert "[bold]x[/bold] <script>alert(1)</script>" in shown(app, "#qa")
            assert "[/] [link=http://evil]y[/link]" in shown(app, "#qa")
            assert "[red]my note[/red] & <b>" in shown(app, "#note")
            assert "[i]said[/i]" in shown(app, "#quote")
            assert "Before [i]said[/i] after [/bold]" in shown(app, "#context")
            assert "front: [blink]too long[/blink]" in shown(app, "#warnings")
            assert "[b]Title[/b] <i>" in shown(app, "#where")

    run(scenario)


def test_card_shows_time_generator_grounding_and_warnings(tmp_path):
    store = workspace(tmp_path, [draft(1, generator="offline", model="none", context_start=3725.0,
                                       context_end=3740.5, grounding=0.4, warnings=["yes-no: a yes/no question"])])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE):
            assert "Transcript 1:02:05–1:02:20" in shown(app, "#context")
            meta = shown(app, "#meta")
            assert "offline generator" in meta and "grounding 0.40" in meta and "DRAFT" in meta
            assert "yes-no: a yes/no question" in shown(app, "#warnings")
            assert "my note 1" in shown(app, "#note")

    run(scenario)


def test_footer_lists_the_review_keys_and_swaps_them_while_editing(tmp_path):
    store = workspace(tmp_path, [draft(1)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            keys = {k.key for k in app.query_one(Footer).query(FooterKey)}
            assert {"a", "r", "e", "s", "u", "n", "p", "q", "t",
                    "left_square_bracket", "right_square_bracket"} <= keys
            assert "ctrl+s" not in keys
            await pilot.press("e")
            await pilot.pause()
            keys = {k.key for k in app.query_one(Footer).query(FooterKey)}
            assert {"ctrl+s", "escape"} <= keys and "a" not in keys

    run(scenario)


def test_nothing_to_review(tmp_path, monkeypatch):
    store = workspace(tmp_path, [draft(1, status="approved")])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            assert "Nothing to review" in shown(app, "#banner")
            await pilot.press("a")
            assert status_in_db(tmp_path, draft(1).id) == "approved"
            await pilot.press("q")
            await pilot.pause()
            assert app.return_value["total"] == 0

    run(scenario)

    def must_not_start(self, *a, **kw):
        raise AssertionError("the app started with nothing to review")

    monkeypatch.setattr(review.ReviewApp, "run", must_not_start)
    assert run_review(store)["total"] == 0


def test_time_formatting_and_quote_highlight():
    assert format_time(5) == "0:05"
    assert format_time(725) == "12:05"
    assert format_time(3725.9) == "1:02:05"
    assert format_span(65, 80) == "1:05–1:20"
    assert format_span(65, None) == "from 1:05"
    assert format_span(None, 80) is None
    assert format_time(None) == ""
    passage = "He said  that V3 has\n256 experts, really."
    span = (passage.index("V3"), passage.index(","))
    assert find_quote(passage, "v3 has 256 experts") == span
    assert find_quote(passage, "not there") is None
    text = passage_text(passage, "v3 has 256 experts")
    assert [(s.start, s.end) for s in text.spans] == [span]
    assert passage_text(passage, "absent").spans == []


@pytest.mark.parametrize("key", ["a", "r"])
def test_a_decision_survives_leaving_without_quit(tmp_path, key):
    store = workspace(tmp_path, [draft(1), draft(2)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(key)
        # the app was torn down without q: the decision is already on disk

    run(scenario)
    assert status_in_db(tmp_path, draft(1).id) == {"a": "approved", "r": "rejected"}[key]


# -- pending revisions -------------------------------------------------------------------------------

def test_a_revision_shows_old_and_new_side_by_side(tmp_path):
    store, _, _ = with_revision(tmp_path, [draft(2)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE):
            qa = shown(app, "#qa")
            assert "Revision of an approved card — a takes the new text · r keeps the old" in qa
            was_row = next(line for line in qa.splitlines() if "Front" in line)
            assert EXPERTS["front"] in was_row and EXPERTS_AGAIN["front"] in was_row
            assert was_row.index(EXPERTS["front"]) < was_row.index(EXPERTS_AGAIN["front"])  # old, then new
            assert "Was" in qa and "Now" in qa and EXPERTS["back"] in qa and EXPERTS_AGAIN["back"] in qa
            assert "REVISION" in shown(app, "#meta") and "DRAFT" in shown(app, "#meta")
            assert app.query_one("#qa").has_class("revision")
            assert shown(app, "#note").startswith("Your note\nmy note 1")  # the same bullet: shown once

    run(scenario)


def test_a_accepts_a_revision_and_u_puts_both_cards_back(tmp_path):
    store, old, rev = with_revision(tmp_path, [draft(2)])

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("a")
            with Store(tmp_path) as other:
                assert other.draft(rev.id).status == "approved" and other.draft(old.id).superseded
            assert app.current.id == draft(2).id
            assert shown(app, "#progress") == "1/2 reviewed"
            await pilot.press("p")
            assert "accepted: the new text replaced the old" in shown(app, "#qa")
            assert "REVISION" in shown(app, "#meta") and "APPROVED" in shown(app, "#meta")
            await pilot.press("u")
            with Store(tmp_path) as other:
                assert other.draft(rev.id).revision_of == old.id and not other.draft(old.id).superseded
            assert "a takes the new text" in shown(app, "#qa")
            await pilot.press("a", "q")
        assert app.return_value["revisions_accepted"] == 1 and app.return_value["approved"] == 1

    run(scenario)


def test_r_keeps_the_old_text_of_a_revision(tmp_path):
    store, old, rev = with_revision(tmp_path)

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("r")
            assert "rejected: the old text is kept" in shown(app, "#qa")
            assert shown(app, "#banner").strip() == "All 1 card reviewed — press q to quit"
            await pilot.press("q")
        assert app.return_value["revisions_kept"] == 1 and app.return_value["rejected"] == 1

    run(scenario)
    with Store(tmp_path) as other:
        kept = other.draft(old.id)
        assert (kept.front, kept.status, kept.superseded) == (EXPERTS["front"], "approved", False)
        assert other.draft(rev.id).superseded


def test_e_on_a_revision_edits_the_new_text(tmp_path):
    store, old, rev = with_revision(tmp_path)

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("e")
            assert app.query_one("#edit-front", TextArea).text == EXPERTS_AGAIN["front"]
            app.query_one("#edit-front", TextArea).load_text("How many routed experts in V3?")
            await pilot.press("ctrl+s")
            assert "How many routed experts in V3?" in shown(app, "#qa")
            assert EXPERTS["front"] in shown(app, "#qa")  # the old text is still beside it

    run(scenario)
    with Store(tmp_path) as other:
        assert other.draft(rev.id).front == "How many routed experts in V3?"
        assert other.draft(rev.id).revision_of == old.id
        assert other.draft(old.id).front == EXPERTS["front"]


def test_a_revisions_untrusted_text_is_shown_literally(tmp_path):
    store = workspace(tmp_path, [draft(1, front="[bold]How many[/bold] experts in V3?", back="256 <b>experts</b>")])
    old = store.update_draft(draft(1).id, action="approve", status="approved")
    regenerate(store, old, 0, 9, front="[bold]How many[/bold] experts [link=http://evil]in V3[/link]?",
               back="256 <b>experts</b> [/]")

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE):
            qa = shown(app, "#qa")
            assert "[bold]How many[/bold] experts in V3?" in qa
            assert "[bold]How many[/bold] experts [link=http://evil]in V3[/link]?" in qa
            assert "256 <b>experts</b> [/]" in qa

    run(scenario)


def test_word_diff_marks_removed_and_added_words():
    was, now = word_diff("How many experts does DeepSeek V3 have?", "How many experts are in DeepSeek V3?")
    assert was.plain == "How many experts does DeepSeek V3 have?"
    assert now.plain == "How many experts are in DeepSeek V3?"
    removed = {was.plain[s.start:s.end].strip() for s in was.spans}
    added = {now.plain[s.start:s.end].strip() for s in now.spans}
    assert removed == {"does", "have"} and added == {"are in"}
    same, same_too = word_diff("unchanged [b]text[/b]", "unchanged [b]text[/b]")
    assert same.spans == [] and same_too.spans == [] and same.plain == "unchanged [b]text[/b]"


def test_a_revision_from_a_reworded_bullet_shows_the_note_before_and_after(tmp_path):
    store = workspace(tmp_path, [draft(1, **EXPERTS, note_text="v3 has 265 experts")])
    old = store.update_draft(draft(1).id, action="approve", status="approved")
    # The bullet is reworded: a new note that the workspace links to the one it rewords.
    item = NoteItem("note1-fixed", "ep-a", "v3 has 256 experts", "bullet", None, (), 0)
    store.sync_episode(Episode("ep-a", "Episode A", items=[item]), [None],
                       NoteChanges(new=[item.id], edited={item.id: old.note_id}, retired=[old.note_id]),
                       align_versions=[None], transcript_hash=None)
    rev = regenerate(store, draft(0, note_id=item.id, note_text=item.text), 0, 9, **EXPERTS_AGAIN)
    assert rev.revision_of == old.id and rev.note_text == "v3 has 256 experts"

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE):
            note = shown(app, "#note")
            assert "Your note (reworded since the old card)" in note
            assert "was  v3 has 265 experts" in note and "now  v3 has 256 experts" in note

    run(scenario)
