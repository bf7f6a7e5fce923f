"""Who and what an episode is: its show, full title and people, for the prompt.

Read from what the inputs already hold, most trusted first:

- the episode's `cards.toml` table (`show = "…"`, `people = [...]`), which wins;
- the transcript's title ("Title | Show #459" names the show);
- the transcript's opening, where hosts name the show ("welcome to the Latent Space
  Podcast") and introduce themselves and their guests ("a conversation with Dylan Patel
  and Nathan Lambert", "I'm joined by my co-host X", "this is Alessio");
- the notes heading ("Dylan, Nathan on Lex": first names, which the opening or an
  episode page's link slug ("…/sholto-douglas-trenton-bricken") complete). A heading's
  words become a person only when the transcript or a link says that name too: "Lex ep
  w/ Dylan" names nobody called "Lex Ep".

Pure functions over text: no I/O, nothing guessed from a list of known names.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from cards.lexicon import words
from cards.models import Episode, Transcript

OPENING_WORDS = 250  # hosts introduce people in the first minute or two

_NUMBER = r"(?:#\s?\d+|(?:ep(?:isode)?\.?|no\.)\s?\d+)"
_SHOW_WORD = re.compile(r"\b(?:podcast|show|pod|radio|hour|talks?|conversations?|interviews?)\b", re.I)
_TITLE_PARTS = re.compile(r"\s+(?:\||//|—|–|-{1,2})\s+")
_TRAILING_NUMBER = re.compile(rf"\s*[:,(]?\s*{_NUMBER}\s*\)?\s*$", re.I)
_LEADING_NUMBER = re.compile(rf"^(.+?)\s*{_NUMBER}\s*[:.]\s+\S", re.I)

# A name word: capitalised, may hold an inner capital or apostrophe (McKenzie, O'Neil, Jean-Luc).
_NAME_WORD = r"[A-Z][a-z]+(?:[A-Z][a-z]+|['’-][A-Z]?[a-z]+)*"
_NAME = rf"{_NAME_WORD}(?:\s+(?:(?:de|van|von|der|da|di|le|la|bin|al)\s+)?{_NAME_WORD})?"
_INTRODUCES = (
    r"(?:conversation|interview|chat|talk|discussion|episode|here|sitting down|sit down|sat down|speaking)"
    r"\s+with|joined\s+(?:again\s+|today\s+|here\s+)?by|co-?hosts?|my\s+guests?(?:\s+today)?(?:\s+(?:is|are))?|"
    r"(?:we|i)\s+have|welcome(?:\s+back)?|i'm|i\s+am|this\s+is|my\s+name\s+is|with\s+me\s+(?:is|are)"
)
_INTRO = re.compile(rf"\b(?i:{_INTRODUCES})[\s,:]+({_NAME}(?:(?:\s*,\s*|\s*,?\s+and\s+|\s*&\s*){_NAME})*)")
_LIST_SPLIT = re.compile(r"\s*,\s*|\s*,?\s+and\s+|\s*&\s*")
# Capitalised words that start sentences or lists but name nobody.
_NOT_NAMES = frozenset(
    """The A An And But So Or My Our Your His Her Their This That These Those Today Tonight Welcome
    Hey Hi Hello Everyone Everybody Here There We You They It Me Him Them Us Yes Yeah Well Now
    Podcast Show Episode Part Guest Guests Host Co Dr Mr Mrs Ms Prof Professor Sir Okay Ok
    Thanks Thank What Who How Why When Where Back Again Just Also""".split()
)
# "welcome to the Latent Space Podcast", "this is the Lex Fridman podcast": up to five words
# ending in a word that names a show. Captions may be all lower case, so case is not needed.
_SHOW_NAME = r"(?:[\w'’&.-]+\s+){0,5}?(?i:podcast|show|pod|hour|radio)\b"
_OPENING_SHOW = re.compile(
    r"\b((?i:welcome(?:\s+back)?\s+to|you'?re\s+listening\s+to|this\s+is))\s+"
    r"(?i:(?:(?:another|this|today's|the\s+latest|a\s+new)\s+)?(?:episode|edition)\s+of\s+)?"
    rf"(?:(?i:the)\s+)?({_SHOW_NAME})")
_HEADING_PEOPLE = re.compile(r"^(.+?)\s+(?:on|with|w/|x|@)\s+\S", re.I)
_HEADING_DATE = re.compile(r"\(?\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b\)?")


def split_title(title: str | None) -> tuple[str | None, str | None]:
    """(show, episode number) named by a full episode title, where it names them.

    "DeepSeek, China … | Lex Fridman Podcast #459" -> ("Lex Fridman Podcast", "459");
    "Acquired Ep. 12: Title" -> ("Acquired", "12"); a title naming no show -> (None, None).
    """
    if not title:
        return None, None
    parts = [p.strip() for p in _TITLE_PARTS.split(title) if p.strip()]
    if len(parts) > 1:
        # The show is the part with a number or a word like "Podcast", usually the last.
        for part in reversed(parts):
            tail = _TRAILING_NUMBER.search(part)
            if tail or _SHOW_WORD.search(part):
                number = re.search(r"\d+", tail.group(0)).group(0) if tail else None
                show = _TRAILING_NUMBER.sub("", part).strip(" :,") if tail else part
                return show or None, number
        return None, None
    m = _LEADING_NUMBER.match(title)
    if m:
        number = re.search(r"\d+", title[len(m.group(1)):])
        return m.group(1).strip(" :,") or None, number.group(0) if number else None
    return None, None


def _opening(transcript: Transcript, limit: int = OPENING_WORDS) -> str:
    """The first `limit` or so words of the transcript, as one text."""
    chunks, n = [], 0
    for seg in transcript.segments:
        chunks.append(seg.text)
        n += len(seg.text.split())
        if n >= limit:
            break
    return " ".join(chunks).replace("’", "'")


def opening_show(transcript: Transcript | None, limit: int = OPENING_WORDS) -> str | None:
    """The show the opening names: "Hey everyone, welcome to the Latent Space Podcast" -> "Latent Space Podcast".

    Words in lower case (auto-captions) are capitalised; "this podcast" or "the show"
    alone name nothing.
    """
    if transcript is None:
        return None
    for m in _OPENING_SHOW.finditer(_opening(transcript, limit)):
        ws = m.group(2).split()
        if len(ws) < 2 or ws[0].casefold() in {"this", "that", "our", "my", "your", "a", "an", "another"}:
            continue
        # "this is the best show" is praise; after "this is" only a capitalised name is a show.
        if m.group(1).casefold().startswith("this") and not all(w[:1].isupper() for w in ws[:-1]):
            continue
        return " ".join(w if w[:1].isupper() else w[:1].upper() + w[1:] for w in ws).strip(" .,")
    return None


def opening_people(transcript: Transcript | None, limit: int = OPENING_WORDS) -> list[str]:
    """Names the opening introduces: guests after "conversation with", hosts after "I'm"."""
    if transcript is None:
        return []
    text = _opening(transcript, limit)
    found: list[str] = []
    for m in _INTRO.finditer(text):
        for name in _LIST_SPLIT.split(m.group(1)):
            name = _strip_non_names(name)
            if name:
                found.append(name)
    return _merge([], found)


def _strip_non_names(name: str) -> str | None:
    parts = name.split()
    while parts and parts[0] in _NOT_NAMES:
        parts.pop(0)
    while parts and parts[-1] in _NOT_NAMES:
        parts.pop()
    return " ".join(parts) or None


def heading_people(heading: str | None) -> list[str]:
    """The people a heading like "Dylan, Nathan on Lex" names before "on"/"with"."""
    if not heading:
        return []
    m = _HEADING_PEOPLE.match(_HEADING_DATE.sub("", heading).strip())
    if not m:
        return []
    names = [n.strip(" .'\"") for n in _LIST_SPLIT.split(m.group(1))]
    out = []
    for n in names:
        ws = n.split()
        if not ws or len(ws) > 3 or not all(w[:1].isalpha() for w in ws):
            return []  # not a list of names ("notes from a talk on X")
        out.append(" ".join(w[:1].upper() + w[1:] for w in ws))
    return out


def slug_words(links: tuple[str, ...] | list[str]) -> list[list[str]]:
    """The words of each link's last path part: episode pages name their guests there."""
    out = []
    for url in links:
        try:
            u = urlparse(url)
        except ValueError:
            continue
        if "youtu" in u.netloc.lower():
            continue
        last = u.path.rstrip("/").rsplit("/", 1)[-1]
        ws = [w for w in re.split(r"[-_+.]+", last) if w.isalpha()]
        if ws:
            out.append(ws)
    return out


