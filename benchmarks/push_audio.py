"""Push and audio end to end on the seeds' Latent Space transcript, against a real Anki collection.

In a temporary folder: twelve notes on the episode (below), `cards generate --offline`
with the timed Whisper transcript `003_…`, approval, and a synthesised mp3 as long as
the transcript (a tone; `cards.audio.tone`). Then, through the command line:

1. push with Anki not running (a closed port);
2. push with the audio to the fake AnkiConnect of tests/fakeanki.py, whose imports a
   real `anki` collection performs; then push again;
3. a file import of the same deck, then push;
4. an edit made inside Anki, then push;
5. a second, fresh collection: file import first, then push;
6. AnkiConnect with a key: none given, a wrong one; an AnkiConnect too old.

Prints one row per step: exit status, seconds, counts, notes and media files in Anki,
and the clips' sizes and lengths. Needs the test extra (anki, av); no network, no key.

    python benchmarks/push_audio.py [--seeds ../shared/seeds] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from anki.collection import Collection  # noqa: E402
from fakeanki import FakeAnkiConnect, import_package  # noqa: E402

from cards.audio import tone  # noqa: E402
from cards.ingest.transcripts import parse_transcript  # noqa: E402

EPISODE = "dylan-patel-on-latent-space"
NOTES = """\
# Dylan Patel on Latent Space

- dylan has been in the semiconductor industry since 2017
- GPT-4 took about 20,000 A100s, roughly 500 million all in
- celestica builds google's TPU boxes
- semianalysis has 512 H100s coming online in August
- nvidia sold around 530,000 H100s this quarter
- nvidia will sell over 3 million GPUs next year
- the H100 has 3.35 terabytes a second of memory bandwidth
- Llama 70B was trained with a 2 million token batch size
- on A100s, 60% MFU is decent
- on H100s MFU is more like 40 to 45 percent because flops grew more than memory bandwidth
- eight A100s running Llama 70B get like 15% MBU
- TPU v5e is about half the size of a TPU v5
"""


def cards(*args: str, env: dict | None = None) -> tuple[int, str, str, float]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "cards", *args], capture_output=True, text=True, env=env)
    return r.returncode, r.stdout, r.stderr, time.perf_counter() - t0


def in_anki(col) -> tuple[int, int]:
    return len(col.find_notes("")), len(os.listdir(col.media.dir()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=Path, default=ROOT.parent / "shared" / "seeds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    transcript = next(args.seeds.glob("003_*.txt"))
    rows: list[dict] = []

    def step(name: str, result, col=None, **extra) -> dict:
        code, out, err, took = result
        row = {"step": name, "exit": code, "seconds": round(took, 2), **extra}
        if code == 0 and out.strip().startswith("["):
            data = json.loads(out)[0]
            row.update({k: data.get(k) for k in ("new", "updated", "unchanged", "clips")})
        elif code:
            row["message"] = err.strip()
        if col is not None:
            row["anki_notes"], row["anki_media"] = in_anki(col)
        rows.append(row)
        return row

    with tempfile.TemporaryDirectory(prefix="cards-push-audio-") as tmp:
        os.chdir(tmp)
        Path("notes.md").write_text(NOTES, encoding="utf-8")
        seconds = max(s.end or 0 for s in parse_transcript(transcript).segments)
        t0 = time.perf_counter()
        audio = tone(Path(tmp) / f"{transcript.stem}.mp3", seconds)
        rows.append({"step": f"synthesise {seconds:.0f} s of mp3", "exit": 0,
                     "seconds": round(time.perf_counter() - t0, 1)})
        step("generate --offline", cards("generate", "notes.md", "-t", str(transcript), "--offline", "-w", "ws"))
        step("approve --all", cards("approve", "-e", EPISODE, "--all", "-w", "ws"))
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
        probe.close()
        step("push, Anki not running", cards("push", "-w", "ws", "--anki-url", closed))
        push = ("push", "-w", "ws", "--audio", str(audio), "--json")
        Path("anki").mkdir()
        col = Collection("anki/collection.anki2")
        try:
            with FakeAnkiConnect(col) as anki:
                first = step("push with audio", cards(*push, "--anki-url", anki.url), col)
                step("push again", cards(*push, "--anki-url", anki.url), col)
                deck = str(Path("ws", f"{EPISODE}.apkg").resolve())
                import_package(col, deck)
                step("file import, then push", cards(*push, "--anki-url", anki.url), col)
                note = col.get_note(col.find_notes("")[0])
                note["Extra"] = "my own remark"
                col.update_note(note)
                time.sleep(1.1)  # Anki keeps whole seconds
                step("edit in Anki, then push", cards(*push, "--anki-url", anki.url), col,
                     edit_kept=col.get_note(note.id)["Extra"] == "my own remark")
            lengths = []
            import av

            for name in sorted(os.listdir(col.media.dir())):
                with av.open(os.path.join(col.media.dir(), name)) as c:
                    lengths.append(round(sum(f.samples for f in c.decode(audio=0)) / 44100, 1))
            sizes = sorted(os.path.getsize(os.path.join(col.media.dir(), n)) for n in os.listdir(col.media.dir()))
            rows.append({"step": "clips in Anki's media folder", "exit": 0, "seconds": 0,
                         "clip_kb": [round(b / 1000, 1) for b in sizes], "clip_s": sorted(lengths),
                         "cards": first.get("clips")})
        finally:
            col.close()
        Path("anki2").mkdir()
        fresh = Collection("anki2/collection.anki2")
        try:
            import_package(fresh, deck)
            with FakeAnkiConnect(fresh) as anki:
                step("fresh collection: file import, then push", cards(*push, "--anki-url", anki.url), fresh)
            with FakeAnkiConnect(fresh, key="anki-key-0451") as anki:
                step("key set in AnkiConnect, none given", cards("push", "-w", "ws", "--anki-url", anki.url))
                step("wrong key", cards("push", "-w", "ws", "--anki-url", anki.url,
                                        env={**os.environ, "ANKICONNECT_KEY": "wrong"}))
                step("right key", cards(*push, "--anki-url", anki.url,
                                        env={**os.environ, "ANKICONNECT_KEY": "anki-key-0451"}), fresh)
            with FakeAnkiConnect(fresh, version=4) as anki:
                step("AnkiConnect too old", cards("push", "-w", "ws", "--anki-url", anki.url))
        finally:
            fresh.close()
        os.chdir(ROOT)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        rest = {k: v for k, v in r.items() if k not in ("step", "exit", "seconds")}
        print(f"{r['step']:<42} exit {r['exit']}  {r['seconds']:>6} s  "
              + "  ".join(f"{k}={v}" for k, v in rest.items()))


if __name__ == "__main__":
    main()
