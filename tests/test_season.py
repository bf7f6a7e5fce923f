"""A season of weekly use, imported into one real Anki collection after every cycle.

Twelve cycles mix new, edited and deleted bullets, a reworded heading, a forgotten -t, a
prompt version bump, a model switch, offline to LLM, edits in cards and inside Anki,
approvals and rejections. After every import:

- Anki holds exactly the cards the decks hold plus those reported as left in Anki;
- no lineage has two notes in Anki (every Anki note is one lineage's GUID);
- every edit made inside Anki is kept, unless cards changed that card afterwards;
- review history (scheduling) is kept.

Times are a fake clock shared by the workspace and the Anki edits, so "afterwards" is
deterministic and nothing waits for the wall clock.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLES
from fakeserver import FakeOpenAI, no_network, user_text

from cards.config import build_settings
from cards.pipeline import export, generate, load
from cards.store import Store

collection = pytest.importorskip("anki.collection")
from anki.import_export_pb2 import ImportAnkiPackageUpdateCondition  # noqa: E402

TRANSCRIPT = EXAMPLES / "latent-space-dylan-patel.txt"
NOTES = """\
# Dylan Patel on Latent Space

- dylan has been in the semiconductor industry since 2017, started the semianalysis blog in nov 2021
- amazon's edge is the custom infra behind aws: efficiency that azure and google cloud don't match
- training costs effectively don't matter?? GPT-4 ~ 20,000 A100s, ~$500 million all in
- 400k-500k H100s manufactured last quarter, ~530k this quarter

# Gardening with Monty

- copper fungicide only slows the blight, it never cures an infected plant
- tomatoes need 8 hours of direct sun to fruit well
- compost tea is mostly folklore according to monty
"""


class Clock:
    """One clock for cards and for edits made inside Anki: every reading is later than the last."""

    def __init__(self, start: float = 1_750_000_000.0):
        self.now = start

    def __call__(self) -> float:
        self.now += 7
        return self.now


def responder(body: dict) -> dict:
    """Cards that depend on the model and prompt, as a real model's would: same facts, new words."""
    text = user_text(body)
    note = re.search(r"<note>\s*(.*?)\s*</note>", text, re.S).group(1)
    model = body["model"]
    words = note.split()
    cards = [{"claim": 1, "kind": "basic", "front": f"What does the note on {' '.join(words[:5])} say?",
              "back": " ".join(words[:12]) + (f" ({model})" if model != "model-a" else ""),
              "quote": " ".join(words[:6]), "tags": ["fake"]}]
    if model == "model-b" and len(words) > 12:  # the second model splits long notes in two
        cards.append({"claim": 2, "kind": "basic", "front": f"And what else about {' '.join(words[8:12])}?",
                      "back": " ".join(words[12:20]), "quote": " ".join(words[8:14]), "tags": []})
    return {"claims": [f"Claim {n}." for n in range(1, len(cards) + 1)], "cards": cards}


