"""A loopback OpenAI-compatible server that records requests and replays stored replies.

Two modes, one folder (a run of one prompt version on one note set):

- capture: every chat-completions request body is written to `<dir>/requests/<key>.json`
  (and a readable `<key>.md` next to it), and answered with a valid reply that holds no
  cards, so `cards generate` finishes at once without retries.
- replay: every request is answered with the assistant content stored in
  `<dir>/replies/<key>.json`. A request with no stored reply is recorded in `requests/`
  like in capture (so a second round, such as a request built from the first round's cards,
  can be answered later) and gets the empty reply; `missing` lists those keys.

The key is a hash of what the request asks (its messages and response_format), not of its
headers or model name, so the same prompt on the same note always has the same key.

Only the standard library: `http.server` on 127.0.0.1, a free port.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def request_key(body: dict) -> str:
    """A stable 16-hex-digit name for a request: a hash of its messages and response_format."""
    content = {"messages": body.get("messages"), "response_format": body.get("response_format")}
    blob = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def schema_of(body: dict) -> dict | None:
    """The JSON schema the request asks the reply to follow, if it sends one."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema")
    return None


def empty_instance(schema: dict | None, defs: dict | None = None) -> Any:
    """The smallest value that is valid for `schema`: empty lists, empty strings, first enum value."""
    if schema is None:
        return {"cards": []}
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return empty_instance(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for alt in ("anyOf", "oneOf"):
        if alt in schema:
            options = schema[alt]
            nulls = [o for o in options if o.get("type") == "null"]
            return None if nulls else empty_instance(options[0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = "null" if "null" in kind else kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {name: empty_instance(props[name], defs) for name in schema.get("required", props)}
    if kind == "array":
        return [empty_instance(schema.get("items", {}), defs) for _ in range(schema.get("minItems", 0))]
    return {"string": "", "integer": 0, "number": 0, "boolean": False, "null": None}.get(kind, "")


def readable(body: dict) -> str:
    """A request as a page a person can read: each message, then the schema the reply must follow."""
    parts = []
    for m in body.get("messages") or []:
        content = m.get("content")
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(f"## {m.get('role', '?')}\n\n{content}\n")
    schema = schema_of(body)
    fmt = body.get("response_format") or {}
    if schema is not None:
        parts.append("## reply schema (the reply is one JSON object of this shape)\n\n```json\n"
                     + json.dumps(schema, indent=2, ensure_ascii=False) + "\n```\n")
    elif fmt:
        parts.append(f"## reply format\n\n{json.dumps(fmt)}\n")
    return "\n".join(parts)


class Server:
    """`with Server(folder, mode) as srv:` then point `--base-url` at `srv.base_url`."""

    def __init__(self, folder: Path, mode: str):
        if mode not in ("capture", "replay"):
            raise ValueError(f"unknown mode {mode!r}")
        self.folder, self.mode = Path(folder), mode
        self.requests_dir = self.folder / "requests"
        self.replies_dir = self.folder / "replies"
        self.seen: list[str] = []  # keys, in the order requests arrived
        self.missing: list[str] = []  # replay: keys with no stored reply
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def record(self, key: str, body: dict) -> None:
        self.requests_dir.mkdir(parents=True, exist_ok=True)
        (self.requests_dir / f"{key}.json").write_text(
            json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (self.requests_dir / f"{key}.md").write_text(readable(body), encoding="utf-8")

    def answer(self, body: dict) -> str:
        """The assistant content for one request (a JSON string)."""
        key = request_key(body)
        stored = self.replies_dir / f"{key}.json"
        with self._lock:
            self.seen.append(key)
            if self.mode == "replay" and stored.exists():
                return stored.read_text(encoding="utf-8").strip()
            self.record(key, body)
            if self.mode == "replay":
                self.missing.append(key)
        return json.dumps(empty_instance(schema_of(body)))

    def __enter__(self) -> Server:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": []})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    return self._send(400, {"error": {"message": "request body is not JSON", "type": "invalid"}})
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                content = owner.answer(body)
                self._send(200, {
                    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
                    "model": body.get("model", "bench"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content, "refusal": None}}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                })

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
