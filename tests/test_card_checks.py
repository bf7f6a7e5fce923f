"""The card checks on real graded cards (tests/data/graded-cards.jsonl: 22 of the 65 cards an
expert graded for "Dylan, Nathan on Lex", with the note and the passage the model saw)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cards.check import (
    ANSWER_SUPPORTED,
    UNSUPPORTED,
    answer_support,
    check_card,
    check_note_cards,
    lint,
    note_warnings,
    sibling_warnings,
)

DATA = Path(__file__).resolve().parent / "data" / "graded-cards.jsonl"
CARDS = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]


def card(front_start: str) -> dict:
    (found,) = [c for c in CARDS if c["front"].startswith(front_start) or front_start in c["front"]]
    return found


def codes(warnings: list[str]) -> list[str]:
    return [w.split(":", 1)[0] for w in warnings]


def full_codes(c: dict, siblings: list[dict] | None = None) -> list[str]:
    group = siblings or [c]
    results = check_note_cards([(x["kind"], x["front"], x["back"], x["quote"]) for x in group], c["note"],
                               c["passage"])
    return codes(results[group.index(c)][0])


def test_ready_cards_get_no_warning():
    by_note: dict[str, list[dict]] = {}
    for c in CARDS:
        by_note.setdefault(c["note"], []).append(c)
    for c in CARDS:
        if c["grade"] == "READY":
            assert full_codes(c, by_note[c["note"]]) == [], c["front"]


def test_examples_after_such_as_are_not_a_list():
    c = card("According to Nathan Lambert on Lex Fridman, what kind of model")
    assert c["back"] == "Reasoning models, such as DeepSeek R1 and OpenAI o1."
    assert "enumeration" not in codes(lint(c["kind"], c["front"], c["back"]))
    # A real list still is one.
    assert "enumeration" in codes(lint("basic", "What did they name?", "FLOPS, memory, interconnect"))


def test_completing_a_list_is_one_question():
    c = card("According to Dylan Patel on Lex Fridman, AI chips can be compared along three axes: FLOPS, memory")
    assert "several-ideas" not in codes(lint(c["kind"], c["front"], c["back"]))
    assert "several-ideas" in codes(lint("basic", "What is MLA and how does it save memory?", "x"))


def test_a_clozes_extra_is_not_read_as_a_list():
    warnings = lint("cloze", "Oai has {{c1::75%}} gross margins for inference.", "(Dario, Amanda, Chris on Lex)")
    assert warnings == []


def test_circular_answer_repeats_the_questions_phrase():
    c = card("On Lex Fridman with Dylan Patel and Nathan Lambert, if superhuman persuasion")
    assert c["grade"] == "REFACTOR"
    assert "circular" in codes(lint(c["kind"], c["front"], c["back"]))
    # Naming the kind of thing asked for is not circular: "which strait? The Strait of Malacca".
    assert "circular" not in codes(lint("basic", "Which strait would the US shut?", "The Strait of Malacca"))


@pytest.mark.parametrize("front_start", [
    "On Lex Fridman, which NVIDIA library",  # the note: DeepSeek went below CUDA for communications
    "On Lex Fridman, how large were the AI subsidies",  # the note: a cold-war dynamic
    "On Lex Fridman, which strait would the US shut down",  # the note: the logic of an invasion
])
def test_a_side_detail_of_the_passage_is_off_note(front_start):
    c = card(front_start)
    assert c["grade"] in ("REFACTOR", "OFF-TARGET")
    assert "off-note" in codes(note_warnings(c["kind"], c["front"], c["back"], c["note"]))


def test_the_notes_claim_as_a_premise():
    c = card("According to Dylan Patel on Lex Fridman, given China's far greater power-building capacity")
    assert "premise" in c["reason"]
    assert codes(note_warnings(c["kind"], c["front"], c["back"], c["note"])) == ["claim-in-premise"]


def test_a_siblings_answer_in_a_question():
    experts = [card("how many experts does DeepSeek V3"), card("what expert-activation ratio")]
    assert [codes(w) for w in sibling_warnings([(c["kind"], c["front"], c["back"]) for c in experts])] \
        == [[], ["sibling-answer"]]
    llama = [card("what context length is the next Llama"), card("which company's model's 1-million-token")]
    assert [codes(w) for w in sibling_warnings([(c["kind"], c["front"], c["back"]) for c in llama])] \
        == [[], ["sibling-answer"]]
    # "Besides MLA, what…" names the sibling's answer on purpose.
    mla = [card("besides mixture of experts"), card("besides MLA")]
    assert sibling_warnings([(c["kind"], c["front"], c["back"]) for c in mla]) == [[], []]


def test_an_answer_that_restates_its_own_subject_gives_nothing_away():
    # Graded READY on notes never used to write the rule: the sibling's answer "The H20 has more of
    # both" adds only "more of both" to its own question, which names the H20 like this one does.
    cards = [("basic", "How much raw compute does Nvidia's China-specific H20 have relative to the H100?",
              "About one-third on spec-sheet paper."),
             ("basic", "How do the H20's memory bandwidth and memory capacity compare with the H100's?",
              "The H20 has more of both."),
             ("basic", "Which chip did Nvidia make for China with a third of the H100's compute?", "The H20")]
    assert [codes(w) for w in sibling_warnings(cards[:2])] == [[], []]
    # An answer that is new to its own question is still given away by a question naming it.
    assert [codes(w) for w in sibling_warnings([cards[2], cards[0]])] == [[], ["sibling-answer"]]


def test_answer_support_tolerates_mishearings_and_numbers_spoken():
    assert answer_support("basic", "q?", "MLA (multi-head latent attention).", "", "multi-ad lat and attention MLA") \
        == 1.0
    assert answer_support("basic", "q?", "27 times cheaper", "r1 is 27x cheaper than o1", None) == 1.0
    assert answer_support("basic", "q?", "A trillion RMB", "", "they announced subsidies which are trillion R&B") \
        >= ANSWER_SUPPORTED
    assert answer_support("basic", "q?", "Natural language processing", "quant uses nlp", None) == 1.0
    # An expansion glossed by the acronym the note gives, its words misheard in the captions (READY).
    assert answer_support("basic", "q?", "Multi-head latent attention (MLA)", "v3's main differences: MLA, MoEs",
                          "multi-ad lat and attention") == 1.0
    assert answer_support("basic", "q?", "Sparse gating (MLA)", "v3's main differences: MLA, MoEs", "") == 0.0
    assert answer_support("cloze", "V3 has {{c1::256}} experts.", "", "v3 has two hundred fifty six experts", None) \
        == 1.0


def test_an_answer_from_neither_passage_nor_note_is_unsupported():
    c = card("On Lex Fridman, which NVIDIA library")
    assert c["back"] == "NCCL."  # the passage only says "nickel"
    warnings, score = check_card(c["kind"], c["front"], c["back"], c["quote"], c["note"], c["passage"])
    assert UNSUPPORTED in warnings and score == 0.0
    ok = card("what are OpenAI's gross margins on inference")
    warnings, score = check_card(ok["kind"], ok["front"], ok["back"], ok["quote"], ok["note"], ok["passage"])
    assert warnings == [] and score == 1.0


def test_generate_checks_a_notes_cards_together(tmp_path):
    """Through the pipeline: the second card's question holds the first card's answer."""
    from fakeserver import FakeOpenAI, no_network

    from cards.config import build_settings
    from cards.pipeline import generate, load
    from cards.store import Store

    llama = [card("what context length is the next Llama"), card("which company's model's 1-million-token")]

    def responder(body):
        return {"claims": ["Llama's next context length.", "Gemini's context."],
                "cards": [{"claim": n, "kind": c["kind"], "front": c["front"], "back": c["back"],
                           "quote": c["quote"], "tags": ["ai"]} for n, c in enumerate(llama, 1)]}

    (tmp_path / "notes.md").write_text(f"# Dylan, Nathan on Lex\n- {llama[0]['note']}\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text(llama[0]["passage"], encoding="utf-8")
    with FakeOpenAI(responder=responder) as srv, no_network():
        settings = build_settings(config_path=tmp_path / "cards.toml", workspace=tmp_path / "ws",
                                  base_url=srv.base_url, api_key="k")
        generate(load([tmp_path / "notes.md"], [tmp_path / "t.txt"], settings), settings)
    with Store(tmp_path / "ws", create=False) as store:
        by_front = {d.front: codes(d.warnings) for d in store.drafts()}
    assert "sibling-answer" not in by_front[llama[0]["front"]]
    assert "sibling-answer" in by_front[llama[1]["front"]]


def test_time_relative_wording_but_not_a_span():
    c = card("how many Trainium 2 chips are in the cluster")
    assert "this year" in c["front"] and c["grade"] == "REFACTOR"
    assert "time-relative" in codes(lint(c["kind"], c["front"], c["back"]))
    stale = card("what context length is the next Llama")
    assert "time-relative" in codes(lint(stale["kind"], stale["front"], stale["back"]))
    span = card("by the Snapchat–Stories analogy")
    assert "the next few years" in span["front"] and span["grade"] == "READY"
    assert "time-relative" not in codes(lint(span["kind"], span["front"], span["back"]))


def test_a_rejected_siblings_answer_gives_nothing_away(tmp_path):
    """Through the workspace: a card rejected by the listener is never studied beside its sibling."""
    from cards.lineage import NoteChanges
    from cards.models import Draft, Episode, NoteItem
    from cards.pipeline import check_and_dedupe
    from cards.store import Store

    experts = [card("how many experts does DeepSeek V3"), card("what expert-activation ratio")]
    note = NoteItem("n1", "ep", experts[0]["note"], "bullet", None, (), 0)
    drafts = [Draft(id=f"d{i}", note_id="n1", episode="ep", kind=c["kind"], front=c["front"], back=c["back"],
                    quote=c["quote"], tags=[], generator="openai", model="m", prompt_version="1",
                    note_text=c["note"], context_text=c["passage"], created=1.0) for i, c in enumerate(experts)]
    with Store(tmp_path) as store:
        store.sync_episode(Episode("ep", "Ep"), [], NoteChanges(), align_versions=[], transcript_hash=None)
        store.record_generation(gen_id="g", note=note, spec="s", parts={}, generator="openai", model="m",
                                prompt_version="1", key="k", error=None, drafts=drafts, tokens_in=0, tokens_out=0,
                                cached_tokens=0, requests=1, from_cache=False, raw=None, run_id=None)
        check_and_dedupe(store, None)
        assert "sibling-answer" in " ".join(store.draft("d1").warnings)
        store.update_draft("d0", action="reject", status="rejected")
        check_and_dedupe(store, None)
        assert "sibling-answer" not in " ".join(store.draft("d1").warnings)


def test_the_lint_benchmark_reports_each_rule_on_any_graded_set(tmp_path):
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    note = "nvidia is the only semiconductor chips that has never had a fab"
    cards = [
        {"note": note, "passage": "", "kind": "basic", "quote": "", "grade": "REFACTOR",
         "front": "According to Dylan Patel, which company created the foundry business model of only making chips "
                  "designed by others?", "back": "TSMC."},
        {"note": note, "passage": "", "kind": "basic", "quote": note, "grade": "READY",
         "front": "What makes Nvidia unique among semiconductor companies?", "back": "It never had a fab."},
    ]
    graded = tmp_path / "graded.jsonl"
    graded.write_text("".join(json.dumps(c) + "\n" for c in cards), encoding="utf-8")
    run = subprocess.run([sys.executable, str(root / "benchmarks" / "lint.py"), str(graded), "--json"],
                         capture_output=True, text=True, check=True)
    out = json.loads(run.stdout)
    assert out["rules"]["side-detail"] == {"warned": 1, "positives": 1, "ready": 0, "precision": 1.0, "recall": 1.0}
    assert out["positives"] == 1 and out["within_ready_budget"] is True
    graded.write_text(json.dumps({"note": note, "front": "x"}) + "\n", encoding="utf-8")
    bad = subprocess.run([sys.executable, str(root / "benchmarks" / "lint.py"), str(graded)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "lacks" in bad.stderr


def test_the_lint_benchmark_reads_a_grading_folder_of_the_quality_benchmark(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    note = "v3 has 256 experts. other models only have ~32"
    sheet = [
        {"id": "q1", "note": note, "excerpts": ["it has 256 experts"], "kind": "basic",
         "front": "Is inference bound by memory bandwidth or by FLOPS?", "back": "Memory bandwidth.", "quote": ""},
        {"id": "q2", "note": note, "excerpts": ["it has 256 experts"], "kind": None},
    ]
    (tmp_path / "sheet.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sheet), encoding="utf-8")
    (tmp_path / "grades.jsonl").write_text(json.dumps({"id": "q1", "grade": "REFACTOR"}) + "\n"
                                           + json.dumps({"id": "q2", "worth_a_card": False}) + "\n", encoding="utf-8")
    (tmp_path / "key.json").write_text(json.dumps({"q1": "2026-11-3/lex", "q2": "2026-11-2/lex"}), encoding="utf-8")
    script = str(root / "benchmarks" / "lint.py")
    out = json.loads(subprocess.run([sys.executable, script, str(tmp_path), "--run", "11-3", "--json"],
                                    capture_output=True, text=True, check=True).stdout)
    assert out["cards"] == 1 and out["rules"]["two-way"]["positives"] == 1