class Season:
    def __init__(self, tmp_path: Path, monkeypatch):
        self.dir = tmp_path
        self.ws = tmp_path / "ws"
        self.out = tmp_path / "decks"
        self.notes = tmp_path / "notes.md"
        self.notes.write_text(NOTES, encoding="utf-8")
        self.prompts = tmp_path / "prompts"
        shutil.copytree(Path(__file__).resolve().parents[1] / "prompts", self.prompts)
        self.clock = Clock()
        monkeypatch.setattr(Store, "default_clock", staticmethod(self.clock))
        self.col = collection.Collection(str(tmp_path / "collection.anki2"))
        self.anki_edits: dict[str, tuple[str, float]] = {}  # guid -> (front set in Anki, when)
        self.reviewed: dict[int, int] = {}  # card id -> reps after studying it
        self.srv = FakeOpenAI(responder=responder).start()

    def close(self) -> None:
        self.srv.stop()
        self.col.close()

    # -- the listener's actions ----------------------------------------------------------------

    def generate(self, *, transcript: bool = True, model: str | None = None, offline: bool = False, **kw):
        settings = build_settings(workspace=self.ws, prompts=self.prompts, concurrency=2,
                                  **({} if offline else {"base_url": self.srv.base_url, "api_key": "sk-test",
                                                          "model": model or "model-a"}),
                                  offline=offline or None)
        with no_network():
            loaded = load([self.notes], [TRANSCRIPT] if transcript else [], settings)
            return generate(loaded, settings, **kw)

    def decide_all(self, status: str = "approved", skip: set[str] = frozenset()) -> None:
        with Store(self.ws) as st:
            for d in st.drafts(include_superseded=False):
                if d.status in ("draft", "duplicate") and d.lineage not in skip:
                    st.update_draft(d.id, action=status, status=status)

    def bump_prompt(self, version: str) -> None:
        path = self.prompts / "cards.md"
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"(?m)^version: .*$", f"version: {version}", text, count=1), encoding="utf-8")

    def export_and_import(self) -> list[dict]:
        written = export(build_settings(workspace=self.ws, prompts=self.prompts), out=self.out,
                         now=self.clock())
        condition = ImportAnkiPackageUpdateCondition.IMPORT_ANKI_PACKAGE_UPDATE_CONDITION_IF_NEWER
        options = collection.ImportAnkiPackageOptions(update_notes=condition, update_notetypes=condition,
                                                      merge_notetypes=False, with_scheduling=False)
        for w in written:
            if w["path"]:
                self.col.import_anki_package(collection.ImportAnkiPackageRequest(package_path=w["path"],
                                                                                 options=options))
        self.check(written)
        return written

    def edit_in_anki(self, guid: str, front: str) -> None:
        note = self.anki_notes()[guid]
        note.fields[0] = front
        self.col.update_note(note)
        when = self.clock()
        self.col.db.execute("UPDATE notes SET mod=? WHERE id=?", int(when), note.id)
        self.anki_edits[guid] = (front, when)

    def study(self, guid: str) -> None:
        card = self.anki_notes()[guid].cards()[0]
        card.start_timer()
        self.col.sched.answerCard(card, 3)
        self.reviewed[card.id] = self.col.get_card(card.id).reps

    # -- what must hold after every import -------------------------------------------------------

    def anki_notes(self) -> dict:
        return {n.guid: n for n in (self.col.get_note(i) for i in self.col.find_notes(""))}

    def check(self, written: list[dict]) -> None:
        notes = self.anki_notes()
        in_decks = sum(w["cards"] for w in written)
        left = {c["guid"] for w in written for c in w["left_in_anki_cards"]}
        assert len(notes) == in_decks + len(left), (len(notes), in_decks, len(left))
        with Store(self.ws) as st:
            current = {d.lineage: d for d in st.drafts(include_superseded=False) if d.revision_of is None}
            guids = {r[0] for r in st.db.execute("SELECT guid FROM lineages WHERE exported IS NOT NULL")}
        assert set(notes) == guids  # one Anki note per exported lineage, and nothing else
        for guid, (front, when) in self.anki_edits.items():
            d = current.get(guid)
            if d is not None and d.changed > when:
                assert notes[guid].fields[0] != front  # cards changed it afterwards: its version wins
            else:
                assert notes[guid].fields[0] == front, (guid, notes[guid].fields[0])
        for card_id, reps in self.reviewed.items():
            assert self.col.get_card(card_id).reps == reps


@pytest.fixture
def season(tmp_path, monkeypatch):
    s = Season(tmp_path, monkeypatch)
    yield s
    s.close()


def _bullet(season: Season, old: str, new: str) -> None:
    text = season.notes.read_text(encoding="utf-8")
    assert old in text
    season.notes.write_text(text.replace(old, new), encoding="utf-8")


