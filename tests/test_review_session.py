"""Review logic without a screen: decisions, navigation, undo and pending revisions, through a real workspace."""

from __future__ import annotations

import subprocess
import sys

from test_review import (
    EXPERTS,
    EXPERTS_AGAIN,
    draft,
    regenerate,
    status_in_db,
    with_revision,
    workspace,
)

from cards.review_session import Choice, Notice, ReviewSession
from cards.store import Store


def ids(session: ReviewSession) -> list[str]:
    return [d.id for d in session.drafts]


def test_approve_and_reject_are_saved_at_once_and_move_to_the_next_undecided(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2), draft(3)])
    s = ReviewSession(store)
    assert s.progress() == (0, 3) and s.current.id == draft(1).id
    assert s.approve() is None
    assert status_in_db(tmp_path, draft(1).id) == "approved"
    assert s.current.id == draft(2).id and s.progress() == (1, 3)
    s.choose(Choice.REJECT)
    assert status_in_db(tmp_path, draft(2).id) == "rejected"
    assert s.current.id == draft(3).id and s.progress() == (2, 3)
    s.approve()
    assert s.progress() == (3, 3) and s.current.id == draft(3).id  # nothing undecided: stays put
    s.index = 0
    s.approve()  # approving an approved card again writes nothing, so undo takes back the last real change
    assert s.summary()["approved"] == 2
    s.undo()
    assert status_in_db(tmp_path, draft(3).id) == "draft" and status_in_db(tmp_path, draft(1).id) == "approved"


def test_skip_keeps_the_status_wraps_around_and_counts_what_stays_undecided(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2), draft(3)])
    s = ReviewSession(store)
    s.skip()
    assert s.current.id == draft(2).id and status_in_db(tmp_path, draft(1).id) == "draft"
    s.choose(Choice.SKIP)
    assert s.current.id == draft(3).id
    s.approve()  # wraps around to the first undecided card
    assert s.current.id == draft(1).id
    assert s.summary() == {"approved": 1, "rejected": 0, "edited": 0, "undup": 0, "skipped": 2,
                           "remaining": 2, "total": 3, "revisions_accepted": 0, "revisions_kept": 0}
    s.approve()  # a skipped card decided later no longer counts as skipped
    assert s.summary()["skipped"] == 1


def test_undo_walks_back_this_sessions_changes_in_order(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2)])
    s = ReviewSession(store)
    assert not s.can_undo
    assert s.undo() == Notice("Nothing to undo in this session.")
    s.reject()
    s.edit("Edited?", "Answer 2")
    assert s.can_undo and status_in_db(tmp_path, draft(1).id) == "rejected"
    assert s.undo() == Notice("Undid edit.")
    assert store.draft(draft(2).id).front == "Question 2?" and s.current.id == draft(2).id
    assert s.undo() == Notice("Undid reject.")
    assert status_in_db(tmp_path, draft(1).id) == "draft"
    assert s.current.id == draft(1).id and s.progress() == (0, 2)
    assert s.summary()["rejected"] == 0 and s.summary()["edited"] == 0 and not s.can_undo


def test_undo_of_a_change_already_undone_elsewhere_warns(tmp_path):
    store = workspace(tmp_path, [draft(1)])
    s = ReviewSession(store)
    s.approve()
    with Store(tmp_path) as other:
        other.undo_last([draft(1).id])
    assert s.undo() == Notice("That change was already undone elsewhere.", "warning")


def test_edit_saves_trimmed_text_refuses_a_bad_cloze_and_ignores_no_change(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2, kind="cloze", front="V3 has {{c1::256}} experts.", back="")])
    s = ReviewSession(store)
    assert s.edit("  Question 1?  ", "Answer 1") is None
    assert not s.can_undo  # the same text: nothing written
    assert s.edit("Tap?", "Answer 1") is None
    saved = store.draft(draft(1).id)
    assert (saved.front, saved.back, saved.edited, saved.status) == ("Tap?", "Answer 1", True, "draft")
    assert s.current.front == "Tap?"
    s.next()
    refused = s.edit("V3 has 256 experts.", "")
    assert refused is not None and refused.severity == "error" and refused.text.endswith(".")
    assert store.draft(draft(2).id).front == "V3 has {{c1::256}} experts."
    assert s.summary()["edited"] == 1


def test_next_previous_and_episode_jumps_say_when_there_is_no_more(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2), draft(3, "ep-b"), draft(4, "ep-b")])
    s = ReviewSession(store)
    assert s.prev() == Notice("This is the first card.")
    assert s.position().episode_number == 1 and s.title(s.current.episode) == "Episode A"
    assert s.next_episode() is None
    assert s.current.id == draft(3).id
    pos = s.position()
    assert (pos.episode, pos.episode_number, pos.episodes, pos.card_number, pos.cards) == ("ep-b", 2, 2, 1, 2)
    assert s.next_episode() == Notice("No more episodes that way.")
    assert s.next() is None and s.current.id == draft(4).id
    assert s.next() == Notice("This is the last card.")
    assert s.prev_episode() is None and s.current.id == draft(1).id
    assert s.prev_episode() == Notice("No more episodes that way.")


