"""OpenAIGenerator against a fake OpenAI-compatible server over real HTTP, through the real SDK."""

from __future__ import annotations

import asyncio
import json

import pytest
from fakeserver import FakeOpenAI, NetworkBlocked, fake_openai, no_network, offline_env  # noqa: F401

from cards.errors import GenerationError
from cards.generate.base import Request, Result
from cards.generate.openai import OpenAIGenerator, _retry_after
from cards.models import NoteItem, Source
from cards.schema import Card

KEY = "sk-test-0123456789abcdef-SECRET"
SYSTEM = "You write flashcards. " * 20


@pytest.fixture(autouse=True)
def _offline(offline_env):  # noqa: F811 - the fixture imported above
    """Every test here runs with only loopback reachable."""


async def _no_sleep(seconds: float) -> None:
    """Backoff without the wait, so retries cost no wall-clock time."""


def make_request(n: int = 0, note: str = "v3 has 256 experts in every MoE layer") -> Request:
    item = NoteItem(
        id=f"note{n:04d}",
        episode="ep-1",
        text=note,
        kind="bullet",
        section=None,
        sources=(Source("notes.md", n + 1, n + 1),),
        position=n,
    )
    user = (
        f"<note>{note}</note>\n"
        "<passage>DeepSeek V3 uses 256 routed experts per layer, and eight are active per token.</passage>"
    )
    return Request(
        note=item,
        context=None,
        episode_title="Episode 1",
        messages=({"role": "system", "content": SYSTEM}, {"role": "user", "content": user}),
        key=f"key-{n}",
    )


def make_gen(srv: FakeOpenAI, **kw) -> OpenAIGenerator:
    kw.setdefault("sleep", _no_sleep)
    return OpenAIGenerator("fake-model", base_url=srv.base_url, api_key=KEY, timeout=5.0, **kw)


def run(gen: OpenAIGenerator, *requests: Request, concurrency: int = 8) -> list[Result]:
    async def main() -> list[Result]:
        gate = asyncio.Semaphore(concurrency)

        async def one(r: Request) -> Result:
            async with gate:
                return await gen.generate(r)

        try:
            return await asyncio.gather(*(one(r) for r in requests))
        finally:
            await gen.aclose()

    return asyncio.run(main())


def test_happy_path_parses_cards_counts_usage_and_sends_a_strict_schema():
    with FakeOpenAI() as srv:
        [res] = run(make_gen(srv), make_request())
    assert res.ok and res.error is None
    assert res.requests == 1 and srv.count == 1
    assert len(res.cards) == 1 and isinstance(res.cards[0], Card)
    card = res.cards[0]
    assert card.kind == "basic"
    assert card.front == "What did the note say about v3 has 256 experts in every?"
    assert card.quote == "DeepSeek V3 uses 256 routed experts per layer,"
    assert res.tokens_in > 0 and res.tokens_out > 0 and res.cached_tokens == 0
    assert json.loads(res.raw) == {"claims": ["The note says v3 has 256 experts in every."],
                                   "cards": [card.model_dump()]}
    assert res.note_id == "note0000" and res.key == "key-0"

    sent = srv.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.json["model"] == "fake-model"
    assert sent.json["messages"] == [dict(m) for m in make_request().messages]
    fmt = sent.json["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "CardSet" and fmt["json_schema"]["strict"] is True
    assert "cards" in fmt["json_schema"]["schema"]["properties"]
    assert "temperature" not in sent.json  # left to the server unless configured


def test_temperature_is_sent_only_when_configured():
    with FakeOpenAI() as srv:
        run(make_gen(srv, temperature=0.2), make_request())
    assert srv.requests[0].json["temperature"] == 0.2


def test_cached_tokens_are_read_from_usage_details():
    with FakeOpenAI() as srv:
        results = run(make_gen(srv), make_request(0), make_request(1), concurrency=1)
    assert results[0].cached_tokens == 0
    assert results[1].cached_tokens == len(SYSTEM) // 4


@pytest.mark.parametrize("failure", ["429", "429-bare", "500", "503", "408", "409", "drop"])
def test_transient_failures_are_retried(failure):
    with FakeOpenAI(script=[failure, failure, "ok"]) as srv:
        [res] = run(make_gen(srv), make_request())
    assert res.ok, res.error
    assert res.requests == 3 and srv.count == 3
    assert len(res.cards) == 1
    assert res.tokens_in > 0  # only the successful attempt reported usage


def test_retry_after_is_honoured_and_capped():
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    script = [
        {"status": 429, "headers": {"Retry-After": "3"}, "body": {"error": {"message": "slow down"}}},
        {"status": 503, "headers": {"retry-after-ms": "250"}, "body": {"error": {"message": "busy"}}},
        {"status": 429, "headers": {"Retry-After": "600"}, "body": {"error": {"message": "much later"}}},
        "ok",
    ]
    with FakeOpenAI(script=script) as srv:
        [res] = run(make_gen(srv, sleep=sleep, backoff_max=20.0), make_request())
    assert res.ok and res.requests == 4
    assert waits == [3.0, 0.25, 20.0]


def test_backoff_without_retry_after_is_exponential_with_full_jitter():
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    with FakeOpenAI(script=["500"] * 5 + ["ok"]) as srv:
        gen = make_gen(srv, sleep=sleep, backoff_base=0.5, backoff_max=4.0, rng=lambda: 1.0)
        [res] = run(gen, make_request())
    assert res.ok
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0]  # the jitter ceiling doubles up to the cap


