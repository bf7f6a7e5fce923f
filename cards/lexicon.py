"""Words as matching sees them: lower-cased, punctuation-free, lightly canonicalised.

Shared by episode grouping, transcript matching and alignment so that notes and
transcripts are always compared in the same terms.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_O_NUMBER = re.compile(r"^o(\d+)$")  # "o1" is heard as "01" in captions

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does doesn't
    doing don't down during each few for from further get gets got had hadn't has hasn't have haven't
    having he he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm
    i've if in into is isn't it it's its itself just let's like me more most mustn't my myself no nor
    not now of off on once only or other ought our ours ourselves out over own really same shan't she
    she'd she'll she's should shouldn't so some such than that that's the their theirs them themselves
    then there there's these they they'd they'll they're they've this those through to too under until
    up very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's
    which while who who's whom why why's will with won't would wouldn't you you'd you'll you're you've
    your yours yourself yourselves um uh yeah okay ok right know think going gonna kind sort thing things
    lot lots mean actually basically pretty much way well one two also even still something people
    really stuff make makes made said say says go goes want wants need needs see look use used using
    lmao lol wtf ppl bc tho alrd ahh hmm huh muchhh""".split()
)


def canonical(word: str) -> str:
    """One spelling per word: strips possessives, maps o1 to 01."""
    if word.endswith("'s"):
        word = word[:-2]
    elif "'" in word:
        word = word.replace("'", "")
    m = _O_NUMBER.match(word)
    if m:
        return "0" + m.group(1)
    return word


def words(text: str) -> list[str]:
    """All words, canonical, in order (stopwords kept)."""
    return [canonical(w) for w in _WORD.findall(text.lower().replace("\u2019", "'"))]


# words() drops apostrophes ("can't" -> "cant"), so stopwords are looked up that way too.
_CANONICAL_STOPWORDS = STOPWORDS | {w.replace("'", "") for w in STOPWORDS}


def content_words(text: str, min_len: int = 2) -> list[str]:
    """Words that carry meaning: no stopwords, no single letters."""
    return [w for w in words(text) if w not in _CANONICAL_STOPWORDS and len(w) >= min_len]


# --- Matching words: what alignment compares --------------------------------------------
#
# `words` above is the shared, plain view. Alignment also needs numbers to agree
# however they are written: "400,000", "400k" and "four hundred thousand" are heard
# and written interchangeably, notes say "27x" where speech says "27 times", and
# captions spell out small numbers ("eight out of 256"). `match_words` gives one
# spelling per number; transcripts are normalised with the same token helpers.

# Units as notes abbreviate them, spelled out as speech says them ("70GB" = "70 gigabytes").
UNITS = {
    "kb": "kilobyte", "mb": "megabyte", "gb": "gigabyte", "tb": "terabyte", "pb": "petabyte",
    "kw": "kilowatt", "mw": "megawatt", "gw": "gigawatt", "ms": "millisecond",
    "hr": "hour", "hrs": "hours", "yr": "year", "yrs": "years", "secs": "seconds",
    "mins": "minutes",
    "tflops": "teraflops", "pflops": "petaflops",
}
# Words a listener writes for what the speaker said in other words: a small table of
# near-synonyms common in talk about technology, business and geopolitics, and the
# irregular verb forms a suffix-stripping stemmer cannot join ("bought" / "buy").
# Alignment counts them as weaker spellings, never as the word itself. Keep the groups
# tight: words that can stand for each other in a claim, not merely the same topic.
# Passages are kept in the workspace by aligner version: an edit here that changes what
# alignment returns needs cards.align.ALIGN_VERSION bumped, or old passages pass as current.
RELATED_GROUPS = (
    "superpower unipolar hegemon hegemony",
    "cheap inexpensive cheaper cheapest",
    "expensive costly pricey",
    "obsolete outdated",
    "huge massive enormous gigantic",
    "tiny minuscule",
    "fast quick rapid",
    "buy bought purchase acquire",
    "sell sold",
    "win won",
    "lose lost",
    "build built",
    "spend spent",
    "teach taught",
    "begin began begun",
    "run ran",
    "peaceful peace",
    "crazy insane",
    "underrated overlooked underappreciated",
    "firm company",
    "dominant dominate dominating",
    "bottleneck constraint",
    "invasion invade",
    "idle unused underutilized",
)
RELATED: dict[str, tuple[str, ...]] = {}
for _group in RELATED_GROUPS:
    _ws = _group.split()
    for _w in _ws:
        RELATED[_w] = tuple(dict.fromkeys(RELATED.get(_w, ()) + tuple(x for x in _ws if x != _w)))

_NUM = r"\d+(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+"
# A number glued to a unit is two words ("70gb"); glued to anything else it stays whole
# ("70b", "27x", "4o", "400,000").
_MATCH_TOKEN = re.compile(
    rf"(?:{_NUM})(?=(?:{'|'.join(sorted(UNITS, key=len, reverse=True))})\b)"
    rf"|\d+(?:,\d{{3}})+(?:\.\d+)?[a-z]*|\d+\.\d+[a-z]*|[a-z0-9]+(?:'[a-z]+)?"
)
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)(k|m|b|bn|x)?$")
NUMBER_WORDS = {
    w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
        " fifteen sixteen seventeen eighteen nineteen".split())
} | {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(),
                                     start=2)}
