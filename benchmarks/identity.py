"""Card identity through ordinary events: what Anki holds after each re-import.

Drives the `cards` command line (any version: point --cards at its executable) on the
seed notes `000_…` scoped to the episode "dylan-nathan-on-lex", with its transcript
`002_…`, against the loopback fake OpenAI server of tests/fakeserver.py, and imports
every exported deck into a real Anki collection (the official `anki` package) with
Anki's default import options: update notes (and note types) if newer, no scheduling.
Each scenario gets a fresh workspace and collection:

1. offline first, then a key: Anki notes against the cards the decks hold;
2. a forgotten -t: what a run without the transcript sends and supersedes, and what
   Anki holds after approving and exporting again;
3. --force, a new prompt version, a new model (one after the other);
4. an edit made inside Anki, then an unchanged re-export; then an edit in cards;
5. a reworded heading: notes regenerated, decks exported, decks in Anki;
6. two generate runs at once on one workspace.

The fake model writes the same cards for the same note, model and prompt (as a model
at temperature 0 would), words its questions differently for each new model or
prompt, and (model-b) splits long notes in two. Edits inside Anki set the note's
modification time to the real clock, as Anki does; short sleeps keep "later" true at
Anki's one-second resolution. Needs no network and no key.

    python benchmarks/identity.py [--cards PATH/TO/cards] [--seeds ../shared/seeds] [--only KEY] [--json]

--cards measures another version, such as an older checkout's `.venv/bin/cards`; the
prompt bump then starts from that checkout's own `prompts/`.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

NOTES_FILE = "000_afbeb462ed58c10d.txt"
TRANSCRIPT_FILE = "002_0fe13fd03e9aaf95.txt"
EPISODE = "dylan-nathan-on-lex"
HEADING = "# Dylan, Nathan on Lex"
REWORDED = "# Dylan Patel & Nathan Lambert on Lex Fridman"
CONCURRENCY = 4
LEADS = ["What does the note on {} say?", "According to the episode, what about {}?",
         "What was said on {}?", "Recall the point on {}."]

# What issue 7 measured on main before card lineage, per scenario.
ISSUE = {
    "offline": "8 offline + 24 LLM notes in Anki for 24 current cards",
    "no-t": "all 18 approved cards superseded, 18 new drafts, episode bought again; "
            "16 duplicate fronts in Anki",
    "regen": "144 notes exported with 72 distinct fronts; dedupe finds 0",
    "anki-edit": "edit made in Anki overwritten on the next import",
    "heading": "all 37 notes regenerated, old deck still exported, no notice",
    "concurrent": "every note bought twice, two live drafts per note",
}
TITLES = {
    "offline": "Offline first, then a key",
    "no-t": "A forgotten -t",
    "regen": "--force, a new prompt, a new model",
    "anki-edit": "An edit made inside Anki",
    "heading": "A reworded heading",
    "concurrent": "Two runs at once",
}


# -- the fake model -------------------------------------------------------------------------------

class Model:
    """Cards that depend on the note, the model and the prompt, the same each time they are asked."""

    def __init__(self) -> None:
        self.variants: dict[tuple[str, int], int] = {}
        self.lock = threading.Lock()
        self.hold = threading.Event()
        self.hold.set()

    def __call__(self, body: dict) -> dict:
        from fakeserver import user_text

        self.hold.wait(120)  # released at once unless a scenario holds replies back
        messages = body.get("messages") or []
        system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), "")
        with self.lock:
            variant = self.variants.setdefault((body["model"], hash(system)), len(self.variants))
        text = user_text(body)
        m = re.search(r"<note>\s*(.*?)\s*</note>", text, re.S)
        words = (m.group(1) if m else text).split() or ["nothing"]
        p = re.search(r"<passage[^>]*>\s*(.*?)\s*</passage>", text, re.S)
        quote = (p.group(1).split() if p and p.group(1).strip() else words)[:8]
        cards = [{"claim": 1, "kind": "basic", "front": LEADS[variant % len(LEADS)].format(" ".join(words[:8])),
                  "back": " ".join(words[:14]), "quote": " ".join(quote), "tags": ["fake"]}]
        if body["model"] == "model-b" and len(words) > 14:  # this model splits long notes in two
            cards.append({"claim": 2, "kind": "basic", "front": f"And what else about {' '.join(words[8:14])}?",
                          "back": " ".join(words[14:24]), "quote": " ".join(words[8:14]), "tags": []})
        return {"claims": [f"Claim {n}." for n in range(1, len(cards) + 1)], "cards": cards}


# -- cards, through its command line --------------------------------------------------------------

class Cards:
    """One workspace driven through the `cards` executable under test."""

    def __init__(self, cmd: list[str], tmp: Path, notes: Path, transcript: Path, base_url: str,
                 prompts: Path = ROOT / "prompts"):
        self.cmd, self.tmp, self.notes, self.transcript = cmd, tmp, notes, transcript
        self.prompts = prompts  # the built-in prompts of the version under test
        self.ws, self.out = tmp / "ws", tmp / "decks"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENAI_", "CARDS_")) and k.lower() not in
               ("http_proxy", "https_proxy", "all_proxy")}
        env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        self.offline_env = dict(env)
        self.env = dict(env, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=base_url)

    def argv(self, *args: str) -> list[str]:
        return [*self.cmd, *args]

    def run(self, *args: str, offline: bool = False, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(self.argv(*args), cwd=self.tmp, env=self.offline_env if offline else self.env,
                           capture_output=True, text=True, timeout=300)
        if check and p.returncode != 0:
            raise SystemExit(f"`cards {' '.join(args)}` exited {p.returncode}: {p.stderr.strip()}")
        return p

    def gen_args(self, *extra: str, transcript: bool = True, notes: Path | None = None,
                 episode: str | None = EPISODE) -> list[str]:
        return ["generate", str(notes or self.notes), *(["-t", str(self.transcript)] if transcript else []),
                *(["-e", episode] if episode else []), "-w", str(self.ws), "-c", str(CONCURRENCY), "--json", *extra]

    def generate(self, *extra: str, transcript: bool = True, offline: bool = False, notes: Path | None = None,
                 episode: str | None = EPISODE) -> dict:
        args = self.gen_args(*extra, transcript=transcript, notes=notes, episode=episode)
        return json.loads(self.run(*args, *(["--offline"] if offline else []), offline=offline).stdout)

    def approve_all(self, episode: str = EPISODE) -> None:
        self.run("approve", "-w", str(self.ws), "-e", episode, "--all", "--json")

    def drafts(self, include_superseded: bool = False) -> list[dict]:
        return json.loads(self.run("drafts", "-w", str(self.ws), *(["--all"] if include_superseded else []),
                                   "--json").stdout)

    def current(self) -> list[dict]:
        """The cards an export writes as the episode's own: live, approved, not a pending revision."""
        return [d for d in self.drafts() if d["status"] == "approved" and not d.get("revision_of")]

    def edit(self, draft_id: str, front: str) -> None:
        self.run("edit", draft_id, "--front", front, "-w", str(self.ws), "--json")

    def export(self) -> list[dict]:
        return json.loads(self.run("export", "-w", str(self.ws), "-o", str(self.out), "--json").stdout)

    def dedupe(self) -> int:
        return json.loads(self.run("dedupe", "-w", str(self.ws), "--json").stdout)["duplicates"]


