"""How fast clips are cut, and how big they are.

Synthesises an hour of audio with PyAV (a tone whose pitch steps every second, 44.1 kHz
mono) in the input formats podcasts come in, then cuts 100 clips of 5 to 20 seconds
(cards' cap) at random moments with `cards.audio.cut`, as an export with --audio does.
Prints, per input format: seconds to write the input (not part of an export), seconds
to cut the 100 clips (wall clock, and CPU time of this process, which a busy shared
machine does not inflate), clips per second, and the smallest, median and largest clip.

    python benchmarks/audio.py [--minutes 60] [--clips 100] [--formats mp3,m4a,wav] [--json]

Needs the `audio` extra (PyAV). The goal: 100 clips from a 1-hour file in under 30 s,
every clip at most 200 KB.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cards import audio  # noqa: E402
from cards.clips import LONGEST  # noqa: E402

CODECS = {"mp3": "libmp3lame", "m4a": "aac", "wav": "pcm_s16le"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--formats", default="mp3")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    seconds = args.minutes * 60
    rng = random.Random(args.seed)
    spans = []
    for i in range(args.clips):
        length = rng.uniform(5.0, LONGEST)
        start = rng.uniform(0.0, seconds - length)
        spans.append((f"clip{i}", start, start + length))
    rows = []
    with tempfile.TemporaryDirectory(prefix="cards-audio-bench-") as tmp:
        for fmt in args.formats.split(","):
            path = Path(tmp) / f"episode.{fmt}"
            t0 = time.perf_counter()
            audio.tone(path, seconds, codec=CODECS[fmt])
            written = time.perf_counter() - t0
            t0, c0 = time.perf_counter(), time.process_time()
            clips = audio.cut(path, spans)
            took, cpu = time.perf_counter() - t0, time.process_time() - c0
            sizes = sorted(len(c) for c in clips.values())
            rows.append({"input": fmt, "input_mb": round(path.stat().st_size / 1e6, 1), "minutes": args.minutes,
                         "write_s": round(written, 1), "clips": len(clips), "cut_s": round(took, 2),
                         "cut_cpu_s": round(cpu, 2),
                         "clips_per_s": round(len(clips) / took, 1), "min_kb": round(sizes[0] / 1000, 1),
                         "median_kb": round(statistics.median(sizes) / 1000, 1),
                         "max_kb": round(sizes[-1] / 1000, 1),
                         "audio_s": round(sum(b - a for _, a, b in spans), 1)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    header = ["input", "MB", "min", "write s", "clips", "cut s", "cut CPU s", "clips/s", "min KB", "median KB",
              "max KB"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for r in rows:
        print(" | ".join(str(v) for v in (r["input"], r["input_mb"], r["minutes"], r["write_s"], r["clips"],
                                           r["cut_s"], r["cut_cpu_s"], r["clips_per_s"], r["min_kb"], r["median_kb"],
                                           r["max_kb"])))


if __name__ == "__main__":
    main()
