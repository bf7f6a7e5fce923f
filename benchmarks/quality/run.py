"""Card quality without an API key: capture requests, replay written replies, grade blind, score.

    python benchmarks/quality/run.py capture SET [--prompts DIR]
    python benchmarks/quality/run.py replay SET [--version V] [--prompts DIR] [--critic]
    python benchmarks/quality/run.py sheet RUN_DIR... [--out DIR] [--seed N]
    python benchmarks/quality/run.py score [--out DIR] [--json]

SET is one of `lex`, `fresh-tune`, `fresh-holdout`. A run folder is
`benchmarks/quality/runs/<prompt version>/<set>/` (`<prompt version>-critic/` for runs with the
critic pass). See benchmarks/quality/README.md.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SEEDS = ROOT.parent / "shared" / "seeds"
RUNS = HERE / "runs"
GRADING = HERE / "grading"
MODEL = "gpt-4.1"
GRADES = ("READY", "POLISH", "REFACTOR", "OFF-TARGET")

sys.path.insert(0, str(HERE))
from serve import Server  # noqa: E402

LEX = SEEDS / "002_0fe13fd03e9aaf95.txt"
LATENT_SPACE = SEEDS / "003_34925e2c796f303a.txt"
SETS = {
    # name: (notes files, transcripts, episode slug or None for all)
    "lex": ([SEEDS / "000_afbeb462ed58c10d.txt"], [LEX], "dylan-nathan-on-lex"),
    "fresh-tune": ([HERE / "notes" / "tune.md"], [LEX, LATENT_SPACE], None),
    "fresh-holdout": ([HERE / "notes" / "holdout.md"], [LEX, LATENT_SPACE], None),
}


def fail(message: str) -> int:
    print(f"quality: {message}", file=sys.stderr)
    return 2


def prompt_version(prompts: Path | None) -> str:
    path = (prompts or ROOT / "prompts") / "cards.md"
    m = re.search(r"^version:\s*(\S+)", path.read_text(encoding="utf-8"), re.M)
    if not m:
        raise SystemExit(fail(f"no version in {path}"))
    return m.group(1)


def tag(text: str, name: str) -> list[str]:
    return [html.unescape(m.strip()) for m in re.findall(rf"<{name}(?:\s[^<>]*)?>(.*?)</{name}>", text, re.S)]


def request_parts(body: dict) -> dict:
    """The note and the excerpts a request sent (from its last user message)."""
    user = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
    notes = tag(user, "note")
    excerpts = tag(user, "excerpt") or tag(user, "passage")
    return {"note": notes[0] if notes else "", "excerpts": excerpts}


def squash(text: str) -> str:
    return " ".join(text.split())


def run_cards(srv: Server, set_name: str, workspace: Path, prompts: Path | None,
              critic: bool = False) -> subprocess.CompletedProcess:
    notes, transcripts, episode = SETS[set_name]
    for path in [*notes, *transcripts]:
        if not path.exists():
            raise SystemExit(fail(f"missing input {path} (the seeds are read from ../shared/seeds)"))
    cmd = [sys.executable, "-m", "cards", "generate", *map(str, notes)]
    for t in transcripts:
        cmd += ["-t", str(t)]
    cmd += ["-w", str(workspace), "--base-url", srv.base_url, "--model", MODEL, "--concurrency", "4", "--json"]
    if episode:
        cmd += ["--episode", episode]
    if prompts:
        cmd += ["--prompts", str(prompts)]
    if critic:
        cmd += ["--critic"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CARDS_"))}
    env["OPENAI_API_KEY"] = "sk-quality-bench"  # a dummy: the server is on loopback
    return subprocess.run(cmd, env=env, cwd=workspace.parent, capture_output=True, text=True)


def capture(args) -> int:
    version = prompt_version(args.prompts)
    folder = run_folder(version, args.set)
    with tempfile.TemporaryDirectory(prefix="cards-quality-") as tmp, Server(folder, "capture") as srv:
        done = run_cards(srv, args.set, Path(tmp) / "ws", args.prompts)
    if done.returncode not in (0, 1):
        print(done.stderr, file=sys.stderr)
        return fail(f"cards generate stopped with status {done.returncode}")
    keys = sorted(set(srv.seen))
    notes = _total_notes(done)
    print(f"{args.set}: {notes} notes, {len(srv.seen)} requests, {len(keys)} distinct, "
          f"prompt {version} -> {(folder / 'requests').relative_to(ROOT)}/")
    if notes != len(keys):
        print("warning: requests and notes differ in number", file=sys.stderr)
    return 0


def _total_notes(done: subprocess.CompletedProcess) -> int | None:
    """Notes the run sent, from `cards generate --json`."""
    try:
        return json.loads(done.stdout)["total"]["notes"]
    except (ValueError, KeyError, TypeError):
        return None


def run_folder(version: str, set_name: str, critic: bool = False) -> Path:
    return RUNS / (version.removeprefix("cards-") + ("-critic" if critic else "")) / set_name


def _seed_critic_run(version: str, set_name: str, folder: Path) -> None:
    """A critic run answers the first round with the plain run's replies: copy those it lacks."""
    plain = run_folder(version, set_name)
    for part in ("requests", "replies"):
        if not (plain / part).is_dir():
            continue
        (folder / part).mkdir(parents=True, exist_ok=True)
        for f in (plain / part).iterdir():
            if not (folder / part / f.name).exists():
                (folder / part / f.name).write_bytes(f.read_bytes())