# -- Anki -----------------------------------------------------------------------------------------

class Anki:
    """A real Anki collection, importing with Anki's default options (update if newer)."""

    def __init__(self, path: Path):
        from anki.collection import Collection

        self.col = Collection(str(path))

    def close(self) -> None:
        self.col.close()

    def import_(self, written: list[dict]) -> None:
        from anki.collection import ImportAnkiPackageOptions, ImportAnkiPackageRequest
        from anki.import_export_pb2 import ImportAnkiPackageUpdateCondition

        newer = ImportAnkiPackageUpdateCondition.IMPORT_ANKI_PACKAGE_UPDATE_CONDITION_IF_NEWER
        options = ImportAnkiPackageOptions(update_notes=newer, update_notetypes=newer, merge_notetypes=False,
                                           with_scheduling=False)
        for w in written:
            if w.get("path"):
                self.col.import_anki_package(ImportAnkiPackageRequest(package_path=w["path"], options=options))

    def notes(self) -> list:
        return [self.col.get_note(i) for i in self.col.find_notes("")]

    def fronts(self) -> list[str]:
        return [front_of(n) for n in self.notes()]

    def decks_with_cards(self) -> int:
        return len(self.col.db.list("SELECT DISTINCT did FROM cards"))

    def edit(self, note, front: str) -> None:
        """What the listener does in Anki's editor: a new front, modified now."""
        note.fields[0] = html.escape(front)
        self.col.update_note(note)
        self.col.db.execute("UPDATE notes SET mod=? WHERE id=?", int(time.time()), note.id)


