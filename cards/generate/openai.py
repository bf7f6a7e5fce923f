"""The LLM generator: any OpenAI-compatible server through the openai SDK's structured outputs.

This is the only module that imports `openai`. The SDK's own retries are switched off
(`max_retries=0`) so that this module decides what is retried, how long to wait and how
many HTTP attempts a note cost; `Result.requests` is that count.

Failure policy, per note:

- transient (HTTP 408, 409, 429, 5xx, timeouts, refused or dropped connections): retried
  with exponential backoff and full jitter, or after the server's `retry-after-ms` /
  `Retry-After` when it sends one, up to `max_attempts` attempts in all;
- a bad reply (a refusal, a reply cut off at the length limit, a content-filter stop, or
  content that does not validate against `CardSet`): retried once more, then recorded;
- a request the server rejects (HTTP 400, 422 and other 4xx): recorded for that note;
- a run that cannot work at all (HTTP 401, 402, 403, 404, or a 429 saying the quota is
  exhausted): raised as `GenerationError`, since every other note would fail the same way.

Recorded failures become `Result(error=...)`; nothing else escapes `generate`. The API key is
handed to the SDK and kept nowhere else, and server messages are scrubbed of it before they
reach an error message, because some servers echo the key they were sent.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import openai
import pydantic

from cards.errors import GenerationError
from cards.generate.base import Request, Result
from cards.schema import CardSet

log = logging.getLogger(__name__)

# Bad replies (refusal, truncation, schema mismatch) get this many attempts in all.
_BAD_REPLY_ATTEMPTS = 2
_MESSAGE_LIMIT = 200
# Things that look like secrets in a server's message: OpenAI-style keys (also masked ones).
_KEYLIKE = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-*.]{3,}")
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")


class _Transient(Exception):
    """An attempt failed in a way that is worth waiting for and repeating."""

    def __init__(self, reason: str, headers: Mapping[str, str] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.headers = headers


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
        timeout: float = 60.0,
        max_attempts: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        temperature: float | None = None,
        rng: Callable[[], float] = random.random,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.model = model
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        # None leaves the server's default: reasoning models reject any other temperature.
        self.temperature = temperature
        self._sleep = sleep
        self._rng = rng
        # Held in memory only to scrub it out of server messages; never shown, logged or persisted.
        self._secrets = tuple(s for s in (api_key,) if s and len(s) >= 4)
        # Local servers (Ollama, llama.cpp, vLLM) need no key, but the SDK insists on one.
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed",
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
        )
        self.base_url = _without_userinfo(str(self._client.base_url))

    def __repr__(self) -> str:
        return f"OpenAIGenerator(model={self.model!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        await self._client.close()

    async def generate(self, request: Request) -> Result:
        result = Result(note_id=request.note.id, key=request.key)
        bad_replies = 0
        while True:
            result.requests += 1
            attempt = result.requests
            try:
                card_set = await self._attempt(request, result)
            except _Transient as exc:
                if attempt >= self.max_attempts:
                    result.error = f"gave up after {attempt} attempts: {exc.reason}"
                    return result
                delay = self._delay(attempt, exc.headers)
                log.debug("note %s: attempt %d failed (%s); retrying in %.2fs",
                          request.note.id, attempt, exc.reason, delay)
                await self._sleep(delay)
                continue
            except _BadReply as exc:
                bad_replies += 1
                if bad_replies >= _BAD_REPLY_ATTEMPTS or attempt >= self.max_attempts:
                    result.error = exc.reason
                    return result
                log.debug("note %s: attempt %d gave a bad reply (%s); asking again",
                          request.note.id, attempt, exc.reason)
                continue
            except _NoteRejected as exc:
                result.error = exc.reason
                return result
            result.cards = list(card_set.cards)
            result.raw = card_set.model_dump_json()
            return result

    async def _attempt(self, request: Request, result: Result) -> CardSet:
        """One HTTP attempt; returns the cards or raises _Transient, _BadReply, _NoteRejected or GenerationError."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": list(request.messages),
            "response_format": CardSet,
        }
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        try:
            # The raw response keeps the reply's usage even when its content fails to parse.
            raw = await self._client.chat.completions.with_raw_response.parse(**kwargs)
        except openai.APITimeoutError:
            raise _Transient(f"no reply within {self.timeout:g}s") from None
        except openai.APIConnectionError as exc:
            raise _Transient(_connection_reason(exc)) from None
        except openai.APIStatusError as exc:
            self._classify_status(exc)  # raises
            raise  # unreachable: keeps type checkers honest
        except openai.OpenAIError as exc:
            raise _NoteRejected(f"request failed: {self._scrub(str(exc))}") from None

        _add_usage(result, raw.http_response)
        try:
            completion = raw.parse()
            if inspect.isawaitable(completion):  # the SDK plans to make this a coroutine
                completion = await completion
        except openai.LengthFinishReasonError:
            raise _BadReply("truncated reply") from None
        except openai.ContentFilterFinishReasonError:
            raise _BadReply("refused: stopped by the server's content filter") from None
        except pydantic.ValidationError as exc:
            raise _BadReply(f"invalid reply: {_validation_summary(exc)}") from None
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

    def _classify_status(self, exc: openai.APIStatusError) -> None:
        status = exc.status_code
        detail = self._scrub(_server_message(exc)).rstrip(".") or "no message"
        code = _error_code(exc)
        where = f"{self.base_url.rstrip('/')}/chat/completions"
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
        told = _retry_after(headers)
        if told is not None:
            return min(max(told, 0.0), self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** min(attempt - 1, 30))
        return self._rng() * ceiling

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = _BEARER.sub("Bearer ***", text)
        return _KEYLIKE.sub("***", text)


class _NoteRejected(Exception):
    """The server refused this note's request; other notes may still work."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _add_usage(result: Result, response: Any) -> None:
    try:
        usage = response.json().get("usage") or {}
    except (ValueError, AttributeError):
        return
    if not isinstance(usage, dict):
        return
    result.tokens_in += _int(usage.get("prompt_tokens"))
    result.tokens_out += _int(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict):
        result.cached_tokens += _int(details.get("cached_tokens"))


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The wait a server asked for, in seconds, from retry-after-ms or Retry-After (seconds or a date)."""
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
            return when.timestamp() - time.time()
    return None


def _connection_reason(exc: openai.APIConnectionError) -> str:
    cause = exc.__cause__
    name = type(cause).__name__ if cause is not None else ""
    if "Connect" in name:
        return "could not connect to the server"
    if name:
        return f"connection dropped ({name})"
    return "connection error"


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


def _without_userinfo(url: str) -> str:
    # A base URL may carry credentials (https://user:pass@host/v1); never echo them.
    return re.sub(r"(?<=://)[^/@]*@", "", url)


__all__ = ["OpenAIGenerator"]
