"""Card checks against graded cards, and the offline generator against its ratings.

The labelled set is one JSON object per line: the note, the passage the model saw, the
card (kind, front, back, quote) and an expert's grade (READY, POLISH, REFACTOR,
OFF-TARGET), `support` (is the answer supported by the passage) and `reason`. A card
is a positive when it needs refactoring or is off target: those are the cards lint
should warn about. Prints markdown tables:

- per warning code: cards warned, of which positives (precision), and the share of all
  positives it catches (recall); then any warning at all;
- the share of READY cards with no warning;
- answer grounding: the mean share of the answer's words found in the passage or note,
  and how many answers fall below the "unsupported-answer" line, by `support`;
- the offline generator's useful share, from benchmarks/offline_ratings.jsonl (one
  rated card per line: generator version, note, front, back, useful true/false, reason),
  and any card the current generator makes on the seed notes that is not rated yet;
- the offline generator's recall on terse notes (benchmarks/offline_notes.jsonl: one note
  per line, `worth_a_card` true for a note that states a fact in its own words): the
  notes worth a card that get a card rated useful, and the notes not worth one that get any.

    python benchmarks/quality.py [--labels ../shared/quality/lex-459-graded-cards.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cards import check  # noqa: E402

POSITIVE = {"REFACTOR", "OFF-TARGET"}
DEFAULT_LABELS = ROOT.parent / "shared" / "quality" / "lex-459-graded-cards.jsonl"
RATINGS = ROOT / "benchmarks" / "offline_ratings.jsonl"
OFFLINE_NOTES = ROOT / "benchmarks" / "offline_notes.jsonl"
SEEDS = ROOT.parent / "shared" / "seeds"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def warnings_for(rows: list[dict]) -> list[list[str]]:
    """Every card's warnings as the pipeline gives them: per card, then per note."""
    out = []
    for r in rows:
        warnings, _score = check.check_card(r["kind"], r["front"], r["back"], r["quote"], r["note"], r["passage"])
        out.append(warnings)
    siblings = getattr(check, "sibling_warnings", None)
    if not siblings:
        return out
    if all("siblings" in r and "id" in r for r in rows):
        # A blind sheet mixing runs: a card's siblings are the cards its own run made for the note,
        # not other versions' drafts on the same note.
        at = {r["id"]: i for i, r in enumerate(rows)}
        for i, r in enumerate(rows):
            idx = [i] + [at[s] for s in r["siblings"] if s in at]
            out[i] += siblings([(rows[j]["kind"], rows[j]["front"], rows[j]["back"]) for j in idx])[0]
        return out
    by_note: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_note[r["note"]].append(i)
    for idx in by_note.values():
        for i, extra in zip(idx, siblings([(rows[i]["kind"], rows[i]["front"], rows[i]["back"]) for i in idx])):
            out[i] += extra
    return out


def code(warning: str) -> str:
    return warning.split(":", 1)[0]


