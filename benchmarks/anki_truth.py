"""Whether Anki shows what `cards` says it exported, cycle by cycle, through a season with kind changes.

Plays the season of tests/anki_season.py (offline -> LLM, a model switch and --force with
cards changing kind, a reworded heading, a moved bullet, a shell without the key) against
the loopback fake OpenAI server, importing every deck into one real Anki collection with
Anki's default options, and prints per cycle: notes Anki's import log skipped as
conflicting, notes whose fields or note type in Anki differ from the deck's (stale), Anki
notes against the cards the decks hold plus those reported left in Anki, and the decks
in Anki. Needs no network and no key.

    python benchmarks/anki_truth.py [--json]

To measure another checkout, put it first on the path: PYTHONPATH=/path/to/checkout python benchmarks/anki_truth.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "CARDS_")):
            del os.environ[name]
    from anki import collection
    from anki_season import AnkiSeason, Clock, play

    import cards
    from cards.store import Store

    clock = Clock()
    Store.default_clock = staticmethod(clock)
    with tempfile.TemporaryDirectory(prefix="cards-anki-truth-") as tmp:
        os.environ["TIKTOKEN_CACHE_DIR"] = tmp  # an empty cache: token counts are estimates, nothing downloads
        os.chdir(tmp)
        season = AnkiSeason(Path(tmp), clock, collection)
        try:
            rows = play(season)
        finally:
            season.close()
    if args.json:
        print(json.dumps({"cards": str(Path(cards.__file__).parent), "cycles": rows}, indent=2, ensure_ascii=False))
        return 0
    print(f"cards from {Path(cards.__file__).parent}")
    print()
    print("| cycle | conflicting | stale | Anki notes | in decks + left | decks in Anki | run |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        said = ", ".join(f"{n} × {why}" for why, n in r.get("reasons", {}).items()) or "nothing sent"
        print(f"| {r['cycle']} | {r['conflicting']} | {r['stale']} | {r['anki_notes']} | "
              f"{r['in_decks']} + {r['left']} | {len(r['decks'])} | {said} |")
    total = sum(r["conflicting"] for r in rows), sum(r["stale"] for r in rows)
    print()
    print(f"{total[0]} conflicting notes and {total[1]} stale notes over {len(rows)} imports.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
