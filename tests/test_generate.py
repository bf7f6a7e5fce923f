"""The generate pipeline end to end: the real openai SDK over HTTP to a fake server, the workspace,
incremental reruns, failures, interrupted runs, the offline generator, estimates and the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, Example
from fakeserver import FakeOpenAI, no_network, user_text
from typer.testing import CliRunner

from cards.cli import app
from cards.config import build_settings
from cards.generate.openai import OpenAIGenerator
from cards.pipeline import _schema_json, align, estimate, generate, load
from cards.prompts import load_prompt
from cards.store import DB_NAME, Store
from cards.tokens import counter_for, counter_from_encoding

KEY = "sk-test-secret"
EXAMPLE_NOTES = EXAMPLES / "notes.md"
EXAMPLE_TRANSCRIPT = EXAMPLES / "latent-space-dylan-patel.txt"
_NOTE = re.compile(r"<note>\n(.*?)\n</note>", re.S)
_PASSAGE = re.compile(r"<excerpt[^>]*>\n(.*?)\n</excerpt>", re.S)  # one excerpt per passage here

runner = CliRunner()


# -- helpers ------------------------------------------------------------------------------------

def settings_for(ws: Path, srv: FakeOpenAI | None = None, concurrency: int = 4, **kw):
    if srv is None:
        return build_settings(workspace=ws, concurrency=concurrency, **kw)
    return build_settings(workspace=ws, base_url=srv.base_url, api_key=KEY, concurrency=concurrency, **kw)


def run(ex: Example, settings, **kw):
    """One generate run over the example, with only loopback reachable."""
    with no_network():
        loaded = load([ex.notes], [ex.transcripts], settings)
        return generate(loaded, settings, **kw)


def cli(*args: str, env: dict[str, str] | None = None):
    with no_network():
        return runner.invoke(app, list(args), env=env)


def cli_generate(ex: Example, ws: Path, *extra: str, srv: FakeOpenAI | None = None):
    args = ["generate", str(ex.notes), "-t", str(ex.transcripts), "-w", str(ws), *extra]
    if srv is None:
        return cli(*args)
    return cli(*args, "--base-url", srv.base_url, env={"OPENAI_API_KEY": KEY})


def sent_notes(srv: FakeOpenAI, start: int = 0) -> list[str]:
    """The <note> text of every request the server got, from request number `start` on."""
    out = []
    for r in srv.requests[start:]:
        m = _NOTE.search(user_text(r.json))
        assert m, "every request carries its note between <note> tags"
        out.append(m.group(1))
    return out


def live_drafts(ws: Path):
    with Store(ws, create=False) as st:
        return st.drafts(include_superseded=False)


def all_drafts(ws: Path):
    with Store(ws, create=False) as st:
        return st.drafts(include_superseded=True)


def query(ws: Path, sql: str, *args) -> list[tuple]:
    db = sqlite3.connect(ws / DB_NAME)
    try:
        return [tuple(r) for r in db.execute(sql, args)]
    finally:
        db.close()


async def _no_sleep(seconds: float) -> None:
    """Backoff without the wait: retries cost no wall-clock time."""


# -- the happy path -----------------------------------------------------------------------------

def test_happy_path_sends_a_strict_schema_a_static_prefix_and_tagged_note_and_passage(write_notes, tmp_path):
    ws = tmp_path / "ws"
    with FakeOpenAI() as srv:
        s = settings_for(ws, srv, concurrency=3, context_tokens=60)
        summary = run(write_notes, s)

    assert srv.count == 6
    assert summary.generator == "openai" and summary.model == s.model
    assert summary.total["notes"] == 6 and summary.total["failed"] == 0 and summary.total["requests"] == 6
    assert summary.total["cards"] == 6 and summary.skipped == 0

    drafts = live_drafts(ws)
    assert len(drafts) == 6
    assert {d.generator for d in drafts} == {"openai"} and {d.model for d in drafts} == {s.model}
    assert sorted(d.note_text for d in drafts) == sorted(write_notes.bullets)
    by_note = {d.note_text: d for d in drafts}

    template = load_prompt()
    systems = set()
    for r in srv.requests:
        body = r.json
        rf = body["response_format"]
        assert rf["type"] == "json_schema"
        assert rf["json_schema"]["strict"] is True
        assert rf["json_schema"]["schema"]["additionalProperties"] is False
        assert "cards" in rf["json_schema"]["schema"]["properties"]
        messages = body["messages"]
        assert [m["role"] for m in messages] == ["system", "user"]
        systems.add(messages[0]["content"])
        user = messages[-1]["content"]
        note, passage = _NOTE.search(user).group(1), _PASSAGE.search(user).group(1)
        assert user.index("<note>") < user.index("<passage")  # the passage comes after the note
        # What was sent is what the draft records: the note and its transcript passage.
        assert by_note[note].context_text == passage
        assert r.headers["authorization"] == f"Bearer {KEY}"
    # One system prompt for every note, with nothing note-specific in it: a cacheable prefix.
    assert systems == {template.system}
    assert not any(b in template.system for b in write_notes.bullets)
    # Each note got its own passage, not the whole transcript.
    assert "Mulch keeps the soil" in by_note[write_notes.bullets[5]].context_text
    assert "345 megawatts" in by_note[write_notes.bullets[0]].context_text
    assert "345 megawatts" not in by_note[write_notes.bullets[2]].context_text


def test_rerun_with_the_same_inputs_sends_nothing(write_notes, tmp_path):
    ws = tmp_path / "ws"
    with FakeOpenAI() as srv:
        run(write_notes, settings_for(ws, srv))
        before = {d.id for d in live_drafts(ws)}
        summary = run(write_notes, settings_for(ws, srv))
    assert srv.count == 6
    assert summary.skipped == 6 and summary.total["notes"] == 0 and summary.total["requests"] == 0
    assert {d.id for d in live_drafts(ws)} == before


def test_one_new_bullet_sends_exactly_one_request(write_notes, tmp_path):
    ws = tmp_path / "ws"
    new = "the Kemmerer plant replaces a coal plant, so the grid connection is already there"
    with FakeOpenAI() as srv:
        run(write_notes, settings_for(ws, srv))
        before = {d.id for d in live_drafts(ws)}
        write_notes.rewrite(write_notes.text.replace("for five hours\n", f"for five hours\n- {new}\n"))
        summary = run(write_notes, settings_for(ws, srv))
    assert srv.count == 7
    assert sent_notes(srv, 6) == [new]
    assert summary.skipped == 6 and summary.total["requests"] == 1
    after = live_drafts(ws)
    assert before < {d.id for d in after} and len(after) == 7  # the old drafts stay current


def test_a_reworded_bullet_regenerates_once_and_an_edited_card_waits_as_a_revision(write_notes, tmp_path):
    ws = tmp_path / "ws"
    old = "copper fungicide only slows the blight, it never cures an infected plant"
    new = "copper fungicide only slows tomato blight down, it never cures an infected plant"
    with FakeOpenAI() as srv:
        run(write_notes, settings_for(ws, srv))
        [mine] = [d for d in live_drafts(ws) if d.note_text == old]
        others = {d.id for d in live_drafts(ws)} - {mine.id}
        with Store(ws) as st:
            st.update_draft(mine.id, action="edit", front="What does copper fungicide do to tomato blight?")
        write_notes.rewrite(write_notes.text.replace(old, new))
        summary = run(write_notes, settings_for(ws, srv))

    assert srv.count == 7
    assert sent_notes(srv, 6) == [new]
    assert summary.reasons == {"edited note": 1}
    live = {d.id: d for d in live_drafts(ws)}
    kept = live[mine.id]  # the listener's edit stays current, unchanged
    assert not kept.superseded and kept.edited
    assert kept.front == "What does copper fungicide do to tomato blight?"
    [revision] = [d for d in live.values() if d.note_text == new]
    assert revision.revision_of == mine.id and revision.lineage == mine.lineage
    assert others <= set(live) and len(live) == 7


def test_force_resends_every_note(write_notes, tmp_path):
    ws = tmp_path / "ws"
    with FakeOpenAI() as srv:
        first = cli_generate(write_notes, ws, srv=srv)
        assert first.exit_code == 0, first.output
        old = {d.id for d in live_drafts(ws)}
        again = cli_generate(write_notes, ws, "--force", srv=srv)
    assert again.exit_code == 0, again.output
    assert srv.count == 12
    assert sorted(sent_notes(srv, 6)) == sorted(write_notes.bullets)
    live = live_drafts(ws)
    assert len(live) == 6 and not ({d.id for d in live} & old)
    assert all(d.superseded for d in all_drafts(ws) if d.id in old)


# -- failures -----------------------------------------------------------------------------------

def test_retries_under_random_faults_complete_every_note_of_the_example(tmp_path):
    ws = tmp_path / "ws"
    with FakeOpenAI(fail_rate=0.25, seed=7) as srv:
        s = settings_for(ws, srv, concurrency=4)
        gen = OpenAIGenerator(s.model, base_url=srv.base_url, api_key=KEY, timeout=10, sleep=_no_sleep)
        with no_network():
            loaded = load([EXAMPLE_NOTES], [EXAMPLE_TRANSCRIPT], s)
            summary = generate(loaded, s, generator=gen)
    notes = sum(len(e.items) for e in loaded.episodes)
    assert notes == 8
    faults = srv.count - srv.outcomes["ok"]
    assert faults > 0, "the dice should have injected some failures"
    assert summary.total["failed"] == 0 and summary.failures == []
    assert summary.total["notes"] == notes and summary.total["requests"] == srv.count == notes + faults
    assert query(ws, "SELECT count(DISTINCT note_id) FROM generations WHERE ok=1") == [(notes,)]
    assert len(live_drafts(ws)) == notes


@pytest.mark.parametrize("outcome, reason, json_out", [
    ("refusal", "refused: I'm sorry", False),
    ("invalid", "invalid reply", True),
])
def test_a_bad_reply_is_recorded_for_its_note_and_retried_next_run(write_notes, tmp_path, outcome, reason,
                                                                   json_out):
    ws = tmp_path / "ws"
    # Bad replies are asked again once; with one request at a time, the first note gets both.
    with FakeOpenAI(script=[outcome, outcome]) as srv:
        args = ["-c", "1"] + (["--json"] if json_out else [])
        res = cli_generate(write_notes, ws, *args, srv=srv)
        # The run goes on past the failed note, and exits 1 because a note failed.
        assert res.exit_code == 1, res.output
        assert srv.count == 7
        [(failed_id, error)] = query(ws, "SELECT note_id, error FROM generations WHERE ok=0")
        assert error.startswith(reason)
        assert query(ws, "SELECT failed, notes FROM runs") == [(1, 6)]
        if json_out:
            summary = json.loads(res.stdout)
            assert summary["total"]["failed"] == 1 and summary["total"]["cards"] == 5
            [failure] = summary["failures"]
            assert failure["error"].startswith(reason)
        else:
            assert "1 note failed" in res.stderr and reason in res.stderr
        [failed_text] = [t for (i, t) in query(ws, "SELECT id, text FROM notes") if i == failed_id]
        assert failed_id not in {d.note_id for d in live_drafts(ws)}

        summary = run(write_notes, settings_for(ws, srv))
    assert sent_notes(srv, 7) == [failed_text]
    assert summary.total["failed"] == 0 and summary.skipped == 5
    assert len(live_drafts(ws)) == 6 and failed_id in {d.note_id for d in live_drafts(ws)}


def test_a_killed_run_resumes_without_resending_finished_notes(tmp_path):
    ws = tmp_path / "ws"
    concurrency = 2
    with FakeOpenAI(latency=0.5) as srv:
        env = dict(os.environ, OPENAI_API_KEY=KEY, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            env.pop(name, None)
        cmd = [sys.executable, "-m", "cards", "generate", str(EXAMPLE_NOTES), "-t", str(EXAMPLE_TRANSCRIPT),
               "-w", str(ws), "--base-url", srv.base_url, "-c", str(concurrency), "--json"]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60  # a safety net for a hung child, not a speed check
            done = 0
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    [(done,)] = query(ws, "SELECT count(*) FROM generations WHERE ok=1")
                except sqlite3.Error:
                    pass  # the workspace is not created yet
                if done >= 2:
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.01)
        finally:
            if proc.poll() is None and time.monotonic() >= deadline:
                proc.kill()
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")

        finished = dict(query(ws, "SELECT n.text, g.note_id FROM generations g JOIN notes n ON n.id=g.note_id"
                                  " WHERE g.ok=1"))
        first_run = srv.count
        s = settings_for(ws, srv, concurrency=concurrency)
        with no_network():
            loaded = load([EXAMPLE_NOTES], [EXAMPLE_TRANSCRIPT], s)
            summary = generate(loaded, s)
    notes = sum(len(e.items) for e in loaded.episodes)
    assert 2 <= len(finished) < notes
    # Only requests that were in flight at the kill can have been sent twice.
    assert first_run <= len(finished) + concurrency
    resent = sent_notes(srv, first_run)
    assert not set(resent) & set(finished)
    assert len(resent) == notes - len(finished) == summary.total["requests"]
    assert summary.skipped == len(finished)
    assert srv.count <= notes + concurrency
    # No note has two results, and no draft came twice.
    assert set(query(ws, "SELECT count(*) FROM generations WHERE ok=1 GROUP BY note_id")) == {(1,)}
    assert query(ws, "SELECT count(DISTINCT note_id) FROM generations WHERE ok=1") == [(notes,)]
    assert set(query(ws, "SELECT count(DISTINCT generation_id) FROM drafts WHERE superseded=0"
                         " GROUP BY note_id")) == {(1,)}
    assert query(ws, "SELECT count(*) FROM drafts") == [(notes,)]


# -- the offline generator ----------------------------------------------------------------------

def test_offline_generator_says_so_once_and_a_later_llm_run_replaces_its_drafts(write_notes, tmp_path):
    ws = tmp_path / "ws"
    res = cli_generate(write_notes, ws, "--json")
    assert res.exit_code == 0, res.output
    assert res.stderr.count("Using the offline generator") == 1
    assert "no OPENAI_API_KEY or --base-url is set" in res.stderr
    summary = json.loads(res.stdout)  # the notice stays off stdout
    assert summary["generator"] == "offline" and summary["total"]["notes"] == 6
    offline = live_drafts(ws)
    assert offline and {d.generator for d in offline} == {"offline"}
    assert query(ws, "SELECT DISTINCT generator FROM generations") == [("offline",)]

    again = cli_generate(write_notes, ws)  # nothing to do, and still says which generator
    assert again.exit_code == 0 and again.stderr.count("Using the offline generator") == 1

    with FakeOpenAI() as srv:
        res = cli_generate(write_notes, ws, srv=srv)
    assert res.exit_code == 0, res.output
    assert "offline generator" not in res.stderr
    assert srv.count == 6
    everything = all_drafts(ws)
    assert all(d.superseded for d in everything if d.generator == "offline")
    live = live_drafts(ws)
    assert len(live) == 6 and {d.generator for d in live} == {"openai"}


# -- secrets ------------------------------------------------------------------------------------

def _files_containing(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_api_key_is_never_written_to_the_workspace_or_printed(write_notes, tmp_path):
    ws = tmp_path / "ws"
    outputs = []
    with FakeOpenAI(script=["500", "refusal", "refusal"]) as srv:
        outputs.append(cli_generate(write_notes, ws, "-c", "1", srv=srv))
        outputs.append(cli_generate(write_notes, ws, "--json", srv=srv))
        outputs.append(cli("estimate", str(write_notes.notes), "-t", str(write_notes.transcripts), "-w", str(ws),
                           "--base-url", srv.base_url, env={"OPENAI_API_KEY": KEY}))
        outputs.append(cli("drafts", "-w", str(ws), "--all", "--json"))
    assert [r.exit_code for r in outputs] == [1, 0, 0, 0]  # the refused note failed, then was retried
    assert srv.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was used...
    # A server that rejects the key and echoes it back, as some do.
    with FakeOpenAI(api_key="sk-the-right-one") as picky:
        rejected = cli_generate(write_notes, tmp_path / "ws2", srv=picky)
    assert rejected.exit_code == 3  # the run was stopped by the server
    assert "rejected the API key" in rejected.stderr and "check OPENAI_API_KEY" in rejected.stderr
    assert "--api-key" not in rejected.stderr  # no such option: the key comes from the environment only
    assert picky.count >= 1 and "***" in rejected.stderr  # the echoed key was scrubbed
    outputs.append(rejected)

    for r in outputs:  # ...and shown nowhere
        assert KEY not in r.output
    assert (ws / DB_NAME).exists()
    assert _files_containing(tmp_path, KEY.encode()) == []
    assert _files_containing(tmp_path, b"sk-test") == []


# -- estimates and listings ---------------------------------------------------------------------

def test_estimate_counts_requests_and_tokens_without_sending_anything(write_notes, tmp_path):
    ws = tmp_path / "ws"
    args = ["estimate", str(write_notes.notes), "-t", str(write_notes.transcripts), "-w", str(ws), "--json"]
    with FakeOpenAI() as srv:
        res = cli(*args, "--base-url", srv.base_url, env={"OPENAI_API_KEY": KEY})
        assert res.exit_code == 0, res.output
        assert srv.count == 0
        est = json.loads(res.stdout)
        assert est["llm_configured"] is True and est["notes"] == 6 and est["requests"] == 6
        assert est["token_counter"].startswith("estimate")  # no tokenizer file: an honest label
        assert not (ws / DB_NAME).exists()  # estimating creates no workspace

        s = settings_for(ws, srv)
        run(write_notes, s)
        counter = counter_for(s.model)
        schema = counter.count(_schema_json())
        # The estimate priced exactly the messages that were then sent.
        sent = sum(schema + sum(counter.count(m["content"]) + 4 for m in r.json["messages"]) for r in srv.requests)
        assert est["tokens_in"] == sent > 0
        assert est["tokens_per_request"] == round(sent / 6)

        after = cli(*args, "--base-url", srv.base_url, env={"OPENAI_API_KEY": KEY})
        forced = cli(*args, "--force", "--base-url", srv.base_url, env={"OPENAI_API_KEY": KEY})
    assert srv.count == 6
    assert json.loads(after.stdout)["requests"] == 0
    assert json.loads(forced.stdout)["requests"] == 6


def test_estimate_library_call_sends_nothing_offline(write_notes, tmp_path):
    with FakeOpenAI() as srv:
        s = settings_for(tmp_path / "ws", srv)
        with no_network():
            est = estimate(load([write_notes.notes], [write_notes.transcripts], s), s)
    assert srv.count == 0 and est["requests"] == 6 and est["tokens_in"] > 6 * 100


def test_drafts_json_has_the_documented_keys(write_notes, tmp_path):
    ws = tmp_path / "ws"
    with FakeOpenAI() as srv:
        run(write_notes, settings_for(ws, srv))
    res = cli("drafts", "-w", str(ws), "--json")
    assert res.exit_code == 0, res.output
    items = json.loads(res.stdout)
    assert len(items) == 6
    wanted = {"id", "episode", "note", "kind", "front", "back", "quote", "status", "duplicate_of", "generator"}
    for d in items:
        assert wanted <= set(d)
        assert d["generator"] == "openai" and d["status"] == "draft" and d["duplicate_of"] is None
        assert d["kind"] == "basic" and d["front"] and d["quote"]
    assert sorted(d["note"] for d in items) == sorted(write_notes.bullets)
    assert {d["episode"] for d in items} == {"ada-quill-on-reactor-talk", "bram-otter-on-garden-hour"}


# -- tokens -------------------------------------------------------------------------------------

def _byte_encoding():
    import tiktoken

    return tiktoken.Encoding(
        name="test-bytes",
        pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+""",
        mergeable_ranks={bytes([i]): i for i in range(256)},
        special_tokens={},
    )


