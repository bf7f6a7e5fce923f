"""Lint precision and recall, per rule and overall, on any graded card set.

A graded set is JSONL, one card per line with the fields note, passage (or excerpts, a
list), kind, front, back, quote and grade (READY, POLISH, REFACTOR, OFF-TARGET); other
fields are ignored. It may also be a grading folder of the quality benchmark
(benchmarks/quality/grading/<name>/: sheet.jsonl joined with grades.jsonl by id, and
key.json naming each card's run). REFACTOR and OFF-TARGET cards are the positives lint
should warn about; the budget is at most 5% of READY cards warned.

    python benchmarks/lint.py FILE.jsonl|FOLDER ... [--run TEXT] [--half A|B] [--json]

`--run` keeps the cards of the runs whose name holds TEXT (a grading folder's key.json).

`--half` keeps the cards of one half of the notes, split by a hash of the note text:
rules written while looking at half A only are measured honestly on half B.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import POSITIVE, code, lint_table, read_jsonl, warnings_for  # noqa: E402

READY_BUDGET = 0.05
FIELDS = ("note", "passage", "kind", "front", "back", "quote", "grade")


def read_graded(path: Path) -> list[dict]:
    """The graded cards of a JSONL file or of a grading folder, each with a `passage`."""
    if path.is_dir():
        sheet = {r["id"]: r for r in read_jsonl(path / "sheet.jsonl")}
        key_path = path / "key.json"
        key = json.loads(key_path.read_text(encoding="utf-8")) if key_path.exists() else {}
        rows = []
        for grade in read_jsonl(path / "grades.jsonl"):
            card = sheet.get(grade.get("id"))
            if card is None or card.get("kind") is None or "grade" not in grade:
                continue  # a note with no card, or a grade for no card of this sheet
            runs = key.get(grade["id"], "")
            rows.append({**card, **grade, "run": runs if isinstance(runs, str) else ",".join(runs)})
    else:
        rows = read_jsonl(path)
    for r in rows:
        if "passage" not in r and isinstance(r.get("excerpts"), list):
            r["passage"] = "\n".join(str(e) for e in r["excerpts"])
    return rows


def half_of(note: str) -> str:
    """'A' or 'B': a stable split of notes, so a note's cards stay together."""
    return "AB"[hashlib.sha256(note.encode("utf-8")).digest()[0] % 2]


def figures(rows: list[dict], warned: list[list[str]]) -> dict:
    """Per rule and overall: cards warned, positives among them, READY among them, precision and recall."""
    positive = [r["grade"] in POSITIVE for r in rows]
    ready = [r["grade"] == "READY" for r in rows]

    def one(hit: list[bool]) -> dict:
        n, tp = sum(hit), sum(h and p for h, p in zip(hit, positive))
        return {"warned": n, "positives": tp, "ready": sum(h and r for h, r in zip(hit, ready)),
                "precision": round(tp / n, 3) if n else None,
                "recall": round(tp / sum(positive), 3) if any(positive) else None}

    codes = sorted({code(w) for ws in warned for w in ws})
    out = {"cards": len(rows), "positives": sum(positive), "ready": sum(ready),
           "rules": {c: one([any(code(w) == c for w in ws) for ws in warned]) for c in codes},
           "any": one([bool(ws) for ws in warned])}
    out["ready_warned_share"] = round(out["any"]["ready"] / out["ready"], 3) if out["ready"] else None
    out["within_ready_budget"] = out["ready_warned_share"] is None or out["ready_warned_share"] <= READY_BUDGET
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--run", help="only the cards of runs whose name holds this text")
    ap.add_argument("--half", choices=("A", "B"), help="only the cards of this half of the notes")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    rows = []
    for path in args.files:
        try:
            rows += read_graded(path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"cannot read graded set {path}: {e}", file=sys.stderr)
            return 2
    bad = [i for i, r in enumerate(rows) if not all(f in r for f in FIELDS)]
    if bad:
        print(f"graded set: card {bad[0] + 1} lacks one of the fields {', '.join(FIELDS)}", file=sys.stderr)
        return 2
    if args.run:
        rows = [r for r in rows if args.run in str(r.get("run", ""))]
    if args.half:
        rows = [r for r in rows if half_of(r["note"]) == args.half]
    if not rows:
        print("graded set: no cards", file=sys.stderr)
        return 2
    warned = warnings_for(rows)
    result = figures(rows, warned)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("\n".join(lint_table(rows, warned)))
    share = result["ready_warned_share"]
    print(f"READY cards warned: {result['any']['ready']}/{result['ready']} ({share:.0%}); "
          f"budget {READY_BUDGET:.0%}: {'met' if result['within_ready_budget'] else 'EXCEEDED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
