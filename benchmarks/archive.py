"""How `cards` scales with an archive of years of episodes: first run, no-op rerun, one new episode.

    python benchmarks/archive.py [--seeds ../shared/seeds] [--sizes 50,150,500]
                                 [--scaling 1000,2000,10000] [--big-mb 10] [--only archive|scaling|big]

Writes synthetic archives into a temporary folder and runs the installed `cards`
on them as fresh processes, as a person would. Each episode of an archive has a
transcript cut from the seed transcripts (002, 003) and about 20 notes taken from
that transcript, reworded; ten episodes share a notes file, and every fifth
episode is also in an older export file under a differently worded heading, so
grouping, merging and matching all do real work. Episodes cut from the same seed
share much of their vocabulary, so matching is not a matter of one rare word.

For each archive it prints wall time and peak memory (max RSS of the child) of:
`cards episodes`, `cards generate --offline` (first run, no-op rerun, and a rerun
with one new episode added) and `cards status` (skipped when the command does not
exist). Then `cards episodes` over 1,000 / 2,000 / 10,000 small note-only
episodes, and reading one 10 MB notes file.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST = ("Ada Boris Chen Dana Eli Farah Goran Hana Ivo Jun Kemal Lena Mika Nadia Omar Pia Quinn Rosa Sven "
         "Tomas Uma Vera Wen Xavi Yara Zoe Anders Bea Cyrus Dmitri Esme Felix Greta Hugo Ines Jonas Kira "
         "Lars Mona Nils").split()
LAST = ("Abbott Baptiste Castillo Dorsey Eriksen Fournier Gallo Haddad Iqbal Jansen Kowalski Lindqvist "
        "Moreau Novak Okafor Petrov Quade Rinaldi Sato Tanaka Ulrich Vance Weber Xu Yilmaz Zeller Amari "
        "Brandt Costa Dubois").split()
SHOWS = ["Lex", "Dwarkesh", "Latent Space", "No Priors", "Complex Systems", "Stratechery", "Acquired",
         "Hard Fork", "Invest Like the Best", "Conversations with Tyler"]


def _seed_lines(seeds: Path) -> dict[str, list[str]]:
    """Speech lines of the two seed transcripts, without their headers or timestamps."""
    lex = (seeds / "002_0fe13fd03e9aaf95.txt").read_text(encoding="utf-8").splitlines()[5:]
    ls = []
    for line in (seeds / "003_34925e2c796f303a.txt").read_text(encoding="utf-8").splitlines():
        text = line.split("]", 1)[-1].strip()
        if text and not text.startswith("["):
            ls.append(text)
    return {"lex": [x for x in lex if x.strip()], "ls": ls}


class Archive:
    """A synthetic archive: episode i has a heading, ~20 notes and a transcript; all deterministic."""

    def __init__(self, seeds: Path, seed: int = 7):
        self.src = _seed_lines(seeds)
        self.seed = seed

    def episode(self, i: int) -> dict:
        rnd = random.Random(self.seed * 100_003 + i)
        guest = f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST) + i) % len(LAST)]}"
        guest2 = f"{FIRST[(i * 7 + 3) % len(FIRST)]} {LAST[(i * 3 + 1) % len(LAST)]}"
        show = SHOWS[i % len(SHOWS)]
        month, day = 1 + (i // 28) % 12, 1 + i % 28
        year = 2020 + i // 336
        heading = f"{guest} on {show} ({month}/{day}/{year % 100})"
        older = f"{guest} ({month}/{day}/{year % 100}) {show} episode"
        # A transcript is several chunks of one seed, in a shuffled order: episodes
        # overlap in vocabulary but never in their whole text.
        name = "lex" if i % 3 else "ls"
        lines = self.src[name]
        chunk = 60 if name == "lex" else 25
        chunks = []
        for _ in range(6):
            at = rnd.randrange(0, len(lines) - chunk)
            chunks.append(lines[at:at + chunk])
        body = [f"the following is a conversation with {guest} and {guest2} on {show}"]
        for c in chunks:
            body.extend(c)
        vid = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789_-") for _ in range(11))
        transcript = "\n".join(["Transcript", f"{vid} • {guest} and {guest2} | {show} #{i}",
                                f"/archive/{show}/{i}.txt", "Kind: captions", "Language: en", *body]) + "\n"
        notes = []
        for n in range(20):
            c = chunks[n % len(chunks)]
            at = rnd.randrange(0, max(1, len(c) - 3))
            text = " ".join(c[at:at + (2 if name == "lex" else 1)]).split()
            # Notes paraphrase: drop a few words, keep the order.
            kept = [w for w in text if rnd.random() > 0.2] or text
            notes.append(" ".join(kept[:18]))
        return {"heading": heading, "older": older, "notes": notes, "transcript": transcript,
                "month": (year, month)}

    def write(self, folder: Path, n: int) -> tuple[Path, Path]:
        """Notes in folder/notes (ten episodes a file, plus older exports), transcripts in folder/transcripts."""
        notes_dir, t_dir = folder / "notes", folder / "transcripts"
        notes_dir.mkdir(parents=True)
        t_dir.mkdir(parents=True)
        for start in range(0, n, 10):
            self._write_block(notes_dir, t_dir, range(start, min(n, start + 10)))
        return notes_dir, t_dir

    def _write_block(self, notes_dir: Path, t_dir: Path, idx: range) -> None:
        eps = [(i, self.episode(i)) for i in idx]
        main = ["---", "title: podcast notes", "---", ""]
        old = []
        for i, ep in eps:
            main += [f"# {ep['heading']}", ""] + [f"- {x}" for x in ep["notes"]] + [""]
            if i % 5 == 0:
                old += [f"# {ep['older']}", ""] + [f"- {x}" for x in ep["notes"][:8]] + [""]
            (t_dir / f"ep{i:05d}.txt").write_text(ep["transcript"], encoding="utf-8")
        (notes_dir / f"notes-{idx.start:05d}.md").write_text("\n".join(main), encoding="utf-8")
        if old:
            (notes_dir / f"older-{idx.start:05d}.md").write_text("\n".join(old), encoding="utf-8")

    def add_one(self, notes_dir: Path, t_dir: Path, i: int) -> None:
        """One new episode: its notes in a new file, its transcript next to the others."""
        self._write_block(notes_dir, t_dir, range(i, i + 1))


_SYLLABLES = "ka mo ru te si na lo vi de pa gu ze ri ha no tu be fi ma ko".split()


def surname(i: int) -> str:
    """A distinct made-up surname for every i, as guests of a long archive have."""
    out = []
    for _ in range(4):
        i, r = divmod(i, len(_SYLLABLES))
        out.append(_SYLLABLES[r])
    return "".join(out).title()


_WORDS = ("model data chip fab power inference training cluster export margin cost token memory "
          "bandwidth latency compute scale sparse expert attention cache network energy market").split()


def small_notes(folder: Path, n: int, per_file: int = 100) -> Path:
    """n note-only episodes of 3-5 short bullets, `per_file` episodes a file."""
    folder.mkdir(parents=True)
    rnd = random.Random(n)
    for start in range(0, n, per_file):
        out = []
        for i in range(start, min(n, start + per_file)):
            guest = f"{FIRST[i % len(FIRST)]} {surname(i)}"
            # A date a day: a heading says which episode, as a listener's would.
            out.append(f"# {guest} on {SHOWS[i % len(SHOWS)]} ({1 + (i // 28) % 12}/{1 + i % 28}/{20 + i // 336})\n")
            for _ in range(rnd.randrange(3, 6)):
                out.append("- " + " ".join(rnd.choice(_WORDS) for _ in range(8)) + f" {rnd.randrange(10**6)}\n")
            out.append("\n")
        (folder / f"n{start:06d}.md").write_text("".join(out), encoding="utf-8")
    return folder


def big_notes(path: Path, megabytes: float) -> Path:
    """One notes file of about `megabytes` MB: many episodes of 20 bullets each."""
    rnd = random.Random(1)
    out, size, i = [], 0, 0
    while size < megabytes * 1e6:
        head = f"# {FIRST[i % len(FIRST)]} {surname(i)} on {SHOWS[i % len(SHOWS)]}\n"
        out.append(head)
        size += len(head)
        for _ in range(20):
            line = "- " + " ".join(rnd.choice(_WORDS) for _ in range(12)) + f" {rnd.randrange(10**6)}\n"
            out.append(line)
            size += len(line)
        out.append("\n")
        i += 1
    path.write_text("".join(out), encoding="utf-8")
    return path


def run(args: list[str], cwd: Path, timeout: float) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of one `cards` process; 'ok', 'failed (N)' or 'timeout'."""
    env = dict(os.environ)
    for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CARDS_WORKSPACE"):
        env.pop(k, None)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cards", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = t0 + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            return time.perf_counter() - t0, 0.0, "timeout"
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode("utf-8", "replace").strip().splitlines() if proc.stderr else []
    proc.stderr.close()
    rss = usage.ru_maxrss / 1024  # kilobytes on Linux
    if code != 0:
        return wall, rss, f"failed ({code}): {err[-1] if err else ''}"
    return wall, rss, "ok"


