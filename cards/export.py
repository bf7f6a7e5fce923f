"""Write one Anki deck (.apkg) per episode, with stable identities so re-import updates.

Identity is what makes re-import safe:

- the two note types have fixed ids and a field list that never changes (a new field
  means a new note type with a new id, otherwise Anki would fork a copy on import);
- a deck's id derives from its episode's slug, which outlives a reworded title;
- a note's GUID is the card's lineage (`cards.lineage`), so a regenerated, edited or
  revised card updates the note already in Anki and keeps its review history.

Anki's importer updates an existing note only when the incoming note's modification
time is newer than the one in the collection. Each note is stamped with the time its
content last changed in cards (`Draft.changed`), not the export time: an unchanged card
then leaves an edit made inside Anki alone, and a card changed here afterwards wins.
`now` stamps the deck and note types only.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import os
import re
import sqlite3
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import genanki

from cards.check import plain
from cards.errors import ExportError
from cards.lineage import anki_kind, writable
from cards.models import Draft, format_time

# Fixed forever: Anki matches note types by id. Never edit these fields; add a new
# note type with a new id instead.
QA_MODEL_ID = 1200634274
CLOZE_MODEL_ID = 1545027033
QA_MODEL_NAME = "cards Q/A"
CLOZE_MODEL_NAME = "cards Cloze"
QA_FIELDS = ("Front", "Back", "Quote", "Note", "Episode", "Source")
CLOZE_FIELDS = ("Text", "Extra", "Quote", "Note", "Episode", "Source")

# Drafts in these states never reach a deck, even if a caller passes them.
_SKIPPED_STATUSES = frozenset({"rejected", "duplicate"})

# C0/C1 control characters except tab and newline. \x1f matters most: it is Anki's
# field separator inside the notes table, so it must never reach a field.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_ALL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")
# The opening bracket of Anki's media, text-to-speech and LaTeX syntax: [sound:…], [anki:tts]…,
# [latex]…[/latex], [$]…[/$], [$$]…[/$$]. Anki matches these case-insensitively in the rendered card
# (rslib's AV_TAGS and LATEX regexes), so such a bracket from untrusted text is written as the entity
# &#91;: it shows as "[" but no longer matches.
_ANKI_SYNTAX = re.compile(r"\[(?=sound:|anki:|/anki:|/?latex\]|/?\$\$?\])", re.IGNORECASE)
# Deck names are plain text to Anki; markup-like pieces of a heading are dropped from them.
_TAGLIKE = re.compile(r"<[^<>]*>")
# Tags keep letters, digits, "_" and "-": no "::" hierarchy, no path or template syntax.
_TAG_UNSAFE = re.compile(r"[^\w-]+")
_VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{6,32}")

_CSS = """\
.card {
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 20px;
  line-height: 1.5;
  color: #1f2328;
  background-color: #ffffff;
  text-align: left;
  margin: 0;
  padding: 0;
}
.cards {
  max-width: 36em;
  margin: 0 auto;
  padding: 1.2em 1em 2em;
  overflow-wrap: break-word;
}
.front { font-size: 1.15em; font-weight: 500; }
.episode { margin-top: 0.6em; font-size: 0.7em; color: #6e7781; }
hr#answer { border: none; border-top: 1px solid #d0d7de; margin: 1.2em 0; }
.back { font-size: 1.05em; }
.cloze { font-weight: 600; color: #0550ae; }
.quote {
  margin: 1.2em 0 0;
  padding: 0.3em 0 0.3em 0.9em;
  border-left: 3px solid #d0d7de;
  color: #424a53;
  font-size: 0.85em;
  font-style: italic;
}
.note { margin-top: 1em; font-size: 0.8em; color: #424a53; }
.label {
  display: block;
  font-size: 0.8em;
  font-weight: 600;
  letter-spacing: 0.04em;
  text-transform: uppercase;
  color: #6e7781;
}
.source { margin-top: 1em; font-size: 0.75em; }
.source a { color: #0969da; text-decoration: none; }
.source a:hover { text-decoration: underline; }
.card.nightMode, .card.night_mode, .nightMode .card, .night_mode .card {
  color: #e6edf3;
  background-color: #1c1c1e;
}
.nightMode .episode, .night_mode .episode,
.nightMode .label, .night_mode .label { color: #8d96a0; }
.nightMode hr#answer, .night_mode hr#answer { border-top-color: #3d444d; }
.nightMode .cloze, .night_mode .cloze { color: #79c0ff; }
.nightMode .quote, .night_mode .quote { color: #c9d1d9; border-left-color: #3d444d; }
.nightMode .note, .night_mode .note { color: #c9d1d9; }
.nightMode .source a, .night_mode .source a { color: #58a6ff; }
@media (max-width: 480px) {
  .card { font-size: 18px; }
  .cards { padding: 0.8em 0.7em 1.5em; }
}
"""

_EPISODE_LINE = '{{#Episode}}<div class="episode">{{Episode}}</div>{{/Episode}}'
_DETAILS = (
    '{{#Quote}}<blockquote class="quote">{{Quote}}</blockquote>{{/Quote}}\n'
    '{{#Note}}<div class="note"><span class="label">Your note</span>{{Note}}</div>{{/Note}}\n'
    '{{#Source}}<div class="source">{{Source}}</div>{{/Source}}'
)

_QA_TEMPLATE = {
    "name": "Card 1",
    "qfmt": f'<div class="cards">\n<div class="front">{{{{Front}}}}</div>\n{_EPISODE_LINE}\n</div>',
    "afmt": (
        f'<div class="cards">\n<div class="front">{{{{Front}}}}</div>\n{_EPISODE_LINE}\n'
        f'<hr id="answer">\n<div class="back">{{{{Back}}}}</div>\n{_DETAILS}\n</div>'
    ),
}
_CLOZE_TEMPLATE = {
    "name": "Cloze",
    "qfmt": f'<div class="cards">\n<div class="front">{{{{cloze:Text}}}}</div>\n{_EPISODE_LINE}\n</div>',
    "afmt": (
        f'<div class="cards">\n<div class="front">{{{{cloze:Text}}}}</div>\n{_EPISODE_LINE}\n'
        f'<hr id="answer">\n{{{{#Extra}}}}<div class="back">{{{{Extra}}}}</div>{{{{/Extra}}}}\n'
        f"{_DETAILS}\n</div>"
    ),
}


@dataclass(frozen=True)
class DeckInfo:
    """What export needs to know about an episode."""

    slug: str
    title: str
    url: str | None = None
    video_id: str | None = None

    @property
    def deck_id(self) -> int:
        """From the slug, which outlives a reworded title."""
        return deck_id(f"cards-episode:{self.slug}")


def _models() -> tuple[genanki.Model, genanki.Model]:
    # Built per call: genanki mutates template and field dicts in to_json.
    qa = genanki.Model(
        QA_MODEL_ID,
        QA_MODEL_NAME,
        fields=[{"name": name, "font": "Arial", "size": 20} for name in QA_FIELDS],
        templates=[dict(_QA_TEMPLATE)],
        css=_CSS,
    )
    cloze = genanki.Model(
        CLOZE_MODEL_ID,
        CLOZE_MODEL_NAME,
        fields=[{"name": name, "font": "Arial", "size": 20} for name in CLOZE_FIELDS],
        templates=[dict(_CLOZE_TEMPLATE)],
        css=_CSS,
        model_type=genanki.Model.CLOZE,
    )
    return qa, cloze


def _clean(text: str | None) -> str:
    """Untrusted text with control characters removed and line endings unified."""
    if not text:
        return ""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def _html(text: str | None) -> str:
    """Untrusted text as inert HTML: escaped, newlines as <br>.

    Field contents sit in element content, never in attributes, so quotes stay as typed.
    html.escape leaves `{`, `}` and `:` alone, which is why cloze markers such as
    `{{c1::answer::hint}}` survive escaping while everything around and inside them is
    made inert.
    """
    return _inert(_clean(text)).replace("\n", "<br>")


def _inert(text: str) -> str:
    """Text made inert for a field: HTML-escaped and with Anki's media/LaTeX syntax neutralised.

    Every piece of untrusted text written into a deck goes through here.
    """
    return _ANKI_SYNTAX.sub("&#91;", html.escape(text, quote=False))


def _safe_url(url: str | None) -> str | None:
    if not url:
        return None
    url = _CONTROL_ALL.sub("", url).strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    # Anki finds [sound:…] and [$]…[/$] anywhere in a rendered card, attributes included.
    return url.replace("[", "%5B").replace("]", "%5D")


def source_link(deck: DeckInfo, start: float | None) -> str:
    """The Source field: a link to the moment in the video, or to the episode page, or empty.

    Its text does not repeat the episode's title, which the Episode line already shows.
    """
    video_id = (deck.video_id or "").strip()
    if video_id and _VIDEO_ID.fullmatch(video_id) and start is not None and start >= 0:
        href = f"https://www.youtube.com/watch?v={video_id}&t={int(start)}s"
        text = f"Video at {format_time(start)}"  # the episode line above the answer names the episode
    else:
        href = _safe_url(deck.url)
        text = "Episode page"
        if href is None:
            return ""
    return f'<a href="{html.escape(href, quote=True)}">{_inert(text)}</a>'


def anki_tags(tags: list[str] | tuple[str, ...]) -> list[str]:
    """Tags from a safe alphabet (letters, digits, "_", "-"): no empties, no repeats.

    Tags come from LLM replies; "<x>", "../..", "tag::sub" or "{{Tags}}" must not reach Anki
    as markup, a path or a tag hierarchy.
    """
    out: list[str] = []
    seen: set[str] = set()
    for tag in tags:
        tag = re.sub(r"-{2,}", "-", _TAG_UNSAFE.sub("-", tag or "")).strip("-_")
        # Anki compares tags case-insensitively; a second spelling would be merged anyway.
        if tag and tag.casefold() not in seen:
            seen.add(tag.casefold())
            out.append(tag)
    return out


def _deck_component(text: str) -> str:
    text = _TAGLIKE.sub(" ", _CONTROL_ALL.sub(" ", text or ""))
    # Plain text only: no HTML tags, angle brackets or template braces from a heading.
    text = re.sub(r"[{}<>]+", " ", text)
    text = _SPACE.sub(" ", text).strip()
    # "::" is Anki's sub-deck separator; a title must not create sub-decks.
    return re.sub(r":{2,}", ":", text).strip(": ")


def deck_name(prefix: str, title: str) -> str:
    """`<prefix>::<title>`; the prefix may name a hierarchy, the title is always one deck."""
    parts = [_deck_component(p) for p in (prefix or "").split("::")]
    parts = [p for p in parts if p]
    parts.append(_deck_component(title) or "Untitled")
    return "::".join(parts)


def deck_id(name: str) -> int:
    """A stable deck id from the deck name: 48 bits of sha256, safe as a JavaScript number."""
    value = int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:12], 16)
    return value if value > 1 else value + 2  # 1 is Anki's Default deck


def _safe_slug(slug: str) -> str:
    cleaned = re.sub(r"[^\w.-]+", "-", slug or "")
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip(".-")
    if not cleaned:
        raise ExportError(f"cannot write deck: unusable episode slug {slug!r}")
    return cleaned


def _repeats(text: str | None, shown: str | None) -> bool:
    """Whether `text` says nothing that `shown` (already on the card) does not ("(Title)" repeats "Title")."""
    t = plain(text or "")
    return bool(t) and f" {t} " in f" {plain(shown or '')} "  # whole words: "AI" is not in "said"


def _note(draft: Draft, deck: DeckInfo, qa: genanki.Model, cloze: genanki.Model, due: int,
          sound: str | None = None):
    episode = _html(deck.title)
    source = source_link(deck, draft.context_start)
    if sound:
        source = f"{sound_tag(sound)} {source}".strip()
    tags = anki_tags([deck.slug, *draft.tags])
    # The back shows each text once: a quote taken from the note itself is the note, and a
    # cloze's extra that only names the episode repeats the episode line.
    quote = "" if _repeats(draft.quote, draft.note_text) else draft.quote
    common = [_html(quote), _html(draft.note_text), episode, source]
    front = _html(draft.front)
    # A "cloze" without a deletion would give Anki a note with no card; it is written as Q/A,
    # and its lineage is matched as one (`cards.lineage.anki_kind`).
    model = cloze if anki_kind(draft.kind, front) == "cloze" else qa
    back = draft.back
    if model is cloze and any(_repeats(back, shown) for shown in (deck.title, quote, draft.note_text, draft.front)):
        back = ""
    fields = [front, _html(back), *common]
    return _Note(model=model, fields=fields, tags=tags, guid=draft.lineage, due=due, mtime=draft.changed)


class _Note(genanki.Note):
    """A genanki note stamped with its own modification time instead of the export's.

    Anki updates a note on import only when the incoming one is newer, so the time a
    card's content last changed in cards lets an edit made inside Anki stand until the
    card changes here again.
    """

    def __init__(self, *args, mtime: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.mtime = mtime

    def write_to_db(self, cursor, timestamp, deck_id, id_gen):
        super().write_to_db(cursor, self.mtime or timestamp, deck_id, id_gen)


_SOUND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,150}")


def sound_tag(name: str) -> str:
    """`[sound:name]` for a media file we named ourselves (`cards.clips.clip_name`); anything else is refused."""
    if not _SOUND_NAME.fullmatch(name) or ".." in name:
        raise ExportError(f"unsafe media file name {name!r}")
    return f"[sound:{name}]"


def build_deck(drafts: list[Draft], deck: DeckInfo, *, prefix: str = "Podcasts",
               sounds: dict[str, str] | None = None) -> genanki.Deck:
    """The genanki deck for one episode (pure: no files, no clock).

    `sounds` maps a note's GUID to the name of its audio clip, played from the Source field.
    """
    sounds = sounds or {}
    name = deck_name(prefix, deck.title)
    description = _inert(_clean(deck.title))
    url = _safe_url(deck.url)
    if url:
        description = f'<a href="{html.escape(url, quote=True)}">{description}</a>'
    out = genanki.Deck(deck.deck_id, name, description=description)
    qa, cloze = _models()
    out.add_model(qa)
    out.add_model(cloze)
    due = 0
    for draft in drafts:
        if draft.status in _SKIPPED_STATUSES or draft.superseded or not writable(draft.front):
            continue
        out.add_note(_note(draft, deck, qa, cloze, due, sounds.get(draft.lineage)))
        due += 1
    return out


def _write_apkg(package: genanki.Package, target: str, timestamp: float,
                media: dict[str, bytes] | None = None) -> None:
    # genanki's own write_to_file leaves its temporary SQLite file behind; build the
    # database in a directory we clean up, then zip it with fixed entry times so the
    # same input and timestamp give the same bytes.
    date_time = time.gmtime(max(timestamp, 315532800))[:6]  # zip cannot hold dates before 1980
    with tempfile.TemporaryDirectory(prefix="cards-apkg-") as tmp:
        db_path = os.path.join(tmp, "collection.anki2")
        conn = sqlite3.connect(db_path)
        # A scratch file, zipped and synced as a whole below: syncing each statement buys nothing.
        conn.execute("PRAGMA synchronous=OFF")
        try:
            package.write_to_db(conn.cursor(), timestamp, itertools.count(int(timestamp * 1000)))
            conn.commit()
        finally:
            conn.close()
        with open(db_path, "rb") as fh:
            data = fh.read()
    with open(target, "wb") as raw:
        with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(zipfile.ZipInfo("collection.anki2", date_time), data, zipfile.ZIP_DEFLATED)
            # Media as Anki's legacy packages hold it: numbered entries, and a "media" map from
            # number to file name. mp3 does not compress, so it is stored as it is.
            names = sorted(media or {})
            for i, name in enumerate(names):
                zf.writestr(zipfile.ZipInfo(str(i), date_time), media[name], zipfile.ZIP_STORED)
            index = json.dumps({str(i): name for i, name in enumerate(names)})
            zf.writestr(zipfile.ZipInfo("media", date_time), index, zipfile.ZIP_DEFLATED)
        raw.flush()
        os.fsync(raw.fileno())


def _file_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some platforms and file systems cannot sync a directory
    finally:
        os.close(fd)


def export_deck(
    drafts: list[Draft],
    deck: DeckInfo,
    out_dir: Path,
    *,
    prefix: str = "Podcasts",
    now: float | None = None,
    clips: dict[str, tuple[str, bytes | None]] | None = None,
) -> Path:
    """Write `<out_dir>/<slug>.apkg` atomically and return its path.

    Rejected, duplicate and superseded drafts and drafts with an empty front are left out.
    Each note carries its draft's `changed` time (`now` when a draft has none); `now`
    stamps the deck and note types. `clips` maps a GUID to its audio clip (name, bytes):
    the clip plays from the note's Source field, and goes into the package's media unless
    its bytes are None (a clip Anki was given before).
    """
    clips = clips or {}
    timestamp = time.time() if now is None else float(now)
    out_dir = Path(out_dir)
    target = out_dir / f"{_safe_slug(deck.slug)}.apkg"
    package = genanki.Package(build_deck(drafts, deck, prefix=prefix,
                                         sounds={guid: name for guid, (name, _) in clips.items()}))
    media = {name: data for name, data in clips.values() if data is not None}
    tmp_name: str | None = None
    fd: int | None = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(out_dir, target.stem)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=_TMP_SUFFIX, dir=out_dir)
        _lock(fd)  # held while writing: another export sees this temporary file is in use
        # mkstemp creates the file private (0600); a deck is an ordinary file.
        os.chmod(tmp_name, _file_mode(target))
        if media:
            _write_apkg(package, tmp_name, timestamp, media)
        else:
            _write_apkg(package, tmp_name, timestamp)
        os.replace(tmp_name, target)
        tmp_name = None
        _fsync_dir(out_dir)
    except (OSError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ExportError(f"cannot write deck: {reason}", path=str(target)) from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
        if fd is not None:
            os.close(fd)
    return target


# -- temporaries left by an export that was killed -------------------------------------------------

_TMP_SUFFIX = ".apkg.tmp"
# mkstemp's names: the prefix, eight characters of [a-z0-9_], the suffix.
_TMP_RANDOM = r"[a-z0-9_]{8}"
# Where a temporary file cannot be locked, one is taken as abandoned only after this long.
_STALE_AFTER = 3600.0


def _lock(fd: int) -> bool:
    """Lock a temporary file exclusively without waiting; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: age decides instead
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _remove_stale_temporaries(out_dir: Path, stem: str) -> list[str]:
    """Delete `.<stem>.XXXXXXXX.apkg.tmp` files that an export killed mid-write left behind.

    Only our exact name pattern, only regular files (never a link), and only when no running
    export holds the file's lock (or, without locks, when it is over an hour old). Returns the
    names removed.
    """
    pattern = re.compile(rf"\.{re.escape(stem)}\.{_TMP_RANDOM}{re.escape(_TMP_SUFFIX)}")
    removed: list[str] = []
    try:
        names = [n for n in os.listdir(out_dir) if pattern.fullmatch(n)]
    except OSError:
        return removed
    try:
        import fcntl  # noqa: F401
        has_flock = True
    except ImportError:
        has_flock = False
    for name in names:
        path = out_dir / name
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            continue  # a link, gone already, or not ours to open
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or not _lock(fd):
                continue
            if not has_flock and time.time() - st.st_mtime < _STALE_AFTER:
                continue
            if os.stat(path, follow_symlinks=False).st_ino != st.st_ino:
                continue  # replaced since we opened it
            os.unlink(path)
            removed.append(name)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed
