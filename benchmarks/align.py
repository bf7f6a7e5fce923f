"""Alignment quality and speed on hand-labelled notes.

Two label sets, each pairing a note with phrases of the transcript that its passage
must contain:

- `align_labels.json`: the 36 real notes of "Dylan, Nathan on Lex" (seeds 000 + 002),
  one phrase each (the top-1 hit rate), and for notes with several claims a phrase
  per claim (`claims`);
- `align_heldout.json`: notes written in a listener's words on parts of the seeds no
  real note covers (the timed Whisper transcript 003, and other parts of 002), written
  before the aligner was tuned; a note is a hit only when its passage holds every phrase.

Prints, per set: notes, hits, hit rate, and for notes with several claims the share of
claims whose phrase is in the passage; then the time taken.

    python benchmarks/align.py [--seeds ../shared/seeds] [--tokens 350] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _has(ctx, phrase: str) -> bool:
    return ctx is not None and _squash(phrase) in _squash(ctx.text)


def _where(ctx) -> str:
    if ctx is None:
        return "no context"
    return ", ".join(f"segments {e.first_segment}-{e.last_segment}" for e in ctx.parts)


class Tally:
    def __init__(self, name: str):
        self.name = name
        self.notes = self.hits = self.claims = self.claims_found = self.multi = 0
        self.excerpts = 0

    def add(self, ctx, phrases: list[str], claims: list[str], label: str, verbose: bool) -> None:
        ok = all(_has(ctx, p) for p in phrases)
        self.notes += 1
        self.hits += ok
        if len(claims) > 1:
            self.multi += 1
            self.claims += len(claims)
            self.claims_found += sum(_has(ctx, c) for c in claims)
        if ctx is not None and len(ctx.parts) > 1:
            self.excerpts += 1
        lost = [c for c in claims if not _has(ctx, c)]
        if verbose and ok and lost:
            print(f"CLAIM MISSED {self.name}: {label[:60]!r} -> {_where(ctx)}; missing {lost}")
        if verbose and not ok:
            missing = [p for p in phrases if not _has(ctx, p)]
            print(f"MISS {self.name}: {label[:60]!r} -> {_where(ctx)}; missing {missing}")

    def row(self) -> str:
        cov = (f"{self.claims_found}/{self.claims} = {self.claims_found / self.claims:.1%}"
               if self.claims else "–")
        return (f"| {self.name} | {self.notes} | {self.hits} | {self.hits / self.notes:.1%} "
                f"| {self.multi} | {cov} | {self.excerpts} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=Path, default=ROOT.parent / "shared" / "seeds")
    ap.add_argument("--labels", type=Path, default=ROOT / "benchmarks" / "align_labels.json")
    ap.add_argument("--heldout", type=Path, default=ROOT / "benchmarks" / "align_heldout.json")
    ap.add_argument("--tokens", type=int, default=350)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    from cards.align import align_episode
    from cards.episodes import build_episodes
    from cards.ingest.notes import parse_notes
    from cards.ingest.transcripts import parse_transcript
    from cards.models import NoteItem, Source
    from cards.tokens import counter_for

    counter = counter_for(None)
    labels = json.loads(args.labels.read_text())
    t0 = time.perf_counter()
    sections = parse_notes(args.seeds / labels["notes_file"])
    transcript = parse_transcript(args.seeds / labels["transcript_file"])
    episodes = build_episodes(sections, [transcript])
    ep = next(e for e in episodes if e.title == labels["episode_heading"])
    t1 = time.perf_counter()
    contexts = align_episode(ep.items, ep.transcript, counter, args.tokens)
    t2 = time.perf_counter()

    by_first_line = {_squash(i.text.split("\n")[0]): c for i, c in zip(ep.items, contexts)}
    labelled = Tally("labelled (Lex notes)")
    for lab in labels["labels"]:
        ctx = by_first_line.get(_squash(lab["note"]))
        labelled.add(ctx, [lab["phrase"]], lab.get("claims", []), f"line {lab['line']}: {lab['note']}",
                     args.verbose)

    heldout = Tally("held-out")
    held_time = 0.0
    if args.heldout.exists():
        for hep in json.loads(args.heldout.read_text())["episodes"]:
            t = parse_transcript(args.seeds / hep["transcript_file"])
            items = [NoteItem(NoteItem.make_id(hep["name"], n["note"]), hep["name"], n["note"], "bullet",
                              None, (Source("heldout", i + 1, i + 1),), i)
                     for i, n in enumerate(hep["notes"])]
            t3 = time.perf_counter()
            ctxs = align_episode(items, t, counter, args.tokens)
            held_time += time.perf_counter() - t3
            for n, ctx in zip(hep["notes"], ctxs):
                heldout.add(ctx, n["phrases"], n["phrases"], n["note"], args.verbose)

    print("| label set | notes | hits | hit rate | multi-claim notes | claims found | several excerpts |")
    print("|---|---|---|---|---|---|---|")
    print(labelled.row())
    if heldout.notes:
        print(heldout.row())
    print()
    print("| context tokens | parse + group (labelled) | align (labelled) | align (held-out) |")
    print("|---|---|---|---|")
    print(f"| {args.tokens} | {t1 - t0:.3f} s | {t2 - t1:.3f} s | {held_time:.3f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
