"""The nouns of the pipeline: plain values passed between plain functions.

Internal values are frozen dataclasses (cheap to build by the thousand); the card
schema that the LLM fills in is a pydantic model in `cards.schema`.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Text reduced for identity: NFKC, casefolded, whitespace collapsed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def stable_id(*parts: str, length: int = 16) -> str:
    """A short hex id that depends only on its parts."""
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8"))
    return h.hexdigest()[:length]


def content_hash(tag: str, value) -> str:
    """A hash of a JSON-able value, prefixed with a tag that names what it is and its version.

    The tag makes a change of meaning visible (and deliberate): bump it when what goes
    into the value changes, and every old hash stops matching for a reason one can name.
    """
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return f"{tag}:{hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:32]}"


SPEC_TAG = "spec1"


def generation_spec(generator: str, model: str, prompt_version: str, note_text: str,
                    ctx: Context | None) -> tuple[str, dict]:
    """What makes a note's generation current, as (hash, parts); the parts say why a spec changed.

    Neighbouring notes are left out on purpose: a new bullet next door is no reason to
    buy this note again.
    """
    parts = {"generator": generator, "model": model, "prompt": prompt_version, "note": note_text,
             "passage": content_hash("passage1", ctx.text) if ctx else ""}
    return content_hash(SPEC_TAG, parts), parts


def format_time(seconds: float | None) -> str:
    """Seconds as m:ss (mm:ss from ten minutes) or h:mm:ss from an hour; '' when unknown."""
    if seconds is None:
        return ""
    total = max(0, int(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


def shorten(text: str | None, limit: int) -> str:
    """Text cut to at most `limit` characters, an ellipsis marking the cut; the one truncation for display."""
    text = text or ""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 2 // 3:  # end on a word when one ends near the limit
        cut = cut[:space]
    return cut.rstrip() + "…"


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 draft', '2 drafts', '1,000 note sections'."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def format_span(start: float | None, end: float | None) -> str | None:
    """'12:03–12:40', 'from 12:03', or None when the transcript has no times."""
    if start is None:
        return None
    if end is None or end <= start:
        return f"from {format_time(start)}"
    return f"{format_time(start)}–{format_time(end)}"


@dataclass(frozen=True)
class Segment:
    """A piece of transcript text; times in seconds when the format has them."""

    text: str
    line: int
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Transcript:
    path: str
    format: str  # youtube | whisper | srt | vtt | plain
    segments: tuple[Segment, ...]
    title: str | None = None
    video_id: str | None = None

    @property
    def url(self) -> str | None:
        if self.video_id:
            return f"https://www.youtube.com/watch?v={self.video_id}"
        return None

    @property
    def timed(self) -> bool:
        return any(s.start is not None for s in self.segments)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


@dataclass(frozen=True)
class Source:
    """Where a note item was read: a file and its first and last line (1-based)."""

    path: str
    line_start: int
    line_end: int


@dataclass(frozen=True)
class NoteSection:
    """One top-level section of one notes file, before episodes are merged."""

    heading: str | None  # None for headingless prose notes
    path: str
    line: int
    items: tuple[RawItem, ...]
    links: tuple[str, ...] = ()
    date: str | None = None


@dataclass(frozen=True)
class RawItem:
    """A note item as read from one file, before it knows its episode."""

    text: str
    kind: str  # bullet | quote | prose
    section: str | None
    line_start: int
    line_end: int


@dataclass(frozen=True)
class NoteItem:
    """One unit of the person's notes, identified by episode and normalised text."""

    id: str
    episode: str
    text: str
    kind: str
    section: str | None
    sources: tuple[Source, ...]
    position: int  # order within the episode

    @staticmethod
    def make_id(episode: str, text: str) -> str:
        return stable_id(episode, normalise(text))

    @property
    def source(self) -> Source:
        return self.sources[0]


@dataclass(frozen=True)
class Excerpt:
    """One contiguous, verbatim piece of a transcript, with its segment span and times."""

    text: str
    first_segment: int
    last_segment: int
    start: float | None = None
    end: float | None = None

    def as_dict(self) -> dict:
        return {"text": self.text, "start": self.start, "end": self.end,
                "segments": [self.first_segment, self.last_segment]}


EXCERPT_SEPARATOR = "\n…\n"