def front_of(note) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", note.fields[0])).strip()


def duplicate_fronts(fronts: list[str]) -> int:
    """Notes whose front another note already has."""
    return len(fronts) - len(set(fronts))


def left_in_anki(written: list[dict]) -> int:
    return sum(w.get("left_in_anki", 0) for w in written)


def holding(anki: Anki, cards: Cards, written: list[dict]) -> dict:
    fronts = anki.fronts()
    return {"anki_notes": len(fronts), "current_cards": len(cards.current()), "left_in_anki": left_in_anki(written),
            "duplicate_fronts": duplicate_fronts(fronts), "distinct_fronts": len(set(fronts))}


def describe_holding(h: dict) -> str:
    left = f" + {h['left_in_anki']} reported left in Anki" if h["left_in_anki"] else ""
    return (f"Anki notes after re-import: {h['anki_notes']} for {h['current_cards']} current cards{left}; "
            f"{h['duplicate_fronts']} duplicate fronts")


def cycle(cards: Cards, anki: Anki) -> list[dict]:
    """Approve everything undecided, export, import."""
    cards.approve_all()
    written = cards.export()
    anki.import_(written)
    return written


# -- the scenarios ------------------------------------------------------------------------------

def offline_then_key(cards: Cards, anki: Anki, srv, model: Model) -> tuple[str, dict]:
    cards.generate(offline=True)
    cycle(cards, anki)
    offline = len(anki.notes())
    before = srv.count
    cards.generate("-m", "model-a")
    written = cycle(cards, anki)
    h = holding(anki, cards, written)
    h.update(offline_notes=offline, requests=srv.count - before)
    return f"offline notes imported first: {offline}; requests: {h['requests']}; {describe_holding(h)}", h


def forgotten_t(cards: Cards, anki: Anki, srv, model: Model) -> tuple[str, dict]:
    cards.generate("-m", "model-a")
    cards.approve_all()
    mine = cards.current()[0]
    cards.edit(mine["id"], "A question the listener reworded by hand?")
    anki.import_(cards.export())
    live = {d["id"] for d in cards.drafts()}
    before = srv.count
    run = cards.generate("-m", "model-a", transcript=False)
    sent = srv.count - before
    after = cards.drafts()
    superseded = len(live - {d["id"] for d in after})
    fresh = sum(1 for d in after if d["id"] not in live)
    before = srv.count
    cards.generate("-m", "model-a")
    resent = srv.count - before
    written = cycle(cards, anki)
    h = holding(anki, cards, written)
    kept = any(d["front"] == "A question the listener reworded by hand?" for d in cards.current())
    notice = any("transcript" in n for n in run.get("notices", []))
    h.update(requests=sent, superseded=superseded, new_drafts=fresh, requests_with_t_again=resent,
             hand_edit_current=kept, notice=notice)
    return (f"without -t: requests sent: {sent}, drafts superseded: {superseded}, new drafts: {fresh}, "
            f"notice: {'yes' if notice else 'no'}; with -t again: requests {resent}; hand edit still current: "
            f"{'yes' if kept else 'no'}; {describe_holding(h)}"), h


def regenerate(cards: Cards, anki: Anki, srv, model: Model) -> tuple[str, dict]:
    cards.generate("-m", "model-a")
    cycle(cards, anki)
    prompts = cards.tmp / "prompts"
    shutil.copytree(cards.prompts, prompts)
    template = prompts / "cards.md"
    text = re.sub(r"(?m)^version: .*$", "version: cards-identity-2", template.read_text(encoding="utf-8"), count=1)
    text = text.replace("## user", "12. Keep every question under twenty words.\n\n## user", 1)
    template.write_text(text, encoding="utf-8")
    requests = {}
    written: list[dict] = []
    for step, extra in (("force", ["-m", "model-a", "--force"]),
                        ("prompt", ["-m", "model-a", "--prompts", str(prompts)]),
                        ("model", ["-m", "model-b", "--prompts", str(prompts)])):
        before = srv.count
        cards.generate(*extra)
        requests[step] = srv.count - before
        written = cycle(cards, anki)
    h = holding(anki, cards, written)
    h.update(requests=requests, exported=sum(w["cards"] for w in written), dedupe=cards.dedupe())
    return (f"requests {requests['force']}/{requests['prompt']}/{requests['model']}; exported "
            f"{h['exported']} notes, {h['distinct_fronts']} distinct fronts; dedupe finds {h['dedupe']}; "
            f"{describe_holding(h)}"), h