def lint_table(rows: list[dict], warned: list[list[str]]) -> list[str]:
    positive = [r["grade"] in POSITIVE for r in rows]
    n_pos = sum(positive)
    codes = sorted({code(w) for ws in warned for w in ws})
    lines = [f"Lint on {len(rows)} graded cards ({n_pos} positives: REFACTOR or OFF-TARGET)", "",
             "| rule | warned | on positives | on POLISH | on READY | precision | recall |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def row(name: str, hit: list[bool]) -> str:
        n = sum(hit)
        tp = sum(h and p for h, p in zip(hit, positive))
        ready = sum(h and r["grade"] == "READY" for h, r in zip(hit, rows))
        polish = sum(h and r["grade"] == "POLISH" for h, r in zip(hit, rows))
        precision = f"{tp / n:.0%}" if n else "-"
        recall = f"{tp / n_pos:.0%}" if n_pos else "-"
        return f"| {name} | {n} | {tp} | {polish} | {ready} | {precision} | {recall} |"

    for c in codes:
        lines.append(row(c, [any(code(w) == c for w in ws) for ws in warned]))
    lines.append(row("**any warning**", [bool(ws) for ws in warned]))
    ready = [ws for ws, r in zip(warned, rows) if r["grade"] == "READY"]
    clean = sum(not ws for ws in ready)
    lines += ["", f"READY cards with no warning: {clean}/{len(ready)} ({clean / len(ready):.0%})"]
    return lines


def grounding_table(rows: list[dict]) -> list[str]:
    support = getattr(check, "answer_support", None)
    if support is None:
        return ["", "Answer grounding: not measured by this version (quote grounding only)."]
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        s = support(r["kind"], r["front"], r["back"], r["note"], r["passage"])
        groups[r.get("support", "?")].append(1.0 if s is None else s)
    lines = ["", "| answer support (label) | cards | mean share of answer words found | below the warning line |",
             "| --- | --- | --- | --- |"]
    for label, scores in sorted(groups.items()):
        below = sum(s < check.ANSWER_SUPPORTED for s in scores)
        lines.append(f"| {label} | {len(scores)} | {sum(scores) / len(scores):.2f} | {below} |")
    return lines


def ratings_table(path: Path) -> list[str]:
    if not path.exists():
        return []
    ratings = read_jsonl(path)
    by_version = Counter((r.get("generator", "?"), bool(r["useful"])) for r in ratings)
    lines = ["", f"Offline generator, cards rated by hand ({path.relative_to(ROOT)})", "",
             "| generator | cards | useful | useful share |", "| --- | --- | --- | --- |"]
    for gen in sorted({g for g, _ in by_version}):
        useful, n = by_version[(gen, True)], by_version[(gen, True)] + by_version[(gen, False)]
        lines.append(f"| {gen} | {n} | {useful} | {useful / n:.0%} |")
    unrated = unrated_offline_cards(ratings)
    if unrated is not None:
        lines += ["", f"Cards the current offline generator makes on the seeds that are not rated yet: {len(unrated)}"]
        lines += [f"- {front}" for front in unrated]
    return lines


def offline_recall_table(notes_path: Path, ratings_path: Path) -> list[str]:
    """Notes worth a card that get a useful one, and notes not worth one that get any, by the current generator."""
    if not notes_path.exists():
        return []
    from cards.generate.offline import MODEL, cards_for

    ratings = read_jsonl(ratings_path) if ratings_path.exists() else []
    useful = {(r["note"], r["front"]): bool(r["useful"]) for r in ratings if r.get("generator") == MODEL}
    rows = read_jsonl(notes_path)
    worth = [r for r in rows if r["worth_a_card"]]
    other = [r for r in rows if not r["worth_a_card"]]
    made = {r["note"]: cards_for(r["note"]) for r in rows}
    hit = sum(any(useful.get((r["note"], c.front)) for c in made[r["note"]]) for r in worth)
    carded = sum(bool(made[r["note"]]) for r in worth)
    unrated = [c.front for r in rows for c in made[r["note"]] if (r["note"], c.front) not in useful]
    lines = ["", f"Offline recall on terse notes ({notes_path.relative_to(ROOT)}), generator {MODEL}", "",
             "| notes | count | with a card | with a useful card |", "| --- | --- | --- | --- |",
             f"| worth a card | {len(worth)} | {carded} | {hit} |",
             f"| not worth a card | {len(other)} | {sum(bool(made[r['note']]) for r in other)} | - |"]
    if unrated:
        lines += ["", f"Cards made on these notes that are not rated yet: {len(unrated)}"] + [f"- {f}" for f in unrated]
    return lines


def unrated_offline_cards(ratings: list[dict]) -> list[str] | None:
    """Fronts the current offline generator makes on the seed notes with no rating; None without seeds."""
    from cards.config import build_settings
    from cards.generate.offline import MODEL, cards_for
    from cards.pipeline import load

    names = ("000_afbeb462ed58c10d.txt", "001_88cdf00b6de09240.txt", "004_bd517cc6001931b3.txt")
    paths = [SEEDS / n for n in names]
    if not all(p.exists() for p in paths):
        return None
    rated = {r["front"] for r in ratings if r.get("generator") == MODEL}
    loaded = load(paths, [], build_settings(config_path=SEEDS / "no-cards.toml"))
    return [c.front for ep in loaded.episodes for item in ep.items for c in cards_for(item.text)
            if c.front not in rated]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    ap.add_argument("--ratings", type=Path, default=RATINGS)
    ap.add_argument("--offline-notes", type=Path, default=OFFLINE_NOTES)
    args = ap.parse_args()
    if not args.labels.exists():
        print(f"missing labelled set {args.labels} (pass --labels)", file=sys.stderr)
        return 2
    rows = read_jsonl(args.labels)
    warned = warnings_for(rows)
    print("\n".join(lint_table(rows, warned) + grounding_table(rows) + ratings_table(args.ratings)
                    + offline_recall_table(args.offline_notes, args.ratings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
