"""Token counting with tiktoken, and an honest estimate when its encoding cannot be loaded.

tiktoken downloads encoding files on first use. Where that is impossible (no
network), we never try: we look for the file in tiktoken's cache first
(`TIKTOKEN_CACHE_DIR` can point at pre-fetched files) and otherwise count with a
labelled estimate of four characters per token.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

DEFAULT_ENCODING = "o200k_base"
_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


def _cached_file(name: str) -> str | None:
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:
        return None
    path = os.path.join(cache_dir, hashlib.sha1(_BLOB.format(name=name).encode()).hexdigest())
    return path if os.path.exists(path) else None


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens; `exact` is False when the figure is an estimate."""

    label: str
    exact: bool
    encoding: Any = None  # a tiktoken.Encoding when exact

    def count(self, text: str) -> int:
        if self.encoding is not None:
            return len(self.encoding.encode_ordinary(text))
        return (len(text) + 3) // 4


def encoding_name(model: str | None) -> str:
    if not model:
        return DEFAULT_ENCODING
    import tiktoken

    try:
        return tiktoken.encoding_name_for_model(model)
    except KeyError:
        return DEFAULT_ENCODING


@lru_cache(maxsize=8)
def counter_for(model: str | None = None) -> TokenCounter:
    """The best counter available offline for a model's tokenizer."""
    try:
        name = encoding_name(model)
    except ImportError:
        return TokenCounter("estimate (tiktoken not installed; ~4 characters per token)", False)
    if _cached_file(name) is None:
        return TokenCounter(
            f"estimate (tiktoken encoding {name} not available offline; ~4 characters per token;"
            " set TIKTOKEN_CACHE_DIR to pre-fetched files for exact counts)",
            False,
        )
    import tiktoken

    try:
        return TokenCounter(f"tiktoken {name}", True, tiktoken.get_encoding(name))
    except Exception:  # a corrupt cache file must not stop the run
        return TokenCounter(f"estimate (tiktoken encoding {name} failed to load)", False)


def counter_from_encoding(encoding: Any) -> TokenCounter:
    """Wrap a ready tiktoken.Encoding (tests build a small local one)."""
    return TokenCounter(f"tiktoken {encoding.name}", True, encoding)
