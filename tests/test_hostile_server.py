"""A hostile server, settings and arguments: each ends in one line and a documented status, never a traceback.

One test (or one table) per point, through the real openai SDK talking HTTP to tests/fakeserver.py
and, where the point is what the person sees, through the real `cards` command. Waits go through
an injected sleep and clock; nothing here asserts wall-clock time.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest
from fakeserver import KEY, FakeOpenAI, no_network, offline_env, rate_limited, redirect  # noqa: F401
from fakeserver import generator_for as gen
from fakeserver import note_request as request
from typer.testing import CliRunner

from cards.cli import app
from cards.config import build_settings
from cards.errors import ConfigError, GenerationError
from cards.generate.base import Request, Result
from cards.generate.openai import OpenAIGenerator
from cards.redact import scrub

TAIL = KEY.removeprefix("sk-")  # what a server that strips the prefix echoes
runner = CliRunner()


@pytest.fixture(autouse=True)
def _offline(offline_env):  # noqa: F811 - the fixture imported above
    """Only loopback is reachable."""


def run(g: OpenAIGenerator, *requests: Request) -> list[Result]:
    async def main() -> list[Result]:
        try:
            return [await g.generate(r) for r in requests]  # one at a time: the script's order is the notes'
        finally:
            await g.aclose()

    return asyncio.run(main())


def notes_file(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "notes.md"
    path.write_text("# Ada Quill on Reactor Talk\n\n"
                    + "".join(f"- fact {i}: the reactor in town {i} runs at {300 + i} megawatts\n" for i in range(n)),
                    encoding="utf-8")
    return path


def cli(args: list, base_url: str | None = None, env: dict | None = None):
    args = [str(a) if isinstance(a, Path) else a for a in args]
    if base_url is not None:
        args = [*args, "--base-url", base_url]
    with no_network():
        return runner.invoke(app, args, env={"OPENAI_API_KEY": KEY, **(env or {})})


def one_error(result, *words: str, code: int = 2) -> str:
    """The single error line of a failed run, naming every one of `words`."""
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("cards: error:")]
    assert len(lines) == 1, result.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def drafts_of(ws: Path) -> list[dict]:
    res = runner.invoke(app, ["drafts", "-w", str(ws), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


# -- 8: a reply that breaks the parser or the store is that note's failure ------------------------------

@pytest.mark.parametrize(("outcome", "reason"), [
    ("nested", "invalid reply: JSON nested too deeply"),
    ("bad-usage", "invalid reply: usage.prompt_tokens is 9,223,372,036,854,775,808, past any real count"),
])
def test_8_a_reply_nested_deep_or_with_an_impossible_token_count_fails_only_its_note(tmp_path, outcome, reason):
    notes, ws = notes_file(tmp_path), tmp_path / "ws"
    with FakeOpenAI(script=[outcome, outcome]) as srv:  # the first note, and the one retry of a bad reply
        res = cli(["generate", notes, "-w", ws, "-c", "1", "--json"], srv.base_url)
    assert "Traceback" not in res.output and res.exit_code == 1, res.output
    summary = json.loads(res.stdout)
    assert [f["error"] for f in summary["failures"]] == [reason]
    assert summary["total"]["notes"] == 3 and summary["total"]["cards"] == 2  # the other notes' results
    assert summary["total"]["tokens_in"] < 10_000  # the bogus count reached no sum
    assert len(drafts_of(ws)) == 2


def test_8_nothing_unexpected_from_a_reply_escapes_as_the_end_of_the_run(monkeypatch):
    import cards.generate.openai as client

    def broken(result, response):
        raise KeyError("a parser bug nobody foresaw")

    monkeypatch.setattr(client, "_add_usage", broken)
    with FakeOpenAI() as srv:
        [res] = run(gen(srv), request())
    assert res.error == "failed: unexpected KeyError while reading the reply" and res.cards == []


# -- 9: the base URL is checked once, before anything is sent -----------------------------------------

@pytest.mark.parametrize(("url", "words"), [
    ("http://127.0.0.1:9/v1\n", ["base URL", "line break at the end"]),
    ("http://[::1", ["base URL", "unclosed ["]),
    ("http://127.0.0.1:99999/v1", ["base URL", "port"]),
    ("not-a-url", ["base URL", "'not-a-url'", "no http:// or https://"]),
    ("file:///etc/passwd", ["base URL", "file://"]),
    ("http:///v1", ["base URL", "no host"]),
])
def test_9_a_bad_base_url_is_one_settings_line_before_any_request(tmp_path, url, words):
    res = cli(["generate", notes_file(tmp_path), "-w", tmp_path / "ws"], url)
    one_error(res, *words, code=2)
    assert not (tmp_path / "ws").exists()  # refused before the workspace, or any note, was touched


def test_9_the_check_keeps_secrets_masked_and_takes_good_urls_as_they_are():
    from cards.config import check_base_url

    with pytest.raises(ConfigError) as e:
        check_base_url(f"{KEY}/v1")  # the key pasted where the URL goes
    assert TAIL not in str(e.value)
    with pytest.raises(ConfigError) as e:
        check_base_url(f"http://me:{KEY}@host:99999/v1")
    assert TAIL not in str(e.value)
    for good in ("http://[::1]:8000/v1", "https://api.openai.com/v1", "http://localhost:11434/v1"):
        assert check_base_url(good) == good
    assert build_settings(Path("none.toml"), base_url="").base_url is None  # OPENAI_BASE_URL= means unset
    with pytest.raises(ConfigError, match="base URL"):
        OpenAIGenerator("m", base_url="file:///etc/passwd")  # the library checks it too


# -- 10: cards.toml of the wrong shape, too deep, or with keys nobody reads -----------------------------

@pytest.mark.parametrize(("toml", "words"), [
    ("settings = 5\n", ["cards.toml", "settings must be a table"]),
    ("episodes = [1, 2]\n", ["cards.toml", "episodes must be a table"]),
    ("prices = 'free'\n", ["cards.toml", "prices must be a table"]),
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", ["cards.toml", "nested too deeply"]),
    ("[settings]\nmodle = 'gpt-4.1-mini'\n", ["cards.toml", "unknown key: [settings] modle (did you mean model?)"]),
    ("[setting]\nmodel = 'gpt-4.1-mini'\n", ["cards.toml", "setting (did you mean settings?)"]),
    ("[episodes.ep]\ntitel = 'X'\nfoo = 1\n",
     ["cards.toml", "unknown keys: [episodes.ep] titel (did you mean title?), [episodes.ep] foo"]),
])
def test_10_a_bad_cards_toml_is_one_line_naming_the_file_and_key(tmp_path, toml, words):
    (tmp_path / "cards.toml").write_text(toml, encoding="utf-8")
    res = cli(["generate", notes_file(tmp_path), "-w", tmp_path / "ws", "--offline"])
    one_error(res, *words, code=2)
    assert not (tmp_path / "ws").exists()


# -- 11: arguments that are not UTF-8 ----------------------------------------------------------------------

def test_11_a_non_utf8_argument_is_refused_by_name_and_changes_nothing(tmp_path):
    notes, ws = notes_file(tmp_path, 1), tmp_path / "ws"
    assert cli(["generate", notes, "-w", ws, "--offline"]).exit_code == 0
    [draft] = drafts_of(ws)
    bad = b"caf\xe9 {{c1::x}}".decode("utf-8", "surrogateescape")  # what the shell hands over for $'caf\xe9'
    one_error(cli(["edit", draft["id"], "--front", bad, "-w", ws]), "--front", r"'caf\xe9 {{c1::x}}'", "UTF-8")
    assert drafts_of(ws) == [draft]
    path = tmp_path / b"n\xe9.md".decode("utf-8", "surrogateescape")
    one_error(cli(["generate", path, "-w", ws, "--offline"]), "NOTES", r"n\xe9.md", "rename the file")
    one_error(cli(["generate", notes, "-w", ws, "--offline"], env={"CARDS_MODEL": bad}), "--model (or CARDS_MODEL)")


# -- 16: a server that asks to wait an hour ----------------------------------------------------------------

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC, the injected clock


def test_16_repeated_long_retry_after_stops_the_run_and_says_when_to_retry():
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    with FakeOpenAI(script=["ok", *[rate_limited(3600)] * 10]) as srv:
        g = gen(srv, sleep=sleep, clock=lambda: NOW)
        with pytest.raises(GenerationError) as e:
            run(g, request(0), request(1), request(2))
    assert "asked 3 times in a row to wait 3,600 s" in str(e.value)
    assert "retry after 2027-01-15 09:00 UTC" in str(e.value)
    assert srv.count == 4 and waits == [20.0, 20.0]  # not 8 attempts x 20 s for every note


def test_16_a_retry_after_date_is_read_against_the_injected_clock_and_short_waits_are_honoured():
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(NOW + 7200))
    script = [rate_limited(2), rate_limited(when), "ok", rate_limited(when), rate_limited(when), rate_limited(when)]
    with FakeOpenAI(script=script) as srv:
        g = gen(srv, sleep=sleep, clock=lambda: NOW)
        with pytest.raises(GenerationError, match="retry after 2027-01-15 10:00 UTC"):
            run(g, request(0), request(1))
    # A short wait is honoured; the answer in between resets the count, so three more were needed.
    assert waits[:2] == [2.0, 20.0] and srv.count == 6


def test_16_the_results_before_the_stop_are_kept_and_the_run_is_marked_stopped(tmp_path):
    from cards.pipeline import generate, load

    notes = notes_file(tmp_path)
    with FakeOpenAI(script=["ok", *[rate_limited(3600)] * 10]) as srv:
        s = build_settings(tmp_path / "none.toml", workspace=str(tmp_path / "ws"), base_url=srv.base_url,
                           api_key=KEY, concurrency=1)
        loaded = load([notes], [], s)
        with no_network(), pytest.raises(GenerationError, match="retry after"):
            generate(loaded, s, generator=gen(srv, clock=lambda: NOW))
    assert len(drafts_of(tmp_path / "ws")) == 1
    with sqlite3.connect(tmp_path / "ws" / "cards.sqlite") as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("stopped",)]


# -- 17: redirects ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [307, 308, 302])
def test_17_a_redirect_to_another_origin_is_not_followed(tmp_path, status):
    with FakeOpenAI() as elsewhere:
        target = f"{elsewhere.base_url}/chat/completions"
        with FakeOpenAI(script=[redirect(target, status)] * 3) as srv:
            res = cli(["generate", notes_file(tmp_path), "-w", tmp_path / "ws"], srv.base_url)
        line = one_error(res, f"redirects (HTTP {status}) to another server", target, code=3)
        assert "--base-url" in line
        assert elsewhere.count == 0  # the notes never went there


def test_17_a_redirect_within_the_same_origin_is_still_followed():
    with FakeOpenAI() as srv:
        srv.enqueue(redirect(f"http://127.0.0.1:{srv.port}/chat/completions", 308), "ok")
        [res] = run(gen(srv), request())
    assert res.ok and [r.path for r in srv.requests] == ["/v1/chat/completions", "/chat/completions"]


# -- 20: a server echoing the key without its sk- prefix ---------------------------------------------------

def test_20_an_echo_of_the_keys_tail_is_neither_printed_nor_stored(tmp_path):
    ws = tmp_path / "ws"
    with FakeOpenAI(script=["echo-key"] * 3) as srv:
        res = cli(["generate", notes_file(tmp_path), "-w", ws, "-c", "1"], srv.base_url)
    assert res.exit_code == 1, res.output
    assert "Invalid request for account key proj-***" in res.stderr
    for shown in (TAIL, KEY[-8:]):
        assert shown not in res.output
        assert all(shown.encode() not in p.read_bytes() for p in ws.iterdir() if p.is_file())


def test_20_an_echo_inside_the_cards_is_masked_before_the_workspace_and_the_deck(tmp_path):
    card = {"claim": 1, "kind": "basic", "front": f"What key ends in {KEY[-10:]}?", "back": f"The key {TAIL}",
            "quote": "The reactor runs at 345 MW.", "tags": ["sk-learn"]}
    ws = tmp_path / "ws"
    with FakeOpenAI(responder=lambda body: {"claims": [f"The key {TAIL} is a claim."], "cards": [card]}) as srv:
        res = cli(["generate", notes_file(tmp_path, 1), "-w", ws], srv.base_url)
    assert res.exit_code == 0, res.output
    [d] = drafts_of(ws)  # what export writes into the deck
    assert (d["front"], d["back"], d["tags"]) == ("What key ends in ***?", "The key proj-***", ["sk-learn"])
    assert d["claim"] == "The key proj-*** is a claim."  # the claim is stored with the card: masked too
    assert all(KEY[-8:].encode() not in p.read_bytes() for p in ws.iterdir() if p.is_file())


def test_20_any_stretch_of_eight_or_more_of_the_keys_characters_is_masked():
    from cards.redact import mask_secrets

    assert scrub(f"key {TAIL} rejected", [KEY]) == "key proj-*** rejected"  # the public prefix may stay
    assert scrub(f"key ...{KEY[-8:]} rejected", [KEY]) == "key ...*** rejected"
    assert scrub(f"key ...{KEY[-7:]}", [KEY]) == f"key ...{KEY[-7:]}"  # seven characters say nothing
    assert mask_secrets("sk-learn and sk-proj-other", [KEY]) == "sk-learn and sk-proj-other"