SCALE_WORDS = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000,
               "trillion": 1_000_000_000_000}
_SUFFIX_SCALE = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "bn": 1_000_000_000, "x": 1}


# Stopwords as `match_words` spells them ("can't" is "cant" there).
MATCH_STOPWORDS = STOPWORDS | frozenset(canonical(w) for w in STOPWORDS)


def match_tokens(text: str) -> list[str]:
    """Raw word tokens of lower-cased text, numbers kept whole ("3.35", "400,000", "70b")."""
    return _MATCH_TOKEN.findall(text.lower().replace("\u2019", "'"))


def format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.6g}"


def number_value(token: str) -> float | None:
    """The value of a normalised number token, None for other words."""
    try:
        return float(token)
    except ValueError:
        return None


def normalise_token(token: str) -> str:
    """One spelling for a raw token: canonical word, digits for number words, no separators.

    "400,000" -> "400000", "70b" -> "70000000000", "27x" -> "27", "eight" -> "8",
    "gb" -> "gigabyte".
    "one" stays a word (it is mostly not a number) unless a scale word follows; see `match_words`.
    """
    if token[0].isdigit():
        m = _NUMBER.match(token.replace(",", ""))
        if m:
            value = float(m.group(1)) * _SUFFIX_SCALE.get(m.group(2) or "x", 1)
            return format_number(value)
        return canonical(token)
    if token != "one" and token in NUMBER_WORDS:
        return str(NUMBER_WORDS[token])
    if token in UNITS:
        return UNITS[token]
    return canonical(token)


BREAK = "\x00"  # separates texts in `match_tokens_joined`; never part of a word
_MATCH_TOKEN_OR_BREAK = re.compile(_MATCH_TOKEN.pattern + "|" + BREAK)


def match_tokens_joined(texts: list[str]) -> list[str]:
    """`match_tokens` of many texts in one pass, with BREAK between consecutive texts."""
    return _MATCH_TOKEN_OR_BREAK.findall(BREAK.join(texts).lower().replace("\u2019", "'"))


def _spoken_number_at(raw: Sequence[str], i: int) -> tuple[int, float] | None:
    """The spoken number of two or more words starting at raw[i]: (end, value), else None."""
    total, cur, prev, last_scale = 0.0, None, "", math.inf
    j = i
    while j < len(raw):
        w = raw[j]
        v = NUMBER_WORDS.get(w)
        if j == i:
            nxt = raw[j + 1] if j + 1 < len(raw) else ""
            if w in ("a", "one") and nxt in SCALE_WORDS:
                cur, prev = 1.0, "unit"
            elif w[:1].isdigit() and nxt in SCALE_WORDS:
                cur, prev = number_value(normalise_token(w)), "digits"
                if cur is None:
                    return None
            elif v is not None and w != "one":
                cur, prev = float(v), "tens" if v >= 20 else "unit"
            else:
                return None
        elif w == "hundred":
            if cur is None or cur >= 100 or prev == "hundred":
                break
            cur, prev = cur * 100, "hundred"
        elif w in SCALE_WORDS:
            scale = SCALE_WORDS[w]
            if cur is None or scale >= last_scale:
                break
            total, cur, prev, last_scale = total + cur * scale, None, "scale", scale
        elif v is not None and (w != "one" or prev == "tens"):
            if cur is None:
                cur = float(v)
            elif (prev == "hundred" and v < 100) or (prev == "tens" and 0 < v < 10):
                cur += v
            else:
                break
            prev = "tens" if v >= 20 else "unit"
        else:
            break
        j += 1
    if j - i < 2:
        return None
    return j, total + (cur or 0.0)


def spoken_numbers(raw: Sequence[str],
                   starts: Iterable[int] | None = None) -> list[tuple[int, int, str]]:
    """Numbers said in several words, as (start, end, normalised value) over raw tokens.

    "two hundred fifty six" -> "256", "seven billion" -> "7000000000", "a thousand" -> "1000",
    "1.5 million" -> "1500000". Only `starts` (ascending) are tried when given.
    """
    out: list[tuple[int, int, str]] = []
    done = 0
    for i in range(len(raw)) if starts is None else starts:
        if i < done:
            continue
        found = _spoken_number_at(raw, i)
        if found is not None:
            out.append((i, found[0], format_number(found[1])))
            done = found[0]
    return out


def match_words(text: str) -> list[str]:
    """Words as alignment compares them: canonical, numbers normalised, in order."""
    raw = match_tokens(text)
    out = [normalise_token(t) for t in raw]
    for start, end, value in reversed(spoken_numbers(raw)):
        out[start:end] = [value]
    return out
