"""Whole-process timings of the CLI: `cards --help` and `cards align` over all five seed files.

    python benchmarks/cli_speed.py [--seeds ../shared/seeds] [--runs 7]

Each command runs as a fresh process (as a person runs it); the table shows the
best and the median of the runs. Targets: --help under 0.3 s, align under 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], runs: int) -> list[float]:
    env = dict(os.environ)
    env.pop("OPENAI_API_KEY", None)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=Path, default=ROOT.parent / "shared" / "seeds")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    s = args.seeds
    cards = [sys.executable, "-m", "cards"]
    cases = [
        ("cards --help", cards + ["--help"], 0.3),
        ("cards align (5 seed files) --json", cards + [
            "align", str(s / "000_afbeb462ed58c10d.txt"), str(s / "001_88cdf00b6de09240.txt"),
            str(s / "004_bd517cc6001931b3.txt"), "-t", str(s / "002_0fe13fd03e9aaf95.txt"),
            "-t", str(s / "003_34925e2c796f303a.txt"), "--json"], 1.0),
    ]
    print(f"| command | best | median | target | runs |")
    print(f"|---|---|---|---|---|")
    for name, cmd, target in cases:
        t = timed(cmd, args.runs)
        print(f"| `{name}` | {min(t):.3f} s | {statistics.median(t):.3f} s | < {target} s | {args.runs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