@pytest.mark.parametrize("budget", [60, 200])
def test_passages_respect_the_token_budget_counted_exactly(write_notes, tmp_path, budget):
    counter = counter_from_encoding(_byte_encoding())
    assert counter.exact and counter.label == "tiktoken test-bytes"
    assert counter.count("héllo wörld") == len("héllo wörld".encode())  # one token per byte
    s = build_settings(workspace=tmp_path / "ws", context_tokens=budget)
    with no_network():
        loaded = load([write_notes.notes, EXAMPLE_NOTES], [write_notes.transcripts, EXAMPLE_TRANSCRIPT], s)
        contexts = align(loaded.episodes, s, counter)
    checked = 0
    for ep in loaded.episodes:
        longest = max(counter.count(seg.text) + 1 for seg in ep.transcript.segments)
        whole = counter.count(ep.transcript.text)
        for ctx in contexts[ep.slug]:
            assert ctx is not None
            n = counter.count(ctx.text)
            assert n <= budget
            # Filled up to the budget: one more segment would not have fitted (or none was left).
            assert n > budget - longest or n == whole
            checked += 1
    assert checked == 14
    assert any(counter.count(ep.transcript.text) > budget for ep in loaded.episodes)


def test_counter_for_a_model_without_a_cached_encoding_is_a_labelled_estimate(tmp_path):
    cache = Path(os.environ["TIKTOKEN_CACHE_DIR"])
    counter_for.cache_clear()
    with no_network():
        c = counter_for("gpt-5-mini")
    assert c.exact is False and c.encoding is None
    assert c.label.startswith("estimate") and "o200k_base" in c.label and "TIKTOKEN_CACHE_DIR" in c.label
    assert c.count("x" * 40) == 10
    assert list(cache.iterdir()) == []  # nothing was fetched