def test_retry_after_parsing():
    assert _retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert _retry_after({"retry-after": "2"}) == 2.0
    assert _retry_after({"retry-after": "soon"}) is None
    assert _retry_after({}) is None
    assert _retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) < 0  # a past date: no wait


def test_giving_up_after_max_attempts_is_recorded_not_raised():
    with FakeOpenAI(script=["503"] * 10) as srv:
        [res] = run(make_gen(srv, max_attempts=4), make_request())
    assert not res.ok and res.cards == []
    assert res.error.startswith("gave up after 4 attempts: HTTP 503")
    assert res.requests == 4 and srv.count == 4


def test_a_quarter_of_requests_failing_at_random_still_completes_every_note():
    notes = [make_request(i, f"note number {i} about experts") for i in range(60)]
    with FakeOpenAI(fail_rate=0.25, latency=0.005, seed=7) as srv:
        results = run(make_gen(srv), *notes, concurrency=8)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert [r.note_id for r in results] == [n.note.id for n in notes]
    failures = sum(n for outcome, n in srv.outcomes.items() if outcome != "ok")
    assert failures > 0 and srv.outcomes["ok"] == 60
    assert sum(r.requests for r in results) == srv.count == 60 + failures
    assert srv.outcomes["drop"] > 0  # dropped connections were among the faults


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("refusal", "refused: I'm sorry, but I can't help with that."),
        ("content_filter", "refused: stopped by the server's content filter"),
        ("truncated", "truncated reply: it reached the 1,200-token limit (--max-tokens)"),
        ("invalid", "invalid reply: cards.0.kind: Field required (+6 more)"),
        ("notjson", "invalid reply: not JSON"),
        ("empty", "invalid reply: empty content"),
    ],
)
def test_bad_replies_are_retried_once_then_recorded(bad, error):
    with FakeOpenAI(script=[bad, bad, "ok"]) as srv:
        [res] = run(make_gen(srv), make_request())
    assert res.error == error
    assert res.cards == [] and res.raw is None
    assert res.requests == 2 and srv.count == 2
    assert srv.pending == 1  # the third, good reply was never asked for
    assert res.tokens_out > 0  # the bad replies' usage still counts


@pytest.mark.parametrize("bad", ["refusal", "truncated", "invalid"])
def test_one_bad_reply_then_a_good_one_succeeds(bad):
    with FakeOpenAI(script=[bad, "ok"]) as srv:
        [res] = run(make_gen(srv), make_request())
    assert res.ok and len(res.cards) == 1 and res.requests == 2


def test_a_reply_that_is_not_a_chat_completion_is_a_bad_reply():
    page = {"status": 200, "headers": {}, "body": "<html>captive portal</html>"}
    with FakeOpenAI(script=[page, page]) as srv:
        [res] = run(make_gen(srv), make_request())
    assert res.error == "invalid reply: not a chat completion" and res.requests == 2


