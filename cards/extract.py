"""Notes for an episode that has only a transcript: its key claims, found by the LLM chunk by chunk.

The transcript is cut into stretches of about twelve minutes (about 1,800 words when it has no
times), each sent with the prompt `prompts/extract.md` and held to `ClaimSet`: claim, verbatim
quote, time. A stretch may give about one claim per four minutes. Every quote is looked up in
its stretch; a claim whose quote is not there is dropped (it was not verbatim), and its time is
the time of the line the quote was found on, not the time the model wrote.

Claims become notes of kind `extracted` whose text says so and carries the time and the quote
(`[extracted at 12:34] claim “quote”`), so review, export and the card prompt all show where they
came from; from there they go through the usual pipeline, lineage included. A listener's own note
wins over an extracted one that says nearly the same thing: the extracted one is left out, so one
claim is never sent twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from cards.models import NoteItem, Source, Transcript, format_time
from cards.schema import at_most

CHUNK_SECONDS = 12 * 60
CHUNK_WORDS = 1800  # a stretch of an untimed transcript: about twelve minutes of speech
LINE_SECONDS = 30.0  # transcript segments are joined into lines of about this long, each with its time
SECONDS_PER_CLAIM = 240  # at most about one claim per four minutes
WORDS_PER_CLAIM = 600
MAX_CLAIMS = 8  # per reply, whatever the stretch
OUTPUT_TOKENS_PER_CLAIM = 110  # for estimates: a claim, its quote and its time as JSON
KIND = "extracted"
SOURCE_SUFFIX = "#extracted"  # an extracted note's source: its transcript, so marked
LABEL = re.compile(r"^\[extracted(?: at (\d+(?::\d\d){1,2}))?\] ")
_NEAR = 0.6  # share of the shorter note's content words the other has, for a near-duplicate


class Claim(BaseModel):
    """One claim from the transcript that a listener would want to remember."""

    model_config = ConfigDict(extra="forbid")

    claim: Annotated[str, at_most(400)] = Field(
        description="One self-contained sentence naming what it is about, and who holds it if an opinion.")
    quote: Annotated[str, at_most(600)] = Field(
        description="Verbatim words from the transcript (a phrase to two sentences) that support the claim.")
    time: Annotated[str, at_most(20)] = Field(
        description="The [h:mm:ss] or [m:ss] mark of the line the quote starts on, without brackets; empty "
                    "if the transcript has none.")


class ClaimSet(BaseModel):
    """The claims worth remembering from one stretch of a transcript, best first; none for banter."""

    model_config = ConfigDict(extra="forbid")

    claims: list[Claim] = Field(description="At most the number the request gives; best first.",
                                max_length=MAX_CLAIMS)


@dataclass(frozen=True)
class Line:
    text: str
    start: float | None
    line: int  # the transcript file's line number
    parts: tuple[tuple[str, float | None, int], ...] = ()  # its segments: text, start, line number

    def pieces(self) -> tuple[tuple[str, float | None, int], ...]:
        return self.parts or ((self.text, self.start, self.line),)


@dataclass(frozen=True)
class Chunk:
    """One stretch of a transcript, as sent."""

    index: int
    lines: tuple[Line, ...]
    start: float | None
    end: float | None
    max_claims: int

    def render(self) -> str:
        return "\n".join(f"[{format_time(x.start)}] {x.text}" if x.start is not None else x.text
                         for x in self.lines)

    @property
    def span(self) -> str:
        if self.start is None:
            return "untimed"
        return f"{format_time(self.start)}–{format_time(self.end)}"


@dataclass(frozen=True)
class Found:
    """A claim whose quote was found in its stretch."""

    claim: str
    quote: str
    start: float | None
    line: int

    def as_dict(self) -> dict:
        return {"claim": self.claim, "quote": self.quote, "start": self.start, "line": self.line}

    @classmethod
    def from_dict(cls, d: dict) -> Found:
        return cls(str(d["claim"]), str(d["quote"]), d.get("start"), int(d.get("line") or 0))


def _lines(transcript: Transcript) -> list[Line]:
    """Segments joined into lines of about LINE_SECONDS (or of about 80 words when untimed)."""
    out: list[Line] = []
    parts: list[tuple[str, float | None, int]] = []
    start, words = None, 0
    for seg in transcript.segments:
        t = seg.text.strip()
        if not t:
            continue
        if not parts:
            start, words = seg.start, 0
        parts.append((t, seg.start, seg.line))
        words += len(t.split())
        long_enough = (seg.end is not None and start is not None and seg.end - start >= LINE_SECONDS) or \
            (start is None and words >= 80)
        if long_enough:
            out.append(Line(" ".join(p[0] for p in parts), start, parts[0][2], tuple(parts)))
            parts = []
    if parts:
        out.append(Line(" ".join(p[0] for p in parts), start, parts[0][2], tuple(parts)))
    return out


def chunks(transcript: Transcript) -> list[Chunk]:
    """The transcript's stretches, each with how many claims it may give."""
    lines = _lines(transcript)
    timed = transcript.timed and all(x.start is not None for x in lines)
    groups: list[list[Line]] = [[]]
    words = 0
    for x in lines:
        g = groups[-1]
        full = (timed and g and x.start - g[0].start >= CHUNK_SECONDS) or (not timed and words >= CHUNK_WORDS)
        if full:
            groups.append([])
            words = 0
        groups[-1].append(x)
        words += len(x.text.split())
    groups = [g for g in groups if g]
    # A short last stretch joins the one before: a two-minute tail is not worth a request of its own.
    if len(groups) > 1:
        tail = groups[-1]
        short = (timed and _end(tail, transcript) - tail[0].start < CHUNK_SECONDS / 3) or \
            (not timed and sum(len(x.text.split()) for x in tail) < CHUNK_WORDS / 3)
        if short:
            groups[-2].extend(groups.pop())
    out = []
    for i, g in enumerate(groups):
        if timed:
            start, end = g[0].start, _end(g, transcript) if i == len(groups) - 1 else groups[i + 1][0].start
            limit = max(1, round((end - start) / SECONDS_PER_CLAIM))
        else:
            start = end = None
            limit = max(1, round(sum(len(x.text.split()) for x in g) / WORDS_PER_CLAIM))
        out.append(Chunk(i, tuple(g), start, end, min(limit, MAX_CLAIMS)))
    return out


