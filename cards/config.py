"""Settings: command-line flag > environment (CARDS_*, OPENAI_*) > cards.toml > default.

Flags and environment variables are resolved by the CLI (typer `envvar=`); this
module fills the gaps from `cards.toml` in the working directory and defaults.
The API key is read from the environment only, never from a file, and is never
written anywhere.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cards.errors import ConfigError

CONFIG_FILE = "cards.toml"
DEFAULT_MODEL = "gpt-5-mini"
DEFAULT_WORKSPACE = Path("decks")
DEFAULT_TIMEOUT = 60.0  # seconds: the overall deadline of one request
DEFAULT_ANKI_URL = "http://127.0.0.1:8765"  # AnkiConnect's default address
STRUCTURED_MODES = ("auto", "json_schema", "json_object", "text")

# USD per million tokens: (input, cached input, output). Taken from OpenAI's
# public pricing page on the date below; other servers are priced at zero
# unless listed under [prices] in cards.toml.
PRICES_DATE = "2025-08-07"
PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-5": (1.25, 0.125, 10.00),
    "gpt-5-mini": (0.25, 0.025, 2.00),
    "gpt-5-nano": (0.05, 0.005, 0.40),
    "gpt-4.1": (2.00, 0.50, 8.00),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1-nano": (0.10, 0.025, 0.40),
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4o-mini": (0.15, 0.075, 0.60),
}


@dataclass
class Settings:
    workspace: Path = DEFAULT_WORKSPACE
    model: str = DEFAULT_MODEL
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 8
    context_tokens: int = 350
    prompts: Path | None = None
    offline: bool = False
    deck_prefix: str = "Podcasts"
    timeout: float = DEFAULT_TIMEOUT
    max_tokens: int | None = None  # None: sized for the model (cards.generate.openai.default_max_tokens)
    structured: str = "auto"
    critic: bool = False  # a second request per note that keeps, rewrites or drops the drafted cards
    anki_url: str = DEFAULT_ANKI_URL
    anki_key: str | None = field(default=None, repr=False)  # AnkiConnect's API key: never shown or stored
    pins: dict[str, dict] = field(default_factory=dict)
    prices: dict[str, tuple[float, float, float]] = field(default_factory=lambda: dict(PRICES))

    @property
    def llm_configured(self) -> bool:
        return not self.offline and bool(self.api_key or self.base_url)

    def price(self, model: str | None = None) -> tuple[float, float, float] | None:
        model = model or self.model
        if model in self.prices:
            return self.prices[model]
        # Dated snapshots ("gpt-4.1-mini-2025-04-14") cost what their family costs.
        family = max((m for m in self.prices if model.startswith(m + "-")), key=len, default=None)
        return self.prices[family] if family else None


def read_config(path: Path | None = None) -> dict:
    path = path or Path(CONFIG_FILE)
    if not path.exists():
        return {}
    import tomllib

    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"not valid TOML: {e}", path=where) from None
    except RecursionError:
        raise ConfigError("not valid TOML: nested too deeply", path=where) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", path=where) from None
    for table in ("settings", "episodes", "prices"):
        if table in data and not isinstance(data[table], dict):
            raise ConfigError(f"{table} must be a table ([{table}]), not {_toml_type(data[table])}", path=where)
    settings = data.get("settings", {})
    if "api_key" in settings or "api_key" in data:
        raise ConfigError("do not put the API key in cards.toml; set OPENAI_API_KEY instead", path=where)
    _refuse_unknown(data, where)
    return data


# What cards.toml may hold. Anything else is refused by name: a misspelt setting (`modle = …`) would
# otherwise be silently ignored and the run would go ahead on the default.
_TABLES = ("settings", "episodes", "prices", "anki")
_PIN_KEYS = ("title", "transcript", "aliases", "show", "people", "audio")
_ANKI_KEYS = ("url", "key")


def _refuse_unknown(data: dict, where: str) -> None:
    unknown = [name for name in data if name not in _TABLES]
    unknown += [f"[settings] {name}" for name in data.get("settings", {}) if name not in _SETTING_TYPES]
    for slug, pin in (data.get("episodes") or {}).items():
        if isinstance(pin, dict):
            unknown += [f"[episodes.{slug}] {name}" for name in pin if name not in _PIN_KEYS]
    if isinstance(data.get("anki"), dict):
        unknown += [f"[anki] {name}" for name in data["anki"] if name not in _ANKI_KEYS]
    if unknown:
        import difflib

        def hint(entry: str) -> str:
            table, _, name = entry.rpartition(" ")
            known = (_SETTING_TYPES if table == "[settings]" else _ANKI_KEYS if table == "[anki]"
                     else _PIN_KEYS if table else _TABLES)
            close = difflib.get_close_matches(name, list(known), n=1)
            return f"{entry} (did you mean {close[0]}?)" if close else entry

        raise ConfigError(f"unknown {'key' if len(unknown) == 1 else 'keys'}: {', '.join(map(hint, unknown))}",
                          path=where)


def _toml_type(value: object) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list"}.get(
        type(value), type(value).__name__)


def check_base_url(url: str) -> str:
    """The server address, checked once before anything is sent: an http(s) URL with a host.

    Refused with a one-line ConfigError: a line break, space or control character (pasted with
    the URL), no scheme or another one (`file://`), no host, an unclosed IPv6 bracket, a port out
    of range. Only the masked form of the URL is ever shown.
    """
    from urllib.parse import urlsplit

    from cards.redact import MASK, mask_url

    def refuse(problem: str) -> ConfigError:
        clean = "".join(c for c in url if c.isprintable() and not c.isspace())
        masked = mask_url(clean)
        shown = f" {masked!r}" if masked and masked != MASK else ""
        return ConfigError(f"base URL{shown} {problem} (--base-url, OPENAI_BASE_URL or base_url in cards.toml)")

    bad = next((i for i, c in enumerate(url) if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        kind = "a line break" if url[bad] in "\r\n" else "a space" if url[bad] == " " else "a control character"
        raise refuse(f"has {kind} {'at the end' if not url[bad:].strip() else f'at position {bad + 1}'}")
    example = "; give one like http://localhost:8000/v1"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:  # the message may quote the address, so it is not shown
        problem = ("has a port that is not a number from 1 to 65535" if "port" in str(e).lower()
                   else "has an unclosed [ around an IPv6 address" if "IPv6" in str(e) else "is not a valid URL")
        raise refuse(problem) from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"is a {parts.scheme}:// URL" if parts.scheme and "://" in url else "has no http:// or https://"
        raise refuse(scheme + example)
    if not parts.hostname:
        raise refuse("has no host" + example)
    if port == 0:
        raise refuse("has port 0, which no server listens on")
    return url


def _pins(data: dict, path: Path) -> dict[str, dict]:
    base, where = path.parent, str(path)
    out: dict[str, dict] = {}
    pinned_to: dict[Path, str] = {}
    for slug, pin in (data.get("episodes") or {}).items():
        if not isinstance(pin, dict):
            raise ConfigError(f"[episodes.{slug}] must be a table", path=where)
        if not _SLUG.match(slug):
            # The slug names the deck file; it must be safe as a file name.
            raise ConfigError(f"[episodes.{slug}] is not a slug (lowercase letters, digits and dashes)",
                              path=where)
        p = dict(pin)
        if "transcript" in p:
            t = p["transcript"]
            if t in (False, "", None):
                p["transcript"] = None
            elif isinstance(t, str):
                p["transcript"] = str(base / t) if not Path(t).is_absolute() else t
                # One transcript belongs to one episode.
                key = Path(p["transcript"]).resolve()
                if key in pinned_to:
                    raise ConfigError(f"[episodes.{slug}] transcript {t!r} is already pinned to "
                                      f"[episodes.{pinned_to[key]}]", path=where)
                pinned_to[key] = slug
            else:
                raise ConfigError(f"[episodes.{slug}] transcript must be a path or false", path=where)
        if "audio" in p:
            a = p["audio"]
            if not (isinstance(a, str) and a.strip()):
                raise ConfigError(f"[episodes.{slug}] audio must be a path", path=where)
            p["audio"] = str(base / a) if not Path(a).is_absolute() else a
        aliases = p.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ConfigError(f"[episodes.{slug}] aliases must be a list of headings", path=where)
        if "title" in p and not isinstance(p["title"], str):
            raise ConfigError(f"[episodes.{slug}] title must be text", path=where)
        if "show" in p and not (isinstance(p["show"], str) and p["show"].strip()):
            raise ConfigError(f"[episodes.{slug}] show must be text", path=where)
        people = p.get("people", [])
        if not isinstance(people, list) or not all(isinstance(n, str) and n.strip() for n in people):
            raise ConfigError(f"[episodes.{slug}] people must be a list of names", path=where)
        out[slug] = p
    return out


_SETTING_TYPES = {"workspace": str, "model": str, "base_url": str, "concurrency": int, "context_tokens": int,
                  "prompts": str, "deck_prefix": str, "offline": bool, "timeout": (int, float),
                  "max_tokens": int, "structured": str, "critic": bool}
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def build_settings(config_path: Path | None = None, **given) -> Settings:
    """Settings from flags/env already resolved (`given`, None = not set), then cards.toml, then defaults."""
    path = config_path or Path(CONFIG_FILE)
    data = read_config(path)
    file_settings = data.get("settings", {})
    if not isinstance(file_settings, dict) or not isinstance(data.get("episodes", {}), dict):
        raise ConfigError("[settings] and [episodes] must be tables", path=str(path))
    for name, value in file_settings.items():
        want = _SETTING_TYPES.get(name)
        if want and not (isinstance(value, want) and not (want is not bool and isinstance(value, bool))):
            kind = {int: "a whole number", bool: "true or false", str: "text", (int, float): "a number"}[want]
            raise ConfigError(f"[settings] {name} must be {kind}", path=str(path))
    s = Settings()
    for name in ("workspace", "model", "base_url", "concurrency", "context_tokens", "prompts", "deck_prefix",
                 "offline", "timeout", "max_tokens", "structured", "critic"):
        value = given.get(name)
        if value is None:
            value = file_settings.get(name)
        if value is None:
            continue
        if name in ("workspace", "prompts"):
            value = Path(value)
        if name == "timeout":
            value = float(value)
        setattr(s, name, value)
    s.api_key = given.get("api_key") or os.environ.get("OPENAI_API_KEY") or None
    _anki(s, data.get("anki", {}), path, given.get("anki_url"))
    if s.concurrency < 1:
        raise ConfigError("concurrency must be at least 1")
    if s.context_tokens < 50:
        raise ConfigError("context tokens must be at least 50")
    if not 0 < s.timeout <= 3600:
        raise ConfigError("timeout must be more than 0 and at most 3600 seconds")
    if s.max_tokens is not None and not 100 <= s.max_tokens <= 200_000:
        raise ConfigError("max tokens must be between 100 and 200000")
    if s.base_url is not None:
        s.base_url = check_base_url(s.base_url) if s.base_url else None  # empty: not set
    if s.structured not in STRUCTURED_MODES:
        raise ConfigError(f"structured must be one of {', '.join(STRUCTURED_MODES)} (not {s.structured!r})")
    s.pins = _pins(data, path)
    for model, price in (data.get("prices") or {}).items():
        try:
            s.prices[model] = (float(price[0]), float(price[1]), float(price[2]))
        except (TypeError, ValueError, IndexError):
            raise ConfigError(f"[prices] {model} must be [input, cached_input, output] USD per 1M tokens",
                              path=str(path)) from None
    return s


def _anki(s: Settings, table, path: Path, url: str | None) -> None:
    """AnkiConnect's address (flag or CARDS_ANKI_URL > [anki] url) and key (ANKICONNECT_KEY > [anki] key)."""
    if not isinstance(table, dict):
        raise ConfigError("[anki] must be a table", path=str(path))
    for name in ("url", "key"):
        if name in table and not isinstance(table[name], str):
            raise ConfigError(f"[anki] {name} must be text", path=str(path))
    s.anki_url = url or table.get("url") or DEFAULT_ANKI_URL
    s.anki_key = os.environ.get("ANKICONNECT_KEY") or table.get("key") or None
