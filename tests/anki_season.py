"""A season of use in which cards change kind, imported into one real Anki collection each cycle.

Shared by tests/test_anki_truth.py (which asserts on every cycle) and
benchmarks/anki_truth.py (which prints the same figures for any version of cards).

The fake model words its cards anew for each model and for a repeated (forced)
request, and changes their kind as models do: a number in a note is asked as a
question by one model and deleted from a cloze by the next. The cycles:

1. offline cards, approved and imported;
2. a key arrives: offline -> LLM (model-a);
3. a model switch (model-b): cards change kind;
4. --force: asked again, cards change kind again;
5. a reworded heading, with a new bullet under it;
6. a bullet moved word for word to the other heading;
7. a shell without the key, with one new bullet;
8. the key is back.

After every import the figures say what Anki did and whether it shows what cards wrote:
`conflicting` (notes Anki's import log skipped because their note type changed), `stale`
(notes of the decks whose note type or fields in Anki differ from the deck's), `anki_notes`
against `in_decks` + `left` (cards reported left in Anki), and `decks` (Anki decks holding
cards). One clock serves the workspace and the exports, so nothing waits for the wall clock.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

from fakeserver import FakeOpenAI, no_network, user_text

from cards.config import build_settings
from cards.pipeline import export, generate, load
from cards.store import Store

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPT = ROOT / "examples" / "latent-space-dylan-patel.txt"
NOTES = """\
# Dylan Patel on Latent Space

- dylan has been in the semiconductor industry since 2017, started the semianalysis blog in nov 2021
- amazon's edge is the custom infra behind aws: efficiency that azure and google cloud don't match
- TSMC makes 90% of the most advanced chips

# Gardening with Monty

- copper fungicide only slows the blight, it never cures an infected plant
- tomatoes need 8 hours of direct sun to fruit well
- compost tea is mostly folklore according to monty
"""
HEADING, REWORDED = "# Gardening with Monty", "# Monty Don on gardening in a wet summer"
MOVED = "- tomatoes need 8 hours of direct sun to fruit well\n"
_NUMBER = re.compile(r"\d[\d,.]*%?")


class Clock:
    """Every reading is later than the last: "afterwards" without waiting."""

    def __init__(self, start: float = 1_760_000_000.0):
        self.now = start

    def __call__(self) -> float:
        self.now += 7
        return self.now


class Model:
    """Cards per note that depend on the model and on how often it was asked, kinds included."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()

    def __call__(self, body: dict) -> dict:
        text = user_text(body)
        note = re.search(r"<note>\s*(.*?)\s*</note>", text, re.DOTALL).group(1)
        model = body["model"]
        self.calls[(model, note)] += 1
        again = self.calls[(model, note)] > 1  # --force: the same request, a new wording
        words = note.split()
        number = _NUMBER.search(note)
        subject = " ".join(words[:4])
        cards = []
        if number:
            as_cloze = (model == "model-b") != again
            n = number.group(0).rstrip(",.")
            if as_cloze:
                cloze = note[:number.start()] + "{{c1::" + n + "}}" + note[number.start() + len(n):]
                cards.append({"claim": 1, "kind": "cloze", "front": cloze[0].upper() + cloze[1:], "back": "",
                              "quote": note, "tags": ["fake"]})
            else:
                cards.append({"claim": 1, "kind": "basic", "front": f"Which figure goes with {subject}?", "back": n,
                              "quote": note, "tags": ["fake"]})
        lead = {"model-b": "What was said about {}?"}.get(model, "What does the note on {} say?")
        if again:
            lead = "Recall the point on {}."
        cards.append({"claim": len(cards) + 1, "kind": "basic", "front": lead.format(" ".join(words[:6])),
                      "back": " ".join(words[:12]),
                      "quote": " ".join(words[:6]), "tags": ["fake"]})
        if model == "model-b" and "compost" in note:
            # A reply with an empty question: never written, so never in Anki.
            cards.append({"claim": len(cards) + 1, "kind": "basic", "front": "  ", "back": "folklore", "quote": "",
                          "tags": []})
        return {"claims": [f"Claim {n}." for n in range(1, len(cards) + 1)], "cards": cards}


