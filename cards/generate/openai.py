"""The LLM generator: any OpenAI-compatible server through the openai SDK's structured outputs.

This and `openai_batch.py` (files and batches) are the only modules that import `openai`. The
SDK's own retries are switched off (`max_retries=0`) so that this module decides what is retried,
how long to wait and how many HTTP attempts a note cost; `Result.requests` is that count.

Failure policy, per note:

- transient (HTTP 408, 409, 429, 5xx, timeouts, refused or dropped connections): retried
  with exponential backoff and full jitter, or after the server's `retry-after-ms` /
  `Retry-After` when it sends one, up to `max_attempts` attempts in all;
- a bad reply (a refusal, a reply cut off at the length limit, a content-filter stop, or
  content that does not validate against `CardSet`): retried once more, then recorded;
- a request the server rejects (HTTP 400, 422 and other 4xx): recorded for that note;
- a run that cannot work at all (HTTP 401, 402, 403, 404, or a 429 saying the quota is
  exhausted): raised as `GenerationError`, since every other note would fail the same way;
- a server that asks, again and again, to wait longer than `backoff_max` (a 429 with
  `Retry-After: 3600`): after `long_waits` such replies in a row across the run,
  `GenerationError` saying when to retry, rather than every note retrying into the same wall;
- a redirect to another origin (scheme, host and port): `GenerationError`, never followed, so
  the notes are not sent to a server the user did not name; same-origin redirects are followed;
- a server that cannot be reached: after `unreachable_first` attempts in a row across the run
  that got no answer (connection refused, or nothing within the deadline) while nothing has
  answered yet, or `unreachable_after` once something has, `GenerationError` too, rather than
  waiting out every note's retries.

Bounds, so that no reply can hold a run or fill memory:

- each attempt has an overall deadline (`timeout`), besides the per-read timeout, so a server
  that sends a byte a second cannot hold a request for minutes;
- a reply body larger than `reply_limit` bytes is cut off while it is read (never buffered
  whole) and is that note's bad reply, as is a reply over the bounds of `CardSet`;
- `max_tokens` is sent as the reply limit, so a small model looping inside the JSON shape
  stops there instead of running into the deadline.

Reply formats (`structured`): "json_schema" is the SDK's structured outputs; "json_object"
asks for JSON mode with the schema written into the prompt; "text" asks for nothing and finds
the JSON in the reply. The last two are validated locally with the same pydantic model. In
"auto" (the default) a server whose error names `response_format` or `json_schema` is not
retried: the run falls back, once and said once through `notify`, to json_object, and from
there to text.

Recorded failures become `Result(error=...)`; nothing else escapes `generate`: a reply that
breaks the parser (JSON nested thousands deep) or claims an impossible token count (2^63) is
that note's bad reply, and any other surprise is that note's failure, never the run's end.
The API key is handed to the SDK and kept nowhere else, and server messages, and the cards
themselves, are scrubbed of it (whole, or any 8 or more of its characters, as a server that drops
the `sk-` prefix echoes it) and of the secret parts of the base URL before they reach an error
message or the workspace, because some servers echo what they were sent.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import inspect
import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx2
import openai
import pydantic

from cards.config import DEFAULT_TIMEOUT, STRUCTURED_MODES, check_base_url
from cards.errors import ConfigError, GenerationError
from cards.generate.base import Request, Result
from cards.models import stable_id
from cards.redact import looks_like_secret, mask_secrets, mask_url, scrub
from cards.schema import CardSet

log = logging.getLogger(__name__)

# Bad replies (refusal, truncation, schema mismatch) get this many attempts in all.
_BAD_REPLY_ATTEMPTS = 2
_MESSAGE_LIMIT = 200
MODES = STRUCTURED_MODES
_FALLBACK = {"json_schema": "json_object", "json_object": "text"}
# A refusal of the reply format names the field or the mode in the server's message.
_FORMAT_WORDS = {"json_schema": ("response_format", "json_schema"), "json_object": ("response_format", "json_object")}
DEFAULT_MAX_TOKENS = 1200  # three cards of JSON, with room to spare
# Reasoning models count their hidden reasoning in max_completion_tokens, so they get more room.
REASONING_MAX_TOKENS = 6000
_REASONING = re.compile(r"^(?:gpt-5|o\d)(?:$|[-.])")
DEFAULT_REPLY_LIMIT = 64 * 1024  # bytes of one HTTP reply body
# A token count in a reply's usage above this is not a count (no model takes ten million tokens in
# one request); it would also overflow the workspace's 64-bit sums.
USAGE_LIMIT = 10_000_000


def default_max_tokens(model: str) -> int:
    return REASONING_MAX_TOKENS if _REASONING.match(model) else DEFAULT_MAX_TOKENS


class _Transient(Exception):
    """An attempt failed in a way that is worth waiting for and repeating."""

    def __init__(self, reason: str, headers: Mapping[str, str] | None = None, *, unanswered: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.headers = headers
        self.unanswered = unanswered  # the server was not reached, or said nothing before the deadline


class _FormatRefused(Exception):
    """The server rejected the reply format the attempt asked for."""

    def __init__(self, mode: str, detail: str):
        super().__init__(detail)
        self.mode = mode
        self.detail = detail


class _ReplyTooLarge(Exception):
    """The reply body passed the size limit while it was read."""


class _CrossOriginRedirect(Exception):
    """The server redirected the request to another origin; the redirect was not followed."""

    def __init__(self, status: int, target: str):
        super().__init__(target)
        self.status = status
        self.target = target  # masked


class _BadReply(Exception):
    """The server answered, but not with usable cards."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class OpenAIGenerator:
    """Cards from an OpenAI-compatible chat completions endpoint, one request per note."""

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        temperature: float | None = None,
        rng: Callable[[], float] = random.random,
        max_tokens: int | None = None,
        structured: str = "auto",
        reply_limit: int | None = None,
        unreachable_after: int = 4,
        unreachable_first: int = 2,
        read_timeout: float | None = None,
        notify: Callable[[str], None] | None = None,
        long_waits: int = 3,
        clock: Callable[[], float] = time.time,
        reply_model: type[pydantic.BaseModel] = CardSet,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if structured not in MODES:
            raise ValueError(f"structured must be one of {', '.join(MODES)}")
        self.model = model
        # The schema replies are held to: cards, or another reply such as a transcript's claims.
        self.reply_model = reply_model
        self.timeout = timeout  # the overall deadline of one attempt, in seconds
        self.max_tokens = max_tokens or default_max_tokens(model)
        self.structured = structured
        self._mode = "json_schema" if structured == "auto" else structured
        # Room for three capped cards, or for what the token limit allows (about 4 bytes a token, doubled).
        self.reply_limit = reply_limit or max(DEFAULT_REPLY_LIMIT, self.max_tokens * 8)
        # Attempts in a row without any answer that stop the run: fewer while nothing has answered yet.
        self.unreachable_after = unreachable_after
        self.unreachable_first = min(unreachable_first, unreachable_after)
        self._unanswered = 0  # attempts in a row, across the run, that got no answer at all
        # Replies in a row, across the run, asking to wait longer than backoff_max; enough stop the run.
        self.long_waits = long_waits
        self._long_waits = 0
        self._retry_at = 0.0  # the latest time such a reply named
        self._clock = clock
        self._ever_answered = False
        self._notify = notify or (lambda message: log.warning("%s", message))
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        # None leaves the server's default: reasoning models reject any other temperature.
        self.temperature = temperature
        self._sleep = sleep
        self._rng = rng
        # Held in memory only to scrub them out of server messages; never shown, logged or persisted.
        self._secrets = tuple(s for s in (api_key, *_url_secrets(base_url)) if s and len(s) >= 4)
        read = read_timeout if read_timeout is not None else timeout
        limit = self.reply_limit

        async def cap_reply(response: Any) -> None:
            response.stream = _CappedStream(response.stream, limit)
            length = response.headers.get("content-length")
            if length and length.isdigit() and int(length) > limit:
                raise _ReplyTooLarge(int(length))

        async def same_origin_only(response: Any) -> None:
            # Runs before the client follows a redirect: a 307/308 would re-send the notes to whatever
            # server the Location names, and any other redirect would move the run there.
            target = _redirect_target(response)
            if target is not None and _origin(target) != _origin(response.request.url):
                raise _CrossOriginRedirect(response.status_code, mask_url(str(target)))

        if base_url is not None:
            check_base_url(base_url)  # raises ConfigError, before any client is built
        # Local servers (Ollama, llama.cpp, vLLM) need no key, but the SDK insists on one.
        try:
            self._client = openai.AsyncOpenAI(
                api_key=api_key or "not-needed",
                base_url=base_url,
                max_retries=0,
                timeout=_httpx_timeout(read),
                # The reply cap counts bytes as they arrive; a compressed body would be counted before it
                # expands, so ask for the plain one.
                default_headers={"Accept-Encoding": "identity"},
                http_client=openai.DefaultAsyncHttpxClient(
                    timeout=_httpx_timeout(read), event_hooks={"response": [same_origin_only, cap_reply]}),
            )
        except (ValueError, httpx2.InvalidURL) as e:  # OPENAI_BASE_URL read by the SDK itself, say
            raise ConfigError(f"base URL is not usable: {type(e).__name__}") from None
        # The one form of the server's address that is ever shown.
        self.base_url = mask_url(str(self._client.base_url))
        self._send_max_tokens = self._client.base_url.host != "api.openai.com"

    def __repr__(self) -> str:
        return f"OpenAIGenerator(model={self.model!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        await self._client.close()

    def cache_key(self, key: str) -> str:
        """The response-cache key for a request in the reply format now in use."""
        return _key_for(key, self._mode)

    async def generate(self, request: Request) -> Result:
        result = Result(note_id=request.note.id, key=self.cache_key(request.key))
        bad_replies = 0
        while True:
            result.requests += 1
            attempt = result.requests
            mode = self._mode
            try:
                card_set = await asyncio.wait_for(self._attempt(request, result, mode), self.timeout)
            except (asyncio.TimeoutError, TimeoutError):
                exc = _Transient(f"no reply within {self.timeout:g}s", unanswered=True)
                card_set = None
            except _Transient as e:
                exc, card_set = e, None
            except _FormatRefused as e:
                self._answered()
                self._fall_back(e)  # raises when there is nothing to fall back to
                continue
            except _BadReply as e:
                self._answered()
                bad_replies += 1
                if bad_replies >= _BAD_REPLY_ATTEMPTS or attempt >= self.max_attempts:
                    result.error = e.reason
                    return result
                log.debug("note %s: attempt %d gave a bad reply (%s); asking again",
                          request.note.id, attempt, e.reason)
                continue
            except _NoteRejected as e:
                self._answered()
                result.error = e.reason
                return result
            except _CrossOriginRedirect as e:
                raise GenerationError(
                    f"{self.base_url.rstrip('/')}/chat/completions redirects (HTTP {e.status}) to another "
                    f"server, {e.target}; not followed, so nothing was sent there. If you trust it, use "
                    "that address as --base-url") from None
            except GenerationError:
                raise
            except Exception as e:  # noqa: BLE001 - whatever a reply did, it is this note's failure
                self._answered()
                log.debug("note %s: unexpected %s", request.note.id, self._scrub(_one_line(repr(e))))
                result.error = f"failed: unexpected {type(e).__name__} while reading the reply"
                return result
            if card_set is None:
                self._no_answer(exc)
                if attempt >= self.max_attempts:
                    result.error = f"gave up after {attempt} attempts: {exc.reason}"
                    return result
                delay = self._wait(attempt, exc)
                log.debug("note %s: attempt %d failed (%s); retrying in %.2fs",
                          request.note.id, attempt, exc.reason, delay)
                await self._sleep(delay)
                continue
            self._answered()
            if self._secrets:
                card_set = self._mask_echoes(card_set)
            result.key = _key_for(request.key, mode)  # the format this reply was actually asked in
            result.reply = card_set
            result.cards = list(getattr(card_set, "cards", ()))
            result.raw = card_set.model_dump_json()
            return result

    def _mask_echoes(self, reply: pydantic.BaseModel) -> pydantic.BaseModel:
        """The reply with any echo of the key (or the base URL's secrets) masked in every text: it is
        stored and exported. Only the known secrets: a card about `sk-learn` keeps its words."""
        def mask(value):
            if isinstance(value, str):
                return mask_secrets(value, self._secrets)
            if isinstance(value, list):
                return [mask(v) for v in value]
            if isinstance(value, dict):
                return {k: mask(v) for k, v in value.items()}
            return value

        data = reply.model_dump()
        masked = mask(data)
        return type(reply).model_validate(masked) if masked != data else reply

    def _answered(self) -> None:
        self._unanswered = 0
        self._ever_answered = True
        self._long_waits = 0

    def _wait(self, attempt: int, exc: _Transient) -> float:
        """Seconds to wait before the next attempt; stops the run after `long_waits` replies in a row
        that ask for a wait longer than backoff_max."""
        told = _retry_after(exc.headers, self._clock())
        if told is None or told <= self.backoff_max:
            if not exc.unanswered:
                self._long_waits = 0
            return self._delay(attempt, exc.headers)
        self._long_waits += 1
        told = min(told, _LONGEST_WAIT)  # a server's "1e20 seconds" is still a date we can print
        self._retry_at = max(self._retry_at, self._clock() + told)
        if self._long_waits >= self.long_waits:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(math.ceil(self._retry_at / 60) * 60))
            raise GenerationError(
                f"stopped: {self.base_url.rstrip('/')}/chat/completions asked {self._long_waits} times in a row "
                f"to wait {told:,.0f} s ({_one_line(exc.reason, 80)}); retry after {when}. "
                "Everything finished so far is kept")
        return self._delay(attempt, exc.headers)

    def _no_answer(self, exc: _Transient) -> None:
        """Count attempts that reached no one; enough of them in a row stop the run."""
        if not exc.unanswered:
            self._unanswered = 0  # a 5xx or a dropped connection: someone is there
            self._ever_answered = True
            return
        self._unanswered += 1
        if self._unanswered >= (self.unreachable_after if self._ever_answered else self.unreachable_first):
            where = f"{self.base_url.rstrip('/')}/chat/completions"
            raise GenerationError(
                f"stopped: {self._unanswered} requests in a row to {where} got no answer ({exc.reason}); "
                "check that the server is running and --base-url, or raise --timeout")

    def _fall_back(self, exc: _FormatRefused) -> None:
        """Move the run to the next reply format after a refusal, once, saying so once."""
        if exc.mode != self._mode:
            return  # another request already moved the run on; just ask again in the new format
        nxt = _FALLBACK.get(exc.mode) if self.structured == "auto" else None
        if nxt is None:
            others = [m for m in ("json_object", "text") if m != exc.mode and MODES.index(m) > MODES.index(exc.mode)]
            hint = f"; try --structured {' or '.join(others)}" if others else ""
            raise GenerationError(f"{self.base_url.rstrip('/')}/chat/completions refuses response_format "
                                  f"{exc.mode}: {exc.detail}{hint}")
        self._mode = nxt
        how = "JSON mode with the schema in the prompt" if nxt == "json_object" else "plain text"
        self._notify(f"the server refuses response_format {exc.mode} ({exc.detail}); using {how} for this run, "
                     "validated locally with the same schema")

    async def _attempt(self, request: Request, result: Result, mode: str) -> pydantic.BaseModel:
        """One HTTP attempt; returns the validated reply or raises _Transient, _BadReply, _NoteRejected,
        _FormatRefused or GenerationError."""
        kwargs = self._request_kwargs(request, mode)
        if mode == "json_schema":
            call = self._client.chat.completions.with_raw_response.parse
        else:
            call = self._client.chat.completions.with_raw_response.create
        try:
            # The raw response keeps the reply's usage even when its content fails to parse.
            raw = await call(**kwargs)
        except _ReplyTooLarge:
            raise _BadReply(f"reply too large: over {self.reply_limit // 1024:,} KiB") from None
        except RecursionError:  # the SDK decoding an error body nested thousands deep
            raise _BadReply(_TOO_DEEP) from None
        except openai.APITimeoutError:
            raise _Transient(f"no reply within {self.timeout:g}s", unanswered=True) from None
        except openai.APIConnectionError as exc:
            reason, unanswered = _connection_reason(exc)
            raise _Transient(reason, unanswered=unanswered) from None
        except openai.APIStatusError as exc:
            self._classify_status(exc, mode)  # raises
            raise  # unreachable: keeps type checkers honest
        except openai.OpenAIError as exc:
            raise _NoteRejected(f"request failed: {self._scrub(str(exc))}") from None

        _add_usage(result, raw.http_response)
        return await self._read_reply(raw, mode, self._reply_model_for(request))

    def _reply_model_for(self, request: Request) -> type[pydantic.BaseModel]:
        """The reply schema of a request: its own (the critic's), or the generator's."""
        return getattr(request, "reply_model", None) or self.reply_model

    def _request_kwargs(self, request: Request, mode: str) -> dict[str, Any]:
        """The chat completion parameters of a request in a reply format (the same live and in a batch)."""
        kwargs: dict[str, Any] = {"model": self.model, "messages": list(request.messages),
                                  "max_completion_tokens": self.max_tokens}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if mode == "json_schema":
            kwargs["response_format"] = self._reply_model_for(request)
        else:
            kwargs["messages"] = _with_schema(kwargs["messages"], self._reply_model_for(request))
            if self._send_max_tokens:
                # Servers without structured outputs (llama-cpp-python, older vLLM) read max_tokens instead;
                # OpenAI refuses it for reasoning models, so it is not sent there.
                kwargs["max_tokens"] = self.max_tokens
            if mode == "json_object":
                kwargs["response_format"] = {"type": "json_object"}
        return kwargs

    async def _read_reply(self, raw: Any, mode: str,
                          reply_model: type[pydantic.BaseModel] | None = None) -> pydantic.BaseModel:
        """The validated reply inside a chat completion response, live or from a batch's output file."""
        if mode != "json_schema":
            return self._parse_locally(raw, reply_model or self.reply_model)
        try:
            completion = raw.parse()
            if inspect.isawaitable(completion):  # the SDK plans to make this a coroutine
                completion = await completion
        except openai.LengthFinishReasonError:
            raise _BadReply(self._truncated()) from None
        except openai.ContentFilterFinishReasonError:
            raise _BadReply("refused: stopped by the server's content filter") from None
        except pydantic.ValidationError as exc:
            raise _BadReply(f"invalid reply: {_validation_summary(exc)}") from None
        except RecursionError:
            raise _BadReply(_TOO_DEEP) from None
        except Exception as exc:  # noqa: BLE001 - whatever came back, it is this note's bad reply
            # e.g. a proxy answering 200 with an HTML page, which the SDK cannot turn into a completion
            log.debug("unparseable reply: %s", self._scrub(_one_line(repr(exc))))
            raise _BadReply("invalid reply: not a chat completion") from None

        if not completion.choices:
            raise _BadReply("invalid reply: no choices")
        message = completion.choices[0].message
        if message.refusal:
            raise _BadReply(f"refused: {self._scrub(_one_line(message.refusal))}")
        if message.parsed is None:
            raise _BadReply("invalid reply: empty content")
        return message.parsed

    def _truncated(self) -> str:
        return f"truncated reply: it reached the {self.max_tokens:,}-token limit (--max-tokens)"

    def _parse_locally(self, raw: Any, reply_model: type[pydantic.BaseModel]) -> pydantic.BaseModel:
        """A json_object or text reply, validated with the same model as structured outputs."""
        try:
            completion = raw.parse()
            choice = completion.choices[0] if completion.choices else None
        except RecursionError:
            raise _BadReply(_TOO_DEEP) from None
        except Exception as exc:  # noqa: BLE001 - as above: this note's bad reply
            log.debug("unparseable reply: %s", self._scrub(_one_line(repr(exc))))
            raise _BadReply("invalid reply: not a chat completion") from None
        if choice is None:
            raise _BadReply("invalid reply: no choices")
        if choice.finish_reason == "length":
            raise _BadReply(self._truncated())
        if choice.finish_reason == "content_filter":
            raise _BadReply("refused: stopped by the server's content filter")
        message = choice.message
        if getattr(message, "refusal", None):
            raise _BadReply(f"refused: {self._scrub(_one_line(message.refusal))}")
        content = (message.content or "").strip()
        if not content:
            raise _BadReply("invalid reply: empty content")
        try:
            return reply_model.model_validate_json(_json_part(content))
        except pydantic.ValidationError as exc:
            raise _BadReply(f"invalid reply: {_validation_summary(exc)}") from None
        except RecursionError:
            raise _BadReply(_TOO_DEEP) from None

    def _classify_status(self, exc: openai.APIStatusError, mode: str = "json_schema") -> None:
        status = exc.status_code
        detail = self._scrub(_server_message(exc)).rstrip(".") or "no message"
        code = _error_code(exc)
        where = f"{self.base_url.rstrip('/')}/chat/completions"
        words = _FORMAT_WORDS.get(mode)
        if words and status >= 400 and status not in (401, 402, 403, 404, 429):
            body = self._scrub(_body_text(exc)).lower()
            if any(w in body for w in words):
                raise _FormatRefused(mode, detail) from None
        if status == 429 and code == "insufficient_quota":
            raise GenerationError(f"the account at {where} has no quota left (HTTP 429): {detail}") from None
        if status in (408, 409, 429) or status >= 500:
            label = {408: "request timeout", 409: "conflict", 429: "rate limited"}.get(status, "server error")
            headers = exc.response.headers if exc.response is not None else None
            raise _Transient(f"HTTP {status} {label}" + (f": {detail}" if detail else ""), headers) from None
        if status == 401:
            raise GenerationError(
                f"{where} rejected the API key (HTTP 401): {detail}; check OPENAI_API_KEY"
            ) from None
        if status == 402:
            raise GenerationError(f"{where} asks for payment (HTTP 402): {detail}") from None
        if status == 403:
            raise GenerationError(f"{where} refused access (HTTP 403): {detail}") from None
        if status == 404:
            raise GenerationError(
                f"model {self.model!r} or endpoint not found at {where} (HTTP 404): {detail}; "
                "check --model, and that --base-url ends in /v1"
            ) from None
        raise _NoteRejected(f"request rejected (HTTP {status}): {detail}") from None

    def _delay(self, attempt: int, headers: Mapping[str, str] | None) -> float:
        """Seconds to wait before the next attempt: the server's word if it gave one, else full jitter."""
        told = _retry_after(headers, self._clock())
        if told is not None:
            return min(max(told, 0.0), self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** min(attempt - 1, 30))
        return self._rng() * ceiling

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    # -- the Batch API: the same requests as lines of a file, their replies read the same way --------

    def batch_line(self, request: Request) -> dict:
        """One line of a Batch API input file: this request exactly as it is sent live, keyed by its cache key."""
        from openai.lib._parsing import type_to_response_format_param

        body = self._request_kwargs(request, self._mode)
        if self._mode == "json_schema":
            body["response_format"] = type_to_response_format_param(self.reply_model)
        return {"custom_id": self.cache_key(request.key), "method": "POST", "url": "/v1/chat/completions",
                "body": body}

    @property
    def mode(self) -> str:
        """The reply format requests are made in now."""
        return self._mode

    async def read_batch_line(self, note_id: str, line: dict, mode: str, size: int = 0) -> Result:
        """The result of one line of a batch's output or error file, validated like a live reply."""
        result = Result(note_id=note_id, key=str(line.get("custom_id") or ""), requests=1)
        response = line.get("response") if isinstance(line.get("response"), dict) else None
        error = line.get("error")
        status = response.get("status_code") if response else None
        body = response.get("body") if response else None
        if error or status != 200 or not isinstance(body, dict):
            detail = error if isinstance(error, dict) else body.get("error") if isinstance(body, dict) else None
            message = detail.get("message") if isinstance(detail, dict) else detail
            what = f"HTTP {status}" if isinstance(status, int) else "batch request failed"
            result.error = f"request rejected ({what}): {self._scrub(_one_line(str(message or 'no message')))}"
            return result
        if size > self.reply_limit:
            result.error = f"reply too large: over {self.reply_limit // 1024:,} KiB"
            return result
        stored = _StoredReply(body, self.reply_model, mode)
        _add_usage(result, stored.http_response)
        try:
            parsed = await self._read_reply(stored, mode)
        except _BadReply as e:
            result.error = e.reason
            return result
        result.cards = list(getattr(parsed, "cards", ()))
        result.raw = parsed.model_dump_json()
        return result


