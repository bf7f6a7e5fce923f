"""Card lineage: matching regenerated cards to their predecessors, revisions, and what export does."""

from __future__ import annotations

import pytest

from cards import lineage
from cards.lineage import NoteChanges, match, note_changes
from cards.models import Draft, Episode, NoteItem
from cards.store import Store


def card(n: int, front: str, back: str = "", **kw) -> Draft:
    values = dict(id=f"d{n}", note_id="note", episode="ep", kind="basic", front=front, back=back, quote="",
                  tags=[], generator="openai", model="m", prompt_version="1", created=float(n), updated=float(n))
    values.update(kw)
    return Draft(**values)


EXPERTS = card(1, "How many experts does DeepSeek V3 have?", "256 experts")
LOSS = card(2, "What does DeepSeek V3 use instead of an auxiliary loss?", "A bias term per expert")
IDLE = card(3, "Why do some GPUs sit idle in expert parallelism?", "Uneven routing of tokens to experts")


def test_reordered_cards_keep_their_own_predecessors():
    new = [card(10, LOSS.front, "a per-expert bias term"), card(11, "How many experts has DeepSeek V3?", "256")]
    assert match([EXPERTS, LOSS], new) == {0: (1, pytest.approx(lineage.similarity(LOSS, new[0]))),
                                           1: (0, pytest.approx(lineage.similarity(EXPERTS, new[1])))}


def test_one_card_becoming_two_continues_once_and_starts_one_lineage():
    new = [card(10, "How many routed experts does DeepSeek V3 have?", "256"),
           card(11, "What keeps DeepSeek V3's experts evenly loaded?", "A per-expert bias instead of a loss")]
    got = match([EXPERTS], new)
    assert list(got) == [0] and got[0][0] == 0


def test_two_cards_becoming_one_continue_the_closer_one():
    new = [card(10, "How many experts does DeepSeek V3 route between?", "256 experts")]
    assert {i: j for i, (j, _) in match([LOSS, EXPERTS], new).items()} == {0: 1}


def test_zero_new_cards_match_nothing_and_unrelated_cards_start_fresh():
    assert match([EXPERTS, LOSS], []) == {}
    assert match([EXPERTS], [card(10, "Which company makes Trainium?", "Amazon")]) == {}


def test_equally_alike_cards_go_by_position():
    a, b = card(1, "Same question?", "Same answer"), card(2, "Same question?", "Same answer")
    new = [card(10, "Same question?", "Same answer"), card(11, "Same question?", "Same answer")]
    assert {i: j for i, (j, _) in match([a, b], new).items()} == {0: 0, 1: 1}


def item(text: str, position: int, episode: str = "ep") -> NoteItem:
    return NoteItem(NoteItem.make_id(episode, text), episode, text, "bullet", None, (), position)


class Known:
    def __init__(self, it: NoteItem, active: bool = True, sources=("notes.md",)):
        self.id, self.text, self.position, self.active, self.sources = it.id, it.text, it.position, active, sources


def test_a_typo_fixed_is_the_same_note_and_a_new_bullet_is_new():
    old = [item("v3 has 265 experts", 0), item("what is tranium, amazon's chip", 1)]
    new = [item("v3 has 256 experts", 0), item("what is trainium, amazon's chip", 1),
           item("nvidia's moat is cuda", 2)]
    changes = note_changes({k.id: Known(k) for k in old}, new, {"notes.md"})
    assert changes.edited == {new[0].id: old[0].id, new[1].id: old[1].id}
    assert set(changes.new) == {n.id for n in new} and set(changes.retired) == {o.id for o in old}


def test_notes_in_files_not_read_are_not_retired():
    old = [item("a bullet from another file", 0)]
    changes = note_changes({old[0].id: Known(old[0], sources=("other.md",))}, [], {"notes.md"})
    assert changes.retired == []


# -- through the workspace ---------------------------------------------------------------------------

def generation(store: Store, note: NoteItem, cards: list[Draft], n: int) -> list[Draft]:
    fresh = [Draft(**{**c.__dict__, "id": f"g{n}-{i}", "note_id": note.id, "lineage": "", "changed": 0.0,
                      "revision_of": None, "created": 0.0}) for i, c in enumerate(cards)]
    store.record_generation(gen_id=f"g{n}", note=note, spec=f"s{n}", parts={}, generator="openai", model="m",
                            prompt_version="1", key=f"k{n}", error=None, drafts=fresh, tokens_in=0, tokens_out=0,
                            cached_tokens=0, requests=1, from_cache=False, raw=None, run_id=None)
    return [store.draft(d.id) for d in fresh]