def test_one_episode_and_the_fixed_set_under_review_until_show_all(tmp_path):
    store = workspace(tmp_path, [draft(1, status="approved"), draft(2), draft(3, superseded=True),
                                 draft(4, status="duplicate", duplicate_of=draft(2).id), draft(5, "ep-b")])
    assert ids(ReviewSession(store, "ep-b")) == [draft(5).id]
    s = ReviewSession(store, "ep-a")
    assert ids(s) == [draft(2).id, draft(4).id]
    s.approve()
    assert ids(s) == [draft(2).id, draft(4).id]  # a decided card stays reachable
    s.toggle_all()
    assert s.show_all and ids(s) == [draft(1).id, draft(2).id, draft(4).id]
    assert s.current.id == draft(4).id and s.progress() == (2, 3)
    s.toggle_all()
    assert ids(s) == [draft(2).id, draft(4).id] and s.progress() == (1, 2)


def test_not_a_duplicate_clears_the_link_and_undoes(tmp_path):
    store = workspace(tmp_path, [draft(1), draft(2, status="duplicate", duplicate_of=draft(1).id)])
    s = ReviewSession(store)
    assert s.undup() is None and not s.can_undo  # the first card is no duplicate: nothing happens
    s.next()
    assert s.duplicate_target(s.current).id == draft(1).id
    s.undup()
    d = store.draft(draft(2).id)
    assert (d.status, d.duplicate_of) == ("draft", None) and s.summary()["undup"] == 1
    s.undo()
    assert status_in_db(tmp_path, draft(2).id) == "duplicate"


def test_nothing_to_review_makes_every_call_harmless(tmp_path):
    store = workspace(tmp_path, [draft(1, status="approved")])
    s = ReviewSession(store)
    assert s.drafts == [] and s.current is None and s.position() is None
    assert s.approve() is None and s.skip() is None and s.edit("x", "y") is None and s.undup() is None
    assert s.next() is None and s.prev() is None and s.next_episode() is None
    assert status_in_db(tmp_path, draft(1).id) == "approved"
    assert s.summary()["total"] == 0


# -- pending revisions -------------------------------------------------------------------------------

def test_a_revision_is_up_for_review_as_a_pair_and_its_old_card_is_not_listed_alone(tmp_path):
    store, old, rev = with_revision(tmp_path, [draft(2)])
    s = ReviewSession(store)
    assert ids(s) == [rev.id, draft(2).id]
    pair = s.revision(s.current)
    assert pair.old.id == old.id and pair.new.id == rev.id and pair.state == "pending"
    assert (pair.old.front, pair.new.front) == (EXPERTS["front"], EXPERTS_AGAIN["front"])
    assert pair.reasons() == ["approved"]
    assert s.revision(s.drafts[1]) is None
    s.toggle_all()  # the approved old card is still shown only inside its revision
    assert ids(s) == [rev.id, draft(2).id]


def test_accepting_a_revision_takes_the_new_text_and_one_undo_restores_both_cards(tmp_path):
    store, old, rev = with_revision(tmp_path, [draft(2)])
    s = ReviewSession(store)
    s.approve()
    new, before = store.draft(rev.id), store.draft(old.id)
    assert (new.status, new.revision_of, new.superseded) == ("approved", None, False)
    assert before.superseded
    assert [d.id for d in store.export_plan("ep-a", include_drafts=False).cards] == [rev.id]
    assert s.revision(s.drafts[0]).state == "accepted"  # still shown as the pair it was
    assert s.current.id == draft(2).id
    summary = s.summary()
    assert (summary["approved"], summary["revisions_accepted"], summary["revisions_kept"]) == (1, 1, 0)

    assert s.undo() == Notice("Undid accepting the revision.")
    new, before = store.draft(rev.id), store.draft(old.id)
    assert (new.status, new.revision_of, new.superseded) == ("draft", old.id, False)
    assert (before.status, before.superseded) == ("approved", False)
    assert s.current.id == rev.id and s.revision(s.current).state == "pending"
    assert s.revision(s.current).old.superseded is False
    assert s.summary()["revisions_accepted"] == 0 and s.summary()["approved"] == 0