class _StoredReply:
    """A chat completion read from a batch output file, shaped like the SDK's raw response."""

    def __init__(self, body: dict, reply_model: type[pydantic.BaseModel], mode: str):
        self.body = body
        self.reply_model = reply_model
        self.mode = mode
        self.http_response = self  # for _add_usage, which reads `.json()`

    def json(self) -> dict:
        return self.body

    def parse(self) -> Any:
        from openai.lib._parsing import parse_chat_completion
        from openai.types.chat import ChatCompletion

        completion = ChatCompletion.model_validate(self.body)
        if self.mode != "json_schema":
            return completion
        return parse_chat_completion(response_format=self.reply_model, input_tools=openai.omit,
                                     chat_completion=completion)


class _NoteRejected(Exception):
    """The server refused this note's request; other notes may still work."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_TOO_DEEP = "invalid reply: JSON nested too deeply"
_LONGEST_WAIT = 366 * 86400.0


def _add_usage(result: Result, response: Any) -> None:
    """Add the reply's token counts to the result; a count past USAGE_LIMIT makes it a bad reply."""
    try:
        usage = response.json().get("usage") or {}
    except RecursionError:
        raise _BadReply(_TOO_DEEP) from None
    except (ValueError, AttributeError):
        return
    if not isinstance(usage, dict):
        return
    details = usage.get("prompt_tokens_details")
    counts = {"prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
              "prompt_tokens_details.cached_tokens": details.get("cached_tokens")
              if isinstance(details, dict) else None}
    for name, value in counts.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > USAGE_LIMIT:
            shown = f"{value:.3g}" if isinstance(value, float) else f"{value:,}" if value < 10**30 else "huge"
            raise _BadReply(f"invalid reply: usage.{name} is {shown}, past any real count")
    result.tokens_in += _int(counts["prompt_tokens"])
    result.tokens_out += _int(counts["completion_tokens"])
    result.cached_tokens += _int(counts["prompt_tokens_details.cached_tokens"])


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """The wait a server asked for, in seconds, from retry-after-ms or Retry-After (seconds or a date,
    counted from `now`, the generator's clock)."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        if math.isfinite(seconds):
            return seconds
    value = headers.get("retry-after")
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is not None:
            return when.timestamp() - (time.time() if now is None else now)
    return None


def _redirect_target(response: Any) -> Any:
    """Where a redirect response points, as a URL; None for any other response (or a bad Location,
    which the client reports itself)."""
    if not response.has_redirect_location:
        return None
    try:
        return response.request.url.join(response.headers["location"])
    except Exception:  # noqa: BLE001 - httpx2 raises its own error for it when it follows
        return None


def _origin(url: Any) -> tuple[str, str, int | None]:
    scheme = url.scheme.lower()
    return scheme, (url.host or "").lower(), url.port or {"http": 80, "https": 443}.get(scheme)


def _connection_reason(exc: openai.APIConnectionError) -> tuple[str, bool]:
    """A short reason, and whether the server was never reached."""
    cause = exc.__cause__
    name = type(cause).__name__ if cause is not None else ""
    if "Connect" in name:
        return "could not connect to the server", True
    if name:
        return f"connection dropped ({name})", False
    return "connection error", False


def _key_for(key: str, mode: str) -> str:
    # Structured-output replies keep the plain key (and so every existing cache entry).
    return key if mode == "json_schema" else stable_id(key, mode, length=32)


def _httpx_timeout(seconds: float) -> Any:
    # Connecting should never take long; reads may, up to the attempt's own deadline.
    return httpx2.Timeout(seconds, connect=min(seconds, 10.0))


class _CappedStream(httpx2.AsyncByteStream):
    """A response body stream that stops with _ReplyTooLarge once it has passed `limit` bytes."""

    def __init__(self, stream: Any, limit: int):
        self._stream = stream
        self._limit = limit

    async def __aiter__(self):
        seen = 0
        async for chunk in self._stream:
            seen += len(chunk)
            if seen > self._limit:
                raise _ReplyTooLarge(seen)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


def _url_secrets(url: str | None) -> list[str]:
    """The parts of a base URL that may be secrets: userinfo, query values, key-like path segments."""
    if not url:
        return []
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [unquote(v) for v in (parts.username, parts.password) if v]
    found += [v for _, v in parse_qsl(parts.query, keep_blank_values=False) if len(v) >= 8]
    found += [seg for seg in parts.path.split("/") if looks_like_secret(seg)]
    if parts.fragment:
        found.append(parts.fragment)
    return found


@functools.cache
def _schema_instruction(model: type[pydantic.BaseModel] = CardSet) -> str:
    schema = json.dumps(model.model_json_schema(), sort_keys=True)
    return "Reply with one JSON object and nothing else. It must match this JSON schema:\n" + schema


def _with_schema(messages: list[dict], model: type[pydantic.BaseModel] = CardSet) -> list[dict]:
    """The messages with the reply schema written into the system message, for JSON mode and text."""
    instruction = _schema_instruction(model)
    out = [dict(m) for m in messages]
    for m in out:
        if m.get("role") == "system" and isinstance(m.get("content"), str):
            m["content"] = f"{m['content']}\n\n{instruction}"
            return out
    return [{"role": "system", "content": instruction}, *out]


def _json_part(content: str) -> str:
    """The JSON object inside a reply that may wrap it in prose or a ``` fence."""
    fence = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", content, re.S)
    if fence:
        return fence.group(1)
    start, end = content.find("{"), content.rfind("}")
    return content[start:end + 1] if 0 <= start < end else content


def _body_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, (dict, list)):
        return json.dumps(body)
    return str(body or exc.message or "")


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body.get("detail")
        if isinstance(message, dict):
            message = message.get("message")
        if message:
            return _one_line(str(message))
    if isinstance(body, str) and body.strip():
        return _one_line(body)
    return _one_line(exc.message or "")


def _error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        for field in ("code", "type"):
            value = body.get(field)
            if value:
                return str(value)
    return exc.code


def _validation_summary(exc: pydantic.ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "does not match the card schema"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "not JSON"
    where = ".".join(str(part) for part in first.get("loc", ())) or "reply"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return _one_line(f"{where}: {first.get('msg', 'invalid')}{more}")


def _one_line(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["DEFAULT_MAX_TOKENS", "MODES", "OpenAIGenerator", "default_max_tokens"]
