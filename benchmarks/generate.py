"""Generation throughput and prompt size: a whole notes file against a fake server with fixed latency.

Runs `cards.pipeline.generate` on the seed notes (every episode in the file) with the Lex
transcript, in a fresh temporary workspace, through the real openai SDK to the fake
OpenAI-compatible server from tests/fakeserver.py, and prints a markdown table:

- wall time of the generation phase (from the first request queued to the last result
  committed) and of the whole run (loading, alignment, generation, checks), against the
  ideal time of requests / concurrency x latency;
- prompt tokens per request (mean and max) and the share that is the static prefix
  (system message + response schema), which a provider's prompt cache can serve.

Targets: generation within 1.2x the ideal time; prompts under 1,500 tokens per note on average.

    python benchmarks/generate.py [--seeds ../shared/seeds] [--latency 0.2] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

NOTES_FILE = "000_afbeb462ed58c10d.txt"
TRANSCRIPT_FILE = "002_0fe13fd03e9aaf95.txt"


class PhaseClock:
    """Takes the generate run's progress hooks to time the request phase alone."""

    def __init__(self) -> None:
        self.started = self.stopped = None
        self.jobs = 0

    def start(self, episodes, jobs) -> None:
        self.jobs = len(jobs)
        self.started = time.perf_counter()

    def advance(self, job, ok: bool) -> None:
        pass

    def stop(self) -> None:
        self.stopped = time.perf_counter()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=Path, default=ROOT.parent / "shared" / "seeds")
    ap.add_argument("--latency", type=float, default=0.2, help="seconds the fake server takes per request")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    notes, transcript = args.seeds / NOTES_FILE, args.seeds / TRANSCRIPT_FILE
    for p in (notes, transcript):
        if not p.exists():
            print(f"missing seed file {p} (pass --seeds)", file=sys.stderr)
            return 2

    from fakeserver import FakeOpenAI

    from cards.config import build_settings
    from cards.pipeline import generate, load
    from cards.tokens import counter_for

    with tempfile.TemporaryDirectory(prefix="cards-bench-") as tmp, \
            FakeOpenAI(latency=args.latency) as srv:
        os.chdir(tmp)  # no cards.toml from wherever the benchmark was started
        settings = build_settings(workspace=Path(tmp) / "ws", base_url=srv.base_url, api_key="sk-bench",
                                  concurrency=args.concurrency)
        clock = PhaseClock()
        t0 = time.perf_counter()
        loaded = load([notes], [transcript], settings)
        t1 = time.perf_counter()
        summary = generate(loaded, settings, progress=clock)
        t2 = time.perf_counter()
        whole = t2 - t0
        requests = list(srv.requests)

    phase = clock.stopped - clock.started
    n_notes = sum(len(e.items) for e in loaded.episodes)
    with_passage = sum(len(e.items) for e in loaded.episodes if e.transcript is not None)
    ideal = len(requests) / args.concurrency * args.latency

    counter = counter_for(settings.model)
    sizes, prefixes = [], []
    for r in requests:
        body = r.json
        schema = json.dumps(body["response_format"]["json_schema"], sort_keys=True)
        messages = body["messages"]
        sizes.append(counter.count(schema) + sum(counter.count(m["content"]) for m in messages))
        prefixes.append(counter.count(schema) + counter.count(messages[0]["content"]))
    mean, top = statistics.mean(sizes), max(sizes)
    prefix = statistics.mean(prefixes)
    kind = "exact" if counter.exact else "estimated"

    print(f"Generation: {notes.name} ({len(loaded.episodes)} episodes) with {transcript.name}; "
          f"fake server latency {args.latency:g} s, concurrency {args.concurrency}")
    print()
    print("| measure | value | target |")
    print("| --- | --- | --- |")
    print(f"| notes | {n_notes} ({with_passage} with a transcript passage) | |")
    print(f"| requests | {len(requests)} (failed notes: {summary.total['failed']}) | one per note |")
    print(f"| ideal time (requests / concurrency x latency) | {ideal:.2f} s | |")
    print(f"| wall time, generation phase | {phase:.2f} s | |")
    print(f"| ratio, generation phase / ideal | {phase / ideal:.2f} | <= 1.20 |")
    print(f"| wall time, whole run (load, align, generate, check) | {whole:.2f} s | |")
    print(f"| ratio, whole run / ideal | {whole / ideal:.2f} | |")
    print(f"| of which before requests: load / align + workspace sync | {t1 - t0:.2f} s / {clock.started - t1:.2f} s"
          " | |")
    print(f"| of which after requests: run totals, checks, duplicates | {t2 - clock.stopped:.2f} s | |")
    print(f"| prompt tokens per request, mean ({kind}) | {mean:.0f} | < 1,500 |")
    print(f"| prompt tokens per request, max ({kind}) | {top} | |")
    print(f"| static prefix (system + schema) per request ({kind}) | {prefix:.0f} ({prefix / mean:.0%} of the prompt)"
          " | |")
    print()
    print(f"Tokens counted with {counter.label}.")
    ok = phase / ideal <= 1.2 and mean < 1500 and summary.total["failed"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
