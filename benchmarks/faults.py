"""How `cards generate` behaves against a server that fails in each of the ways real ones do.

Runs the real command in a subprocess against the fake OpenAI-compatible server from
tests/fakeserver.py (or a closed port) and prints a markdown table: wall time, exit status,
requests the server saw (and another origin, for a redirect), drafts made, and whether the API
key (its last 8 characters) reached stdout, stderr or the workspace. Each run is cut off after
--cap seconds (shown as "> cap").

    python benchmarks/faults.py [--src DIR] [--cap 120] [--only NAME ...]

--src runs the `cards` package of another checkout (e.g. an older commit) with the same
scenarios. The environment sets CARDS_TIMEOUT=5, so a version that reads it waits 5 s per
request; one that does not keeps its own fixed timeout. The model is "local-model".
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fakeserver import FakeOpenAI, rate_limited, redirect  # noqa: E402

KEY = "sk-proj-Zq8dK2LmR7vXw3Nc9TfY4hGs"
TAIL = KEY[-8:]  # the key counts as shown when its last 8 characters are, with or without the rest


def notes(n: int) -> str:
    return "# Ada Quill on Reactor Talk\n\n" + "".join(
        f"- fact {i}: the reactor in town {i} runs at {300 + i} megawatts\n" for i in range(n))


SCENARIOS = {
    # name: (server kwargs or None for a closed port, notes, script, extra env, base-url suffix or whole URL)
    # A script entry may be a function of a second server's URL (another origin), which is then started.
    "connection refused": (None, 12, [], {}, "/v1"),
    "never answers": ({}, 4, ["silent"] * 200, {}, "/v1"),
    "a byte a second": ({"trickle": 1.0}, 1, ["trickle"] * 20, {}, "/v1"),
    "50 MB card front": ({"huge_bytes": 50 * 1024 * 1024}, 1, ["huge"] * 4, {}, "/v1"),
    "5,000 cards in a reply": ({"responder": lambda body: {"cards": [
        {"kind": "basic", "front": f"Q{i}?", "back": "A", "quote": "q", "tags": ["t"]} for i in range(5000)]}},
        3, [], {}, "/v1"),
    "key in the URL query, 401": ({"api_key": "sk-other"}, 2, [], {}, f"/v1?key={KEY}"),
    "key in the URL path, 401": ({"api_key": "sk-other"}, 2, [], {}, f"/proxy/{KEY}/v1"),
    "llama-cpp-python (no json_schema)": ({"kind": "llama-cpp-python"}, 8, [], {}, "/v1"),
    "looping small model": ({"kind": "looping"}, 8, [], {}, "/v1"),
    "one note always invalid": ({}, 3, ["invalid"] * 2, {"CARDS_CONCURRENCY": "1"}, "/v1"),
    "JSON nested 5,000 deep (first note)": ({}, 3, ["nested"] * 2, {"CARDS_CONCURRENCY": "1"}, "/v1"),
    "usage.prompt_tokens = 2^63 (first note)": ({}, 3, ["bad-usage"] * 2, {"CARDS_CONCURRENCY": "1"}, "/v1"),
    "base URL not-a-url": (None, 3, [], {}, "not-a-url"),
    "base URL with a trailing newline": (None, 3, [], {}, "http://127.0.0.1:9/v1\n"),
    "Retry-After: 3600 on every request": ({}, 8, [rate_limited(3600)] * 200, {}, "/v1"),
    "307 to another origin": ({}, 3, [lambda other: redirect(f"{other}/chat/completions", 307)] * 10, {}, "/v1"),
    "server echoes the key without sk-": ({}, 2, ["echo-key"] * 2, {}, "/v1"),
}


def run(name: str, src: Path, cap: float) -> dict:
    server_kw, n, script, extra_env, suffix = SCENARIOS[name]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "notes.md").write_text(notes(n))
        other = FakeOpenAI().start() if any(callable(s) for s in script) else None
        script = [s(other.base_url) if callable(s) else s for s in script]
        srv = FakeOpenAI(script=script, **server_kw).start() if server_kw is not None else None
        if srv is None:
            probe = FakeOpenAI().start()
            port = probe.port
            probe.stop()  # the port is closed again: connection refused
        else:
            port = srv.port
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CARDS_", "OPENAI_"))}
        env.update({"OPENAI_API_KEY": KEY, "NO_PROXY": "127.0.0.1", "PYTHONPATH": str(src),
                    "CARDS_TIMEOUT": "5", "CARDS_MODEL": "local-model", **extra_env})
        url = f"http://127.0.0.1:{port}{suffix}" if suffix.startswith("/") else suffix
        cmd = [sys.executable, "-m", "cards", "generate", "notes.md", "--workspace", "ws", "--base-url", url]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=cap)
            took, code, out, err = time.perf_counter() - start, proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            took, code = cap, None
            out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        requests = f"{srv.count if srv else 0}" + (f" (+{other.count} elsewhere)" if other else "")
        for server in (srv, other):
            if server:
                server.stop()
        drafts, leaked_ws = 0, False
        db = tmp_path / "ws" / "cards.sqlite"
        if db.exists():
            with sqlite3.connect(db) as con:
                drafts = con.execute("SELECT count(*) FROM drafts").fetchone()[0]
            leaked_ws = any(TAIL.encode() in p.read_bytes() for p in (tmp_path / "ws").iterdir() if p.is_file())
        last = next((line for line in reversed(err.strip().splitlines()) if line.strip()), "")
        return {"name": name, "time": took, "code": code, "requests": requests, "drafts": drafts,
                "leak": TAIL in out or TAIL in err or leaked_ws, "last": last[:90]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT, help="checkout whose cards package to run")
    ap.add_argument("--cap", type=float, default=120.0, help="seconds before a run is cut off")
    ap.add_argument("--only", nargs="*", default=None, help="scenario names (substrings)")
    args = ap.parse_args()
    names = [n for n in SCENARIOS if not args.only or any(o in n for o in args.only)]
    print(f"cards from {args.src}\n")
    print("| scenario | time | exit | requests | drafts | key shown | last line of stderr |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        r = run(name, args.src, args.cap)
        took = f"> {args.cap:.0f} s" if r["code"] is None else f"{r['time']:.1f} s"
        code = "killed" if r["code"] is None else r["code"]
        last = r["last"].replace("|", "\\|").replace(KEY, "<KEY>").replace(TAIL, "<KEY TAIL>")
        print(f"| {name} | {took} | {code} | {r['requests']} | {r['drafts']} | {'YES' if r['leak'] else 'no'} "
              f"| {last} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
