"""Sending decks to a running Anki through the AnkiConnect add-on.

AnkiConnect has no action that sets or finds a note's GUID, and its `importPackage`
imports an `.apkg` from a path on the machine running Anki with the same "update if
newer" rule as File > Import. So a push is an export followed by `importPackage` of the
very file export wrote: a note's identity is its GUID either way, and pushing and
importing by hand never duplicate each other, in either order.

Every request is `{"action", "version", "params", "key"}` and every reply
`{"result", "error"}` (AnkiConnect's API version 6). The key is sent only in requests;
it is never printed, logged or written, and the address is shown masked.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from cards.errors import AnkiConnectError, ConfigError
from cards.redact import mask_url, scrub

# No proxy: AnkiConnect listens on this machine, and a proxy from the environment would be
# handed the key along with every request.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
API_VERSION = 6  # the request format sent, and the oldest AnkiConnect accepted (it has importPackage)
CONNECT_TIMEOUT = 10.0  # seconds for a quick question (version, permission)
IMPORT_TIMEOUT = 600.0  # seconds: Anki imports a big deck with its media in one request


class AnkiConnect:
    """A client for AnkiConnect at `url`, with an optional API key."""

    def __init__(self, url: str, key: str | None = None):
        self.url = url
        self._key = key
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"not an AnkiConnect address: {mask_url(url)} (like http://127.0.0.1:8765)")

    @property
    def where(self) -> str:
        return mask_url(self.url)

    def _unreachable(self, why: str) -> AnkiConnectError:
        return AnkiConnectError(f"cannot reach Anki at {self.where}: {why}")

    def call(self, action: str, timeout: float = CONNECT_TIMEOUT, **params):
        """One action's result; an AnkiConnectError for anything but a successful reply."""
        body = {"action": action, "version": API_VERSION, "params": params}
        if self._key:
            body["key"] = self._key
        request = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                raw = response.read(16 * 1024 * 1024)
        except urllib.error.HTTPError as e:
            raise self._unreachable(f"it answered HTTP {e.code}; is this AnkiConnect?") from None
        except (urllib.error.URLError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise self._unreachable(f"no answer within {timeout:g} s") from None
            raise self._unreachable("is Anki running, with the AnkiConnect add-on installed?") from None
        except (TimeoutError, socket.timeout):
            raise self._unreachable(f"no answer within {timeout:g} s") from None
        except (http.client.HTTPException, OSError):  # not HTTP at all, or the connection broke
            raise self._unreachable("the answer is not AnkiConnect's; is this AnkiConnect?") from None
        try:
            reply = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise self._unreachable("the answer is not AnkiConnect's; is this AnkiConnect?") from None
        if not isinstance(reply, dict) or "error" not in reply or "result" not in reply:
            raise self._unreachable("the answer is not AnkiConnect's (too old, or another server)")
        if reply["error"] is not None:
            raise self._refused(action, str(reply["error"]))
        return reply["result"]

    def _refused(self, action: str, error: str) -> AnkiConnectError:
        if "api key" in error.lower():
            if self._key:
                return AnkiConnectError(f"AnkiConnect at {self.where} refused the API key; check ANKICONNECT_KEY "
                                        "or [anki] key in cards.toml")
            return AnkiConnectError(f"AnkiConnect at {self.where} needs an API key; set ANKICONNECT_KEY")
        # Anki's own messages may quote a path or note text: one line of printable text, never the key.
        text = scrub(" ".join(_CONTROL.sub(" ", error).split()), [self._key or ""])[:300]
        return AnkiConnectError(f"AnkiConnect refused {action}: {text}")

    def check(self) -> int:
        """Make sure Anki answers, takes our key, and is new enough; returns AnkiConnect's version."""
        version = self.call("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise self._unreachable("the answer is not AnkiConnect's; is this AnkiConnect?")
        if version < API_VERSION:
            raise AnkiConnectError(f"AnkiConnect at {self.where} is too old (API version {version}; "
                                   f"{API_VERSION} or newer is needed): update the add-on")
        if self._key:
            granted = self.call("requestPermission")
            if not isinstance(granted, dict) or granted.get("permission") != "granted":
                raise AnkiConnectError(f"AnkiConnect at {self.where} did not grant permission")
        return version

    def import_package(self, path: Path) -> None:
        """Have Anki import an .apkg; the path must be absolute and readable by Anki."""
        path = Path(path)
        if not path.is_absolute():
            raise ValueError("importPackage needs an absolute path")
        if self.call("importPackage", timeout=IMPORT_TIMEOUT, path=str(path)) is not True:
            raise AnkiConnectError(f"Anki did not import {path.name} (no collection open?)", path=str(path))