def has_command(name: str) -> bool:
    out = subprocess.run([sys.executable, "-m", "cards", "--help"], capture_output=True, text=True, check=False)
    return any(line.strip().startswith(name + " ") for line in out.stdout.splitlines())


def _cell(r: tuple[float, float, str]) -> str:
    wall, rss, status = r
    if status != "ok":
        return status
    return f"{wall:.2f} s / {rss:.0f} MB"


def bench_archive(arch: Archive, n: int, tmp: Path, timeout: float, status: bool) -> list[str]:
    folder = tmp / f"archive-{n}"
    notes, ts = arch.write(folder, n)
    # The default workspace (./decks) is where `cards episodes` looks for its cache too.
    gen = ["generate", "notes", "-t", "transcripts", "--offline"]
    eps = ["episodes", "notes", "-t", "transcripts", "--json"]
    st = ["status", "notes", "-t", "transcripts"]
    rows = []
    first_eps = run(eps, folder, timeout)
    first = run(gen, folder, timeout)
    noop = run(gen, folder, timeout)
    eps_ws = run(eps, folder, timeout)  # now with a workspace
    st_noop = run(st, folder, timeout) if status else None
    arch.add_one(notes, ts, n)
    one = run(gen, folder, timeout)
    notes_count = n * 20
    rows.append(f"| {n} ({notes_count:,} notes) | `episodes` | {_cell(first_eps)} | {_cell(eps_ws)} | – |")
    rows.append(f"| {n} | `generate --offline` | {_cell(first)} | {_cell(noop)} | {_cell(one)} |")
    rows.append(f"| {n} | `status` | – | {_cell(st_noop) if st_noop else 'no `status` command'} | – |")
    shutil.rmtree(folder)
    return rows


