"""Keeping secrets out of what `cards` shows: URLs and server messages.

A base URL can carry a key in three places: the userinfo (`https://user:key@host/v1`), the
query (`/v1?key=sk-…`) and the path (`/proxy/sk-…/v1`). `mask_url` hides all three and is the
one function used wherever a URL is shown; `scrub` applies it, and the known secrets, to any
text that may echo them (a server's error message, say). `mask_secrets` masks only the known
secrets, for text that is content rather than a message (a card a server sent back).

A known secret is masked whole and in part: any stretch of `ECHO_MIN` or more of its characters
(the key without its `sk-` prefix, its last 8 characters after an ellipsis) counts as an echo.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
ECHO_MIN = 8  # characters of a known secret that, echoed anywhere, are masked

# Well-known key shapes: OpenAI (sk-, sk-proj-, rk-, pk-), Hugging Face, GitHub, Groq, xAI, Google.
_KEY_PREFIX = re.compile(r"(?i)^(?:sk|rk|pk|hf|ghp|gho|ghu|ghs|gsk|xai|key|api[-_]?key|token)[-_]|^AIza")
_KEYLIKE = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-*.]{3,}")
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>`]+")
_RUN = re.compile(r"[A-Za-z0-9]+")
_PREFIX = re.compile(r"(?:[A-Za-z]{1,10}[-_])*")  # "sk-", "sk-proj-", "gsk_"


def looks_like_secret(segment: str) -> bool:
    """A path segment or value that is probably a key or token rather than a name.

    Known key prefixes count; so does a long random-looking run of letters and digits (16 or
    more characters, mixing both, with high entropy). Names like `v1`, `chat`, `openai` or
    `Meta-Llama-3.1-8B-Instruct` are made of short runs and stay.
    """
    if not segment:
        return False
    if _KEY_PREFIX.search(segment) and len(segment) >= 8:
        return True
    for run in _RUN.findall(segment):
        if len(run) >= 16 and re.search(r"\d", run) and re.search(r"[A-Za-z]", run) and _entropy(run) >= 3.0:
            return True
    return False


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def mask_url(url: str | None) -> str:
    """The URL with userinfo, query values, fragment and key-like path segments masked."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK  # not a URL we can take apart: show nothing of it
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None:
        netloc += f":{port}"
    if "@" in parts.netloc:
        netloc = f"{MASK}@{netloc}"
    path = "/".join(MASK if looks_like_secret(seg) else seg for seg in parts.path.split("/"))
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    fragment = MASK if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def _mask_pair(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    if not eq:
        return MASK  # a bare token in the query
    return f"{MASK if looks_like_secret(name) else name}={MASK}"


def mask_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """Text with every echo of the given secrets masked: each whole, and any stretch of ECHO_MIN or
    more characters of one (a server that drops the `sk-` prefix, or shows the key's tail)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    # The key's public prefix ("sk-proj-") is no secret: only stretches of the rest count.
    bodies = [s[_PREFIX.match(s).end():] for s in secrets if s]
    pieces = {b[i:i + ECHO_MIN] for b in bodies if len(b) >= ECHO_MIN for i in range(len(b) - ECHO_MIN + 1)}
    if not pieces or len(text) < ECHO_MIN:
        return text
    covered = [False] * len(text)
    for i in range(len(text) - ECHO_MIN + 1):
        if text[i:i + ECHO_MIN] in pieces:
            covered[i:i + ECHO_MIN] = [True] * ECHO_MIN
    if not any(covered):
        return text
    out, i = [], 0
    while i < len(text):
        if covered[i]:
            while i < len(text) and covered[i]:
                i += 1
            out.append(MASK)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Text with the given secrets (and echoes of them), bearer tokens, key-shaped strings and URLs'
    secrets masked."""
    text = mask_secrets(text, tuple(secrets))
    text = _URL.sub(lambda m: mask_url(m.group(0)), text)
    text = _BEARER.sub(f"Bearer {MASK}", text)
    return _KEYLIKE.sub(MASK, text)


__all__ = ["ECHO_MIN", "MASK", "looks_like_secret", "mask_secrets", "mask_url", "scrub"]
