"""Anki shows what `cards` says it exported: a season in one real collection, and each way it used to drift.

The season (tests/anki_season.py) runs offline -> LLM, a model switch and --force with cards
changing kind, a reworded heading, a moved bullet and a shell without the key. After every
import, Anki's own import log shows no conflicting note, and every note of every deck is in
Anki with the deck's note type and fields.
"""

from __future__ import annotations

import pytest
from anki_season import TRANSCRIPT, AnkiSeason, Clock, play
from fakeserver import FakeOpenAI, no_network
from typer.testing import CliRunner

from cards import lineage
from cards.cli import app
from cards.config import build_settings
from cards.lineage import match, replacements
from cards.models import Draft
from cards.pipeline import estimate, export, generate, load, status
from cards.review_session import ReviewSession
from cards.store import Store

collection = pytest.importorskip("anki.collection")


@pytest.fixture
def season(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(Store, "default_clock", staticmethod(clock))
    s = AnkiSeason(tmp_path, clock, collection)
    yield s
    s.close()


def test_a_season_with_kind_changes_leaves_anki_showing_exactly_what_cards_wrote(season):
    cycles = {c["cycle"]: c for c in play(season)}
    for c in cycles.values():
        assert c["conflicting"] == 0, c
        assert c["stale"] == 0, c
        assert c["anki_notes"] == c["in_decks"] + c["left"], c  # nothing in Anki that cards does not account for
        # One episode, one deck: the reworded heading keeps its deck, whatever the title history.
        assert c["decks"] == ["Podcasts::Dylan Patel on Latent Space", "Podcasts::Gardening with Monty"], c

    # Offline -> LLM: the offline cloze "since {{c1::2017}}" is replaced by the question answered "2017".
    assert cycles["offline -> LLM"]["reasons"] == {"offline → LLM": 6}
    assert cycles["offline -> LLM"]["left"] >= 1

    # The reworded heading is said once, naming two different titles.
    [notice] = cycles["reworded heading"]["notices"]
    assert "(was 'Gardening with Monty')" in notice and "Monty Don on gardening" in notice

    # The moved bullet carries its cards: no lineage ends, it is regenerated for its new passage.
    assert cycles["moved bullet"]["reasons"] == {"moved note": 1}
    assert cycles["moved bullet"]["lineages_ended"] == 0

    # No key: LLM cards stay, one line says so, and only the new bullet gets offline cards.
    missing = cycles["missing key"]
    assert missing["reasons"] == {"new note": 1} and missing["replaced"] == 0
    assert len(missing["notices"]) == 1 and "keep their LLM cards" in missing["notices"][0]
    assert cycles["key back"]["reasons"] == {"offline → LLM": 1}

    # The empty question model-b sent for the compost note was never counted, exported or left in Anki.
    with Store(season.ws) as st:
        empty = [d for d in st.drafts() if not d.front.strip()]
        exported = {r[0] for r in st.db.execute("SELECT guid FROM lineages WHERE exported IS NOT NULL")}
    assert empty and not {d.lineage for d in empty} & exported
    assert not {d.lineage for d in empty} & {g for c in cycles.values() for g in c["left_guids"]}


# -- 1. kind changes -------------------------------------------------------------------------------

def card(n: int, kind: str, front: str, back: str = "", generator: str = "openai") -> Draft:
    return Draft(id=f"d{n}", note_id="note", episode="ep", kind=kind, front=front, back=back, quote="", tags=[],
                 generator=generator, model="m", prompt_version="1", created=float(n), updated=float(n))


def test_force_never_swaps_the_guids_of_a_cloze_and_a_question_of_one_note():
    # The question's back repeats the note, so it shares more words with the cloze than the new cloze does.
    old = [card(1, "cloze", "The H100 has {{c1::80 GB}} of HBM3 memory."),
           card(2, "basic", "How much memory does the H100 have?", "80 GB")]
    new = [card(3, "cloze", "The H100 carries {{c1::80 GB}} of fast HBM3."),
           card(4, "basic", "What does the note on the H100 say?", "The H100 has 80 GB of HBM3 memory")]
    assert {i: j for i, (j, _) in match(old, new).items()} == {0: 0, 1: 1}


def test_a_card_that_changes_kind_replaces_the_old_one_under_a_new_guid():
    old = [card(1, "cloze", "Dylan has been in semis since {{c1::2017}}.", generator="offline")]
    new = [card(2, "basic", "In which year did Dylan Patel start in the semiconductor industry?", "2017")]
    assert match(old, new) == {}  # never the same GUID: Anki would skip the note as conflicting
    assert {i: j for i, (j, _) in replacements(old, new, {}).items()} == {0: 0}  # same answer: same fact


def test_a_cloze_without_a_deletion_is_matched_as_the_question_it_is_written_as():
    assert lineage.anki_kind("cloze", "No deletion here") == "basic"
    old = [card(1, "basic", "What does the note say?", "No deletion here")]
    new = [card(2, "cloze", "What does the note say?", "No deletion here")]
    assert {i: j for i, (j, _) in match(old, new).items()} == {0: 0}


# -- 4. offline -> LLM ----------------------------------------------------------------------------

def test_an_offline_placeholder_is_taken_over_by_the_llm_card_of_its_kind():
    old = [card(1, "cloze", "Tomatoes need {{c1::8}} hours of direct sun to fruit well.", generator="offline")]
    new = [card(2, "basic", "What does Monty say compost tea is?", "Mostly folklore"),
           card(3, "cloze", "According to Monty, {{c1::blight}} only slows under copper.")]
    assert lineage.similarity(old[0], new[1]) < lineage.MATCH_THRESHOLD
    assert {i: j for i, (j, _) in match(old, new).items()} == {1: 0}


# -- 2. a reworded heading --------------------------------------------------------------------------

def test_a_reworded_heading_keeps_one_deck_and_says_so_once(season):
    season.generate(model="model-a")
    season.approve_all()
    first = season.export_and_import("first")
    season.replace("# Gardening with Monty", "# Monty Don on gardening in a wet summer")
    season.replace("- compost tea", "- blight spores survive 3 winters in the soil\n- compost tea")
    notices = []
    for _ in range(3):
        run = season.generate(model="model-a")
        notices += [n for n in run.notices if "reworded" in n]
    assert len(notices) == 1
    season.approve_all()
    after = season.export_and_import("reworded")
    assert after["decks"] == first["decks"] and after["stale"] == 0 and after["new"] == 2 and after["updated"] == 0
    with Store(season.ws) as st:
        assert st.episode("gardening-with-monty").title == "Monty Don on gardening in a wet summer"


# -- 5. a moved bullet ---------------------------------------------------------------------------------

def test_a_bullet_moved_to_another_heading_keeps_its_anki_notes_and_review_history(season):
    season.generate(model="model-a")
    season.approve_all()
    season.export_and_import("first")
    moved = {g: d for g, d in season.live().items() if d.note_text.startswith("compost")}
    notes = {n.guid: n for n in (season.col.get_note(i) for i in season.col.find_notes(""))}
    card = notes[next(iter(moved))].cards()[0]
    card.start_timer()
    season.col.sched.answerCard(card, 3)
    reps = season.col.get_card(card.id).reps
    season.replace("- compost tea is mostly folklore according to monty\n", "")
    season.replace("- TSMC makes", "- compost tea is mostly folklore according to monty\n- TSMC makes")
    run = season.generate(model="model-a")
    assert run.reasons == {"moved note": 1}
    season.approve_all()
    after = season.export_and_import("moved")
    live = season.live()
    assert set(moved) <= set(live) and {live[g].episode for g in moved} == {"dylan-patel-on-latent-space"}
    assert not set(moved) & set(after["left_guids"]) and after["stale"] == 0 and after["conflicting"] == 0
    assert season.col.get_card(card.id).reps == reps


# -- 3. a missing key --------------------------------------------------------------------------------

def test_without_a_key_llm_cards_stay_and_status_and_estimate_agree(season, tmp_path):
    season.generate(model="model-a")
    season.approve_all()
    season.export_and_import("llm")
    before = set(season.live())
    keyless = build_settings(workspace=season.ws, prompts=season.prompts, model="model-a")
    with no_network():
        loaded = load([season.notes], [TRANSCRIPT], keyless)
        st = status(keyless, loaded)
        est = estimate(loaded, keyless)
        run = generate(loaded, keyless)
    assert sum(e["next_generate"]["requests"] for e in st["episodes"]) == 0
    assert any("keep their LLM cards" in n for n in st["notices"])
    assert est["requests"] == 0  # an LLM run with model-a's cards current sends nothing
    assert run.reasons == {} and run.total["notes"] == 0
    assert set(season.live()) == before
    # --offline alone keeps them too; only --offline --force trades them for offline cards.
    offline = build_settings(workspace=season.ws, prompts=season.prompts, offline=True)
    with no_network():
        run = generate(load([season.notes], [TRANSCRIPT], offline), offline)
        assert run.reasons == {} and set(season.live()) == before
        assert any("offline: 6 notes keep their LLM cards" in n for n in run.notices)
        run = generate(load([season.notes], [TRANSCRIPT], offline), offline, force=True)
    assert run.reasons == {"generator changed": 6}


def test_estimate_without_a_key_prices_only_what_an_llm_run_would_send(season):
    season.generate(model="gpt-4.1-mini")
    keyless = build_settings(workspace=season.ws, prompts=season.prompts, model="gpt-4.1-mini")
    with no_network():
        est = estimate(load([season.notes], [TRANSCRIPT], keyless), keyless)
    assert est["requests"] == 0 and est["cost_usd"] == 0


def test_an_offline_run_says_what_it_made_not_what_it_sent(tmp_path, write_notes):
    res = CliRunner().invoke(app, ["generate", str(write_notes.notes), "-w", str(tmp_path / "ws"), "--offline"])
    assert res.exit_code == 0, res.output
    assert "sent:" not in res.stdout and "made offline: 6 × new note" in " ".join(res.stdout.split())


# -- 6. decisions on superseded cards ---------------------------------------------------------------

def test_approving_a_card_a_concurrent_generate_superseded_is_refused_naming_its_successor(season):
    season.generate(model="model-a")
    with Store(season.ws) as st:
        session = ReviewSession(st)
        # A note without a number: its card keeps its kind, and its GUID, when regenerated.
        session.index = next(i for i, d in enumerate(session.drafts) if d.note_text.startswith("amazon"))
        first = session.current
        season.generate(model="model-b")  # meanwhile: every card regenerated
        notice = session.approve()
        successor = next(d for d in st.drafts(include_superseded=False) if d.lineage == first.lineage)
        assert notice is not None and notice.severity == "error" and successor.id[:8] in notice.text
        assert session.summary()["approved"] == 0
        assert st.draft(first.id).status == "draft"


def test_cli_approve_and_edit_of_a_superseded_id_fail_naming_the_successor(season):
    season.generate(model="model-a")
    with Store(season.ws) as st:
        old = next(d for d in st.drafts(include_superseded=False) if d.note_text.startswith("amazon"))
    season.generate(model="model-b")
    with Store(season.ws) as st:
        successor = next(d for d in st.drafts(include_superseded=False) if d.lineage == old.lineage)
    runner = CliRunner()
    for args in (["approve", old.id], ["edit", old.id, "--front", "Mine?"]):
        res = runner.invoke(app, [*args, "-w", str(season.ws)])
        assert res.exit_code == 2, res.output
        assert successor.id[:8] in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1
    with Store(season.ws) as st:
        assert st.draft(old.id).status == "draft" and st.draft(old.id).front == old.front


def test_approving_several_ids_with_one_superseded_changes_none_of_them(season):
    season.generate(model="model-a")
    with Store(season.ws) as st:
        old = next(d for d in st.drafts(include_superseded=False) if d.note_text.startswith("amazon"))
    season.generate(model="model-b")
    with Store(season.ws) as st:
        live = next(d for d in st.drafts(include_superseded=False) if d.status == "draft" and d.lineage != old.lineage)
    res = CliRunner().invoke(app, ["approve", live.id, old.id, "-w", str(season.ws)])
    assert res.exit_code == 2 and "replaced by" in res.output, res.output
    with Store(season.ws) as st:  # all or nothing: the listener fixes the list and runs it again
        assert st.draft(live.id).status == "draft"


# -- 7. an empty front --------------------------------------------------------------------------------

def test_an_empty_front_card_is_never_counted_as_exported_or_left_in_anki(tmp_path, monkeypatch):
    def responder(body):
        return {"claims": ["An answer.", "The answer is 42."],
                "cards": [{"claim": 1, "kind": "basic", "front": " \u0007 ", "back": "an answer", "quote": "",
                           "tags": []},
                          {"claim": 2, "kind": "basic", "front": "What is the answer?", "back": "42", "quote": "",
                           "tags": []}]}

    notes = tmp_path / "n.md"
    notes.write_text("# Ep\n\n- the answer is 42\n", encoding="utf-8")
    with FakeOpenAI(responder=responder) as srv, no_network():
        s = build_settings(workspace=tmp_path / "ws", base_url=srv.base_url, api_key="sk-test")
        generate(load([notes], [], s), s)
    [written] = export(s, include_drafts=True)
    assert written["cards"] == 1 and written["new"] == 1
    [again] = export(s, include_drafts=True)
    assert again["left_in_anki"] == 0 and again["unchanged"] == 1


def test_export_says_where_the_decks_went(season):
    season.generate(model="model-a")
    res = CliRunner().invoke(app, ["export", "-w", str(season.ws), "-o", str(season.out), "--include-drafts"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.stdout.split())
    assert f"2 decks written to {season.out}" in said and "File > Import" in said


def test_review_says_when_accepting_a_revision_adds_a_new_anki_note():
    from rich.console import Console

    from cards.review import revision_view
    from cards.review_session import Revision

    old = card(1, "cloze", "Dylan has been in semis since {{c1::2017}}.", generator="offline")
    old.exported, old.status = 5.0, "approved"
    new = card(2, "basic", "In which year did Dylan Patel start in semis?", "2017")
    new.revision_of = old.id
    console = Console(width=100, record=True)
    console.print(revision_view(Revision(old, new, "pending")))
    assert "adds a new note to Anki" in " ".join(console.export_text().split())
