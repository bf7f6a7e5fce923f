"""`generate --batch` and `cards batch`: the real openai SDK against the fake server's files and
batches endpoints, results out of order, partial failure, expiry, cancellation, a server without
the Batch API, a killed process, and a backfill of the seeds that matches a live run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, SEEDS
from fakeserver import FakeOpenAI, default_responder, no_network
from typer.testing import CliRunner

from cards import batch
from cards.cli import app
from cards.config import build_settings
from cards.pipeline import collect_batches, estimate, generate, load, status
from cards.store import Store

KEY = "sk-test-secret"
runner = CliRunner()


def settings_for(ws: Path, srv: FakeOpenAI, **kw):
    return build_settings(workspace=ws, base_url=srv.base_url, api_key=KEY, concurrency=4, **kw)


def run(ex, settings, **kw):
    with no_network():
        loaded = load([ex.notes], [ex.transcripts], settings)
        return generate(loaded, settings, **kw)


def collect(settings):
    with no_network(), Store(settings.workspace) as st:
        return collect_batches(st, settings)


def cli(*args: str, srv: FakeOpenAI):
    with no_network():
        return runner.invoke(app, [*args, "--base-url", srv.base_url], env={"OPENAI_API_KEY": KEY})


def live(ws: Path):
    with Store(ws, create=False) as st:
        return st.drafts(include_superseded=False)


def chat_requests(srv: FakeOpenAI) -> list:
    return [r for r in srv.requests if r.path.endswith("/chat/completions")]


def card_view(drafts) -> list[tuple]:
    return sorted((d.episode, d.note_id, d.kind, d.front, d.back, d.quote, tuple(d.tags), d.context_text,
                   d.status, d.model, d.prompt_version) for d in drafts)


# -- the basic round trip --------------------------------------------------------------------------

def test_batch_sends_the_live_requests_as_jsonl_and_collect_imports_them_out_of_order(write_notes, tmp_path):
    with FakeOpenAI() as srv:  # the live run, for comparison
        run(write_notes, settings_for(tmp_path / "live", srv))
        live_bodies = {json.dumps(r.json["messages"]): r.json for r in chat_requests(srv)}
    with FakeOpenAI(batch_order="reverse") as srv:
        s = settings_for(tmp_path / "ws", srv)
        summary = run(write_notes, s, batch=True)
        assert not chat_requests(srv)  # nothing live
        assert len(summary.batches) == 1
        (bid,) = summary.batches
        upload = next(r for r in srv.requests if r.path == "/v1/files")
        assert upload.json["purpose"] == "batch"
        create = next(r for r in srv.requests if r.path == "/v1/batches")
        assert create.json["endpoint"] == "/v1/chat/completions" and create.json["completion_window"] == "24h"
        lines = [json.loads(x) for x in srv.files[create.json["input_file_id"]].splitlines()]
        assert len(lines) == 6 and len({x["custom_id"] for x in lines}) == 6
        with Store(s.workspace) as st:  # recorded before generate returned
            assert [b.id for b in batch.batches(st, open_only=True)] == [bid]
            keys = {r[0] for r in st.db.execute("SELECT custom_id FROM batch_requests")}
        assert keys == {x["custom_id"] for x in lines}
        for x in lines:  # the same request as a live run sends: messages, schema, model, reply limit
            assert x["method"] == "POST" and x["url"] == "/v1/chat/completions"
            body = live_bodies[json.dumps(x["body"]["messages"])]
            for k in ("model", "response_format", "max_completion_tokens"):
                assert x["body"][k] == body[k]
        assert live(s.workspace) == []

        got = collect(s)
        assert got["batches"] == [bid] and got["imported"] == 6 and got["failed"] == 0
        drafts = live(s.workspace)
        assert len(drafts) == 6
        # Each result landed on its own note although the output file came in reverse order.
        for d in drafts:
            assert d.back == " ".join(d.note_text.split()[:20])
        assert card_view(drafts) == card_view(live(tmp_path / "live"))

        again = collect(s)  # idempotent
        assert again == {} and len(live(s.workspace)) == 6
        with Store(s.workspace) as st:
            runs = st.db.execute("SELECT cost, status FROM runs ORDER BY id").fetchall()
        assert runs[-1]["status"] == "ok" and runs[-1]["cost"] == pytest.approx(got["cost_usd"], abs=1e-6)

        before = len(srv.requests)
        summary = run(write_notes, s)  # a later generate: nothing to send
        assert len(srv.requests) == before and summary.skipped == 6


def test_collect_twice_from_the_cli_adds_nothing_and_status_shows_counts(write_notes, tmp_path):
    with FakeOpenAI(batch_autorun=False) as srv:
        ws = tmp_path / "ws"
        r = cli("generate", str(write_notes.notes), "-t", str(write_notes.transcripts), "-w", str(ws), "--batch",
                srv=srv)
        assert r.exit_code == 0, r.output
        assert "sent 6 requests in 1 batch" in r.output
        r = cli("batch", "status", "-w", str(ws), "--json", srv=srv)
        (row,) = json.loads(r.stdout)
        assert row["status"] == "in_progress" and row["requests"] == 6 and row["open"]
        r = cli("batch", "collect", "-w", str(ws), srv=srv)
        assert r.exit_code == 0 and "imported 0 results" in r.output and "1 batch still running" in r.output
        srv.run_batches()
        r = cli("batch", "collect", "-w", str(ws), "--json", srv=srv)
        assert json.loads(r.stdout)["imported"] == 6
        r = cli("batch", "collect", "-w", str(ws), srv=srv)
        assert r.exit_code == 0 and "no open batches" in r.output
        assert len(live(ws)) == 6
        r = cli("batch", "status", "-w", str(ws), "--json", srv=srv)
        (row,) = json.loads(r.stdout)
        assert (row["status"], row["completed"], row["failed"], row["imported"], row["open"]) == \
            ("completed", 6, 0, 6, False)


# -- failures, expiry, cancellation -----------------------------------------------------------------

def test_partial_failure_is_recorded_and_only_the_failed_notes_are_sent_again(write_notes, tmp_path):
    with FakeOpenAI(batch_order="shuffle", script=["ok", "invalid", "500", "ok", "refusal", "ok"]) as srv:
        s = settings_for(tmp_path / "ws", srv)
        run(write_notes, s, batch=True)
        got = collect(s)
        assert got["imported"] == 6 and got["failed"] == 3
        with Store(s.workspace) as st:
            errors = sorted(r[0] for r in st.db.execute("SELECT error FROM generations WHERE ok=0"))
        assert errors[0].startswith("invalid reply: cards.0.kind: Field required")
        assert errors[1:] == ["refused: I'm sorry, but I can't help with that.",
                              "request rejected (HTTP 500): Fake failure 500"]
        assert len(live(s.workspace)) == 3
        before = len(chat_requests(srv))
        summary = run(write_notes, s)  # live, for the three failed ones only
        assert len(chat_requests(srv)) - before == 3 and summary.reasons == {"failed before": 3}
        assert len(live(s.workspace)) == 6


def test_an_expired_batch_keeps_its_results_and_the_rest_go_in_a_new_batch(write_notes, tmp_path):
    with FakeOpenAI(batch_limit=4, batch_end="expired") as srv:
        s = settings_for(tmp_path / "ws", srv)
        run(write_notes, s, batch=True)
        summary = run(write_notes, s, batch=True)  # collects the expired one first, then sends the rest
        assert summary.collected["imported"] == 4 and summary.collected["sent_again_next_run"] == 2
        assert len(summary.batches) == 1
        second = srv.batches[summary.batches[0]]
        assert second["request_counts"]["total"] == 2
        assert len(live(s.workspace)) == 4
        got = collect(s)
        assert got["imported"] == 2 and len(live(s.workspace)) == 6
        assert not chat_requests(srv)


def test_a_cancelled_batch_keeps_what_it_finished_and_the_next_live_run_sends_the_rest(write_notes, tmp_path):
    with FakeOpenAI(batch_autorun=False) as srv:
        ws = tmp_path / "ws"
        s = settings_for(ws, srv)
        run(write_notes, s, batch=True)
        r = cli("batch", "cancel", "-w", str(ws), "--json", srv=srv)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)[0]["status"] == "cancelling"
        srv.batch_limit = 2  # it had answered two requests when it stopped
        summary = run(write_notes, s)
        assert summary.collected["imported"] == 2 and summary.collected["sent_again_next_run"] == 4
        assert len(chat_requests(srv)) == 4 and len(live(ws)) == 6


def test_a_live_run_while_a_batch_is_open_does_not_buy_its_notes_again(write_notes, tmp_path):
    with FakeOpenAI(batch_autorun=False) as srv:
        s = settings_for(tmp_path / "ws", srv)
        run(write_notes, s, batch=True)
        summary = run(write_notes, s)
        assert not chat_requests(srv)
        assert any("6 notes wait for a batch" in n for n in summary.notices)
        with no_network():
            loaded = load([write_notes.notes], [write_notes.transcripts], s)
            est = estimate(loaded, s)
            st = status(s, loaded)
        assert est["requests"] == 0
        assert [b["requests"] for b in st["batches"]] == [6]
        assert sum(e["next_generate"]["requests"] for e in st["episodes"]) == 0
        assert any("1 batch open with 6 requests" in n for n in st["notices"])


def test_a_server_without_the_batch_api_says_so_in_one_line(write_notes, tmp_path):
    with FakeOpenAI(batch_api=False) as srv:
        ws = tmp_path / "ws"
        r = cli("generate", str(write_notes.notes), "-t", str(write_notes.transcripts), "-w", str(ws), "--batch",
                srv=srv)
        assert r.exit_code == 3
        lines = [x for x in r.stderr.splitlines() if x.startswith("cards: error")]
        assert len(lines) == 1 and "no Batch API" in lines[0] and "run without --batch" in lines[0]
        assert "Traceback" not in r.output and KEY not in r.output
        assert not chat_requests(srv)
        with Store(ws) as st:
            assert batch.batches(st) == []
        r = cli("generate", str(write_notes.notes), "-t", str(write_notes.transcripts), "-w", str(ws), srv=srv)
        assert r.exit_code == 0 and len(live(ws)) == 6


def test_batch_needs_an_llm(write_notes, tmp_path):
    r = runner.invoke(app, ["generate", str(write_notes.notes), "-w", str(tmp_path / "ws"), "--batch"])
    assert r.exit_code == 2 and "--batch needs an LLM" in r.stderr


# -- limits, prices, lineage ------------------------------------------------------------------------

def test_split_respects_request_and_byte_limits():
    lines = [b"x" * 10 + b"\n"] * 7
    assert [len(f) for f in batch.split(lines, 3, 10_000)] == [3, 3, 1]
    assert [len(f) for f in batch.split(lines, 100, 25)] == [2, 2, 2, 1]


def test_a_large_run_is_split_into_several_batches(write_notes, tmp_path, monkeypatch):
    from cards.generate import openai_batch

    monkeypatch.setattr(openai_batch, "MAX_REQUESTS", 4)
    with FakeOpenAI() as srv:
        s = settings_for(tmp_path / "ws", srv)
        summary = run(write_notes, s, batch=True)
        assert len(summary.batches) == 2
        assert sorted(srv.batches[b]["request_counts"]["total"] for b in summary.batches) == [2, 4]
        assert collect(s)["imported"] == 6


def test_estimate_batch_is_half_the_live_price(write_notes, tmp_path):
    s = build_settings(workspace=tmp_path / "ws", api_key=KEY)
    with no_network():
        loaded = load([write_notes.notes], [write_notes.transcripts], s)
        live_est, batch_est = estimate(loaded, s), estimate(loaded, s, batch=True)
    assert batch_est["requests"] == live_est["requests"] == 6
    assert batch_est["cost_live_usd"] == live_est["cost_usd"]
    assert batch_est["cost_usd"] == pytest.approx(live_est["cost_usd"] / 2, abs=1e-4)
    with no_network():
        r = runner.invoke(app, ["estimate", str(write_notes.notes), "-t", str(write_notes.transcripts), "-w",
                                str(tmp_path / "ws"), "--batch"], env={"OPENAI_API_KEY": KEY})
    assert r.exit_code == 0 and "with the Batch API (live: $" in r.output


def test_a_batch_result_carries_an_approved_cards_lineage_as_a_pending_revision(write_notes, tmp_path):
    with FakeOpenAI() as srv:
        s = settings_for(tmp_path / "ws", srv)
        run(write_notes, s)
        first = live(s.workspace)[0]
        with Store(s.workspace) as st:
            st.update_draft(first.id, action="approved", status="approved")
        def reworded(body):
            reply = default_responder(body)
            reply["cards"][0]["front"] = reply["cards"][0]["front"].replace("What did", "What exactly did")
            return reply

        srv.responder = reworded
        run(write_notes, s, batch=True, force=True)
        collect(s)
        drafts = live(s.workspace)
        revision = next(d for d in drafts if d.revision_of == first.id)
        assert revision.lineage == first.lineage and revision.front.startswith("What exactly did")
        assert sum(1 for d in drafts if d.revision_of) == 1  # the undecided others were simply replaced


# -- a killed process ----------------------------------------------------------------------------------

# The `cards` command, killed (os._exit) right after one step of sending a batch.
_KILLED = """
import os, sys
from cards.generate.openai_batch import BatchClient
step = getattr(BatchClient, {step!r})
def killed(self, *a, **kw):
    step(self, *a, **kw)
    os._exit(9)