def test_a_bullet_changed_and_changed_back_gets_its_drafts_back(write_notes, tmp_path):
    ws = tmp_path / "ws"
    old = "copper fungicide only slows the blight, it never cures an infected plant"
    new = "copper fungicide only slows tomato blight down, it never cures an infected plant"
    original = write_notes.text
    with FakeOpenAI() as srv:
        run(write_notes, settings_for(ws, srv))
        [mine] = [d for d in live_drafts(ws) if d.note_text == old]
        with Store(ws) as st:
            st.update_draft(mine.id, action="approve", status="approved")
        write_notes.rewrite(original.replace(old, new))
        run(write_notes, settings_for(ws, srv))
        write_notes.rewrite(original)  # an undo in the editor
        summary = run(write_notes, settings_for(ws, srv))
    assert srv.count == 7  # the old note's result is still current: nothing to ask again
    assert summary.skipped == 6
    live = live_drafts(ws)
    # The revision the abandoned edit prompted is gone; the approved card never left.
    assert sorted(d.note_text for d in live) == sorted(write_notes.bullets)
    [back] = [d for d in live if d.note_text == old]
    assert back.id == mine.id and back.status == "approved" and back.revision_of is None


def test_two_runs_at_once_never_buy_a_note_twice(tmp_path):
    """The second run on a busy workspace is refused in one line; the first finishes alone."""
    import threading

    from fakeserver import default_responder

    ws = tmp_path / "ws"
    release = threading.Event()

    def held(body: dict) -> dict:
        release.wait(60)  # a safety net, not a speed check: the test sets it as soon as run two ends
        return default_responder(body)

    with FakeOpenAI(responder=held) as srv:
        env = dict(os.environ, OPENAI_API_KEY=KEY, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            env.pop(name, None)
        cmd = [sys.executable, "-m", "cards", "generate", str(EXAMPLE_NOTES), "-t", str(EXAMPLE_TRANSCRIPT),
               "-w", str(ws), "--base-url", srv.base_url, "-c", "2", "--json"]
        first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60  # a safety net for a hung child, not a speed check
            while srv.count == 0 and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert srv.count > 0  # run one holds the workspace and is waiting on the server
            second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        finally:
            release.set()
            _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err.decode(errors="replace")
    assert second.returncode == 4
    assert second.stderr.strip().splitlines() == [
        f"cards: error: {ws}: another cards generate is using this workspace; wait for it to finish"]
    notes = len(query(ws, "SELECT id FROM notes"))
    assert srv.count == notes  # every note bought once
    assert set(query(ws, "SELECT count(DISTINCT generation_id) FROM drafts WHERE superseded=0"
                         " GROUP BY note_id")) == {(1,)}