class AnkiSeason:
    def __init__(self, tmp: Path, clock: Clock, collection_module):
        self.tmp, self.clock = tmp, clock
        self.ws, self.out = tmp / "ws", tmp / "decks"
        self.notes = tmp / "notes.md"
        self.notes.write_text(NOTES, encoding="utf-8")
        self.prompts = tmp / "prompts"
        shutil.copytree(ROOT / "prompts", self.prompts)
        self.collection = collection_module
        self.col = collection_module.Collection(str(tmp / "collection.anki2"))
        self.model = Model()
        self.srv = FakeOpenAI(responder=self.model).start()
        self.cycles: list[dict] = []

    def close(self) -> None:
        self.srv.stop()
        self.col.close()

    # -- the listener's actions --------------------------------------------------------------------

    def settings(self, *, model: str | None = "model-a", offline: bool = False, key: bool = True):
        llm = {"base_url": self.srv.base_url, "api_key": "sk-test", "model": model} if key and not offline else {}
        return build_settings(workspace=self.ws, prompts=self.prompts, concurrency=2, offline=offline or None, **llm)

    def generate(self, **kw):
        force = kw.pop("force", False)
        settings = self.settings(**kw)
        with no_network():
            loaded = load([self.notes], [TRANSCRIPT], settings)
            return generate(loaded, settings, force=force)

    def approve_all(self) -> None:
        with Store(self.ws) as st:
            for d in st.drafts(include_superseded=False):
                if d.status in ("draft", "duplicate"):
                    st.update_draft(d.id, action="approved", status="approved")

    def replace(self, old: str, new: str) -> None:
        text = self.notes.read_text(encoding="utf-8")
        assert old in text, old
        self.notes.write_text(text.replace(old, new, 1), encoding="utf-8")

    def live(self) -> dict[str, object]:
        """Current cards by GUID (no pending revisions)."""
        with Store(self.ws) as st:
            return {d.lineage: d for d in st.drafts(include_superseded=False) if not d.revision_of}

    # -- Anki ------------------------------------------------------------------------------------------

    def export_and_import(self, name: str, **facts) -> dict:
        written = export(build_settings(workspace=self.ws, prompts=self.prompts), out=self.out, now=self.clock())
        request, options = self.collection.ImportAnkiPackageRequest, self.collection.ImportAnkiPackageOptions
        from anki.import_export_pb2 import ImportAnkiPackageUpdateCondition

        newer = ImportAnkiPackageUpdateCondition.IMPORT_ANKI_PACKAGE_UPDATE_CONDITION_IF_NEWER
        opts = options(update_notes=newer, update_notetypes=newer, merge_notetypes=False, with_scheduling=False)
        conflicting = 0
        for w in written:
            if w["path"]:
                log = self.col.import_anki_package(request(package_path=w["path"], options=opts)).log
                conflicting += len(log.conflicting)
        figures = {"cycle": name, "conflicting": conflicting, **self.compare(written), **facts}
        self.cycles.append(figures)
        return figures

    def compare(self, written: list[dict]) -> dict:
        """What Anki holds against what the decks say."""
        anki = {}
        for nid in self.col.find_notes(""):
            note = self.col.get_note(nid)
            anki[note.guid] = (note.note_type()["name"], list(note.fields))
        stale, in_decks = [], 0
        for w in written:
            if not w["path"]:
                continue
            for guid, model, fields in deck_notes(Path(w["path"])):
                in_decks += 1
                if anki.get(guid) != (model, fields):
                    stale.append(guid)
        left = {c["guid"] for w in written for c in w["left_in_anki_cards"]}
        decks = {self.col.decks.name(did) for did in self.col.db.list("SELECT DISTINCT did FROM cards")}
        return {"stale": len(stale), "anki_notes": len(anki), "in_decks": in_decks, "left": len(left),
                "decks": sorted(decks), "new": sum(w["new"] for w in written),
                "updated": sum(w["updated"] for w in written), "left_guids": sorted(left)}


def deck_notes(path: Path) -> list[tuple[str, str, list[str]]]:
    """(guid, note type name, fields) of every note in an .apkg."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(path) as zf:
            zf.extract("collection.anki2", tmp)
        db = sqlite3.connect(Path(tmp) / "collection.anki2")
        try:
            models = json.loads(db.execute("SELECT models FROM col").fetchone()[0])
            rows = db.execute("SELECT guid, mid, flds FROM notes").fetchall()
        finally:
            db.close()
    return [(guid, models[str(mid)]["name"], flds.split("\x1f")) for guid, mid, flds in rows]


def play(season: AnkiSeason) -> list[dict]:
    """The eight cycles; returns one row of figures per import, with what each run said."""
    s = season
    run = s.generate(offline=True)
    s.approve_all()
    s.export_and_import("offline", reasons=run.reasons)

    run = s.generate(model="model-a")
    s.approve_all()
    s.export_and_import("offline -> LLM", reasons=run.reasons)

    run = s.generate(model="model-b")
    s.approve_all()
    s.export_and_import("model switch", reasons=run.reasons)

    run = s.generate(model="model-b", force=True)
    s.approve_all()
    s.export_and_import("--force", reasons=run.reasons)

    s.replace(HEADING, REWORDED)
    s.replace("- compost tea", "- blight spores survive 3 winters in the soil\n- compost tea")
    run = s.generate(model="model-b")
    again = s.generate(model="model-b")
    s.approve_all()
    s.export_and_import("reworded heading", reasons=run.reasons,
                        notices=[n for n in run.notices + again.notices if "reworded" in n])

    before = set(s.live())
    s.replace(MOVED, "")
    s.replace("- TSMC makes", MOVED.rstrip("\n") + "\n- TSMC makes")
    run = s.generate(model="model-b")
    s.approve_all()
    s.export_and_import("moved bullet", reasons=run.reasons, lineages_ended=len(before - set(s.live())))

    before = {g: d.id for g, d in s.live().items()}
    s.replace("- TSMC makes", "- the H100 has 80 GB of HBM3 memory\n- TSMC makes")
    run = s.generate(key=False)
    after = {g: d.id for g, d in s.live().items()}
    s.approve_all()
    s.export_and_import("missing key", reasons=run.reasons, notices=[n for n in run.notices if "key" in n],
                        replaced=sum(1 for g, i in before.items() if after.get(g) != i))

    run = s.generate(model="model-b")
    s.approve_all()
    s.export_and_import("key back", reasons=run.reasons)
    return s.cycles
