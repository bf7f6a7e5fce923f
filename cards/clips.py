"""A card's moment in the episode's audio: which seconds to cut, what to call the clip, and
which audio file is the episode's.

The moment is the stretch of the timed transcript that says what the card's quote says:
the shortest run of segments, inside the passage the note was aligned to, sharing the
most content words with the quote (or, when the quote was taken from the note itself,
with the note). It is padded by `PAD` seconds each side and capped at `LONGEST`. A card
whose passage has no times (captions without timestamps, a note with no transcript)
gets no clip, nor does one whose quote shares no word with its passage.

Clip names are ours, never the listener's text: `cards-<episode slug>-<GUID>-<hash>.mp3`,
the hash taken over the clip's bytes. The same cut gives the same name, so re-exporting
or pushing again never adds a second copy to Anki's media folder.

Adding a clip changes a note's Source field, and Anki only takes a changed note that is
newer than its own copy. The workspace remembers, per GUID, the clip last written and
when it first was (`clips` table): the note's modification time becomes the later of
its content's change and that time, so a new clip reaches Anki once and an unchanged one
leaves the listener's edits in Anki alone.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cards.check import content_stems
from cards.errors import AudioError
from cards.models import Draft, Segment

PAD = 1.0  # seconds of audio before and after the quote's segments
LONGEST = 20.0  # seconds: a clip is a moment, not a passage
AUDIO_SUFFIXES = (".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wav", ".flac", ".webm", ".mp4", ".mka")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Clip:
    guid: str
    name: str
    data: bytes
    start: float
    end: float


def moment(draft: Draft, segments: list[Segment]) -> tuple[float, float] | None:
    """The (start, end) seconds to cut for a card, or None when it has no timed moment."""
    if draft.context_start is None:
        return None
    lo = draft.context_start - 0.5
    hi = (draft.context_end if draft.context_end is not None else draft.context_start + 120) + 0.5
    inside = [s for s in segments if s.start is not None and s.start >= lo and (s.end or s.start) <= hi]
    if not inside:
        return None
    stems = [content_stems(s.text) for s in inside]
    for target in (draft.quote, draft.note_text):
        wanted = content_stems(target or "")
        if not wanted:
            continue
        best = None
        for i, first in enumerate(inside):
            seen: set[str] = set()
            for j in range(i, len(inside)):
                last = inside[j]
                if j > i and (last.end or last.start) - first.start > LONGEST - 2 * PAD:
                    break
                seen |= stems[j] & wanted
                # Most of the wanted words; among equals the shortest run, then the earliest.
                key = (len(seen), -(j - i), -i)
                if seen and (best is None or key > best[0]):
                    best = (key, first, last)
        # Two shared words (the only one, for a one-word target) place the moment; the note's
        # words may have been heard differently, so all of them are not required.
        if best and best[0][0] >= min(2, len(wanted)):
            _, first, last = best
            start = max(0.0, first.start - PAD)
            end = (last.end if last.end is not None else last.start) + PAD
            return start, min(end, start + LONGEST)
    return None


def clip_name(slug: str, guid: str, data: bytes) -> str:
    """`cards-<slug>-<guid>-<hash>.mp3`, safe as a file name and inside `[sound:…]`."""
    digest = hashlib.sha256(data).hexdigest()[:12]
    return f"cards-{_UNSAFE.sub('-', slug).strip('-')[:60]}-{_UNSAFE.sub('', guid)[:40]}-{digest}.mp3"


def find_audio(slug: str, transcript: str | None, given: Path | None, pinned: str | None,
               *, only_episode: bool) -> Path | None:
    """The episode's audio file: its `audio` pin in cards.toml, else `--audio`.

    `--audio FILE` is the episode's audio when one episode is exported. In a folder, the
    file whose name is the transcript's (`003_x.txt` -> `003_x.mp3`) or the episode's slug
    is the episode's, the way transcripts are named after their episodes.
    """
    if pinned:
        path = Path(pinned)
        if not path.is_file():
            raise AudioError("audio file not found (pinned in cards.toml)", path=pinned)
        return path
    if given is None:
        return None
    if given.is_file():
        if not only_episode:
            raise AudioError("--audio FILE is for one episode; give --episode SLUG, or a folder", path=str(given))
        return given
    if not given.is_dir():
        raise AudioError("no such file or folder", path=str(given))
    stems = {slug.casefold()}
    if transcript:
        stems.add(Path(transcript).stem.casefold())
    for path in sorted(given.iterdir()):
        if path.suffix.lower() in AUDIO_SUFFIXES and path.stem.casefold() in stems and path.is_file():
            return path
    return None


# -- the workspace's record of clips written ----------------------------------------------------------

# The `clips` table is made by the migration step `m008_clips`.

def stamps(db: sqlite3.Connection, clips: dict[str, Clip], now: float, changed: dict[str, float]) -> dict[str, float]:
    """Per GUID, when its current clip was first written: `now` for a new or different clip.

    Anki compares whole seconds, so a new clip's time is at least the second after its
    note's `changed` time: a clip added within the second of a card's last change still
    makes the note newer.
    """
    out: dict[str, float] = {}
    for guid, clip in clips.items():
        row = db.execute("SELECT name, added FROM clips WHERE guid=?", (guid,)).fetchone()
        if row is not None and row[0] == clip.name:
            out[guid] = row[1]
        else:
            out[guid] = max(now, int(changed.get(guid, 0)) + 1)
    return out


def recorded(db: sqlite3.Connection, guids: list[str]) -> dict[str, tuple[str, float]]:
    """The clip last written for each of these GUIDs that has one, and when it first was, by GUID."""
    out: dict[str, tuple[str, float]] = {}
    for guid in guids:
        row = db.execute("SELECT name, added FROM clips WHERE guid=?", (guid,)).fetchone()
        if row is not None:
            out[guid] = (row[0], row[1])
    return out


def record(db: sqlite3.Connection, clips: dict[str, Clip], when: dict[str, float]) -> None:
    """Remember the clips just written, with the time each first was."""
    db.executemany("INSERT INTO clips(guid, name, added) VALUES (?, ?, ?) ON CONFLICT(guid) DO UPDATE SET"
                   " name=excluded.name, added=excluded.added",
                   [(guid, clip.name, when[guid]) for guid, clip in clips.items()])


def episode_clips(slug: str, transcript: str | None, cards: list[Draft], audio: Path,
                  on_clip=None) -> tuple[dict[str, Clip], str | None]:
    """The clips of one episode's cards, by GUID, and why there are none when that is worth saying."""
    from cards import audio as cutter
    from cards.errors import InputError
    from cards.ingest.transcripts import parse_transcript

    if not transcript:
        return {}, "no transcript, so no times to cut at"
    try:
        segments = list(parse_transcript(Path(transcript)).segments)
    except InputError as e:
        return {}, f"transcript unreadable ({e.message})"
    if not any(s.start is not None for s in segments):
        return {}, "its transcript has no timestamps"
    spans = {}
    for d in cards:
        span = moment(d, segments)
        if span is not None:
            spans[d.lineage] = span
    if not spans:
        return {}, None
    data = cutter.cut(audio, [(guid, a, b) for guid, (a, b) in spans.items()], on_clip=on_clip)
    return {guid: Clip(guid, clip_name(slug, guid, body), body, *spans[guid]) for guid, body in data.items()}, None


def for_export(db: sqlite3.Connection, slug: str, transcript: str | None, cards: list[Draft], given: Path | None,
               pinned: str | None, *, only_episode: bool, now: float,
               on_clip=None) -> tuple[dict[str, Clip], dict[str, float], dict]:
    """An episode's clips, their times (`stamps`), and what to report about them.

    `on_clip(slug, n)` hears how many cards are about to be cut, then `(slug, 0)` per clip.
    """
    found = find_audio(slug, transcript, given, pinned, only_episode=only_episode)
    report: dict = {"audio": None if found is None else str(found), "no_clips": None, "clips": 0,
                    "clip_bytes": []}
    if found is None:
        report["no_clips"] = "no audio file found for it"
        return {}, {}, report
    if on_clip:
        on_clip(slug, len(cards))
    clips, report["no_clips"] = episode_clips(slug, transcript, cards, found,
                                              on_clip=(lambda _guid: on_clip(slug, 0)) if on_clip else None)
    report["clips"] = len(clips)
    report["clip_bytes"] = sorted(len(c.data) for c in clips.values())
    return clips, stamps(db, clips, now, {d.lineage: d.changed for d in cards}), report