@dataclass(frozen=True)
class Context:
    """The transcript passage a note item came from.

    A note with several claims said far apart gets one excerpt per claim; `text` is
    then the excerpts in transcript order joined by EXCERPT_SEPARATOR, and the span
    and times cover them all. A single-excerpt context needs no `excerpts`.
    """

    text: str
    first_segment: int
    last_segment: int
    start: float | None
    end: float | None
    score: float
    excerpts: tuple[Excerpt, ...] = ()

    @property
    def parts(self) -> tuple[Excerpt, ...]:
        """The excerpts, always at least one."""
        if self.excerpts:
            return self.excerpts
        return (Excerpt(self.text, self.first_segment, self.last_segment, self.start, self.end),)

    def as_dict(self) -> dict:
        out = {"text": self.text, "start": self.start, "end": self.end, "score": round(self.score, 3),
               "segments": [self.first_segment, self.last_segment]}
        if len(self.parts) > 1:
            out["excerpts"] = [e.as_dict() for e in self.parts]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Context:
        """The inverse of as_dict, for passages kept in the workspace."""
        excerpts = tuple(Excerpt(e["text"], e["segments"][0], e["segments"][1], e.get("start"), e.get("end"))
                         for e in data.get("excerpts") or ())
        first, last = data.get("segments") or (0, 0)
        return cls(data["text"], first, last, data.get("start"), data.get("end"), float(data.get("score", 0.0)),
                   excerpts)


@dataclass
class Episode:
    slug: str
    title: str
    sources: list[str] = field(default_factory=list)
    items: list[NoteItem] = field(default_factory=list)
    transcript: Transcript | None = None
    match_score: float | None = None
    url: str | None = None
    video_id: str | None = None
    date: str | None = None
    # Who and what the episode is, for the prompt (cards.context): `title` stays the deck title.
    show: str | None = None
    full_title: str | None = None
    people: list[str] = field(default_factory=list)
    links: tuple[str, ...] = ()  # the links in its notes sections

    def as_dict(self) -> dict:
        return {
            "slug": self.slug,
            "title": self.title,
            "show": self.show,
            "full_title": self.full_title,
            "people": list(self.people),
            "notes": len(self.items),
            "sources": self.sources,
            "transcript": self.transcript.path if self.transcript else None,
            "match_score": None if self.match_score is None else round(self.match_score, 3),
            "url": self.url,
            "date": self.date,
        }


DRAFT_STATUSES = ("draft", "approved", "rejected", "duplicate")


@dataclass
class Draft:
    """A card plus its provenance and review state; `id` becomes the Anki note GUID."""

    id: str
    note_id: str
    episode: str
    kind: str  # basic | cloze
    front: str
    back: str
    quote: str
    tags: list[str]
    generator: str  # "openai" | "offline"
    model: str
    prompt_version: str
    status: str = "draft"
    duplicate_of: str | None = None
    warnings: list[str] = field(default_factory=list)
    grounding: float | None = None
    edited: bool = False
    superseded: bool = False
    note_text: str = ""
    context_text: str | None = None
    context_start: float | None = None
    context_end: float | None = None
    created: float = 0.0
    updated: float = 0.0
    exported: float | None = None
    lineage: str = ""  # the Anki GUID; see cards.lineage
    revision_of: str | None = None  # a pending revision of this current draft
    changed: float = 0.0  # when front/back last changed in cards: the Anki note's mtime
    claim: str | None = None  # the note's claim this card tests, as the reply stated it
    reason: str | None = None  # why it was set aside (rejected) when made: the critic's rule and words, or no claim

    def __post_init__(self) -> None:
        self.lineage = self.lineage or self.id
        self.changed = self.changed or self.created

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "episode": self.episode,
            "note": self.note_text,
            "note_id": self.note_id,
            "kind": self.kind,
            "front": self.front,
            "back": self.back,
            "quote": self.quote,
            "tags": self.tags,
            "status": self.status,
            "duplicate_of": self.duplicate_of,
            "generator": self.generator,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "warnings": self.warnings,
            "grounding": self.grounding,
            "edited": self.edited,
            "superseded": self.superseded,
            "context": None
            if self.context_text is None
            else {"text": self.context_text, "start": self.context_start, "end": self.context_end},
            "exported": self.exported,
            "guid": self.lineage,
            "revision_of": self.revision_of,
            "changed": self.changed,
            "claim": self.claim,
            "reason": self.reason,
        }