def _complete(first: str, slugs: list[list[str]], others: set[str]) -> str:
    """A bare first name completed from a link slug: "Sholto" + "sholto-douglas-…" -> "Sholto Douglas"."""
    if " " in first:
        return first
    for ws in slugs:
        lower = [w.casefold() for w in ws]
        if first.casefold() in lower:
            i = lower.index(first.casefold())
            if i + 1 < len(ws) and lower[i + 1] not in others:
                return f"{first} {ws[i + 1].capitalize()}"
    return first


def _spoken(transcript: Transcript | None, slugs: list[list[str]]) -> list[str]:
    """The texts a heading's name must be found in: each link slug and the transcript."""
    texts = [" ".join(ws) for ws in slugs]
    if transcript is not None:
        texts.append(" ".join(seg.text for seg in transcript.segments))
    return texts


def _said(name: str, texts: list[str]) -> bool:
    """Whether one of the texts (from `_spoken`) holds the name's words, in order, in any case."""
    parts = words(name)
    if not parts:
        return False
    pattern = re.compile(r"(?<![^\W_])" + r"[\W_]+".join(map(re.escape, parts)) + r"(?![^\W_])", re.I)
    return any(pattern.search(t.replace("’", "'")) for t in texts)


def _merge(known: list[str], more: list[str]) -> list[str]:
    """Names in order without repeats; a bare first name gives way to the full name it starts."""
    out = list(known)
    for name in more:
        key = name.casefold()
        if any(o.casefold() == key or o.casefold().startswith(key + " ") for o in out):
            continue
        # A full name replaces a bare first name already listed.
        out = [o for o in out if not (" " not in o and key.startswith(o.casefold() + " "))]
        out.append(name)
    return out


def episode_context(ep: Episode, pin: dict | None = None) -> None:
    """Fill in ep.show, ep.full_title and ep.people from its inputs and its cards.toml table."""
    pin = pin or {}
    transcript = ep.transcript
    ep.full_title = transcript.title if transcript and transcript.title else ep.full_title
    show, _number = split_title(ep.full_title)
    ep.show = pin.get("show") or ep.show or show or opening_show(transcript)
    if pin.get("people"):
        ep.people = list(pin["people"])
        return
    heard = opening_people(transcript)
    slugs = slug_words(ep.links)
    # Heading words are a person only where the transcript or a link says that name too.
    from_heading = heading_people(ep.title)
    if from_heading:
        texts = _spoken(transcript, slugs)
        from_heading = [n for n in from_heading if _said(n, texts)]
    firsts = {n.split()[0].casefold() for n in from_heading}
    completed = [_complete(n, slugs, firsts) for n in from_heading]
    ep.people = _merge(_merge(list(ep.people), heard), completed)
