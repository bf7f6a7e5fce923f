"""A fake OpenAI-compatible server over real HTTP on 127.0.0.1, for driving the real SDK path.

    with FakeOpenAI(script=["429", "ok"], latency=0.01) as srv:
        gen = OpenAIGenerator("fake-model", base_url=srv.base_url, api_key="sk-test")
        ...
        assert srv.count == 2

Each request is answered by the next scripted outcome, if any are queued, else by chance
(`fail_rate`), else with a normal reply built by `responder`. Outcomes:

    "ok"             a normal reply (responder's payload, finish_reason "stop")
    "429"            rate limited, with Retry-After: 0        "429-bare"  the same without the header
    "quota"          429 insufficient_quota (out of credit)
    "500" "503" ...  any other status code as a string, with an OpenAI-style error body
    "drop"           the connection is closed without a response
    "truncated"      finish_reason "length" and the first half of the JSON
    "refusal"        message.refusal set, content null
    "content_filter" finish_reason "content_filter", content null
    "invalid"        JSON that does not match the CardSet schema
    "notjson"        prose instead of JSON
    "empty"          an empty content string
    "trickle"        a normal reply sent one byte every `trickle` seconds (a server that never quite stalls)
    "huge"           a 200 reply whose content is `huge_bytes` long, sent chunked without a Content-Length
    "silent"         reads the request and never answers (until the client gives up or the server stops)
    "nested"         a 200 reply whose JSON is nested `nested_depth` arrays deep (under the size cap)
    "bad-usage"      a normal reply whose usage.prompt_tokens is 2^63 (past SQLite's integers)
    "echo-key"       HTTP 400 whose message echoes the bearer token without its `sk-` prefix
    dict             a raw reply: {"status": int, "headers": {...}, "body": dict | str}; see
                     `redirect(url)` and `rate_limited(seconds)` for two made this way

Server kinds (`kind=`), imitating the documented behaviour of real local servers:

    "openai"             honours response_format json_schema and json_object (the default)
    "llama-cpp-python"   HTTP 500 with a pydantic validation message for response_format.type
                         "json_schema" ("Input should be 'text' or 'json_object'"); json_object works
    "no-json-mode"       HTTP 400 naming response_format for any response_format; plain text works
    "looping"            a small model that repeats itself inside the JSON shape: the reply runs
                         to max_completion_tokens (or max_tokens) and stops with finish_reason
                         "length"; with no limit sent it never finishes (like "silent")

The Batch API is there too (`batch_api=False` answers 404, like a server without it):
POST /v1/files (multipart, purpose "batch"), GET /v1/files/{id}/content, POST /v1/batches,
GET /v1/batches (the list), GET /v1/batches/{id} and POST /v1/batches/{id}/cancel. Each line
of an input file is answered like a live request (the script, then the responder), when the
batch is first looked at after it was created (`batch_autorun`, the default) or by
`run_batches()`. `batch_order` "reverse" or "shuffle" writes the output out of order;
`batch_limit=N` answers only the first N lines and then ends the batch as `batch_end`
("expired" by default, or "failed"); a cancelled batch keeps the lines answered before the
cancel (`batch_limit`, or none). A scripted status code ("500", "400") puts the line in the
error file.

Replies in text mode (no response_format) wrap the JSON in a sentence and a ```json fence, as
chatty models do.

The module also has `no_network`, a context manager that lets sockets reach loopback only,
and pytest fixtures `fake_openai` and `offline_env` that wrap the two. Import them into a
test module (or conftest.py) to use them: `from fakeserver import fake_openai, offline_env`.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Responder = Callable[[dict], "dict | str"]

_TAG = r"<{name}(?:\s[^<>]*)?>\s*(.*?)\s*</{name}>"
_NOTE_TAGS = ("note", "bullet", "notes")
_PASSAGE_TAGS = ("excerpt", "passage", "context", "transcript")  # a passage's first excerpt when it has them


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]  # lower-cased names
    json: Any
    outcome: str


def _find(text: str, names: Iterable[str]) -> str | None:
    for name in names:
        m = re.search(_TAG.format(name=name), text, re.S | re.I)
        if m and m.group(1).strip():
            return m.group(1).strip()
    return None


def user_text(body: dict) -> str:
    """The text of the last user message (string or content-part list)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def default_responder(body: dict) -> dict:
    """One schema-valid basic card about the note, quoting the passage (or the note) verbatim.

    The note is the text inside <note>…</note> (or <bullet>, <notes>) in the last user
    message and the passage the text inside <passage>…</passage> (or <context>, <transcript>,
    <excerpt>); without those tags the whole user message stands in for both.
    """
    text = user_text(body)
    note = _find(text, _NOTE_TAGS) or text.strip() or "nothing"
    passage = _find(text, _PASSAGE_TAGS) or note
    topic = " ".join(note.split()[:6])
    return {
        "claims": [f"The note says {topic}."],
        "cards": [
            {
                "claim": 1,
                "kind": "basic",
                "front": f"What did the note say about {topic}?",
                "back": " ".join(note.split()[:20]),
                "quote": " ".join(passage.split()[:8]),
                "tags": ["fake"],
            }
        ]
    }


