"""Words as matching sees them: lower-cased, punctuation-free, lightly canonicalised.

Shared by episode grouping, transcript matching and alignment so that notes and
transcripts are always compared in the same terms.
"""

from __future__ import annotations

import re

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


def content_words(text: str, min_len: int = 2) -> list[str]:
    """Words that carry meaning: no stopwords, no single letters."""
    return [w for w in words(text) if w not in STOPWORDS and len(w) >= min_len]