def _end(lines: list[Line], transcript: Transcript) -> float:
    last = lines[-1]
    ends = [s.end or s.start for s in transcript.segments if s.line >= last.line and (s.end or s.start) is not None]
    return max(ends) if ends else (last.start or 0.0)


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower().replace("\u2019", "'")))


def locate(quote: str, chunk: Chunk) -> Line | None:
    """The transcript segment of the stretch the quote starts in: verbatim (ignoring case and
    punctuation), or nearly."""
    q = _norm(quote)
    if len(q) < 8:
        return None
    segments = [p for x in chunk.lines for p in x.pieces()]
    offsets, parts, at = [], [], 0
    for text, _, _ in segments:
        n = _norm(text)
        offsets.append(at)
        parts.append(n)
        at += len(n) + 1
    whole = " ".join(parts)
    pos = whole.find(q)
    if pos < 0:
        from rapidfuzz import fuzz

        m = fuzz.partial_ratio_alignment(q, whole, score_cutoff=90)
        if m is None:
            return None
        pos = m.dest_start
    i = max(k for k, off in enumerate(offsets) if off <= pos)
    return Line(*segments[i])


def found_claims(reply: ClaimSet, chunk: Chunk) -> tuple[list[Found], int]:
    """The reply's claims whose quote is in the stretch, at most the stretch's share; and how many were dropped."""
    out: list[Found] = []
    dropped = 0
    for c in reply.claims:
        claim, quote = " ".join(c.claim.split()), " ".join(c.quote.split())
        line = locate(quote, chunk) if claim else None
        if line is None or len(out) >= chunk.max_claims:
            dropped += 1
            continue
        out.append(Found(claim, quote, line.start, line.line))
    return out, dropped


