"""Terminal output is inert: no control sequence from notes, replies, file names or refusals reaches the
screen (an OSC 52 clipboard write least of all), the workspace keeps the text as it came, and the review
app leaves the terminal as it found it whatever ends it."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, default_responder, no_network
from typer.testing import CliRunner

from cards.cli import app
from cards.store import Store

KEY = "sk-test-terminal"
OSC52 = "\x1b]52;c;aGFja2Vk\x07"  # "write 'hacked' to the clipboard"
# Every kind of control: an OSC with the 8-bit ST, a CSI that clears the screen, C1 CSI, bidi override
# and isolate, a carriage return that would overwrite the line, DEL.
NASTY = OSC52 + "\x1b[2J\x9b31m\u202egnp.exe\u2066x\u2069\rZ\x7f\x9d0;t\x9c"
RAW = ("\x1b", "\x07", "\x9b", "\x9c", "\x9d", "\u202e", "\u2066", "\u2069", "\r", "\x7f")

NOTES = f"""\
# Ada Quill on Reactor Talk {NASTY}

- the sodium reactor in Kemmerer runs at 345 megawatts {OSC52}
- fuel is HALEU, enriched to almost 20 percent uranium 235
"""
TRANSCRIPT = """\
[00:00:00.000 --> 00:00:10.000]   Welcome to Reactor Talk with Ada Quill.
[00:00:10.000 --> 00:00:20.000]   The sodium reactor in Kemmerer runs at 345 megawatts electric.
[00:00:20.000 --> 00:00:30.000]   The fuel is HALEU, enriched to almost 20 percent uranium 235.
"""


def run(*args, env=None):
    with no_network():
        return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "100", **(env or {})})


def assert_inert(text: str, where) -> None:
    for c in RAW:
        assert c not in text, (where, repr(c), text)


def hostile_responder(body: dict) -> dict:
    reply = default_responder(body)
    for card in reply["cards"]:
        card["front"] = f"What runs at 345 megawatts? {OSC52}"
        card["back"] = f"The sodium reactor {NASTY}"
    return reply


def refusal(text: str) -> dict:
    return {"status": 200, "body": {
        "id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": None, "refusal": text}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}}


def test_no_control_sequence_reaches_the_terminal_and_the_workspace_keeps_the_text(tmp_path):
    folder = tmp_path / f"in{OSC52}"  # a file name can hold an ESC too
    folder.mkdir()
    notes = folder / "notes.md"
    notes.write_text(NOTES, encoding="utf-8")
    transcript = folder / "reactor.txt"
    transcript.write_text(TRANSCRIPT, encoding="utf-8")
    ws = tmp_path / "ws"
    outputs = []
    # One refused note (the refusal carries the sequence), the other answered with hostile cards.
    with FakeOpenAI(responder=hostile_responder, script=[refusal(f"No. {NASTY}")] * 2) as srv:
        llm = {"OPENAI_API_KEY": KEY}
        common = ["--base-url", srv.base_url, "-c", "1"]
        gen = run("generate", notes, "-t", transcript, "-w", ws, *common, env=llm)
        assert gen.exit_code == 1, gen.output  # the refused note failed and is listed
        assert "refused" in gen.stderr
        outputs.append(gen)
        for args in (["episodes", notes, "-t", transcript], ["align", notes, "-t", transcript],
                     ["estimate", notes, "-t", transcript, "-w", ws, "--force", "--base-url", srv.base_url],
                     ["status", notes, "-t", transcript, "-w", ws, "--all"], ["drafts", "-w", ws],
                     ["dedupe", "-w", ws]):
            result = run(*args, env=llm)
            assert result.exit_code == 0, (args, result.output)
            outputs.append(result)
    d = Store(ws, create=False).drafts()[0]
    edited = run("edit", d.id[:8], "--back", f"edited {OSC52}", "-w", ws)
    assert edited.exit_code == 0, edited.output
    outputs.append(edited)
    outputs.append(run("approve", d.id[:8], "-w", ws))
    outputs.append(run("export", "-w", ws))
    missing = run("drafts", "-w", tmp_path / f"nowhere{OSC52}")  # an error line naming a path
    assert missing.exit_code == 2
    outputs.append(missing)
    for result in outputs:
        assert_inert(result.stdout + result.stderr, result)
    everything = "".join(r.stdout + r.stderr for r in outputs)
    assert "\\x1b]52;c;aGFja2Vk\\x07" in everything  # shown, as an escape, so the reader knows
    assert "\\u202e" in everything and "No. " in everything

    # The workspace holds the text as it came; --json gives it back exactly, as JSON escapes only.
    stored = Store(ws, create=False).draft(d.id)
    assert stored.front == f"What runs at 345 megawatts? {OSC52}" and stored.back == f"edited {OSC52}"
    assert OSC52 in stored.note_text
    as_json = run("drafts", "-w", ws, "--json")
    assert_inert(as_json.stdout, "json")
    assert {x["id"]: x["front"] for x in json.loads(as_json.stdout)}[d.id] == stored.front


def test_one_function_makes_every_control_visible_and_leaves_text_alone():
    from cards.terminal import json_text, visible

    assert visible("plain\ttext\nnext — ok ünïcode 日本") == "plain\ttext\nnext — ok ünïcode 日本"
    assert visible(OSC52) == "\\x1b]52;c;aGFja2Vk\\x07"
    assert visible("\x9b2J\u202e\u2028\x00") == "\\x9b2J\\u202e\\u2028\\x00"
    # JSON: C1 and bidi become \u escapes, so the parsed value is unchanged.
    text = json_text(json.dumps({"a": "x\x9d\u202ey"}, ensure_ascii=False))
    assert_inert(text, "json")
    assert json.loads(text) == {"a": "x\x9d\u202ey"}


def test_progress_bars_and_tables_on_a_real_terminal_obey_no_sequence():
    """On a terminal rich writes its own colour codes; the text's sequences still come out as escapes."""
    from rich.progress import Progress, TextColumn
    from rich.table import Table

    from cards.terminal import console

    out = io.StringIO()
    con = console(file=out, force_terminal=True, width=80, color_system="standard")
    with Progress(TextColumn("{task.description}", markup=False), console=con) as progress:
        progress.add_task(f"episode {NASTY}", total=2)
    table = Table(title=f"t {OSC52}")
    table.add_column("front")
    table.add_row(NASTY)
    con.print(table)
    con.print(f"line {NASTY}")
    shown = out.getvalue()
    for c in RAW:
        if c not in ("\x1b", "\r"):  # rich's own colour and cursor codes use these
            assert c not in shown, repr(c)
    assert "\x1b]" not in shown  # rich's own codes are CSI only: no OSC got through
    assert shown.count("\\x1b]52;c;aGFja2Vk") >= 3  # (rich itself drops BEL and CR)