def _approx_tokens(text: str) -> int:
    return len(text) // 4


class FakeOpenAI:
    """A threaded fake of POST /v1/chat/completions (also /chat/completions)."""

    def __init__(
        self,
        *,
        responder: Responder | None = None,
        latency: float = 0.0,
        fail_rate: float = 0.0,
        script: Iterable[str | dict] = (),
        seed: int | None = 0,
        api_key: str | None = None,
        models: Iterable[str] | None = None,
        kind: str = "openai",
        trickle: float = 1.0,
        huge_bytes: int = 50 * 1024 * 1024,
        nested_depth: int = 5000,
        batch_api: bool = True,
        batch_autorun: bool = True,
        batch_order: str = "reverse",
        batch_limit: int | None = None,
        batch_end: str = "expired",
    ):
        """
        responder: request JSON -> CardSet-shaped dict (or a str sent verbatim as content).
        latency: seconds each request waits in its thread before answering.
        fail_rate: chance that an unscripted request fails: 429 (with and without
            Retry-After: 0), 500, 503 or a dropped connection.
        script: outcomes served in order before falling back to chance and the responder.
        seed: seeds the fault-injection dice (None for entropy).
        api_key: when set, any other bearer token gets a 401 whose message echoes the
            token it was sent, as some servers do.
        models: when set, any other model gets a 404 model_not_found.
        kind: which server to imitate (see the module docstring).
        trickle: seconds between bytes for the "trickle" outcome.
        huge_bytes: size of the "huge" outcome's content.
        nested_depth: how deep the "nested" outcome's JSON goes.
        """
        self.responder = responder or default_responder
        self.latency = latency
        self.fail_rate = fail_rate
        self.api_key = api_key
        self.models = set(models) if models is not None else None
        if kind not in ("openai", "llama-cpp-python", "no-json-mode", "looping"):
            raise ValueError(f"unknown server kind {kind!r}")
        self.kind = kind
        self.trickle = trickle
        self.huge_bytes = huge_bytes
        self.nested_depth = nested_depth
        self.bytes_sent: list[int] = []  # per streamed ("trickle", "huge") reply: bytes written before it ended
        self._stopping = threading.Event()
        self._streaming = 0  # streamed replies still being written
        self.requests: list[Recorded] = []
        self.outcomes: Counter[str] = Counter()
        self._script: deque[str | dict] = deque(script)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._streams_done = threading.Condition(self._lock)
        self._seen_prefixes: set[str] = set()
        self._ids = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.batch_api = batch_api
        self.batch_autorun = batch_autorun
        self.batch_order = batch_order
        self.batch_limit = batch_limit
        self.batch_end = batch_end
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_requests: list[dict] = []  # every batch input line, as answered

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # A short poll interval keeps shutdown (and so every test using the server) quick.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._streams_done:  # let streamed replies see the client gone and count what they sent
            self._streams_done.wait_for(lambda: self._streaming == 0, timeout=5)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests look at -----------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not running"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        """Requests received so far."""
        with self._lock:
            return len(self.requests)

    def enqueue(self, *outcomes: str | dict) -> None:
        """Queue more scripted outcomes."""
        with self._lock:
            self._script.extend(outcomes)

    @property
    def pending(self) -> int:
        """Scripted outcomes not yet served."""
        with self._lock:
            return len(self._script)

    # -- serving ------------------------------------------------------------------------

    def _choose(self) -> str | dict:
        with self._lock:
            if self._script:
                return self._script.popleft()
            if self.fail_rate and self._random.random() < self.fail_rate:
                return self._random.choice(["429", "429-bare", "500", "503", "drop"])
            return "ok"

    def _refuses(self, body: dict) -> tuple[int, str] | None:
        """The error a server of this kind gives for the request's response_format, if any."""
        fmt = body.get("response_format")
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind is None:
            return None
        if self.kind == "llama-cpp-python" and kind not in ("text", "json_object"):
            # llama-cpp-python's server wraps the request model's validation error as HTTP 500.
            return 500, ("1 validation error for CreateChatCompletionRequest\nresponse_format.type\n"
                         f"  Input should be 'text' or 'json_object' [type=literal_error, input_value='{kind}',"
                         " input_type=str]")
        if self.kind == "no-json-mode" and kind != "text":
            return 400, f"response_format of type {kind!r} is not supported by this server"
        return None

    def _record(self, path: str, headers: dict[str, str], body: Any, outcome: str) -> None:
        with self._lock:
            self.requests.append(Recorded(path, headers, body, outcome))
            self.outcomes[outcome] += 1

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _usage(self, body: dict, content: str | None) -> dict:
        messages = body.get("messages") or []
        texts = [m.get("content") if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
                 for m in messages]
        prompt = sum(_approx_tokens(t or "") for t in texts)
        # Prompt caching, roughly: the leading system message is cached once it has been seen.
        cached = 0
        if messages and messages[0].get("role") == "system":
            prefix = texts[0] or ""
            with self._lock:
                if prefix in self._seen_prefixes:
                    cached = _approx_tokens(prefix)
                self._seen_prefixes.add(prefix)
        completion = max(1, _approx_tokens(content or ""))
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    def completion(self, body: dict, outcome: str) -> dict:
        """The chat.completion JSON for a successful HTTP reply of the given kind."""
        finish, refusal, content = "stop", None, None
        if outcome in ("refusal", "content_filter"):
            finish = "content_filter" if outcome == "content_filter" else "stop"
            refusal = "I'm sorry, but I can't help with that." if outcome == "refusal" else None
        elif outcome == "invalid":
            content = json.dumps({"cards": [{"question": "What?", "answer": "That."}]})
        elif outcome == "notjson":
            content = "Sure! Here are some cards: Q: what? A: that."
        elif outcome == "empty":
            content = ""
        elif self.kind == "looping":
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            card = json.dumps(default_responder(body)["cards"][0])
            repeats = (int(limit) * 4) // len(card) + 2
            content = ('{"cards": [' + ", ".join([card] * repeats))[: int(limit) * 4]
            finish = "length"
        else:
            payload = self.responder(body)
            content = payload if isinstance(payload, str) else json.dumps(payload)
            if outcome == "truncated":
                content, finish = content[: max(1, len(content) // 2)], "length"
            elif not isinstance(payload, str) and not body.get("response_format"):
                content = f"Here are the cards:\n```json\n{content}\n```\nI hope they help."
        return {
            "id": f"chatcmpl-fake-{self._next_id()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": self._usage(body, content),
        }


class _BatchAPI:
    """Files and batches for FakeOpenAI (mixed in below)."""

    def upload(self: FakeOpenAI, name: str, data: bytes, purpose: str) -> dict:
        fid = f"file-fake-{self._next_id()}"
        with self._lock:
            self.files[fid] = data
        return {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": name, "purpose": purpose, "status": "processed"}

    def create_batch(self: FakeOpenAI, body: dict) -> dict:
        bid = f"batch_fake_{self._next_id()}"
        batch = {"id": bid, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
                 "input_file_id": body.get("input_file_id"), "completion_window": body.get("completion_window"),
                 "status": "validating", "output_file_id": None, "error_file_id": None,
                 "created_at": int(time.time()), "metadata": body.get("metadata"),
                 "request_counts": {"total": 0, "completed": 0, "failed": 0}}
        data = self.files.get(body.get("input_file_id") or "")
        if data is None:
            return {"status": 400, "body": _error(400, "input file not found", "invalid_request_error")}
        batch["request_counts"]["total"] = sum(1 for line in data.splitlines() if line.strip())
        with self._lock:
            self.batches[bid] = batch
        return batch

    def run_batches(self: FakeOpenAI, end: str | None = None) -> None:
        """Answer every batch still running (up to batch_limit lines), then end it."""
        for bid, batch in list(self.batches.items()):
            if batch["status"] in ("validating", "in_progress", "cancelling"):
                self._run_batch(batch, end)

    def _run_batch(self: FakeOpenAI, batch: dict, end: str | None = None) -> None:
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].splitlines() if x.strip()]
        cancelling = batch["status"] == "cancelling"
        limit = self.batch_limit if self.batch_limit is not None else (0 if cancelling else len(lines))
        done, errors = [], []
        for line in lines[:limit]:
            body = line.get("body") or {}
            outcome = self._choose()
            with self._lock:
                self.batch_requests.append({**line, "outcome": outcome})
            rid = f"req_fake_{self._next_id()}"
            if isinstance(outcome, str) and outcome.isdigit():
                status = int(outcome)
                errors.append({"id": f"batch_req_{rid}", "custom_id": line.get("custom_id"),
                               "response": {"status_code": status, "request_id": rid,
                                            "body": _error(status, f"Fake failure {status}", "server_error")},
                               "error": None})
                continue
            reply = self.completion(body, outcome if isinstance(outcome, str) else "ok")
            done.append({"id": f"batch_req_{rid}", "custom_id": line.get("custom_id"),
                         "response": {"status_code": 200, "request_id": rid, "body": reply}, "error": None})
        if cancelling:
            final = "cancelled"
        elif limit < len(lines):
            final = end or self.batch_end
        else:
            final = "completed"
        if final == "expired":
            for line in lines[limit:]:
                errors.append({"id": f"batch_req_x{self._next_id()}", "custom_id": line.get("custom_id"),
                               "response": None, "error": {"code": "batch_expired",
                                                           "message": "This request could not be executed before "
                                                                      "the completion window expired."}})
        if self.batch_order == "reverse":
            done.reverse()
        elif self.batch_order == "shuffle":
            self._random.shuffle(done)

        def file(rows: list[dict]) -> str | None:
            if not rows:
                return None
            return self.upload("out.jsonl", b"".join(json.dumps(r).encode() + b"\n" for r in rows),
                               "batch_output")["id"]

        batch.update(status=final, output_file_id=file(done), error_file_id=file(errors),
                     request_counts={"total": len(lines), "completed": len(done), "failed": len(errors)})

    def look_at_batch(self: FakeOpenAI, bid: str) -> dict | None:
        batch = self.batches.get(bid)
        if batch is not None and self.batch_autorun and batch["status"] in ("validating", "in_progress"):
            self._run_batch(batch)
        elif batch is not None and batch["status"] == "validating":
            batch["status"] = "in_progress"
        elif batch is not None and batch["status"] == "cancelling":
            self._run_batch(batch)
        return batch

    def cancel_batch(self: FakeOpenAI, bid: str) -> dict | None:
        batch = self.batches.get(bid)
        if batch is not None and batch["status"] in ("validating", "in_progress", "finalizing"):
            batch["status"] = "cancelling"
        return batch


FakeOpenAI.upload = _BatchAPI.upload  # type: ignore[attr-defined]
FakeOpenAI.create_batch = _BatchAPI.create_batch  # type: ignore[attr-defined]
FakeOpenAI.run_batches = _BatchAPI.run_batches  # type: ignore[attr-defined]
FakeOpenAI._run_batch = _BatchAPI._run_batch  # type: ignore[attr-defined]
FakeOpenAI.look_at_batch = _BatchAPI.look_at_batch  # type: ignore[attr-defined]
FakeOpenAI.cancel_batch = _BatchAPI.cancel_batch  # type: ignore[attr-defined]


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, bytes)."""
    from email import policy
    from email.parser import BytesParser

    msg = BytesParser(policy=policy.default).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    out = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        out[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return out


def _error(status: int, message: str, type_: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def redirect(url: str, status: int = 307) -> dict:
    """A scripted redirect to `url` (a 307 or 308 keeps the method and re-sends the body)."""
    return {"status": status, "headers": {"Location": url}, "body": ""}


def rate_limited(seconds: float | str) -> dict:
    """A scripted 429 asking the client to wait `seconds` (a number, or an HTTP date)."""
    return {"status": 429, "headers": {"Retry-After": str(seconds)},
            "body": _error(429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded")}


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeOpenAI
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, each reply
    # would wait ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output quiet

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass  # a client that hung up (a size or time limit, or a cancelled run) is not an error here

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        fake = self.server_fake
        path = self.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        listing = "/v1/batches/list" if path == "/v1/batches" else path
        m = re.fullmatch(r"/v1/(files|batches)/([^/]+)(/content)?", listing)
        if fake.batch_api and m:
            fake._record(path, headers, None, "batch-api")
            if m.group(1) == "files" and m.group(3) and m.group(2) in fake.files:
                data = fake.files[m.group(2)]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            if m.group(1) == "batches" and m.group(2) == "list":  # (GET /v1/batches, routed here below)
                data = sorted(fake.batches.values(), key=lambda x: x["id"], reverse=True)
                return self._send(200, {}, {"object": "list", "data": data, "has_more": False,
                                            "first_id": data[0]["id"] if data else None,
                                            "last_id": data[-1]["id"] if data else None})
            if m.group(1) == "batches" and not m.group(3):
                batch = fake.look_at_batch(m.group(2))
                if batch is not None:
                    return self._send(200, {}, batch)
        self._send(404, {}, _error(404, f"Unknown path {self.path}", "invalid_request_error"))

    def _batch_post(self, path: str, headers: dict[str, str], raw: bytes) -> bool:
        """Answer a Batch API call; False if the path is not one."""
        fake = self.server_fake
        if not fake.batch_api:
            return False
        if path == "/v1/files":
            fields = _multipart(headers.get("content-type", ""), raw)
            name, data = fields.get("file", (None, b""))
            purpose = (fields.get("purpose") or (None, b""))[1].decode()
            fake._record(path, headers, {"purpose": purpose, "filename": name}, "batch-api")
            self._send(200, {}, fake.upload(name or "upload.jsonl", data, purpose))
            return True
        if path == "/v1/batches":
            body = json.loads(raw or b"{}")
            fake._record(path, headers, body, "batch-api")
            batch = fake.create_batch(body)
            self._send(batch.pop("status") if "body" in batch else 200, {}, batch.get("body", batch))
            return True
        m = re.fullmatch(r"/v1/batches/([^/]+)/cancel", path)
        if m:
            fake._record(path, headers, None, "batch-api")
            batch = fake.cancel_batch(m.group(1))
            if batch is None:
                self._send(404, {}, _error(404, "No such batch", "invalid_request_error"))
            else:
                self._send(200, {}, batch)
            return True
        return False

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        fake = self.server_fake
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]

        if fake.api_key is not None:
            token = headers.get("authorization", "").removeprefix("Bearer ").strip()
            if token != fake.api_key:
                fake._record(path, headers, body, "401")
                message = (f"Incorrect API key provided: {token} for {self.path}. You can find your API key at https://example.invalid.")
                return self._send(401, {}, _error(401, message, "invalid_request_error", "invalid_api_key"))
        if path.startswith(("/v1/files", "/v1/batches")):
            if self._batch_post(path, headers, raw):
                return None
        # Like real servers, the key is checked before the path (the path may not exist at all).
        if path not in ("/v1/chat/completions", "/chat/completions"):
            fake._record(path, headers, body, "404")
            return self._send(404, {}, _error(404, f"Unknown path {path}", "invalid_request_error"))
        if not isinstance(body, dict) or "model" not in body or "messages" not in body:
            fake._record(path, headers, body, "400")
            return self._send(400, {}, _error(400, "model and messages are required", "invalid_request_error"))
        if fake.models is not None and body["model"] not in fake.models:
            fake._record(path, headers, body, "404")
            message = f"The model `{body['model']}` does not exist or you do not have access to it."
            return self._send(404, {}, _error(404, message, "invalid_request_error", "model_not_found"))

        refused = fake._refuses(body)
        if refused is not None:
            status, message = refused
            fake._record(path, headers, body, f"refused-{status}")
            kind = "internal_server_error" if status == 500 else "invalid_request_error"
            return self._send(status, {}, {"error": {"message": message, "type": kind, "param": None,
                                                     "code": None}})
        if fake.kind == "looping" and not (body.get("max_completion_tokens") or body.get("max_tokens")):
            fake._record(path, headers, body, "silent")
            return self._silent()

        outcome = fake._choose()
        label = "raw" if isinstance(outcome, dict) else outcome
        fake._record(path, headers, body, label)
        if fake.latency:
            time.sleep(fake.latency)

        if isinstance(outcome, dict):
            return self._send(outcome.get("status", 200), outcome.get("headers", {}), outcome.get("body", {}))
        if outcome == "silent":
            return self._silent()
        if outcome == "trickle":
            data = json.dumps(fake.completion(body, "ok")).encode()
            return self._stream(200, {"Content-Length": str(len(data))}, [data[i:i + 1] for i in range(len(data))],
                                fake.trickle)
        if outcome == "huge":
            return self._send_huge(body)
        if outcome == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if outcome == "429":
            return self._send(429, {"Retry-After": "0"},
                              _error(429, "Rate limit reached, try again.", "requests", "rate_limit_exceeded"))
        if outcome == "429-bare":
            return self._send(429, {}, _error(429, "Rate limit reached.", "requests", "rate_limit_exceeded"))
        if outcome == "nested":
            deep = "[" * fake.nested_depth + "]" * fake.nested_depth
            return self._send(200, {}, '{"id": "chatcmpl-deep", "object": "chat.completion", "created": 0, '
                                       f'"model": "m", "choices": [], "usage": {{"prompt_tokens": {deep}}}}}',
                              content_type="application/json")
        if outcome == "bad-usage":
            reply = fake.completion(body, "ok")
            reply["usage"]["prompt_tokens"] = 2**63
            return self._send(200, {}, reply)
        if outcome == "echo-key":
            token = headers.get("authorization", "").removeprefix("Bearer ").strip()
            tail = token.split("-", 1)[-1]  # "sk-proj-abc…" -> "proj-abc…", as a server that strips sk- shows it
            return self._send(400, {}, _error(400, f"Invalid request for account key {tail}.", "invalid_request_error"))
        if outcome == "quota":
            return self._send(429, {}, _error(429, "You exceeded your current quota.", "insufficient_quota",
                                              "insufficient_quota"))
        if outcome.isdigit():
            status = int(outcome)
            return self._send(status, {}, _error(status, f"Fake failure {status}", "server_error"))
        return self._send(200, {"x-request-id": f"req_fake_{fake.count}"}, fake.completion(body, outcome))

    def _silent(self) -> None:
        """Hold the connection without answering until the client hangs up or the server stops."""
        fake = self.server_fake
        self.close_connection = True
        self.connection.settimeout(0.05)
        while not fake._stopping.is_set():
            try:
                if self.connection.recv(1) == b"":
                    return  # the client gave up
            except TimeoutError:
                continue
            except OSError:
                return

    def _stream(self, status: int, headers: dict[str, str], chunks: Iterable[bytes], pause: float = 0.0,
                chunked: bool = False) -> None:
        """Send a reply piece by piece, counting what went out before the client hung up."""
        fake = self.server_fake
        sent = 0
        self.close_connection = True
        with fake._lock:
            fake._streaming += 1
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in chunks:
                if fake._stopping.is_set():
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                self.wfile.flush()
                sent += len(chunk)
                if pause:
                    time.sleep(pause)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: that is what a size or time limit does
        finally:
            with fake._streams_done:
                fake.bytes_sent.append(sent)
                fake._streaming -= 1
                fake._streams_done.notify_all()

    def _send_huge(self, body: dict) -> None:
        """A well-formed completion whose card front is huge_bytes long, generated as it is sent."""
        fake = self.server_fake
        reply = fake.completion(body, "ok")
        card = {"kind": "basic", "front": "HUGE-FRONT", "back": "b", "quote": "q", "tags": ["t"]}
        reply["choices"][0]["message"]["content"] = json.dumps({"cards": [card]})
        head, tail = json.dumps(reply).encode().split(b"HUGE-FRONT")

        def chunks() -> Iterator[bytes]:
            yield head
            left, block = fake.huge_bytes, b"x" * 65536
            while left > 0:
                yield block[:left]
                left -= len(block)
            yield tail

        self._stream(200, {}, chunks(), chunked=True)

    def _send(self, status: int, headers: dict[str, str], body: dict | str, content_type: str | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type
                             or ("application/json" if not isinstance(body, str) else "text/plain"))
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (a timeout test)


# -- keeping tests off the network -------------------------------------------------------------

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class NetworkBlocked(OSError):
    """A test tried to reach something other than loopback."""


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Refuse every socket connection and name lookup that is not loopback, for the duration."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def host_of(address: Any) -> str | None:
        return address[0] if isinstance(address, tuple) else None  # AF_UNIX paths are local

    def check(address: Any) -> None:
        host = host_of(address)
        if host is not None and host not in _LOOPBACK:
            raise NetworkBlocked(f"tests must not reach the network (tried {host})")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in _LOOPBACK:
            raise NetworkBlocked(f"tests must not resolve {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo  # type: ignore[assignment]


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No proxies, no ambient OpenAI settings, and only loopback reachable."""
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost,::1")
    for name in ("OPENAI_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS",
                 "OPENAI_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    # A client built without a base URL lands on the discard port of loopback, not on the internet.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with no_network():
        yield


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A running FakeOpenAI with defaults; tweak `responder`, `latency`, `fail_rate` or `enqueue`."""
    with FakeOpenAI() as server:
        yield server


__all__ = ["KEY", "FakeOpenAI", "NetworkBlocked", "Recorded", "default_responder", "fake_openai", "generator_for",
           "no_network", "no_sleep", "note_request", "offline_env", "rate_limited", "redirect", "user_text"]

__all__ = ["KEY", "FakeOpenAI", "NetworkBlocked", "Recorded", "default_responder", "fake_openai", "generator_for",
           "no_network", "no_sleep", "note_request", "offline_env", "rate_limited", "redirect", "user_text"]


# -- one note's request and a generator aimed at a fake, for tests that drive the client directly ---

KEY = "sk-proj-Zq8dK2LmR7vXw3Nc9TfY4hGs"


async def no_sleep(seconds: float) -> None:
    """Backoff without the wait."""


def note_request(n: int = 0):
    """The request for one small note about a reactor, keyed by its number."""
    from cards.generate.base import Request
    from cards.models import NoteItem, Source

    note = f"reactor {n} runs at {300 + n} megawatts"
    item = NoteItem(id=f"note{n:04d}", episode="ep", text=note, kind="bullet", section=None,
                    sources=(Source("notes.md", n + 1, n + 1),), position=n)
    messages = ({"role": "system", "content": "You write flashcards."},
                {"role": "user", "content": f"<note>{note}</note>\n<passage>The reactor runs at 345 MW.</passage>"})
    return Request(note=item, context=None, episode_title="Ep", messages=messages, key=f"key-{n}")


def generator_for(srv_or_url, **kw):
    """The real OpenAIGenerator aimed at a fake server (or a URL), with no waits between retries."""
    from cards.generate.openai import OpenAIGenerator

    url = srv_or_url if isinstance(srv_or_url, str) else srv_or_url.base_url
    kw.setdefault("sleep", no_sleep)
    kw.setdefault("timeout", 5.0)
    return OpenAIGenerator("fake-model", base_url=url, api_key=KEY, **kw)
