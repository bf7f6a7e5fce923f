"""A fake AnkiConnect: a small HTTP server backed by a real Anki collection.

It mirrors the add-on's request and reply shapes (`{"action", "version", "params", "key"}`
-> `{"result", "error"}`, API version 6), its key check (every action but
`requestPermission` needs the configured key) and the actions `cards push` uses:
`version`, `requestPermission`, `importPackage` (the real importer,
`Collection.import_anki_package`, with Anki's default "update if newer"), and for tests
`findNotes`. Every request is recorded, so a test can check that the
key travelled only where it should.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from anki import collection
from anki.import_export_pb2 import ImportAnkiPackageUpdateCondition

IF_NEWER = ImportAnkiPackageUpdateCondition.IMPORT_ANKI_PACKAGE_UPDATE_CONDITION_IF_NEWER


def import_package(col, path: str):
    """What Anki does on File > Import and on AnkiConnect's importPackage: update notes only if newer."""
    options = collection.ImportAnkiPackageOptions(update_notes=IF_NEWER, update_notetypes=IF_NEWER,
                                                  merge_notetypes=False, with_scheduling=False)
    return col.import_anki_package(collection.ImportAnkiPackageRequest(package_path=path, options=options)).log


class FakeAnkiConnect:
    """Run with `with FakeAnkiConnect(col) as anki:`; `anki.url` is its address."""

    def __init__(self, col, *, key: str | None = None, version: int = 6, import_error: str | None = None):
        self.col = col
        self.key = key
        self.version = version
        self.import_error = import_error  # what a failing import raises inside Anki
        self.requests: list[dict] = []
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.raw.append(body)
                try:
                    request = json.loads(body)
                except ValueError as e:
                    return self._send({"result": None, "error": str(e)})
                with fake._lock:
                    reply = fake.handle(request)
                self._send(reply)

            def _send(self, reply):
                data = json.dumps(reply).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeAnkiConnect:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- AnkiConnect's dispatch ---------------------------------------------------------------------

    def handle(self, request: dict) -> dict:
        self.requests.append(request)
        name = request.get("action", "")
        params = request.get("params", {})
        try:
            if request.get("key") != self.key and name != "requestPermission":
                raise Exception("valid api key must be provided")
            method = getattr(self, f"action_{name}", None)
            if method is None:
                raise Exception("unsupported action")
            return {"result": method(**params), "error": None}
        except Exception as e:  # noqa: BLE001 - AnkiConnect turns every failure into the reply's error
            return {"result": None, "error": str(e)}

    def action_version(self):
        return self.version

    def action_requestPermission(self, origin: str = "", allowed: bool = True):
        # A client with no Origin header is allowed, as in AnkiConnect's web server.
        return {"permission": "granted", "requireApikey": bool(self.key), "version": self.version}

    def action_importPackage(self, path: str):
        if self.import_error:
            raise Exception(self.import_error)
        import_package(self.col, path)
        return True

    def action_findNotes(self, query=None):
        return [] if query is None else [int(n) for n in self.col.find_notes(query)]