def anki_edit(cards: Cards, anki: Anki, srv, model: Model) -> tuple[str, dict]:
    cards.generate("-m", "model-a")
    cycle(cards, anki)
    time.sleep(1.1)  # the edit in Anki comes later than anything cards did, at Anki's 1 s resolution
    note = sorted(anki.notes(), key=lambda n: n.guid)[0]
    original, guid = front_of(note), note.guid
    anki.edit(note, "My own better question?")
    time.sleep(1.1)  # an export now would be later than the edit, if it stamped the export time
    anki.import_(cards.export())
    by_guid = {n.guid: n for n in anki.notes()}
    kept = front_of(by_guid[guid]) == "My own better question?"
    time.sleep(1.1)
    [draft] = [d for d in cards.current() if d["front"] == original]
    cards.edit(draft["id"], "The question as cards now words it?")
    written = cards.export()
    anki.import_(written)
    by_guid = {n.guid: n for n in anki.notes()}
    later = front_of(by_guid[guid]) == "The question as cards now words it?"
    h = holding(anki, cards, written)
    h.update(anki_edit_kept=kept, later_cards_edit_reaches_anki=later)
    return (f"Anki-side edit kept: {'yes' if kept else 'no'}; a later edit in cards reaches Anki: "
            f"{'yes' if later else 'no'}; {describe_holding(h)}"), h


def reworded_heading(cards: Cards, anki: Anki, srv, model: Model) -> tuple[str, dict]:
    cards.generate("-m", "model-a")
    cycle(cards, anki)
    notes = cards.tmp / "notes.md"
    text = cards.notes.read_text(encoding="utf-8")
    assert HEADING + "\n" in text
    notes.write_text(text.replace(HEADING + "\n", REWORDED + "\n", 1), encoding="utf-8")
    live = {d["id"] for d in cards.drafts()}
    before = srv.count
    episode = EPISODE
    probe = cards.run(*cards.gen_args("-m", "model-a", notes=notes), check=False)
    if probe.returncode == 0:
        run = json.loads(probe.stdout)
    elif probe.returncode == 2 and "no episode" in probe.stderr:  # the episode took a new slug
        listed = json.loads(cards.run("episodes", str(notes), "-t", str(cards.transcript), "--json").stdout)
        [episode] = [e["slug"] for e in listed if e["transcript"] and Path(e["transcript"]).name == TRANSCRIPT_FILE]
        run = cards.generate("-m", "model-a", notes=notes, episode=episode)
    else:
        raise SystemExit(f"`cards generate` exited {probe.returncode}: {probe.stderr.strip()}")
    regenerated = srv.count - before
    cards.approve_all(episode)
    written = cards.export()
    anki.import_(written)
    h = holding(anki, cards, written)
    notice = any("reworded" in n for n in run.get("notices", []))
    fresh = [d for d in cards.drafts() if d["episode"] == episode and d["id"] not in live]
    dups = sum(1 for d in fresh if d["status"] == "duplicate")
    h.update(requests=regenerated, new_drafts=len(fresh), marked_duplicate=dups, slug=episode,
             decks_exported=sum(1 for w in written if w.get("path")),
             decks_in_anki=anki.decks_with_cards(), notice=notice)
    return (f"notes regenerated: {regenerated} (new drafts {len(fresh)}, {dups} of them marked duplicate), "
            f"decks exported: {h['decks_exported']}, decks in Anki: "
            f"{h['decks_in_anki']}, slug kept: {'yes' if episode == EPISODE else 'no'}, notice: "
            f"{'yes' if notice else 'no'}; {describe_holding(h)}"), h