def test_a_slow_server_times_out_and_is_retried():
    with FakeOpenAI(latency=0.3) as srv:
        gen = OpenAIGenerator("fake-model", base_url=srv.base_url, api_key=KEY, timeout=0.05,
                              max_attempts=2, sleep=_no_sleep, unreachable_first=9, unreachable_after=9)
        [res] = run(gen, make_request())
    assert res.error == "gave up after 2 attempts: no reply within 0.05s"
    assert res.requests == 2


def test_a_reply_with_no_cards_is_a_success():
    with FakeOpenAI(responder=lambda body: {"claims": [], "cards": []}) as srv:
        [res] = run(make_gen(srv), make_request())
    assert res.ok and res.cards == [] and res.raw == '{"claims":[],"cards":[]}'


@pytest.mark.parametrize("status", ["400", "422"])
def test_a_rejected_request_is_recorded_for_that_note(status):
    with FakeOpenAI(script=[status, "ok"]) as srv:
        [res] = run(make_gen(srv), make_request())
    assert res.error == f"request rejected (HTTP {status}): Fake failure {status}"
    assert res.requests == 1 and srv.count == 1


def test_a_bad_key_raises_without_revealing_it():
    with FakeOpenAI(api_key="sk-the-right-one") as srv:
        gen = make_gen(srv)
        with pytest.raises(GenerationError) as info:
            run(gen, make_request())
    message = str(info.value)
    assert "HTTP 401" in message and "API key" in message
    assert "\n" not in message
    assert KEY not in message and "SECRET" not in message and "sk-" not in message
    assert srv.requests[0].headers["authorization"] == f"Bearer {KEY}"  # the fake did echo it back
    assert KEY not in repr(gen)


@pytest.mark.parametrize(
    ("outcome", "fragment"),
    [("403", "HTTP 403"), ("402", "HTTP 402"), ("quota", "no quota left")],
)
def test_run_wide_failures_raise(outcome, fragment):
    with FakeOpenAI(script=[outcome]) as srv:
        with pytest.raises(GenerationError, match=fragment):
            run(make_gen(srv), make_request())
    assert srv.count == 1  # not retried


def test_unknown_model_raises_with_the_model_name():
    with FakeOpenAI(models=["real-model"]) as srv:
        with pytest.raises(GenerationError, match=r"model 'fake-model' .*HTTP 404"):
            run(make_gen(srv), make_request())


def test_the_key_reaches_the_server_but_never_the_result():
    with FakeOpenAI(api_key=KEY, script=["refusal", "429", "ok"]) as srv:
        [res] = run(make_gen(srv), make_request())
    assert res.ok
    assert {r.headers["authorization"] for r in srv.requests} == {f"Bearer {KEY}"}
    assert KEY not in repr(res) and KEY not in (res.raw or "")


def test_no_key_sends_a_placeholder_for_local_servers():
    with FakeOpenAI() as srv:
        gen = OpenAIGenerator("fake-model", base_url=srv.base_url, api_key=None, sleep=_no_sleep)
        [res] = run(gen, make_request())
    assert res.ok
    assert srv.requests[0].headers["authorization"] == "Bearer not-needed"


def test_an_unreachable_server_gives_up_with_a_short_reason():
    with FakeOpenAI() as srv:
        url = srv.base_url  # the port is free again once the server stops
    # One note's own retries; the run-wide stop for an unreachable server is tested in test_server_faults.
    gen = OpenAIGenerator("fake-model", base_url=url, api_key=KEY, sleep=_no_sleep, max_attempts=3,
                          unreachable_first=9, unreachable_after=9)
    [res] = run(gen, make_request())
    assert res.error == "gave up after 3 attempts: could not connect to the server"


def test_the_guard_blocks_the_network():
    with pytest.raises(NetworkBlocked):
        import socket

        socket.create_connection(("example.com", 443), timeout=1)
    # A generator left on the default base URL would hit api.openai.com; the guard points the
    # SDK's OPENAI_BASE_URL at a closed loopback port instead, and names cannot be resolved.
    gen = OpenAIGenerator("fake-model", base_url=None, api_key=KEY, sleep=_no_sleep, max_attempts=1)
    assert gen.base_url.startswith("http://127.0.0.1:9/")
    [res] = run(gen, make_request())
    assert not res.ok


def test_no_network_context_restores_sockets():
    import socket

    before = socket.getaddrinfo
    with no_network():
        assert socket.getaddrinfo is not before
    assert socket.getaddrinfo is before
