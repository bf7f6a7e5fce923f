"""What a hostile, broken or merely different server can do to a run, through the real SDK and CLI.

Each test drives the fake server over loopback HTTP. Time limits are tiny (tenths of a second)
and the assertions are on what happened, never on how long it took.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest
from fakeserver import KEY, FakeOpenAI, no_network, offline_env  # noqa: F401
from fakeserver import generator_for as gen
from fakeserver import note_request as request
from typer.testing import CliRunner

from cards.cli import app
from cards.config import build_settings
from cards.errors import ConfigError, GenerationError
from cards.generate.base import Request, Result
from cards.generate.openai import OpenAIGenerator
from cards.models import stable_id
from cards.redact import looks_like_secret, mask_url, scrub
from cards.schema import MAX_CARDS, CardSet

runner = CliRunner()


@pytest.fixture(autouse=True)
def _offline(offline_env):  # noqa: F811 - the fixture imported above
    """Only loopback is reachable."""


def run(g: OpenAIGenerator, *requests: Request, concurrency: int = 8) -> list[Result]:
    async def main() -> list[Result]:
        gate = asyncio.Semaphore(concurrency)

        async def one(r: Request) -> Result:
            async with gate:
                return await g.generate(r)

        try:
            return await asyncio.gather(*(one(r) for r in requests))
        finally:
            await g.aclose()

    return asyncio.run(main())


def card(**over) -> dict:
    return {"kind": "basic", "front": "What power?", "back": "345 MW", "quote": "345 MW", "tags": ["energy"],
            **over}


# -- item 6: bounded replies ---------------------------------------------------------------------

@pytest.mark.parametrize(("payload", "error"), [
    ({"cards": [card(front=f"Q{i}?") for i in range(50)]}, "invalid reply: cards: List should have at most 3"),
    ({"cards": [card(front=f"Q{i}?") for i in range(5000)]}, "reply too large: over 64 KiB"),
    ({"cards": [card(front="x" * 601)]}, "invalid reply: cards.0.front: Value error, longer than 600 characters"),
    ({"cards": [card(back="y" * 601)]}, "invalid reply: cards.0.back: Value error, longer than 600"),
    ({"cards": [card(quote="z" * 1001)]}, "invalid reply: cards.0.quote: Value error, longer than 1000"),
    ({"cards": [card(tags=[f"t{i}" for i in range(9)])]}, "invalid reply: cards.0.tags: List should have at most 8"),
    ({"cards": [card(tags=["t" * 41])]}, "invalid reply: cards.0.tags.0: Value error, longer than 40"),
])
def test_a_reply_over_the_schema_bounds_is_that_notes_bad_reply(payload, error):
    with FakeOpenAI(responder=lambda body: payload) as srv:
        [res] = run(gen(srv), request())
    assert res.error.startswith(error), res.error
    assert res.cards == [] and res.requests == 2  # asked again once, like any bad reply


def test_replies_at_the_bounds_are_accepted():
    payload = {"cards": [card(front="x" * 600, back="y" * 600, quote="z" * 1000, tags=["t" * 40] * 8)] * MAX_CARDS}
    with FakeOpenAI(responder=lambda body: payload) as srv:
        [res] = run(gen(srv), request())
    assert res.ok and len(res.cards) == 3


def test_the_schema_sent_bounds_the_card_count_and_keeps_string_caps_local():
    with FakeOpenAI() as srv:
        run(gen(srv), request())
    schema = srv.requests[0].json["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["cards"]["maxItems"] == 3
    assert schema["properties"]["claims"]["maxItems"] == 3
    assert "Never more cards than claims" in schema["properties"]["cards"]["description"]
    # OpenAI's strict mode does not accept maxLength, so the string caps are checked here only.
    assert "maxLength" not in json.dumps(schema)
    assert CardSet.model_json_schema()["$defs"]["Card"]["properties"]["tags"]["maxItems"] == 8


def test_a_huge_reply_is_cut_off_while_it_is_read():
    with FakeOpenAI(script=["huge", "huge"], huge_bytes=50 * 1024 * 1024) as srv:
        [res] = run(gen(srv), request())
    assert res.error == "reply too large: over 64 KiB"
    assert res.requests == 2 and res.cards == []
    # The client hung up long before the 50 MB were out: the body was never buffered whole.
    assert len(srv.bytes_sent) == 2 and max(srv.bytes_sent) < 25 * 1024 * 1024


def test_replies_are_asked_for_uncompressed_so_the_cap_counts_what_is_kept():
    with FakeOpenAI() as srv:
        run(gen(srv), request())
    assert srv.requests[0].headers["accept-encoding"] == "identity"


def test_a_reply_announcing_a_huge_length_is_refused_before_reading():
    big = {"status": 200, "headers": {}, "body": "x" * (200 * 1024)}
    with FakeOpenAI(script=[big, "ok"]) as srv:
        [res] = run(gen(srv), request())
    assert res.ok and res.requests == 2  # one bad reply, then a good one


def test_the_reply_limit_grows_with_a_larger_token_limit():
    assert gen("http://127.0.0.1:9/v1").reply_limit == 64 * 1024
    assert gen("http://127.0.0.1:9/v1", max_tokens=20_000).reply_limit == 160_000


def test_a_huge_reply_never_reaches_the_workspace(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Show\n\n- the reactor runs at 345 megawatts\n")
    with FakeOpenAI(script=["huge", "huge"], huge_bytes=5 * 1024 * 1024) as srv:
        res = cli(["generate", str(notes), "-w", str(tmp_path / "ws"), "--base-url", srv.base_url])
    assert res.exit_code == 1, res.output  # the note failed and was recorded
    assert "reply too large" in res.stderr
    db = tmp_path / "ws" / "cards.sqlite"
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM drafts").fetchone() == (0,)
        assert con.execute("SELECT error FROM generations").fetchone()[0].startswith("reply too large")
    assert db.stat().st_size < 1024 * 1024


# -- item 7: deadlines, an unreachable or silent server, exit statuses ---------------------------

def test_a_byte_a_second_server_is_held_to_the_overall_deadline():
    # Each read gets a byte well within the read timeout, so only the overall deadline can stop it.
    with FakeOpenAI(script=["trickle"] * 2, trickle=0.05) as srv:
        g = gen(srv, timeout=0.3, read_timeout=5.0, max_attempts=2, unreachable_first=9, unreachable_after=9)
        [res] = run(g, request())
    assert res.error == "gave up after 2 attempts: no reply within 0.3s"
    # A reply is hundreds of bytes; each attempt was cut off after a handful of them.
    assert len(srv.bytes_sent) == 2 and max(srv.bytes_sent) < 100


def test_connection_refused_stops_the_run_instead_of_retrying_every_note():
    with FakeOpenAI() as srv:
        url = srv.base_url  # closed again: connection refused
    g = gen(url)
    with pytest.raises(GenerationError) as info:
        run(g, *[request(i) for i in range(12)], concurrency=8)
    message = str(info.value)
    assert message.startswith("stopped: 2 requests in a row to http://127.0.0.1:")  # nothing ever answered
    assert "could not connect to the server" in message and "\n" not in message
    assert info.value.exit_code == 3


def test_a_server_that_never_answers_stops_the_run_after_a_bounded_number_of_deadlines():
    with FakeOpenAI(script=["silent"] * 50) as srv:
        g = gen(srv, timeout=0.2)
        with pytest.raises(GenerationError, match=r"2 requests in a row .* \(no reply within 0.2s\)"):
            run(g, *[request(i) for i in range(10)], concurrency=2)
    assert srv.count <= 2 + 2  # the second silence stops it; at most the other slot was in flight


def test_once_the_server_has_answered_it_gets_more_silences_before_the_run_stops():
    with FakeOpenAI(script=["ok"] + ["silent"] * 50) as srv:
        g = gen(srv, timeout=0.2, unreachable_after=3)
        with pytest.raises(GenerationError, match=r"3 requests in a row"):
            run(g, *[request(i) for i in range(10)], concurrency=1)
    assert srv.count == 1 + 3


def test_answers_in_between_keep_a_flaky_server_going():
    with FakeOpenAI(script=["silent", "ok", "silent", "ok", "silent", "ok"]) as srv:
        g = gen(srv, timeout=0.2, unreachable_first=2, unreachable_after=2)
        results = run(g, request(0), request(1), request(2), concurrency=1)
    assert all(r.ok for r in results)


def test_cli_exit_status_3_and_one_line_when_the_server_is_unreachable(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Show\n\n" + "".join(f"- fact {i} is {i} megawatts\n" for i in range(12)))
    with FakeOpenAI() as srv:
        url = srv.base_url
    res = cli(["generate", str(notes), "-w", str(tmp_path / "ws")], url)
    assert res.exit_code == 3, res.output
    lines = [line for line in res.stderr.splitlines() if line.startswith("cards: error:")]
    assert len(lines) == 1 and "got no answer (could not connect to the server)" in lines[0]
    assert "Traceback" not in res.output


def test_cli_exit_status_1_when_notes_failed_and_the_summary_is_still_shown(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Show\n\n- first fact is 1 megawatt\n- second fact is 2 megawatts\n")
    with FakeOpenAI(script=["invalid", "invalid"]) as srv:
        res = cli(["generate", str(notes), "-w", str(tmp_path / "ws"), "-c", "1", "--json"], srv.base_url)
        assert res.exit_code == 1, res.output
        summary = json.loads(res.stdout)
        assert summary["total"]["failed"] == 1 and summary["total"]["cards"] == 1
        again = cli(["generate", str(notes), "-w", str(tmp_path / "ws")], srv.base_url)
    assert again.exit_code == 0, again.output  # the failed note was retried and succeeded


# -- item 8: secrets in URLs ---------------------------------------------------------------------

@pytest.mark.parametrize(("url", "shown"), [
    (f"http://127.0.0.1:8080/v1?key={KEY}", "http://127.0.0.1:8080/v1?key=***"),
    (f"http://127.0.0.1:8080/proxy/{KEY}/v1", "http://127.0.0.1:8080/proxy/***/v1"),
    ("https://me:hunter2hunter2@example.org/v1", "https://***@example.org/v1"),
    ("http://h/relay/4f9c2a7b8e1d3f6a9b0c5d2e/v1", "http://h/relay/***/v1"),
    ("http://h/v1?api-version=2024-06-01&token=abc", "http://h/v1?api-version=***&token=***"),
    ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ("http://localhost:11434/v1", "http://localhost:11434/v1"),
    ("https://r.openai.azure.com/openai/deployments/gpt-4o-mini-2024-07-18/",
     "https://r.openai.azure.com/openai/deployments/gpt-4o-mini-2024-07-18/"),
    ("http://h/models/Meta-Llama-3.1-8B-Instruct/v1", "http://h/models/Meta-Llama-3.1-8B-Instruct/v1"),
])
def test_mask_url(url, shown):
    assert mask_url(url) == shown


def test_scrub_masks_urls_keys_and_known_secrets_inside_text():
    text = f"bad key {KEY} at http://h/v1?key=abc for /proxy/{KEY}/v1 (Bearer abc.def) and hunter2hunter2"
    out = scrub(text, ["hunter2hunter2"])
    assert out == "bad key *** at http://h/v1?key=*** for /proxy/***/v1 (Bearer *** and ***"
    assert looks_like_secret("hf_abcdefghijklmnop") and not looks_like_secret("completions")


@pytest.mark.parametrize("suffix", [f"/v1?key={KEY}", f"/proxy/{KEY}/v1", "/v1?key=4f9c2a7b8e1d3f6a9b0c5d2e"])
def test_a_key_in_the_base_url_is_shown_nowhere_when_the_server_says_401(tmp_path, suffix):
    notes = tmp_path / "notes.md"
    notes.write_text("# Show\n\n- the reactor runs at 345 megawatts\n")
    secret = suffix.split("key=")[-1] if "key=" in suffix else KEY
    with FakeOpenAI(api_key="sk-the-right-one") as srv:
        url = f"http://127.0.0.1:{srv.port}{suffix}"
        res = cli(["generate", str(notes), "-w", str(tmp_path / "ws"), "--json"], url, key="sk-wrong-key-123456")
        assert srv.count == 1  # its 401 echoes the key it was sent and the path it was asked for
    assert res.exit_code == 3, res.output
    assert "rejected the API key (HTTP 401)" in res.stderr and "***" in res.stderr
    for text in (res.stdout, res.stderr):
        assert secret not in text and "sk-wrong-key-123456" not in text
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()
                and p.name != "notes.md"]


def test_the_generator_shows_only_the_masked_url():
    g = gen(f"http://me:pw123456@127.0.0.1:9/proxy/{KEY}/v1?key={KEY}")
    assert KEY not in repr(g) and "pw123456" not in repr(g) and "me:" not in repr(g)
    assert g.base_url == "http://***@127.0.0.1:9/proxy/***/v1/?key=***"


# -- item 11: a reply limit, the timeout setting, servers without structured outputs --------------

def test_a_reply_limit_is_sent_sized_for_three_cards_or_as_configured():
    with FakeOpenAI() as srv:
        run(gen(srv), request())
        run(gen(srv, max_tokens=500), request())
    assert srv.requests[0].json["max_completion_tokens"] == 1200
    assert srv.requests[1].json["max_completion_tokens"] == 500
    reasoning = OpenAIGenerator("gpt-5-mini", base_url="http://127.0.0.1:9/v1")
    assert reasoning.max_tokens == 6000  # its hidden reasoning counts against the limit too


def test_a_looping_small_model_stops_at_the_reply_limit():
    with FakeOpenAI(kind="looping") as srv:
        [res] = run(gen(srv, max_tokens=300), request())
    assert res.error == "truncated reply: it reached the 300-token limit (--max-tokens)"
    assert res.requests == 2 and srv.outcomes["ok"] == 2 and srv.outcomes["silent"] == 0


def test_a_looping_small_model_without_a_limit_runs_into_the_deadline():
    # What happened before a limit was sent: the model never finishes, and only the deadline ends it.
    with FakeOpenAI(kind="looping") as srv:
        g = gen(srv, timeout=0.2, max_attempts=1)
        real = g._client.chat.completions.with_raw_response.parse

        async def without_limit(**kw):
            kw.pop("max_completion_tokens")
            return await real(**kw)

        g._client.chat.completions.with_raw_response.parse = without_limit
        [res] = run(g, request())
    assert res.error == "gave up after 1 attempts: no reply within 0.2s" and srv.outcomes["silent"] == 1


def test_llama_cpp_python_falls_back_once_to_json_mode_and_validates_locally():
    said: list[str] = []
    with FakeOpenAI(kind="llama-cpp-python") as srv:
        g = gen(srv, notify=said.append)
        results = run(g, *[request(i) for i in range(8)], concurrency=4)
    assert all(r.ok and len(r.cards) == 1 for r in results), [r.error for r in results]
    assert len(said) == 1 and "refuses response_format json_schema" in said[0] and "JSON mode" in said[0]
    refused = srv.outcomes["refused-500"]
    assert 1 <= refused <= 4  # only the requests already in flight were refused; none was retried as transient
    assert srv.outcomes["ok"] == 8
    later = [r.json for r in srv.requests if r.outcome == "ok"]
    assert all(body["response_format"] == {"type": "json_object"} for body in later)
    assert all('"maxItems": 3' in body["messages"][0]["content"] for body in later)  # the schema in the prompt
    assert all(body["max_tokens"] == body["max_completion_tokens"] == 1200 for body in later)
    # A JSON-mode reply is a different request: it has its own cache key.
    assert {r.key for r in results} == {stable_id(f"key-{i}", "json_object", length=32) for i in range(8)}
    assert g.cache_key("key-0") == results[0].key


def test_a_server_without_any_json_mode_falls_back_to_text():
    said: list[str] = []
    with FakeOpenAI(kind="no-json-mode") as srv:
        results = run(gen(srv, notify=said.append), request(0), request(1), concurrency=1)
    assert all(r.ok for r in results), [r.error for r in results]
    assert len(said) == 2 and "plain text" in said[1]
    assert [r.outcome for r in srv.requests] == ["refused-400", "refused-400", "ok", "ok"]
    assert "response_format" not in srv.requests[-1].json


def test_a_chosen_mode_that_the_server_refuses_stops_the_run():
    with FakeOpenAI(kind="llama-cpp-python") as srv:
        with pytest.raises(GenerationError,
                           match="refuses response_format json_schema.*; try --structured json_object or text"):
            run(gen(srv, structured="json_schema"), request(0))
    assert srv.outcomes == {"refused-500": 1}  # not retried, not downgraded


@pytest.mark.parametrize("mode", ["json_object", "text"])
def test_a_chosen_mode_is_used_from_the_first_request(mode):
    with FakeOpenAI() as srv:
        [res] = run(gen(srv, structured=mode), request())
    assert res.ok and srv.count == 1
    fmt = srv.requests[0].json.get("response_format")
    assert fmt == ({"type": "json_object"} if mode == "json_object" else None)


def test_max_tokens_is_not_sent_to_openai_itself_which_refuses_it_for_reasoning_models():
    local = gen("http://127.0.0.1:9/v1", structured="json_object")
    remote = OpenAIGenerator("gpt-5-mini", base_url="https://api.openai.com/v1", structured="json_object")
    assert local._send_max_tokens and not remote._send_max_tokens


def test_bounds_hold_in_json_mode_too():
    with FakeOpenAI(responder=lambda body: {"cards": [card()] * 4}) as srv:
        [res] = run(gen(srv, structured="json_object"), request())
    assert res.error.startswith("invalid reply: cards: List should have at most 3")


def test_cli_falls_back_with_one_line_and_caches_under_the_mode(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Show\n\n" + "".join(f"- fact {i} is {i} megawatts\n" for i in range(4)))
    with FakeOpenAI(kind="llama-cpp-python") as srv:
        res = cli(["generate", str(notes), "-w", str(tmp_path / "ws"), "-c", "2"], srv.base_url)
    assert res.exit_code == 0, res.output
    assert res.stderr.count("refuses response_format json_schema") == 1
    with sqlite3.connect(tmp_path / "ws" / "cards.sqlite") as con:
        keys = {k for (k,) in con.execute("SELECT key FROM responses")}
        gen_keys = {k for (k,) in con.execute("SELECT key FROM generations WHERE ok=1")}
    assert len(keys) == 4 and keys == gen_keys


# -- settings -------------------------------------------------------------------------------------

def test_timeout_max_tokens_and_mode_come_from_flags_env_and_cards_toml(tmp_path, monkeypatch):
    (tmp_path / "cards.toml").write_text('[settings]\ntimeout = 12\nmax_tokens = 900\nstructured = "text"\n')
    s = build_settings(tmp_path / "cards.toml")
    assert (s.timeout, s.max_tokens, s.structured) == (12.0, 900, "text")
    s = build_settings(tmp_path / "cards.toml", timeout=2.5, max_tokens=400, structured="json_object")
    assert (s.timeout, s.max_tokens, s.structured) == (2.5, 400, "json_object")
    default = build_settings(tmp_path / "none.toml")
    assert (default.timeout, default.max_tokens, default.structured) == (60.0, None, "auto")


@pytest.mark.parametrize(("toml", "message"), [
    ("timeout = 0", "timeout must be more than 0"),
    ("timeout = \"soon\"", "timeout must be a number"),
    ("max_tokens = 5", "max tokens must be between"),
    ("structured = \"xml\"", "structured must be one of auto, json_schema, json_object, text"),
])
def test_bad_settings_are_refused(tmp_path, toml, message):
    (tmp_path / "cards.toml").write_text(f"[settings]\n{toml}\n")
    with pytest.raises(ConfigError, match=message):
        build_settings(tmp_path / "cards.toml")


def test_cli_options_reach_the_request(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Show\n\n- the reactor runs at 345 megawatts\n")
    with FakeOpenAI() as srv:
        res = cli(["generate", str(notes), "-w", str(tmp_path / "ws"), "--max-tokens", "700",
                   "--structured", "json_object", "--timeout", "9"], srv.base_url)
        bad = cli(["generate", str(notes), "-w", str(tmp_path / "ws"), "--structured", "yaml"], srv.base_url)
    assert res.exit_code == 0, res.output
    body = srv.requests[0].json
    assert body["max_completion_tokens"] == 700 and body["response_format"] == {"type": "json_object"}
    assert bad.exit_code == 2 and "structured must be one of" in bad.stderr and srv.count == 1


def cli(args: list[str], base_url: str | None = None, key: str = KEY):
    if base_url is not None:
        args = [*args, "--base-url", base_url]
    with no_network():
        return runner.invoke(app, args, env={"OPENAI_API_KEY": key})


# -- replies stored before the bounds ---------------------------------------------------------------

class _OldReplies:
    """A generator whose stored replies predate the bounds: four cards, where three is the most."""

    name = "older"

    def __init__(self, model: str):
        self.model = model

    async def generate(self, request: Request) -> Result:
        over = json.dumps({"cards": [card(front=f"Q{i}?") for i in range(4)]})
        return Result(note_id=request.note.id, key=request.key, cards=CardSet.model_validate(
            {"cards": [card()]}).cards, raw=over)

    async def aclose(self) -> None:
        return None


def test_a_stored_reply_over_the_bounds_is_asked_again_not_a_crash(tmp_path):
    from cards.pipeline import generate, load

    notes = tmp_path / "notes.md"
    notes.write_text("# Show\n\n- the reactor runs at 345 megawatts\n")
    with FakeOpenAI() as srv:
        s = build_settings(tmp_path / "none.toml", workspace=str(tmp_path / "ws"), base_url=srv.base_url,
                           api_key=KEY)
        loaded = load([notes], [], s)
        generate(loaded, s, generator=_OldReplies(s.model))
        with no_network():
            summary = generate(loaded, s)
    assert srv.count == 1  # the stored reply did not validate, so the note was asked again
    assert summary.total["cards"] == 1 and summary.failures == []


def test_the_offline_generator_survives_a_note_line_past_the_bounds(tmp_path):
    notes = tmp_path / "notes.md"
    # The first bullet's first line would be its card's quote: 1,400 characters, past the 1,000 allowed.
    notes.write_text("# Show\n\n- chain of thought is adaptive compute. "
                     + "the speakers talked about this idea at length. " * 30 + "\n"
                     "- chain of thought is adaptive compute\n")
    res = runner.invoke(app, ["generate", str(notes), "-w", str(tmp_path / "ws"), "--offline", "--json"])
    assert res.exit_code == 0, res.output
    # The long line keeps its card, with its quote cut (verbatim) to the bound; the other line makes one too.
    assert json.loads(res.stdout)["total"]["cards"] == 2
    drafts = json.loads(runner.invoke(app, ["drafts", "-w", str(tmp_path / "ws"), "--json"]).stdout)
    assert all(len(d["quote"]) <= 1000 for d in drafts)
    assert max(len(d["quote"]) for d in drafts) == 1000