def replay(args) -> int:
    version = args.version or prompt_version(args.prompts)
    folder = run_folder(version, args.set, args.critic)
    if args.critic:
        _seed_critic_run(version, args.set, folder)
    if not (folder / "replies").is_dir():
        return fail(f"no replies in {folder.relative_to(ROOT)}/replies (write them first; see README.md)")
    with tempfile.TemporaryDirectory(prefix="cards-quality-") as tmp, Server(folder, "replay") as srv:
        ws = Path(tmp) / "ws"
        done = run_cards(srv, args.set, ws, args.prompts, args.critic)
        if done.returncode not in (0, 1):
            print(done.stderr, file=sys.stderr)
            return fail(f"cards generate stopped with status {done.returncode}")
        if done.returncode == 1:  # a reply that does not fit the schema: recorded as that note's failure
            try:
                failures = json.loads(done.stdout).get("failures", [])
            except ValueError:
                failures = []
            print(f"{len(failures)} notes failed, their replies were rejected:", file=sys.stderr)
            for f in failures:
                print(f"  {squash(str(f.get('note', f)))[:60]}: {f.get('error', '')}", file=sys.stderr)
        listed = subprocess.run([sys.executable, "-m", "cards", "drafts", "-w", str(ws), "--json"],
                                capture_output=True, text=True, cwd=tmp)
        # A card set aside when it was made (naming no claim, or dropped by the critic) is stored rejected:
        # the listener does not get it, so neither does the grader.
        drafts = [d for d in json.loads(listed.stdout or "[]") if d["status"] != "rejected"]
    sent = {}
    for key in dict.fromkeys(srv.seen):
        body = json.loads((folder / "requests" / f"{key}.json").read_text(encoding="utf-8"))
        parts = request_parts(body)
        sent.setdefault(squash(parts["note"]), (key, parts))  # the note's first request, not the critic's
    rows = []
    for d in drafts:
        key, parts = sent.get(squash(d["note"]), (None, {"excerpts": []}))
        rows.append({"run": folder.relative_to(RUNS).as_posix(), "episode": d["episode"], "note": d["note"],
                     "request": key, "excerpts": parts["excerpts"], "kind": d["kind"], "front": d["front"],
                     "back": d["back"], "quote": d["quote"], "prompt_version": d["prompt_version"],
                     "status": d["status"], "warnings": d["warnings"]})
    with_cards = {squash(r["note"]) for r in rows}
    notes = [{"note": parts["note"], "request": key, "excerpts": parts["excerpts"],
              "cards": sum(squash(r["note"]) == n for r in rows)} for n, (key, parts) in sent.items()]
    write_jsonl(folder / "cards.jsonl", rows)
    write_jsonl(folder / "notes.jsonl", notes)
    missing = list(dict.fromkeys(srv.missing))
    print(f"{args.set} ({version}): {len(sent)} notes, {len(rows)} cards, "
          f"{sum(1 for n in sent if n not in with_cards)} notes with no card "
          f"-> {(folder / 'cards.jsonl').relative_to(ROOT)}")
    if missing:
        print(f"{len(missing)} requests had no reply (recorded in requests/, answered with no cards):")
        for key in missing:
            print(f"  {key}")
    return 0


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sheet(args) -> int:
    rows = []
    for run in args.runs:
        folder = run if run.is_absolute() else Path.cwd() / run
        if not (folder / "cards.jsonl").exists():
            return fail(f"no cards.jsonl in {run} (replay it first)")
        try:
            label = folder.resolve().relative_to(RUNS.resolve()).as_posix()
        except ValueError:  # a run folder kept elsewhere
            label = folder.resolve().as_posix()
        cards = read_jsonl(folder / "cards.jsonl")
        for c in cards:
            rows.append((label, {"note": c["note"], "excerpts": c["excerpts"], "kind": c["kind"],
                                 "front": c["front"], "back": c["back"], "quote": c["quote"]}))
        for n in read_jsonl(folder / "notes.jsonl"):
            if not n["cards"]:  # the grader says whether this note deserved a card
                rows.append((label, {"note": n["note"], "excerpts": n["excerpts"], "kind": None,
                                     "front": "", "back": "", "quote": ""}))
    # A card that several runs made alike (a critic that kept it, say) is one row graded once: the
    # grader sees no repeats that would hint which rows belong together.
    merged: dict[str, tuple[list[str], dict]] = {}
    for label, row in rows:
        same = json.dumps([squash(row["note"]), row["kind"], row["front"], row["back"], row["quote"]])
        merged.setdefault(same, ([], row))[0].append(label)
    unique = list(merged.values())
    random.Random(args.seed).shuffle(unique)
    args.out.mkdir(parents=True, exist_ok=True)
    ids = [f"q{i:04d}" for i in range(1, len(unique) + 1)]
    # Siblings are the cards one run made for the same note: the listener studies those together, so
    # only they can give each other's answers away. Rows from other runs are alternatives, not siblings.
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for i, (labels, row) in zip(ids, unique):
        for label in labels:
            groups[(label, squash(row["note"]))].add(i)
    siblings = {i: sorted(set().union(*(groups[(label, squash(row["note"]))] for label in labels)) - {i})
                for i, (labels, row) in zip(ids, unique)}
    write_jsonl(args.out / "sheet.jsonl", [{"id": i, **row, "siblings": siblings[i]} for i, (_, row) in zip(ids, unique)])
    (args.out / "key.json").write_text(json.dumps({i: labels for i, (labels, _) in zip(ids, unique)}, indent=1)
                                       + "\n", encoding="utf-8")
    print(f"{len(unique)} rows ({len(rows)} cards and empty notes) from {len(args.runs)} runs -> "
          f"{args.out}/sheet.jsonl (key: {args.out}/key.json)")
    return 0