def test_rejecting_a_revision_keeps_the_old_text_and_stays_reachable(tmp_path):
    store, old, rev = with_revision(tmp_path, [draft(2)])
    s = ReviewSession(store)
    s.reject()
    kept, dropped = store.draft(old.id), store.draft(rev.id)
    assert (kept.status, kept.superseded, kept.front) == ("approved", False, EXPERTS["front"])
    assert (dropped.status, dropped.superseded) == ("rejected", True)
    assert s.revision(s.drafts[0]).state == "kept" and s.progress() == (1, 2)
    summary = s.summary()
    assert (summary["rejected"], summary["revisions_kept"], summary["revisions_accepted"]) == (1, 1, 0)
    s.toggle_all()
    s.toggle_all()
    assert ids(s) == [rev.id, draft(2).id]  # a dropped revision is still this session's card
    s.toggle_all()
    assert rev.id in ids(s) and old.id in ids(s)  # with no pending revision, the old card is its own again
    s.toggle_all()
    s.index = 0
    assert s.undo() == Notice("Undid keeping the old text.")
    assert store.draft(rev.id).revision_of == old.id and not store.draft(rev.id).superseded
    assert s.revision(s.current).state == "pending"


def test_editing_a_revision_changes_the_new_text_only(tmp_path):
    store, old, rev = with_revision(tmp_path)
    s = ReviewSession(store)
    assert s.edit("How many routed experts are in DeepSeek V3?", "256") is None
    edited = store.draft(rev.id)
    assert (edited.front, edited.back, edited.edited, edited.revision_of) == (
        "How many routed experts are in DeepSeek V3?", "256", True, old.id)
    assert store.draft(old.id).front == EXPERTS["front"]
    pair = s.revision(s.current)
    assert pair.state == "pending" and pair.new.front == edited.front
    s.approve()
    assert store.draft(rev.id).front == edited.front and store.draft(rev.id).status == "approved"


def test_a_revision_of_an_edited_undecided_card_hides_that_card(tmp_path):
    store = workspace(tmp_path, [draft(1, **EXPERTS)])
    old = store.update_draft(draft(1).id, action="edit", front="How many experts, exactly, in V3?")
    rev = regenerate(store, old, 0, 9, **EXPERTS)
    assert rev.revision_of == old.id and old.status == "draft"
    s = ReviewSession(store)
    assert ids(s) == [rev.id]
    pair = s.revision(s.current)
    assert pair.reasons() == ["edited"] and pair.old.front == "How many experts, exactly, in V3?"


def live_state(store: Store, *draft_ids: str) -> list[tuple[str, bool]]:
    return [(store.draft(i).status, store.draft(i).superseded) for i in draft_ids]


def test_changing_the_mind_about_a_decided_revision_leaves_one_live_card(tmp_path):
    store, old, rev = with_revision(tmp_path)
    s = ReviewSession(store)
    s.reject()
    assert live_state(store, old.id, rev.id) == [("approved", False), ("rejected", True)]
    s.approve()  # the old text was kept; take the new after all
    assert live_state(store, old.id, rev.id) == [("approved", True), ("approved", False)]
    assert s.revision(s.current).state == "accepted"
    assert [d.id for d in store.export_plan("ep-a", include_drafts=False).cards] == [rev.id]
    s.reject()  # and back: the old card returns, the new one is dropped
    assert live_state(store, old.id, rev.id) == [("approved", False), ("rejected", True)]
    assert s.revision(s.current).state == "kept"
    assert [d.id for d in store.export_plan("ep-a", include_drafts=False).cards] == [old.id]
    assert s.summary()["revisions_kept"] == 1 and s.summary()["revisions_accepted"] == 0

    assert s.undo() == Notice("Undid keeping the old text.")  # both steps of that change at once
    assert live_state(store, old.id, rev.id) == [("approved", True), ("approved", False)]
    assert s.undo() == Notice("Undid accepting the revision.")
    assert live_state(store, old.id, rev.id) == [("approved", False), ("rejected", True)]
    s.undo()
    assert live_state(store, old.id, rev.id) == [("approved", False), ("draft", False)]
    assert store.draft(rev.id).revision_of == old.id and s.revision(s.current).state == "pending"


def test_the_session_needs_no_screen_library():
    code = "import sys, cards.review_session; print('textual' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_accept_keep_accept_again_never_leaves_two_live_cards(tmp_path):
    store, old, rev = with_revision(tmp_path)
    s = ReviewSession(store)
    s.approve()
    s.reject()
    s.approve()
    assert live_state(store, old.id, rev.id) == [("approved", True), ("approved", False)]
    assert [d.id for d in store.export_plan("ep-a", include_drafts=False).cards] == [rev.id]
    s.reject()
    assert live_state(store, old.id, rev.id) == [("approved", False), ("rejected", True)]
    assert [d.id for d in store.export_plan("ep-a", include_drafts=False).cards] == [old.id]