def bench_scaling(sizes: list[int], tmp: Path, timeout: float) -> list[str]:
    rows = []
    for n in sizes:
        folder = tmp / f"small-{n}"
        small_notes(folder / "notes", n)
        r = run(["episodes", "notes", "--json"], folder, timeout)
        rows.append(f"| {n:,} note-only episodes | `episodes` | {_cell(r)} |")
        shutil.rmtree(folder)
    return rows


def bench_big(mb: float, tmp: Path, timeout: float) -> list[str]:
    rows = []
    for size in (mb / 4, mb / 2, mb):
        folder = tmp / f"big-{size}"
        folder.mkdir()
        big_notes(folder / "big.md", size)
        r = run(["episodes", "big.md", "--json"], folder, timeout)
        rows.append(f"| one {size:g} MB notes file | `episodes` | {_cell(r)} |")
        shutil.rmtree(folder)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=Path, default=ROOT.parent / "shared" / "seeds")
    ap.add_argument("--sizes", default="50,150,500")
    ap.add_argument("--scaling", default="1000,2000,10000")
    ap.add_argument("--big-mb", type=float, default=10.0)
    ap.add_argument("--only", choices=["archive", "scaling", "big"], action="append")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds before one command is given up")
    args = ap.parse_args()
    only = set(args.only or ["archive", "scaling", "big"])
    status = has_command("status")
    with tempfile.TemporaryDirectory(prefix="cards-archive-") as t:
        tmp = Path(t)
        if "archive" in only:
            arch = Archive(args.seeds)
            print("| episodes | command | first run | no-op rerun | one new episode |")
            print("|---|---|---|---|---|")
            for n in (int(x) for x in args.sizes.split(",") if x):
                for row in bench_archive(arch, n, tmp, args.timeout, status):
                    print(row, flush=True)
            if not status:
                print("\n(`cards status` does not exist in this version: its rows are skipped.)")
            print()
        if "scaling" in only or "big" in only:
            print("| input | command | time / peak memory |")
            print("|---|---|---|")
        if "scaling" in only:
            for row in bench_scaling([int(x) for x in args.scaling.split(",") if x], tmp, args.timeout):
                print(row, flush=True)
        if "big" in only:
            for row in bench_big(args.big_mb, tmp, args.timeout):
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