def score(args) -> int:
    key_path, grades_path, sheet_path = (args.out / n for n in ("key.json", "grades.jsonl", "sheet.jsonl"))
    for p in (key_path, grades_path, sheet_path):
        if not p.exists():
            return fail(f"missing {p}")
    key = json.loads(key_path.read_text(encoding="utf-8"))
    rows = {r["id"]: r for r in read_jsonl(sheet_path)}
    grades = {g["id"]: g for g in read_jsonl(grades_path)}
    for gid, g in grades.items():
        if gid not in key:
            return fail(f"grade for unknown id {gid}")
        if rows[gid]["kind"] is not None and g.get("grade") not in GRADES:
            return fail(f"{gid}: grade must be one of {', '.join(GRADES)}")
    per_run: dict[str, dict] = defaultdict(lambda: {"cards": [], "notes": defaultdict(list), "empty": {}})
    ungraded = 0
    for gid, labels in key.items():
        row, g = rows[gid], grades.get(gid)
        if g is None:
            ungraded += 1
            continue
        for label in [labels] if isinstance(labels, str) else labels:  # one row may stand for several runs
            run = per_run[label]
            note = squash(row["note"])
            if row["kind"] is None:
                run["empty"][note] = bool(g.get("worth_a_card"))
            else:
                run["cards"].append(g)
                run["notes"][note].append(g)
    table = []
    for label in sorted(per_run):
        run = per_run[label]
        cards, notes, empty = run["cards"], run["notes"], run["empty"]
        n_cards = len(cards)
        ready = sum(g["grade"] == "READY" for g in cards)
        polish = sum(g["grade"] == "POLISH" for g in cards)
        bad = sum(g["grade"] in ("REFACTOR", "OFF-TARGET") for g in cards)
        worth = set(notes) | {n for n, w in empty.items() if w}
        hit = sum(any(g["grade"] == "READY" and g.get("tests_main_point") for g in notes.get(n, ())) for n in worth)
        n_notes = len(notes) + len(empty)
        table.append({
            "run": label, "notes": n_notes, "cards": n_cards,
            "ready": ready / n_cards if n_cards else 0.0,
            "ready_or_polish": (ready + polish) / n_cards if n_cards else 0.0,
            "notes_worth_a_card": len(worth),
            "main_point_ready": hit / len(worth) if worth else 0.0,
            "bad_per_note": bad / n_notes if n_notes else 0.0,
            "zero_card_notes": len(empty),
            "zero_card_notes_worth_a_card": sum(empty.values()),
        })
    if args.json:
        print(json.dumps({"runs": table, "ungraded": ungraded}, indent=2))
        return 0
    print("| run | notes | cards | READY | READY/POLISH | main point READY | bad/note | 0-card |")
    print("|---|---|---|---|---|---|---|---|")
    for t in table:
        print(f"| {t['run']} | {t['notes']} | {t['cards']} | {t['ready']:.1%} | {t['ready_or_polish']:.1%} | "
              f"{t['main_point_ready']:.1%} of {t['notes_worth_a_card']} | {t['bad_per_note']:.2f} | "
              f"{t['zero_card_notes']} ({t['zero_card_notes_worth_a_card']} missed) |")
    print()
    print("main point READY: notes with a card, or judged worth one, that have a READY card on their point.")
    print("bad/note: REFACTOR + OFF-TARGET cards per note sent. 0-card: notes with no card (of them worth one).")
    if ungraded:
        print(f"{ungraded} rows have no grade yet.")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="step", required=True)
    c = sub.add_parser("capture", help="record the requests `cards generate` sends for a set")
    c.add_argument("set", choices=sorted(SETS))
    c.add_argument("--prompts", type=Path, help="a prompts folder (default: the repository's prompts/)")
    r = sub.add_parser("replay", help="answer the requests with the stored replies; dump cards.jsonl")
    r.add_argument("set", choices=sorted(SETS))
    r.add_argument("--version", help="run folder's prompt version (default: the prompts' own)")
    r.add_argument("--prompts", type=Path)
    r.add_argument("--critic", action="store_true",
                   help="with the critic pass, in <version>-critic/ (first-round replies copied from <version>/)")
    s = sub.add_parser("sheet", help="one shuffled blind grading sheet from several runs")
    s.add_argument("runs", nargs="+", type=Path, help="run folders, e.g. benchmarks/quality/runs/cards-2026-11-2/lex")
    s.add_argument("--out", type=Path, default=GRADING)
    s.add_argument("--seed", type=int, default=0)
    g = sub.add_parser("score", help="join grades to runs and print the table")
    g.add_argument("--out", type=Path, default=GRADING, help="the grading folder")
    g.add_argument("--json", action="store_true")
    args = ap.parse_args()
    return {"capture": capture, "replay": replay, "sheet": sheet, "score": score}[args.step](args)


if __name__ == "__main__":
    raise SystemExit(main())