@pytest.fixture
def store(tmp_path):
    ticks = iter(range(1_000, 100_000, 10))
    with Store(tmp_path, clock=lambda: float(next(ticks))) as st:
        st.sync_episode(Episode("ep", "Episode"), [], NoteChanges(), align_versions=[], transcript_hash=None)
        yield st


NOTE = item("v3 has 256 experts and uses no auxiliary loss", 0)


def test_an_undecided_card_is_replaced_under_the_same_guid(store):
    [first] = generation(store, NOTE, [EXPERTS], 1)
    [second] = generation(store, NOTE, [card(0, "How many experts are in DeepSeek V3?", "256")], 2)
    assert second.lineage == first.lineage == first.id and second.revision_of is None
    assert store.draft(first.id).superseded and not second.superseded


def test_an_approved_card_gets_a_pending_revision_that_export_holds_back(store):
    [first] = generation(store, NOTE, [EXPERTS], 1)
    store.update_draft(first.id, action="approved", status="approved")
    [rev] = generation(store, NOTE, [card(0, "How many experts are in DeepSeek V3?", "256")], 2)
    assert rev.revision_of == first.id and rev.lineage == first.lineage and rev.status == "draft"
    plan = store.export_plan("ep", include_drafts=True)
    assert [d.id for d in plan.cards] == [first.id] and plan.pending_revisions == 1

    accepted = store.update_draft(rev.id, action="approved", status="approved")
    assert accepted.revision_of is None and accepted.status == "approved" and accepted.changed > first.changed
    assert store.draft(first.id).superseded
    assert [d.id for d in store.export_plan("ep", include_drafts=False).cards] == [rev.id]

    store.undo_last([rev.id])  # one undo puts both cards back
    assert not store.draft(first.id).superseded and store.draft(rev.id).revision_of == first.id


def test_rejecting_a_revision_keeps_the_old_card(store):
    [first] = generation(store, NOTE, [EXPERTS], 1)
    store.update_draft(first.id, action="edit", front="How many experts, exactly, in V3?")
    [rev] = generation(store, NOTE, [EXPERTS], 2)
    assert rev.revision_of == first.id  # an edit is never overwritten silently
    store.update_draft(rev.id, action="rejected", status="rejected")
    assert store.draft(rev.id).superseded
    kept = store.draft(first.id)
    assert not kept.superseded and kept.front == "How many experts, exactly, in V3?"


def test_a_regenerated_card_identical_to_the_approved_one_is_not_a_revision(store):
    [first] = generation(store, NOTE, [EXPERTS], 1)
    store.update_draft(first.id, action="approved", status="approved")
    [same] = generation(store, NOTE, [EXPERTS], 2)
    assert same.superseded and not store.draft(first.id).superseded


def test_a_rejection_carries_to_the_same_card_but_not_to_a_different_one(store):
    [first] = generation(store, NOTE, [EXPERTS], 1)
    store.update_draft(first.id, action="rejected", status="rejected")
    [again] = generation(store, NOTE, [EXPERTS], 2)
    assert again.status == "rejected" and again.lineage == first.lineage
    [other] = generation(store, NOTE, [card(0, "How many experts does DeepSeek V3 route to per token?", "8")], 3)
    assert other.status == "draft" and other.lineage == first.lineage


def test_an_exported_card_without_a_successor_is_left_in_anki(store):
    cards = generation(store, NOTE, [EXPERTS, LOSS], 1)
    for d in cards:
        store.update_draft(d.id, action="approved", status="approved")
    plan = store.export_plan("ep", include_drafts=False)
    assert plan.new == 2
    store.record_export(plan.cards, when=5_000.0)
    assert store.export_plan("ep", include_drafts=False).counts()["unchanged"] == 2

    generation(store, NOTE, [card(0, LOSS.front, "A bias term per expert, adjusted during training")], 2)
    plan = store.export_plan("ep", include_drafts=False)
    assert plan.left_in_anki == [{"guid": cards[0].lineage, "front": EXPERTS.front, "episode": "ep"}]
    assert plan.pending_revisions == 1 and [d.id for d in plan.cards] == [cards[1].id]