setattr(BatchClient, {step!r}, killed)
from cards.cli import main
sys.argv = ["cards", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("step", ["create", "upload"])
def test_a_process_killed_while_sending_loses_nothing_and_collect_in_a_new_process_resumes(write_notes, tmp_path,
                                                                                           step):
    ws = tmp_path / "ws"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CARDS_"))}
    env.update(OPENAI_API_KEY=KEY, NO_PROXY="127.0.0.1", PYTHONPATH=str(ROOT))
    with FakeOpenAI(batch_order="shuffle") as srv:
        env["OPENAI_BASE_URL"] = srv.base_url
        script = tmp_path / "killed.py"
        script.write_text(textwrap.dedent(_KILLED.format(step=step)))
        args = ["generate", str(write_notes.notes), "-t", str(write_notes.transcripts), "-w", str(ws), "--batch"]
        p = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 9
        assert len(srv.batches) == (1 if step == "create" else 0) and not chat_requests(srv)
        # A new process: the batch the killed one created (but never heard of) is found and imported;
        # one it never created is forgotten, and its requests are sent by the next run.
        p = subprocess.run([sys.executable, "-m", "cards", "batch", "collect", "-w", str(ws), "--json"],
                           env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        if step == "create":
            assert json.loads(p.stdout)["imported"] == 6 and len(live(ws)) == 6
        else:
            assert json.loads(p.stdout)["imported"] == 0 and live(ws) == []
            with Store(ws) as st:
                assert batch.batches(st) == []
            r = cli(*args, srv=srv)
            assert r.exit_code == 0 and len(srv.batches) == 1
            assert collect(build_settings(workspace=ws, base_url=srv.base_url, api_key=KEY))["imported"] == 6
        assert not chat_requests(srv)


# -- the seeds: a batch backfill gives the live run's drafts -----------------------------------------

@pytest.mark.skipif(not SEEDS.is_dir(), reason="seeds not present")
def test_a_batch_backfill_of_the_seeds_gives_the_same_drafts_as_a_live_run(tmp_path):
    notes = [SEEDS / "000_afbeb462ed58c10d.txt", SEEDS / "004_bd517cc6001931b3.txt"]
    transcripts = [SEEDS / "002_0fe13fd03e9aaf95.txt", SEEDS / "003_34925e2c796f303a.txt"]
    with FakeOpenAI(batch_order="shuffle") as srv, no_network():
        s_live = build_settings(workspace=tmp_path / "live", base_url=srv.base_url, api_key=KEY, concurrency=8)
        loaded = load(notes, transcripts, s_live)
        summary = generate(loaded, s_live)
        n = summary.total["notes"]
        assert n > 150
        s_batch = build_settings(workspace=tmp_path / "batch", base_url=srv.base_url, api_key=KEY)
        sent = generate(load(notes, transcripts, s_batch), s_batch, batch=True)
        assert sent.total["requests"] == 0 and len(sent.batches) == 1
        got = collect(s_batch)
        assert got["imported"] == n and got["failed"] == 0
        assert len(chat_requests(srv)) == n  # the live run's only
    assert card_view(live(tmp_path / "batch")) == card_view(live(tmp_path / "live"))


def test_a_hostile_output_file_is_read_line_by_line_as_untrusted(write_notes, tmp_path):
    with FakeOpenAI(batch_autorun=False) as srv:
        s = settings_for(tmp_path / "ws", srv)
        summary = run(write_notes, s, batch=True)
        srv.run_batches()
        b = srv.batches[summary.batches[0]]
        lines = [json.loads(x) for x in srv.files[b["output_file_id"]].splitlines()]
        big = dict(lines[1], response={**lines[1]["response"], "body": json.loads(json.dumps(
            lines[1]["response"]["body"]))})
        big["response"]["body"]["choices"][0]["message"]["content"] = json.dumps(
            {"cards": [{"kind": "basic", "front": "x" * 70_000, "back": "b", "quote": "q", "tags": []}]})
        echo = {"custom_id": lines[2]["custom_id"], "response": {"status_code": 401, "body": {
            "error": {"message": f"Incorrect API key provided: {KEY}"}}}, "error": None}
        junk = [b"not json at all", json.dumps(["a", "list"]).encode(),
                json.dumps({"custom_id": "someone-else", "response": lines[0]["response"]}).encode()]
        rows = [json.dumps(x).encode() for x in (lines[0], lines[0], big, echo, lines[3], lines[4])]  # 5 is lost
        srv.files[b["output_file_id"]] = b"\n".join(junk + rows) + b"\n"
        got = collect(s)
        # Line 0 twice: imported once. The huge reply and the echoed error are their notes' failures; the
        # request with no line is sent again by the next run.
        assert got["imported"] == 5 and got["failed"] == 2 and got["sent_again_next_run"] == 1
        with Store(s.workspace) as st:
            errors = [r[0] for r in st.db.execute("SELECT error FROM generations WHERE ok=0")]
        assert any(e.startswith("reply too large") for e in errors)
        assert any(e.startswith("request rejected (HTTP 401)") for e in errors)
        assert not any(KEY in e for e in errors)
        assert len(live(s.workspace)) == 3