def test_a_season_of_weekly_use_never_duplicates_and_never_loses_an_edit(season):
    # 1. The README's first command: offline cards, approved and imported.
    season.generate(offline=True)
    season.decide_all()
    first = season.export_and_import()
    assert sum(w["new"] for w in first) > 0
    edited_guid = next(iter(season.anki_notes()))
    season.study(edited_guid)

    # 2. A key arrives: offline -> LLM. Approved cards wait as revisions; accepting them updates in place.
    run = season.generate()
    assert run.reasons == {"offline → LLM": 7}
    with Store(season.ws) as st:
        assert sum(1 for d in st.drafts(include_superseded=False) if d.revision_of) > 0
    season.decide_all()
    second = season.export_and_import()
    assert sum(w["updated"] for w in second) > 0

    # 3. The listener fixes a card inside Anki; an unchanged re-export leaves the fix alone.
    season.edit_in_anki(edited_guid, "My own better question?")
    third = season.export_and_import()
    assert sum(w["updated"] for w in third) == 0

    # 4. A typo fixed in one bullet, a new bullet added: one edited note, one new note.
    _bullet(season, "compost tea is mostly folklore", "compost tea is mostly a folklore")
    _bullet(season, "- tomatoes need 8 hours", "- basil hates wet roots\n- tomatoes need 8 hours")
    run = season.generate()
    assert run.reasons == {"edited note": 1, "new note": 1}
    season.decide_all()
    season.export_and_import()

    # 5. A forgotten -t: nothing is sent, nothing is superseded.
    with Store(season.ws) as st:
        before = {d.id for d in st.drafts(include_superseded=False)}
    run = season.generate(transcript=False)
    assert run.total["requests"] == 0 and any("no transcript given" in n for n in run.notices)
    with Store(season.ws) as st:
        assert {d.id for d in st.drafts(include_superseded=False)} == before
    season.export_and_import()

    # 6. A new prompt version: every note regenerated; the Anki-edited card's revision is rejected.
    season.bump_prompt("cards-season-2")
    run = season.generate()
    assert run.reasons == {"new prompt": 8}
    season.decide_all("rejected", skip=set())  # keep every old card: nothing changes in Anki
    sixth = season.export_and_import()
    assert sum(w["updated"] for w in sixth) == 0

    # 7. A model switch that splits long notes in two: revisions accepted, new lineages for the extra cards.
    run = season.generate(model="model-b")
    assert run.reasons == {"new model": 8}
    season.decide_all(skip={edited_guid})
    seventh = season.export_and_import()
    assert sum(w["new"] for w in seventh) > 0 and sum(w["updated"] for w in seventh) > 0

    # 8. A bullet deleted: its cards end and are reported as left in Anki.
    _bullet(season, "- copper fungicide only slows the blight, it never cures an infected plant\n", "")
    season.generate(model="model-b")
    eighth = season.export_and_import()
    assert sum(len(w["left_in_anki_cards"]) for w in eighth) >= 1

    # 9. A reworded heading: same slug, same deck, nothing regenerated.
    _bullet(season, "# Gardening with Monty", "# Monty Don on gardening in a wet summer")
    run = season.generate(model="model-b")
    assert run.total["requests"] == 0 and any("heading reworded" in n for n in run.notices)
    ninth = season.export_and_import()
    assert {w["episode"] for w in ninth} == {w["episode"] for w in first}

    # 10. An edit in cards after the Anki edit: cards' version reaches Anki.
    with Store(season.ws) as st:
        [d] = [d for d in st.drafts(include_superseded=False) if d.lineage == edited_guid and not d.revision_of]
        st.update_draft(d.id, action="edit", front="The question as cards now words it?")
    tenth = season.export_and_import()
    assert sum(w["updated"] for w in tenth) == 1
    assert season.anki_notes()[edited_guid].fields[0] == "The question as cards now words it?"

    # 11. A rejection after export: that card is left in Anki, not deleted, not duplicated.
    with Store(season.ws) as st:
        victim = next(d for d in st.drafts(include_superseded=False, status="approved") if d.lineage != edited_guid)
        st.update_draft(victim.id, action="rejected", status="rejected")
    eleventh = season.export_and_import()
    assert victim.lineage in {c["guid"] for w in eleventh for c in w["left_in_anki_cards"]}

    # 12. --force: every note is sent again and the same cards come back; Anki sees no change.
    run = season.generate(model="model-b", force=True)
    assert run.total["requests"] == 7 and run.reasons == {"forced": 7}
    twelfth = season.export_and_import()
    assert sum(w["updated"] for w in twelfth) == 0