def two_at_once(cards: Cards, anki: Anki, srv, model: Model) -> tuple[str, dict]:
    model.hold.clear()  # replies wait, so the first run is mid-flight when the second starts
    argv = cards.argv(*cards.gen_args("-m", "model-a"))
    first = subprocess.Popen(argv, cwd=cards.tmp, env=cards.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 60  # until the first run has its full window of requests waiting
        while srv.count < CONCURRENCY and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        held = srv.count
        second = subprocess.Popen(argv, cwd=cards.tmp, env=cards.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        # The second run either ends (refused) or starts sending beside the first.
        deadline = time.monotonic() + 60
        while second.poll() is None and srv.count <= held and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
    finally:
        model.hold.set()
    first.communicate(timeout=300)
    _, err2 = second.communicate(timeout=300)
    made = cards.drafts(include_superseded=True)
    notes = len({d["note_id"] for d in made})
    live = Counter(d["note_id"] for d in cards.drafts())
    per_note = max(live.values()) if live else 0
    h = {"first_exit": first.returncode, "second_exit": second.returncode, "requests": srv.count, "notes": notes,
         "drafts_made": len(made), "most_live_drafts_per_note": per_note,
         "second_stderr": (err2.strip().splitlines() or [""])[-1]}
    second_said = ("refused" if second.returncode == 4 else "ran too") + f" (exit {second.returncode})"
    return (f"second run: {second_said}; requests {srv.count} for {notes} notes; drafts made: {len(made)}; "
            f"live drafts per note: at most {per_note}"), h


SCENARIOS = {"offline": offline_then_key, "no-t": forgotten_t, "regen": regenerate, "anki-edit": anki_edit,
             "heading": reworded_heading, "concurrent": two_at_once}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cards", help="the cards executable to measure [default: this checkout's, "
                                    "through the running Python]")
    ap.add_argument("--seeds", type=Path, default=ROOT.parent / "shared" / "seeds")
    ap.add_argument("--only", action="append", choices=list(SCENARIOS), help="run only this scenario (repeat)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    notes, transcript = args.seeds / NOTES_FILE, args.seeds / TRANSCRIPT_FILE
    for p in (notes, transcript):
        if not p.exists():
            print(f"missing seed file {p} (pass --seeds)", file=sys.stderr)
            return 2
    try:
        import anki.collection  # noqa: F401
    except ImportError:
        print("the anki package is needed: pip install -e '.[test]'", file=sys.stderr)
        return 2
    from fakeserver import FakeOpenAI, no_network

    cmd = [str(Path(args.cards).resolve())] if args.cards else [sys.executable, "-m", "cards"]
    # A venv inside a checkout finds that checkout's git, and so its version and prompts.
    where = Path(cmd[0]).resolve().parent if args.cards else ROOT
    version = subprocess.run(["git", "-C", str(where), "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
    top = subprocess.run(["git", "-C", str(where), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True).stdout.strip()
    prompts = Path(top) / "prompts" if top and (Path(top) / "prompts" / "cards.md").is_file() else ROOT / "prompts"
    rows = []
    t0 = time.perf_counter()
    for key in args.only or SCENARIOS:
        model = Model()
        with tempfile.TemporaryDirectory(prefix="cards-identity-") as tmp, FakeOpenAI(responder=model) as srv, \
                no_network():
            cards = Cards(cmd, Path(tmp), notes, transcript, srv.base_url, prompts)
            anki = Anki(Path(tmp) / "collection.anki2")
            started = time.perf_counter()
            try:
                text, figures = SCENARIOS[key](cards, anki, srv, model)
            finally:
                model.hold.set()
                anki.close()
            rows.append({"scenario": TITLES[key], "key": key, "issue": ISSUE[key], "now": text,
                         "figures": figures, "seconds": round(time.perf_counter() - started, 1)})
    whole = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"cards": " ".join(cmd), "version": version, "episode": EPISODE, "rows": rows,
                          "seconds": round(whole, 1)}, indent=2, ensure_ascii=False))
        return 0
    print(f"Card identity: {NOTES_FILE} (episode {EPISODE}) with {TRANSCRIPT_FILE}; cards {version or cmd[-1]}; "
          "Anki import: update if newer")
    print()
    print("| scenario | what the issue measured | measured now |")
    print("| --- | --- | --- |")
    for r in rows:
        print(f"| {r['scenario']} | {r['issue']} | {r['now']} |")
    print()
    print(f"{len(rows)} scenarios in {whole:.1f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
