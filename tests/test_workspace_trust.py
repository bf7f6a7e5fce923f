"""The workspace under faults: a read-only mount still answers the commands that only read, a full disk
and an --out that is a file get the documented status and one line, and damage anywhere in the file is
found before a command writes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cards import store as store_module
from cards.cli import app
from cards.store import DB_NAME, Store

NOTES = """\
# Ada Quill on Reactor Talk

- the sodium reactor in Kemmerer runs at 345 megawatts
- molten salt storage lets the plant boost output to 500 megawatts for five hours
- fuel is HALEU, enriched to almost 20 percent uranium 235
"""
SLUG = "ada-quill-on-reactor-talk"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def one_error(result, *names: str, code: int) -> str:
    assert "Traceback" not in result.output
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("cards: error:")]
    assert len(lines) == 1, result.output
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def workspace(tmp_path: Path) -> tuple[Path, Path]:
    notes = tmp_path / "n.md"
    notes.write_text(NOTES, encoding="utf-8")
    ws = tmp_path / "ws"
    assert run("generate", notes, "-w", ws, "--offline").exit_code == 0
    return notes, ws


# -- 18: a read-only workspace ----------------------------------------------------------------------

_DRIVER = """
import json, sys
from typer.testing import CliRunner
from cards.cli import app
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, args, env={"COLUMNS": "100"})
    out.append([r.exit_code, r.stdout, r.stderr, repr(r.exception) if r.exception else None])
print(json.dumps(out))
"""


def run_readonly(tmp_path: Path, ws: Path, commands: list[list]) -> list[list]:
    """Run the commands in one fresh process that sees `ws` read-only, as on a backup mount: a read-only
    bind mount where we may make one (root), else the folder and its files without write permission.
    Each result is [exit status, stdout, stderr, exception]."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CARDS_"))}
    env["TIKTOKEN_CACHE_DIR"] = str(tmp_path / ".tiktoken-cache")
    if os.geteuid() != 0:
        for p in (ws, *ws.iterdir()):
            p.chmod(p.stat().st_mode & ~0o222)
        prefix, where = [], ws
    else:
        if not shutil.which("unshare"):
            pytest.skip("running as root without unshare: cannot make a read-only view")
        where = tmp_path / "mnt"
        where.mkdir()
        script = 'mount --bind "$1" "$2" && mount -o remount,ro,bind "$2" && shift 2 && exec "$@"'
        prefix = ["unshare", "-m", "sh", "-c", script, "sh", str(ws), str(where)]
    args = [[str(where) if a is ws else str(a) for a in command] for command in commands]
    try:
        done = subprocess.run([*prefix, sys.executable, "-c", _DRIVER, json.dumps(args)], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=120, check=False)
    finally:
        for p in (ws, *ws.iterdir()):
            p.chmod(p.stat().st_mode | 0o200)
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"no read-only mount here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_read_only_workspace_answers_the_commands_that_only_read(tmp_path):
    notes, ws = workspace(tmp_path)
    with Store(ws, create=False) as store:
        n = len(store.drafts())
    # Closed cleanly, as a backup is: nothing but the database to read (no WAL index to read it with).
    assert not (ws / f"{DB_NAME}-wal").exists() and not (ws / f"{DB_NAME}-shm").exists()
    before = hashlib.sha256((ws / DB_NAME).read_bytes()).hexdigest()
    reads = [["drafts", "-w", ws], ["status", "-w", ws], ["status", notes, "-w", ws], ["estimate", notes, "-w", ws],
             ["episodes", notes, "-w", ws]]
    results = run_readonly(tmp_path, ws, [*reads, ["approve", "--episode", SLUG, "--all", "-w", ws]])
    for args, (code, stdout, stderr, exc) in zip(reads, results):
        assert code == 0, (args, stderr, exc)
    assert f"{n} drafts" in results[0][1]
    code, _, stderr, _ = results[-1]  # a command that writes says why it cannot, in one line
    assert code == 2 and stderr.count("cards: error:") == 1, stderr
    assert hashlib.sha256((ws / DB_NAME).read_bytes()).hexdigest() == before


# -- 19: a full disk, and --out naming a file --------------------------------------------------------

def test_a_disk_full_while_writing_the_workspace_exits_1_in_one_line(tmp_path, monkeypatch):
    notes, ws = workspace(tmp_path)
    opened = Store.__init__

    def no_room(self, *args, **kwargs):
        opened(self, *args, **kwargs)
        # The file may not grow by a page: exactly SQLite's SQLITE_FULL, as on a full disk.
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        self.db.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(store_module.Store, "__init__", no_room)
    notes.write_text(NOTES + "".join(f"- bullet number {i} says the reactor has {i} pumps {'x' * 400}\n"
                                     for i in range(40)), encoding="utf-8")
    line = one_error(run("generate", notes, "-w", ws, "--offline"), str(ws / DB_NAME), code=1)
    assert "database or disk is full" in line


def test_out_naming_a_file_is_one_line_naming_it(tmp_path):
    _, ws = workspace(tmp_path)
    assert run("approve", "--episode", SLUG, "--all", "-w", ws).exit_code == 0
    target = tmp_path / "decks.txt"
    target.write_text("keep me", encoding="utf-8")
    line = one_error(run("export", "-w", ws, "--out", target), str(target), code=2)
    assert "File exists" not in line and "folder" in line
    assert target.read_text(encoding="utf-8") == "keep me"
    assert Store(ws, create=False).drafts()[0].exported is None  # nothing recorded as exported


# -- 21: damage in the middle of the file ----------------------------------------------------------

def _damage_a_page_no_read_touches(ws: Path) -> None:
    """Break the b-tree of the parse cache, a table export and approve never read."""
    db = sqlite3.connect(ws / DB_NAME)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name='file_cache'").fetchone()
    db.close()
    assert 1 < root < pages  # in the middle of the file
    with open(ws / DB_NAME, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\x77" * 64)  # not a page type, nor a header


@pytest.mark.parametrize("args", [["export"], ["approve", "--episode", SLUG, "--all"], ["dedupe"]])
def test_damage_no_query_reads_is_found_before_a_write(tmp_path, args):
    _, ws = workspace(tmp_path)
    with Store(ws, create=False) as store:
        first = store.drafts()[0].id
    assert run("approve", first, "-w", ws).exit_code == 0  # so export has a deck to write
    _damage_a_page_no_read_touches(ws)
    assert run("drafts", "-w", ws).exit_code == 0  # reading around it works, which is why it went unnoticed
    line = one_error(run(*args, "-w", ws), str(ws / DB_NAME), code=2)
    assert "workspace database is damaged (" in line
    assert "restore it from a backup, or start a new workspace with --workspace DIR" in line
    assert not list(ws.glob("*.apkg"))  # no deck written from it


def test_quick_check_runs_once_per_store(tmp_path):
    _, ws = workspace(tmp_path)
    checks = []
    with Store(ws) as store:
        store.db.set_trace_callback(lambda sql: checks.append(sql) if "quick_check" in sql else None)
        for _ in range(3):
            with store.tx():
                pass
    assert len(checks) == 1