# -- the review app -------------------------------------------------------------------------------

def _workspace(tmp_path: Path, front: str = "What runs at 345 megawatts?") -> Path:
    notes = tmp_path / "n.md"
    notes.write_text("# Ada Quill on Reactor Talk\n\n- the sodium reactor in Kemmerer runs at 345 megawatts\n"
                     "- fuel is HALEU, enriched to almost 20 percent uranium 235\n", encoding="utf-8")
    ws = tmp_path / "ws"
    assert run("generate", notes, "-w", ws, "--offline").exit_code == 0
    with Store(ws) as store:
        d = store.drafts()[0]
        store.update_draft(d.id, action="edit", front=front)
    return ws


def _review_in_a_terminal(ws: Path, *, key: bytes | None = None, sig: int | None = None):
    """`cards review` on a pseudo-terminal; once it has drawn, press `key` or send `sig`.
    Returns the exit status and every byte it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CARDS_"))}
    proc = subprocess.Popen([sys.executable, "-m", "cards", "review", "-w", str(ws)], stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True, env={**env, "TERM": "xterm-256color"})
    os.close(slave)
    out, sent, deadline = b"", False, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and b"reviewed" in out:
                time.sleep(0.3)  # let it finish drawing
                if key is not None:
                    os.write(master, key)
                else:
                    proc.send_signal(sig)
                sent = True
            if proc.poll() is not None and not ready:
                break
        else:
            proc.kill()
        return proc.wait(10), out
    finally:
        os.close(master)


def test_review_ended_by_sigterm_restores_the_terminal_and_exits_143(tmp_path):
    """On a real pseudo-terminal (the ctrl+c key, SIGINT and SIGHUP take the same path; see below and
    test_review_edit.py)."""
    ws = _workspace(tmp_path, front=f"What runs at 345 megawatts? {OSC52}")
    code, out = _review_in_a_terminal(ws, sig=signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, out[-400:]
    entered = out.rindex(b"\x1b[?1049h")  # the alternate screen...
    assert b"\x1b[?1049l" in out[entered:], out[-400:]  # ...is left
    assert b"\x1b[?1000l" in out[entered:]  # and mouse reporting turned off
    assert b"every decision made is saved" in out
    # The card's clipboard write was drawn as text, not sent (Textual's own OSC 22, the pointer shape, is fine).
    assert b"\x1b]52" not in out
    assert b"\\x1b]52;c;aGFja2Vk" in out
    with Store(ws, create=False) as store:
        assert [d for d in store.drafts() if OSC52 in d.front]  # kept as it was


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_review_app_ends_on_sigint_and_sighup_like_q(tmp_path, sig):
    from test_review import SIZE, draft, workspace
    from test_review import run as run_app

    from cards.review import ReviewApp

    store = workspace(tmp_path, [draft(1), draft(2)])
    missed = []  # a signal the app did not take lands here, not in pytest (which it would stop or kill)
    before = signal.signal(sig, lambda *_: missed.append(sig))

    async def scenario():
        app = ReviewApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("a")
            os.kill(os.getpid(), sig)
            await pilot.pause(0.1)
        assert app.stopped_by == sig and not missed
        assert app.return_value["approved"] == 1

    try:
        run_app(scenario)
        if sig == signal.SIGINT:  # afterwards ctrl+c raises KeyboardInterrupt in this process again
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(sig, before)