def note_text(f: Found) -> str:
    """An extracted note as it is shown, exported and sent: labelled, with its time and quote."""
    when = f" at {format_time(f.start)}" if f.start is not None else ""
    return f"[extracted{when}] {f.claim} “{f.quote}”"


def is_extracted(text: str) -> bool:
    return bool(LABEL.match(text or ""))


def _words(text: str) -> set[str]:
    from cards.lexicon import content_words

    return set(content_words(LABEL.sub("", text)))


def near_duplicate(a: str, b: str) -> bool:
    """Whether two notes say nearly the same thing: most content words of the shorter are in the longer."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return False
    shared = len(wa & wb)
    return shared >= 2 and shared >= _NEAR * min(len(wa), len(wb))


def merge(slug: str, items: list[NoteItem], claims: list[Found],
          transcript_path: str) -> tuple[list[NoteItem], dict[str, str]]:
    """The episode's notes with its extracted claims after them, and which of the listener's notes replace
    an extracted one (own note id -> extracted note id): the listener's own notes win."""
    out = list(items)
    own = [i for i in items if i.kind != KIND]
    seen = {i.id for i in items}
    replaced: dict[str, str] = {}
    path = transcript_path + SOURCE_SUFFIX
    for f in sorted(claims, key=lambda f: (f.start is None, f.start or 0.0, f.line)):
        text = note_text(f)
        nid = NoteItem.make_id(slug, text)
        mine = next((i for i in own if near_duplicate(f.claim, i.text)), None)
        if mine is not None:  # the listener noted this themselves
            replaced.setdefault(mine.id, nid)
            continue
        if nid in seen:
            continue
        seen.add(nid)
        out.append(NoteItem(nid, slug, text, KIND, None, (Source(path, f.line, f.line),), len(out)))
    return out, replaced




# -- the workspace's record of what was found ------------------------------------------------------

def stored_claims(store, transcript_hash: str) -> tuple[str | None, list[Found]]:
    """The episode the claims were found for and the claims last found in this transcript (by the newest
    model and prompt that looked at it)."""
    import json

    newest = store.db.execute("SELECT model, prompt_version, episode FROM extractions WHERE transcript_hash=?"
                              " ORDER BY created DESC, rowid DESC LIMIT 1", (transcript_hash,)).fetchone()
    if newest is None:
        return None, []
    rows = store.db.execute("SELECT claims FROM extractions WHERE transcript_hash=? AND model=? AND prompt_version=?"
                            " ORDER BY chunk", (transcript_hash, newest[0], newest[1])).fetchall()
    return newest[2], [Found.from_dict(d) for r in rows for d in json.loads(r[0])]


def any_stored(store) -> bool:
    return store.db.execute("SELECT 1 FROM extractions LIMIT 1").fetchone() is not None


def done_keys(store, keys: list[str]) -> set[str]:
    out: set[str] = set()
    for i in range(0, len(keys), 900):
        chunk = keys[i:i + 900]
        out.update(r[0] for r in store.db.execute(
            f"SELECT key FROM extractions WHERE key IN ({','.join('?' * len(chunk))})", chunk))
    return out


def save(store, *, key: str, transcript_hash: str, episode: str, chunk: int, model: str, prompt_version: str,
         found: list[Found], dropped: int, tokens_in: int, tokens_out: int) -> None:
    import json

    with store.tx() as db:
        db.execute("INSERT OR REPLACE INTO extractions(key, transcript_hash, episode, chunk, model, prompt_version,"
                   " claims, dropped, tokens_in, tokens_out, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (key, transcript_hash, episode, chunk, model, prompt_version,
                    json.dumps([f.as_dict() for f in found], ensure_ascii=False), dropped, tokens_in, tokens_out,
                    store.clock()))


__all__ = [
    "KIND",
    "Chunk",
    "Claim",
    "ClaimSet",
    "Found",
    "any_stored",
    "chunks",
    "done_keys",
    "found_claims",
    "is_extracted",
    "locate",
    "merge",
    "near_duplicate",
    "note_text",
    "save",
    "stored_claims",
]
