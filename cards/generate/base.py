"""The generator seam: one request per note item in, one result out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from cards.models import Context, NoteItem
from cards.schema import Card


@dataclass(frozen=True)
class Request:
    """Everything a generator needs for one note item."""

    note: NoteItem
    context: Context | None
    episode_title: str
    messages: tuple[dict, ...]  # rendered chat messages, static parts first
    key: str  # response-cache key: model, prompt version, messages, schema
    reply_model: type | None = None  # the reply schema when not the generator's own (the critic's)


@dataclass
class Result:
    note_id: str
    key: str
    cards: list[Card] = field(default_factory=list)
    error: str | None = None  # set when the note failed after retries
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens: int = 0
    requests: int = 0  # HTTP attempts made, retries included
    raw: str | None = None  # the reply as JSON, kept in the response cache
    reply: object | None = None  # the validated reply (an instance of the request's reply_model)

    @property
    def ok(self) -> bool:
        return self.error is None


class Generator(Protocol):
    name: str  # "openai" | "offline"
    model: str

    async def generate(self, request: Request) -> Result: ...

    async def aclose(self) -> None: ...
