"""Alignment quality and speed on the hand-labelled notes of "Dylan, Nathan on Lex".

Each label names a phrase of the transcript that the note's passage must contain.
Prints the top-1 hit rate and the time taken.

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=Path, default=ROOT.parent / "shared" / "seeds")
    ap.add_argument("--labels", type=Path, default=ROOT / "benchmarks" / "align_labels.json")
    ap.add_argument("--tokens", type=int, default=350)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    from cards.align import align_episode
    from cards.episodes import build_episodes
    from cards.ingest.notes import parse_notes
    from cards.ingest.transcripts import parse_transcript
    from cards.tokens import counter_for

    labels = json.loads(args.labels.read_text())
    t0 = time.perf_counter()
    sections = parse_notes(args.seeds / labels["notes_file"])
    transcript = parse_transcript(args.seeds / labels["transcript_file"])
    episodes = build_episodes(sections, [transcript])
    ep = next(e for e in episodes if e.title == labels["episode_heading"])
    t1 = time.perf_counter()
    contexts = align_episode(ep.items, ep.transcript, counter_for(None), args.tokens)
    t2 = time.perf_counter()

    by_first_line = {_squash(i.text.split("\n")[0]): c for i, c in zip(ep.items, contexts)}
    hits = 0
    for lab in labels["labels"]:
        ctx = by_first_line.get(_squash(lab["note"]))
        ok = ctx is not None and _squash(lab["phrase"]) in _squash(ctx.text)
        hits += ok
        if args.verbose and not ok:
            where = "no context" if ctx is None else f"segments {ctx.first_segment}-{ctx.last_segment}"
            print(f"MISS line {lab['line']}: {lab['note'][:60]!r} -> {where}")
    n = len(labels["labels"])
    print(f"| labelled notes | top-1 hits | hit rate | context tokens | parse + group | align |")
    print(f"|---|---|---|---|---|---|")
    print(f"| {n} | {hits} | {hits / n:.1%} | {args.tokens} | {t1 - t0:.3f} s | {t2 - t1:.3f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
