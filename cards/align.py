"""Find, for each note item, the transcript passage it came from.

Notes are terse and in the listener's words; captions are unpunctuated and
misheard. The method, with no LLM:

1. Both sides are read by `lexicon.match_words`: canonical spellings ("o1" is
   "01"), numbers however written ("400,000" = "400k" = "four hundred thousand",
   "27x" = "27", "70GB" = "70 gigabytes") and a light stemmer. The transcript is
   indexed once, in one vectorised pass: a stem id per word, the positions of
   every stem, and each stem's IDF (BM25's) over 100-word blocks.
2. A note becomes a query of terms. A term has one or more spellings in the
   transcript, each with a confidence: the word itself; a near spelling (a
   misspelt note word, "trianing", or a rare mishearing of a word the transcript
   also has right); an abbreviation ("quant", "yrs"); a compound heard as two
   words ("microwavegang") or two note words heard as one ("power plant"); an
   acronym written in capitals or without vowels ("MLA", "nlp") as initials; a
   number of about the same size ("60+%" for "80%"); a near-synonym or irregular
   form from `lexicon.RELATED` ("unipolar" for "superpower", "bought" for "buy").
   A term weighs its word's
   IDF; a weaker spelling discounts its hits, never the term. A note word the
   transcript lacks still counts in the note's total, so a note from elsewhere
   scores low. The note's first sentence is the claim heard: later sentences,
   run-on lines and children count for less.
3. Phrases: adjacent note terms said close together, in either order ("quality
   of data" / "data quality"), and a content word next to a telling function word
   ("went below"), are terms of their own, weighted by their own rarity. A phrase
   is far less likely by chance than its words in one passage.
4. Windows of a fixed size (about as far apart as a note's words are said, not
   the budget) are scored by each term's presence under a soft kernel: full near
   the window's focus, less towards its edges, once per term however often
   repeated (BM25 saturation with a small k1): notes name a claim, not the topic
   talked about most. Rare terms touch only the windows near their hits.
5. Notes mostly follow the episode: a Viterbi path over each note's best windows
   prices jumps by distance and backward jumps more, so strong evidence can still
   overrule the order. Notes whose best window scores below MIN_SCORE get None.
6. The passage: of the runs of whole segments that fit the token budget and hold
   the evidence's centre, the one covering the most weighted terms (each with a
   few words around it), ties going to the run with the evidence a little past
   its middle; then grown to the budget. Tokens are counted only for segments
   looked at. Times are the first and last timed segment's; a single segment
   longer than the budget is cut to the words around the evidence.
7. A passage for every claim: a note is split into claims (at "…", ";", " - ",
   sentence ends, lines and child bullets, and "and"/"but" between clauses with
   content words of their own). A claim whose evidence lies clearly better in a
   window within reach of the main passage than inside it, where the claim was
   said (at least two of its words, nearly its best match anywhere), gets an
   excerpt of its own. The budget is shared by claim, the main excerpt placed by
   the claims it holds; excerpts that touch merge, the rest join in transcript
   order with `models.EXCERPT_SEPARATOR`. A note with one claim, or whose claims
   are all in its passage, keeps a single passage.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from cards.lexicon import (
    BREAK,
    NUMBER_WORDS,
    RELATED,
    SCALE_WORDS,
    match_tokens,
    match_tokens_joined,
    match_words,
    normalise_token,
    number_value,
    spoken_numbers,
)
from cards.lexicon import MATCH_STOPWORDS as STOPWORDS
from cards.models import EXCERPT_SEPARATOR, Context, Excerpt, NoteItem, Transcript
from cards.tokens import TokenCounter

# Bump when the passages alignment returns change (here or in cards.lexicon's tables): the workspace
# keeps passages by this version, and `cards status` reports older ones until --realign.
ALIGN_VERSION = "2"

DEFAULT_CONTEXT_TOKENS = 350
STEP = 16  # words between scoring window starts
SPOT_WORDS = 160  # words per scoring window: a note's words are said within about this span
IDF_BLOCK = 100  # words per "document" when counting document frequencies
CANDIDATES = 8  # windows per note considered by the order model
BACKWARD_PENALTY = 0.1  # cost, in normalised score, of placing a note before the previous one
JUMP_COST = 0.5  # cost of a forward jump across the whole transcript
BACKWARD_JUMP_COST = 0.5  # and of a backward one, on top of BACKWARD_PENALTY
LEAN = 0.55  # share of the passage that comes before the evidence (0.5 = centred)
CORE = 0.5  # the inner share of each half-window where a term counts fully
EDGE = 0.5  # how much a term at the very edge of the window still counts
LATER_SENTENCE_FACTOR = 0.7  # weight of words after the first sentence of a note's first line
REST_FACTOR = 0.4  # weight of words from a note's run-on lines and children
PAIR_FACTOR = 0.6  # weight of a phrase hit, relative to the rarer of its two terms
PAIR_GAP = 6  # words: the most a phrase's two terms may lie apart in the transcript, in order
PAIR_GAP_REVERSED = 3  # and in the other order ("data quality" for "quality of data")
REVERSED_CONF = 0.7  # a phrase heard in the other order
FUNCTION_MIN_IDF = 2.0  # function words in fewer than about one passage in six
FUNCTION_PAIR_GAP = 2  # a function word must be next to its content word (one filler allowed)
FUZZY_CUTOFF = 80  # rapidfuzz ratio for a misheard spelling
FUZZY_CONF = 0.8  # a misspelt note word (absent from the transcript) matching a near spelling
MISHEARD_CONF = 0.5  # a note word the transcript has, matching a rare near spelling elsewhere
FUZZY_NEAR_BEST = 10  # a misspelt note word matches the spellings this close to its best match
FUZZY_RARE = 3  # a mishearing of a word the transcript also has occurs at most this often
ABBREV_CONF = 0.6  # "quant" for "quantitative", "yrs" for "years"
COMPOUND_CONF = 0.9  # "microwavegang" for "microwave gang", "power plant" for "powerplant"
ACRONYM_CONF = 0.8  # "nlp" for "natural language processing"
NEAR_NUMBER_CONF = 0.4  # "60" for "80"
RELATED_CONF = 0.6  # a near-synonym ("unipolar" for "superpower") or irregular form ("bought")
NEAR_NUMBER_RATIO = 1.5  # "60+%" may be "80%": notes round and misremember
TIE = 1e-3  # among passages holding equal evidence, prefer the one with it LEAN of the way in
HIT_MARGIN = 5  # words around a hit that a passage must hold for the hit to count
ABSENT_WEIGHT = 0.5  # a note word the transcript lacks weighs this share of the rarest word's IDF
MIN_SCORE = 0.15  # below this a note gets no context: too little of it is in the transcript
MAX_EXCERPTS = 3  # excerpts per passage: each keeps at least a third of the budget
CLAIM_MIN_WORDS = 2  # content words a part of a note needs to be a claim of its own
CLAIM_MIN_SCORE = 0.45  # a claim's best window elsewhere must hold this share of its terms
CLAIM_GAIN = 0.15  # and this much more of them than the main passage does
CLAIM_COVERED = 0.5  # a claim with this share of its terms in the main passage is in it: it may
# only move the passage a little (its excerpt then merges with the main one), never split it
CLAIM_HERE = 0.8  # share of a claim's best match anywhere that its window near the note must hold
CLAIM_REACH = 12  # passages: how far from the main evidence a claim's own excerpt may lie
_SUFFIXES = ("ities", "ity", "ness", "ings", "ing", "edly", "ed", "ies", "es", "ers", "er", "est",
             "ly", "s", "e")
_VOWELS = frozenset("aeiou")
_ACRONYM_CASE = re.compile(r"\b[A-Za-z]*[A-Z][a-z]*[A-Z][A-Za-z]*\b")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    if len(word) <= 4 or word.isdigit():
        return word
    if word[0].isdigit() and word.endswith("x"):
        return word[:-1]  # "27x" is said "27 times"
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            return word[: -len(suf)]
    return word


def _is_stop(word: str) -> bool:
    return word in STOPWORDS or (len(word) < 2 and not word.isdigit())


# --- The transcript index ------------------------------------------------------------------


@dataclass
class _Index:
    """A transcript prepared for scoring; everything per word is a numpy array."""

    transcript: Transcript
    n_words: int
    word_seg: np.ndarray  # segment of each word
    word_stem: np.ndarray  # stem id of each word
    word_raw: np.ndarray  # normalised-word id of each word (before stemming)
    stems: list[str]  # stem id -> stem
    stem_id: dict[str, int]
    raw_id: dict[str, int]
    order: np.ndarray  # word positions grouped by stem id, ascending within a stem
    offsets: np.ndarray  # stem id -> slice of `order`
    block: int  # words per IDF block
    n_blocks: int
    idf: np.ndarray  # stem id -> IDF
    content: np.ndarray  # word is not a stopword
    initial: np.ndarray  # first letter of each word (uint8)
    width: int  # words per scoring window: how far apart a note's words are said
    passage_words: int  # about how many words the token budget holds
    by_letter: dict[str, list[str]] = field(default_factory=dict)  # content stems by first letter
    raw_by_shape: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # words, unstemmed
    raw_count: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    numbers: list[tuple[float, str]] = field(default_factory=list)  # numeric stems and their values

    def positions(self, sid: int) -> np.ndarray:
        return self.order[self.offsets[sid]:self.offsets[sid + 1]]

    def count(self, term: str) -> int:
        sid = self.stem_id.get(term)
        return 0 if sid is None else int(self.offsets[sid + 1] - self.offsets[sid])

    def idf_of(self, pos: np.ndarray) -> float:
        """BM25's IDF over passage-sized blocks for a set of positions."""
        df = len(np.unique(pos // self.block))
        return math.log(1 + (self.n_blocks - df + 0.5) / (df + 0.5))


def _build_index(transcript: Transcript, counter: TokenCounter, budget: int) -> _Index:
    segs = transcript.segments
    # One regex pass over the whole transcript; BREAK tokens mark the segment boundaries.
    toks = match_tokens_joined([s.text for s in segs])
    tok_id = {t: i for i, t in enumerate(dict.fromkeys(toks))}
    ids = np.fromiter(map(tok_id.__getitem__, toks), dtype=np.int64, count=len(toks))
    brk = tok_id.get(BREAK)
    if brk is not None:
        is_break = ids == brk
        seg_of = np.cumsum(is_break)[~is_break]
        ids = ids[~is_break]
    else:
        seg_of = np.zeros(len(ids), dtype=np.int64)
    # Normalise each distinct token once; words are then ids into `raw_words`.
    raw_id: dict[str, int] = {}
    tok_raw = np.fromiter((raw_id.setdefault(normalise_token(t) if t != BREAK else "", len(raw_id))
                           for t in tok_id), dtype=np.int64, count=len(tok_id))
    word_raw = tok_raw[ids]
    raw_words = list(raw_id)
    # Numbers said in words ("two hundred fifty six", "7 billion") become one word, as in
    # `match_words`. Only positions that can start one are tried: a number word, or any word
    # followed by a scale word ("a thousand", "1.5 million").
    tok_words = list(tok_id)
    starters = [i for w, i in tok_id.items() if w in NUMBER_WORDS and w != "one"]
    scales = [i for w, i in tok_id.items() if w in SCALE_WORDS]
    if (starters or scales) and len(ids):
        maybe = np.isin(ids, starters)
        maybe[:-1] |= np.isin(ids[1:], scales)
        raw_tokens = _Tokens(ids, tok_words)
        found = spoken_numbers(raw_tokens, np.flatnonzero(maybe).tolist())
        if found:
            dropped = np.zeros(len(word_raw), dtype=bool)
            for start, end, value in found:
                if value not in raw_id:
                    raw_id[value] = len(raw_id)
                    raw_words.append(value)
                word_raw[start] = raw_id[value]
                dropped[start + 1:end] = True
            word_raw, seg_of = word_raw[~dropped], seg_of[~dropped]

    stem_id: dict[str, int] = {}
    raw_stem = np.fromiter((stem_id.setdefault(stem(w), len(stem_id)) for w in raw_words),
                           dtype=np.int64, count=len(raw_words))
    stems = list(stem_id)
    word_stem = raw_stem[word_raw]
    n = len(word_stem)
    order = np.argsort(word_stem, kind="stable")
    offsets = np.zeros(len(stems) + 1, dtype=np.int64)
    np.cumsum(np.bincount(word_stem, minlength=len(stems)), out=offsets[1:])

    passage_words = max(1, int(budget * _words_per_token(transcript, counter, n)))
    n_blocks = max(1, math.ceil(n / IDF_BLOCK))
    # Document frequency of each stem over blocks, in one pass.
    keys = np.unique(word_stem * n_blocks + np.arange(n) // IDF_BLOCK)
    df = np.bincount(keys // n_blocks, minlength=len(stems))
    idf = np.log(1 + (n_blocks - df + 0.5) / (df + 0.5))

    stop_raw = np.fromiter((not w or _is_stop(w) for w in raw_words), dtype=bool,
                           count=len(raw_words))
    first = np.fromiter((ord(w[0]) if w and ord(w[0]) < 256 else 0 for w in raw_words),
                        dtype=np.uint8, count=len(raw_words))
    by_letter: dict[str, list[str]] = {}
    numbers: list[tuple[float, str]] = []
    for st in stems:
        if not st:
            continue
        if st[0].isdigit():
            v = number_value(st)
            if v is not None:
                numbers.append((v, st))
        elif len(st) >= 3 and st not in STOPWORDS:
            by_letter.setdefault(st[0], []).append(st)
    raw_by_shape: dict[tuple[str, int], list[str]] = {}
    for w in raw_words:
        if len(w) >= 4 and w[0].isalpha() and w not in STOPWORDS:
            raw_by_shape.setdefault((w[0], len(w)), []).append(w)
    return _Index(transcript, n, seg_of.astype(np.int64), word_stem, word_raw, stems, stem_id,
                  raw_id, order, offsets, IDF_BLOCK, n_blocks, idf, ~stop_raw[word_raw],
                  first[word_raw], SPOT_WORDS, passage_words, by_letter, raw_by_shape,
                  np.bincount(word_raw, minlength=len(raw_words)), numbers)


class _Tokens:
    """Raw tokens by position, without building the list: ids into the distinct tokens."""

    def __init__(self, ids: np.ndarray, words: list[str]):
        self.ids, self.words = ids, words

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> str:
        return self.words[self.ids[i]]


def _words_per_token(transcript: Transcript, counter: TokenCounter, n_words: int) -> float:
    """Words per token, from an even sample of segments (counting all costs more than aligning)."""
    segs = transcript.segments
    if not segs or not n_words:
        return 0.75
    step = max(1, len(segs) // 200)
    sample = segs[::step]
    toks = sum(counter.count(s.text) + 1 for s in sample)
    wds = sum(len(match_tokens(s.text)) for s in sample)
    return max(0.05, wds / toks) if toks else 0.75


# --- Queries: a note's terms and their spellings in the transcript ------------------------


@dataclass
class _Term:
    """A note term (or phrase) with its occurrences: groups of positions sharing one confidence."""

    key: str
    groups: list[tuple[np.ndarray, float]]
    weight: float
    _union: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def union(self) -> tuple[np.ndarray, np.ndarray]:
        """All positions, ascending, each at its best confidence (memoised)."""
        if self._union is None:
            self._union = self._merge()
        return self._union

    def _merge(self) -> tuple[np.ndarray, np.ndarray]:
        pos = np.concatenate([g for g, _ in self.groups])
        conf = np.concatenate([np.full(len(g), c) for g, c in self.groups])
        order = np.lexsort((-conf, pos))
        pos, conf = pos[order], conf[order]
        keep = np.ones(len(pos), dtype=bool)
        keep[1:] = pos[1:] != pos[:-1]  # one occurrence per position, at its best confidence
        return pos[keep], conf[keep]


_Groups = list[tuple[np.ndarray, float]]  # positions sharing one confidence
_Found = tuple[_Groups, float]  # a word's spellings in the transcript, and its IDF


class _Lookup:
    """A note word's spellings in one transcript, memoised across the notes of an episode."""

    def __init__(self, index: _Index):
        self.index = index
        self.cache: dict[tuple[str, bool], _Found | None] = {}
        self.exacts: dict[int, _Groups] = {}
        self.phrases: dict[tuple[int, int, int, int], tuple[_Groups, _Groups, _Found | None]] = {}

    def exact(self, sid: int) -> _Groups:
        """A word's own positions, as one group (the same list each time: phrases key on it)."""
        if sid not in self.exacts:
            self.exacts[sid] = [(self.index.positions(sid), 1.0)]
        return self.exacts[sid]

    def phrase(self, a: _Term, b: _Term, gap: int, rgap: int) -> _Found | None:
        """Where two terms are said together, and the phrase's IDF; memoised, as the claims
        of a note repeat the note's own phrases."""
        key = (id(a.groups), id(b.groups), gap, rgap)
        hit = self.phrases.get(key)
        # The groups are kept with the entry, so their ids cannot be reused by other lists.
        if hit is not None and hit[0] is a.groups and hit[1] is b.groups:
            return hit[2]
        ph = _phrase(a, b, gap, rgap)
        # A phrase is as informative as it is rare, like a word.
        found = None if ph is None else (ph, self.index.idf_of(np.concatenate([g for g, _ in ph])))
        self.phrases[key] = (a.groups, b.groups, found)
        return found

    def spellings(self, word: str, acronym: bool) -> _Found | None:
        """(position groups with confidences, IDF) for a normalised note word, None if absent."""
        key = (word, acronym)
        if key not in self.cache:
            self.cache[key] = self._spellings(word, acronym)
        return self.cache[key]

    def _spellings(self, word: str, acronym: bool) -> _Found | None:
        ix = self.index
        s = stem(word)
        found: dict[float, list[np.ndarray]] = {}
        exact = ix.stem_id.get(s)
        if exact is not None:
            found.setdefault(1.0, []).append(ix.positions(exact))
        n_exact = ix.count(s)
        if s[0].isdigit():
            self._near_numbers(s, found)
        else:
            if len(word) >= 5:
                self._misheard(word, exact is not None, found)
            if n_exact <= 2:
                self._abbreviation(word, found)
                self._compound(word, found)
            if acronym:
                self._acronym(word, found)
            for other in RELATED.get(word) or RELATED.get(word[:-1] if word.endswith("s") else "", ()):
                if stem(other) != s:
                    self._add(found, RELATED_CONF, stem(other))
        if not found:
            return None
        groups = [(np.unique(np.concatenate(v)), c) for c, v in found.items()]
        groups = [(g, c) for g, c in groups if len(g)]
        if not groups:
            return None
        # The term is as informative as the word itself when it occurs; otherwise as all its
        # spellings together. A weaker spelling discounts its hits, never the term's weight.
        if exact is not None:
            idf = float(ix.idf[exact])
        else:
            idf = ix.idf_of(np.concatenate([g for g, _ in groups]))
        return groups, idf

    def _add(self, found: dict[float, list[np.ndarray]], conf: float, term: str) -> None:
        sid = self.index.stem_id.get(term)
        if sid is not None:
            found.setdefault(conf, []).append(self.index.positions(sid))

    def _misheard(self, word: str, present: bool, found: dict[float, list[np.ndarray]]) -> None:
        """Spellings a letter or two away ("sparity", "tranium"), compared as whole words.

        When the note's word occurs in the transcript, only rare variants count: a
        mishearing is rarer than the word, and a common near-spelling is another word
        ("export" for "expert"). When it does not occur, the note may be misspelt
        ("trianing"): the closest spellings count, however common.
        """
        from rapidfuzz import fuzz, process

        ix = self.index
        pool = [t for n in range(len(word) - 2, len(word) + 3)
                for t in ix.raw_by_shape.get((word[0], n), ()) if t != word]
        hits = process.extract(word, pool, scorer=fuzz.ratio, score_cutoff=FUZZY_CUTOFF, limit=8)
        if present:
            hits = [h for h in hits if ix.raw_count[ix.raw_id[h[0]]] <= FUZZY_RARE]
        elif hits:
            best = hits[0][1]
            hits = [h for h in hits if h[1] >= best - FUZZY_NEAR_BEST]
        conf = MISHEARD_CONF if present else FUZZY_CONF
        for hit, score, _ in hits[:3]:
            if stem(hit) != stem(word):
                self._add(found, round(conf * score / 100, 2), stem(hit))

    def _abbreviation(self, word: str, found: dict[float, list[np.ndarray]]) -> None:
        """Notes shorten words: "quant" for "quantitative", "yrs" for "years"."""
        if not word.isalpha() or len(word) < 3 or word in STOPWORDS:
            return
        vowels = sum(ch in _VOWELS for ch in word)
        prefix = len(word) >= 4 and stem(word) == word  # an inflected word is not an abbreviation
        skeleton = vowels <= 1 and len(word) <= 5
        if not (prefix or skeleton):
            return
        hits = []
        for t in self.index.by_letter.get(word[0], ()):
            if t == word or len(t) > 3 * len(word) or len(t) <= len(word):
                continue
            if (prefix and t.startswith(word)) or (skeleton and _subsequence(word, t)):
                hits.append(t)
        hits.sort(key=lambda t: -self.index.count(t))
        for t in hits[:4]:
            self._add(found, ABBREV_CONF, t)

    def _compound(self, word: str, found: dict[float, list[np.ndarray]]) -> None:
        """A note word heard as two: "microwavegang" = "microwave gang", "gpt4" = "gpt 4"."""
        ix = self.index
        if len(word) < 4:
            return
        for k in range(2, len(word) - 1):
            a, b = word[:k], word[k:]
            if not (len(b) >= 2 or b.isdigit()):
                continue
            ra, sb = ix.raw_id.get(a), ix.stem_id.get(stem(b))
            if ra is None or sb is None or a in STOPWORDS:
                continue
            pa = np.flatnonzero(ix.word_raw == ra)
            pb = ix.positions(sb)
            both = np.intersect1d(pa + 1, pb) - 1
            if len(both):
                found.setdefault(COMPOUND_CONF, []).append(both)

    def _acronym(self, word: str, found: dict[float, list[np.ndarray]]) -> None:
        """Initials of consecutive words: content words ("nlp"), or all words ("moe")."""
        ix = self.index
        letters = [ord(c) for c in word]
        k = len(letters)
        content = np.flatnonzero(ix.content)
        for idx in (content, np.arange(ix.n_words)) if k >= 3 else (content,):
            if len(idx) < k:
                continue
            init = ix.initial[idx]
            m = init[: len(idx) - k + 1] == letters[0]
            for j in range(1, k):
                m &= init[j: len(idx) - k + 1 + j] == letters[j]
            starts = idx[: len(idx) - k + 1][m]
            ends = idx[k - 1:][m]
            starts = starts[ends - starts <= 2 * k]  # the words must be close together
            if len(starts):
                found.setdefault(ACRONYM_CONF, []).append(starts)

    def _near_numbers(self, s: str, found: dict[float, list[np.ndarray]]) -> None:
        v = number_value(s)
        if v is None or v < 10 or (1900 <= v <= 2100 and v == int(v)):
            return  # small numbers and years are too common to match approximately
        for value, t in self.index.numbers:
            if t != s and value > 0 and max(value, v) / min(value, v) <= NEAR_NUMBER_RATIO:
                self._add(found, NEAR_NUMBER_CONF, t)


def _subsequence(short: str, long: str) -> bool:
    it = iter(long)
    return all(ch in it for ch in short)


def _acronym_like(original: str) -> set[str]:
    """Words written like acronyms in the note: two capitals ("MLA", "MoEs")."""
    out = set()
    for w in _ACRONYM_CASE.findall(original):
        w = w.lower()
        out.add(w[:-1] if w.endswith("s") and len(w) > 3 else w)
    return out


_SENTENCE_END = re.compile(r"(?<=[.?!;])\s+")


def _parts(text: str) -> list[tuple[str, float]]:
    """The note's parts and their weights: its first sentence is the claim heard; the
    rest of the first line elaborates or comments; run-on lines and children add detail."""
    first, _, rest = text.partition("\n")
    sentences = _SENTENCE_END.split(first.strip(), maxsplit=1)
    parts = [(sentences[0], 1.0)]
    if len(sentences) > 1:
        parts.append((sentences[1], LATER_SENTENCE_FACTOR))
    if rest.strip():
        parts.append((rest, REST_FACTOR))
    return parts


# Where a note moves on to another claim: an ellipsis, a semicolon, a dash between spaces, or
# the end of a sentence. Lines (run-on lines, child bullets) are claims of their own too.
_CLAIM_BREAK = re.compile(r"\s*(?:…|\.{2,}|;|\s[-–—]\s)\s*|(?<=[.?!])\s+")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_CONJUNCTION = re.compile(r",?\s+(?:and|but)\s+", re.IGNORECASE)


def _claims(text: str) -> list[str]:
    """The separate claims of a note, in its order; parts too small to be one are dropped.

    "v3 has 256 experts … some gpus sit idle … they use auxiliary loss" is three claims;
    so are a line and its child bullets. Two clauses joined by "and"/"but" are two claims
    when each has content words of its own ("intel said no to the iphone and lost its
    lead"), not when one side is a bare name ("alibaba and deepseek aren't close").
    """
    pieces: list[str] = []
    for line in text.split("\n"):
        for piece in _CLAIM_BREAK.split(_BULLET.sub("", line)):
            if piece and piece.strip():
                pieces.extend(_clauses(piece.strip()))
    return [p for p in pieces if _n_content(p) >= CLAIM_MIN_WORDS]


def _n_content(text: str) -> int:
    return sum(not _is_stop(w) for w in match_words(text))


def _clauses(piece: str) -> list[str]:
    chunks = _CONJUNCTION.split(piece)
    out = [chunks[0]]
    for chunk in chunks[1:]:
        if _n_content(out[-1]) >= CLAIM_MIN_WORDS and _n_content(chunk) >= CLAIM_MIN_WORDS:
            out.append(chunk)
        else:
            out[-1] = f"{out[-1]} and {chunk}"
    return out


def _query(lookup: _Lookup, text: str) -> list[_Term]:
    """The note's terms (weighted, with spellings) and the phrases of adjacent terms."""
    index = lookup.index
    caps = _acronym_like(text)
    terms: dict[str, _Term] = {}
    phrases: list[_Term] = []
    for part, factor in _parts(text):
        ws = match_words(part)
        seq: list[_Term | None] = []  # per word: its term (a stopword's is weightless)
        for i, w in enumerate(ws):
            if _is_stop(w):
                # A function word makes a phrase ("went below") unless it is everywhere ("the").
                sid = index.stem_id.get(stem(w))
                useful = sid is not None and len(w) > 1 and index.idf[sid] >= FUNCTION_MIN_IDF
                seq.append(_Term(w, lookup.exact(sid), 0.0) if useful else None)
                continue
            # An acronym is written in capitals ("MLA") or cannot be said as a word ("nlp").
            acr = w in caps or (w.isalpha() and 2 <= len(w) <= 5
                                and not any(c in _VOWELS for c in w))
            if w.endswith("s") and w[:-1] in caps:
                w, acr = w[:-1], True
            found = lookup.spellings(w, acr)
            # Two note words that the transcript has as one ("power plant" = "powerplant").
            if i + 1 < len(ws) and not _is_stop(ws[i + 1]):
                joined = lookup.index.stem_id.get(stem(w + ws[i + 1]))
                if joined is not None:
                    extra = (index.positions(joined), COMPOUND_CONF)
                    if found:
                        found = (found[0] + [extra], found[1])
                    else:
                        found = ([extra], index.idf_of(extra[0]))
            if found is None:
                # Absent from the transcript: no evidence anywhere, but it lowers the note's score,
                # since a note from this episode should mostly be found in it.
                key = stem(w)
                absent = _Term(key, [], ABSENT_WEIGHT * factor * float(index.idf.max(initial=0.0)))
                terms.setdefault(key, absent)
                seq.append(absent)
                continue
            groups, idf = found
            key = stem(w)
            t = _Term(key, groups, idf * factor)
            if key not in terms or terms[key].weight < t.weight:
                terms[key] = t
            seq.append(t)
        # Phrases: adjacent content terms found close together in the transcript, in either
        # order; and a content word with the function word next to it ("went below"), in order.
        content = [t for t, w in zip(seq, ws) if not _is_stop(w)]
        pairs = [(a, b, PAIR_GAP, PAIR_GAP_REVERSED) for a, b in zip(content, content[1:])]
        pairs += [(seq[i], seq[i + 1], FUNCTION_PAIR_GAP, 0) for i in range(len(ws) - 1)
                  if _is_stop(ws[i]) != _is_stop(ws[i + 1])]
        for a, b, gap, rgap in pairs:
            if a is None or b is None or not a.groups or not b.groups or a.key == b.key:
                continue
            found = lookup.phrase(a, b, gap, rgap)
            if found is not None:
                ph, idf = found
                phrases.append(_Term(f"{a.key}+{b.key}", ph, PAIR_FACTOR * factor * idf))
    return list(terms.values()) + phrases


def _phrase(a: _Term, b: _Term, gap: int, rgap: int) -> list[tuple[np.ndarray, float]] | None:
    pa, ca = a.union()
    pb, cb = b.union()
    if not len(pa) or not len(pb):
        return None
    j = np.searchsorted(pb, pa, side="left")
    # b at or after a, within the gap, in the note's order
    jf = np.minimum(j, len(pb) - 1)
    fwd = (j < len(pb)) & (pb[jf] - pa <= gap)
    # b just before a: the other order
    jb = np.maximum(j - 1, 0)
    rev = (j > 0) & (pa - pb[jb] <= rgap) & ~fwd
    conf = np.zeros(len(pa))
    conf[fwd] = np.minimum(ca[fwd], cb[jf[fwd]])
    conf[rev] = np.minimum(ca[rev], cb[jb[rev]]) * REVERSED_CONF
    hit = conf > 0
    if not hit.any():
        return None
    pos, conf = pa[hit], np.round(conf[hit], 2)
    return [(pos[conf == c], float(c)) for c in np.unique(conf)]


# --- Scoring windows ----------------------------------------------------------------------


_FAR = 1e12


def _kernel(pos: np.ndarray, focus: np.ndarray, before: float, after: float) -> np.ndarray:
    """How much the nearest of `pos` counts for a window focused at each of `focus`.

    1 near the focus (with a slight slope so that ties go to the window centred on
    the evidence), falling to EDGE at the window's edges, 0 outside.
    """
    padded = np.concatenate(([-_FAR], pos, [_FAR]))
    j = np.searchsorted(padded, focus)
    xp, fp = _KERNEL_X, _KERNEL_Y
    return np.maximum(np.interp((focus - padded[j - 1]) / before, xp, fp),
                      np.interp((padded[j] - focus) / after, xp, fp))


_KERNEL_X = np.array([0.0, CORE, 1.0, 1.0 + 1e-9])
_KERNEL_Y = np.array([1.0, 1.0 - 0.02 * CORE, EDGE, 0.0])


def _window_scores(index: _Index, query: list[_Term], focus: np.ndarray) -> np.ndarray:
    """Each window's weighted evidence: per term, its best-placed spelling's kernel value."""
    before, after = index.width * LEAN, index.width * (1 - LEAN)
    # A term with few hits touches few windows: score just those.
    sparse_limit = len(focus) * STEP / (4 * index.width)
    total = np.zeros(len(focus))
    presence = np.zeros(len(focus))
    for t in query:
        presence.fill(0.0)
        for pos, conf in t.groups:
            if len(pos) <= sparse_limit:
                idx, val = _kernel_near(pos, focus, before, after)
                np.maximum.at(presence, idx, conf * val)
            else:
                np.maximum(presence, conf * _kernel(pos, focus, before, after), out=presence)
        total += t.weight * presence
    return total


def _kernel_near(pos: np.ndarray, focus: np.ndarray, before: float,
                 after: float) -> tuple[np.ndarray, np.ndarray]:
    """`_kernel` for the windows near each of a few hits: (window indices, values)."""
    f0 = focus[0] if len(focus) else 0.0
    span = int(math.ceil((before + after) / STEP)) + 2
    first = np.floor((pos - after - f0) / STEP).astype(np.int64)
    idx = (first[:, None] + np.arange(span)[None, :]).ravel()
    hit = np.repeat(pos, span)
    ok = (idx >= 0) & (idx < len(focus))
    idx, hit = idx[ok], hit[ok]
    f = focus[idx]
    d = np.where(hit <= f, (f - hit) / before, (hit - f) / after)
    return idx, np.interp(d, _KERNEL_X, _KERNEL_Y)


def _evidence_centre(index: _Index, query: list[_Term], focus: int) -> int:
    """Weighted centre of the nearest hit of each term inside the window focused at `focus`."""
    lo, hi = focus - index.width * LEAN, focus + index.width * (1 - LEAN)
    pts, wts = [], []
    for t in query:
        best, best_w = None, 0.0
        for pos, conf in t.groups:
            inside = pos[(pos >= lo) & (pos <= hi)]
            if len(inside):
                p = inside[np.argmin(np.abs(inside - focus))]
                if conf > best_w:
                    best, best_w = p, conf
        if best is not None:
            pts.append(float(best))
            wts.append(best_w * t.weight)
    return int(round(np.average(pts, weights=wts))) if pts else focus


def _coverage(query: list[_Term], lo: int, hi: int) -> float:
    """The weighted terms of `query` found between words lo and hi (exclusive)."""
    total = 0.0
    for t in query:
        best = 0.0
        for pos, conf in t.groups:
            a, b = np.searchsorted(pos, [lo, hi])
            if b > a:
                best = max(best, conf)
        total += t.weight * best
    return total


# --- Passages -----------------------------------------------------------------------------


class _Passages:
    """Cuts passages of whole segments to a token budget, counting tokens only where needed."""

    def __init__(self, index: _Index, counter: TokenCounter, budget: int):
        self.index = index
        self.counter = counter
        self.budget = budget
        self.tokens = np.full(len(index.transcript.segments), -1, dtype=np.int64)

    def seg_tokens(self, i: int) -> int:
        if self.tokens[i] < 0:
            self.tokens[i] = self.counter.count(self.index.transcript.segments[i].text) + 1
        return int(self.tokens[i])

    def place(self, query: list[_Term], focus: int, score: float,
              budget: int | None = None) -> Context:
        """The budget-sized run of whole segments near the chosen spot that holds the most evidence.

        Every maximal run of segments that fits the budget and starts near the spot is
        scored by the weighted terms it contains; among runs holding equal evidence the
        one with the evidence LEAN of the way through wins.
        """
        ix = self.index
        budget = self.budget if budget is None else budget
        centre_word = min(max(_evidence_centre(ix, query, focus), 0), ix.n_words - 1)
        centre = int(ix.word_seg[centre_word])
        if self.seg_tokens(centre) > budget:
            return self._cut(centre, centre_word, score, budget)
        # Runs that hold the centre of the evidence, starting at most a passage before it.
        first = int(ix.word_seg[max(0, centre_word - ix.passage_words * budget // self.budget)])
        last = centre
        # Token counts from `first` on, far enough for a run starting at `last` to fill the budget.
        toks = [self.seg_tokens(i) for i in range(first, last + 1)]
        end = last + 1
        extra = 0
        while end < len(ix.transcript.segments) and extra <= budget:
            toks.append(self.seg_tokens(end))
            extra += toks[-1]
            end += 1
        cum = np.concatenate([[0], np.cumsum(toks)])
        starts = np.arange(first, last + 1)
        rel = starts - first
        ends = np.searchsorted(cum, cum[rel] + budget, side="right") - 2 + first
        ok = ends >= centre
        if not ok.any():
            return self._cut(centre, centre_word, score, budget)
        starts, ends = starts[ok], ends[ok]
        lo_word = int(np.searchsorted(ix.word_seg, first))
        hi_word = int(np.searchsorted(ix.word_seg, end, side="left"))
        value = np.zeros(len(starts))
        for t in query:
            tf = np.zeros(len(starts))
            for pos, conf in t.groups:
                inside = pos[(pos >= lo_word) & (pos < hi_word)]
                if not len(inside):
                    continue
                # A hit is covered with a few words around it: the phrase it belongs to often
                # starts in the caption line before.
                # Both ascending, as the positions are.
                before = ix.word_seg[np.maximum(inside - HIT_MARGIN, 0)]
                after = ix.word_seg[np.minimum(inside + HIT_MARGIN, ix.n_words - 1)]
                covered = (np.searchsorted(after, ends, side="right")
                           - np.searchsorted(before, starts))
                tf += conf * np.maximum(covered, 0)
            value += t.weight * np.minimum(tf, 1.0)  # a term counts once, however often repeated
        lean_point = starts + LEAN * (ends - starts)
        value -= TIE * np.abs(lean_point - centre) / (ends - starts + 1)
        k = int(np.argmax(value))
        lo, hi = int(starts[k]), int(ends[k])
        return self.grow(lo, hi, score, budget)

    def tokens_of(self, lo: int, hi: int) -> int:
        return sum(self.seg_tokens(i) for i in range(lo, hi + 1))

    def grow(self, lo: int, hi: int, score: float, budget: int, floor: int = 0,
             ceiling: int | None = None) -> Context:
        """Fill what is left of the budget, alternately before and after, within
        segments floor..ceiling."""
        segs = self.index.transcript.segments
        ceiling = len(segs) - 1 if ceiling is None else ceiling
        used = self.tokens_of(lo, hi)
        grown = True
        while grown:
            grown = False
            for nlo, nhi in ((lo - 1, hi), (lo, hi + 1)):
                if nlo >= floor and nhi <= ceiling:
                    cost = self.seg_tokens(nlo if nlo < lo else nhi)
                    if used + cost <= budget:
                        lo, hi, used, grown = nlo, nhi, used + cost, True
        return self._context(lo, hi, " ".join(s.text for s in segs[lo:hi + 1]), score)

    def _cut(self, si: int, word: int, score: float, budget: int) -> Context:
        """A segment longer than the budget: the words around the evidence that fit."""
        text = self.index.transcript.segments[si].text
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        first_word = int(np.searchsorted(self.index.word_seg, si))
        # Map the evidence word to a whitespace-separated word of the segment, roughly.
        n_match = max(1, int(np.searchsorted(self.index.word_seg, si, side="right")) - first_word)
        at = min(len(spans) - 1, int((word - first_word) * len(spans) / n_match)) if spans else 0
        lo = hi = at
        while True:
            grown = False
            for nlo, nhi in ((lo - 1, hi), (lo, hi + 1)):
                if 0 <= nlo and nhi < len(spans):
                    if self.counter.count(text[spans[nlo][0]:spans[nhi][1]]) <= budget:
                        lo, hi, grown = nlo, nhi, True
            if not grown:
                break
        cut = text[spans[lo][0]:spans[hi][1]] if spans else ""
        return self._context(si, si, cut, score)

    def _context(self, lo: int, hi: int, text: str, score: float) -> Context:
        segs = self.index.transcript.segments[lo:hi + 1]
        starts = [s.start for s in segs if s.start is not None]
        ends = [s.end for s in segs if s.end is not None]
        return Context(text, lo, hi, starts[0] if starts else None, ends[-1] if ends else None,
                       float(min(max(score, 0.0), 1.0)))


# --- The aligner --------------------------------------------------------------------------


class Aligner:
    """Aligns the notes of one episode to its transcript."""

    def __init__(self, transcript: Transcript, counter: TokenCounter,
                 budget: int = DEFAULT_CONTEXT_TOKENS):
        self.budget = budget
        self.index = _build_index(transcript, counter, budget)
        self.lookup = _Lookup(self.index)
        self.passages = _Passages(self.index, counter, budget)
        n_windows = max(1, math.ceil(max(self.index.n_words - self.index.width, 0) / STEP) + 1)
        # Each window is scored at its focus: the point LEAN of the way through it.
        self.focus = np.arange(n_windows) * STEP + self.index.width * LEAN

    def candidates(self, note: NoteItem) -> tuple[list[tuple[float, int]], list[_Term]]:
        """The note's best windows, as (normalised score, focus word), and its query."""
        if not self.index.n_words:
            return [], []
        query = _query(self.lookup, note.text)
        if not query:
            return [], query
        scores = _window_scores(self.index, query, self.focus)
        norm = sum(t.weight for t in query)
        picked: list[tuple[float, int]] = []
        # The best windows at least half a window apart: take the best, blank its neighbours.
        apart = int(math.ceil(self.index.width / 2 / STEP))
        scores = scores.copy()
        while len(picked) < CANDIDATES:
            w = int(np.argmax(scores))
            if scores[w] <= 0 or scores[w] < MIN_SCORE * norm:
                break  # too little evidence: not a candidate for the order model either
            picked.append((float(scores[w]) / norm, int(self.focus[w])))
            scores[max(0, w - apart + 1):w + apart] = 0.0
        return picked, query

    def align(self, notes: list[NoteItem]) -> list[Context | None]:
        cands = [self.candidates(n) for n in notes]
        path = self._viterbi([c for c, _ in cands])
        out: list[Context | None] = []
        for note, (picks, query), choice in zip(notes, cands, path):
            if choice is None:
                out.append(None)
                continue
            score, focus = picks[choice]
            main = self.passages.place(query, focus, score)
            out.append(self._every_claim(note.text, query, focus, score, main))
        return out

    def _every_claim(self, text: str, query: list[_Term], focus: int, score: float,
                     main: Context) -> Context:
        """The passage with an excerpt of its own for each claim of the note said far from
        the main evidence; `main` when every claim is in it (or the note has one claim)."""
        claims = [_query(self.lookup, c) for c in _claims(text)]
        if len(claims) < 2:
            return main
        far = sorted(self._far_claims(claims, focus, main), key=lambda c: -c[1])[:MAX_EXCERPTS - 1]
        if not far:
            return main
        sep = self.passages.counter.count(EXCERPT_SEPARATOR) + 1
        # The budget is shared by claim: the main excerpt keeps the share of those it holds,
        # and is placed by their words alone.
        room = self.budget - len(far) * sep
        share = max(room // len(claims), room // (MAX_EXCERPTS + 1))
        apart = {id(q) for _, _, q, covered in far if not covered}
        held: dict[str, _Term] = {}
        for q in claims:
            if id(q) not in apart:
                for t in q:
                    if t.key not in held or held[t.key].weight < t.weight:
                        held[t.key] = t
        first = self.passages.place(list(held.values()) or query, focus, score,
                                    room - len(far) * share)
        parts = [first]
        for f, _, q, covered in far:
            part = self.passages.place(q, f, score, share)
            # A claim the main passage holds may move it a little, never split it.
            if not covered or (part.first_segment <= main.last_segment + 1
                               and part.last_segment >= main.first_segment - 1):
                parts.append(part)
        if len(parts) == 1:
            return main
        return self._join(parts, main, sep)

    def _far_claims(self, claims: list[list[_Term]], focus: int,
                    main: Context) -> list[tuple[int, float, list[_Term], bool]]:
        """(focus, share of terms found, query, held by the main passage) of each claim whose
        evidence is clearly better in a window away from the main passage, within reach of it.

        The window must be where the claim was said, not where some of its words recur: it
        holds at least two of the claim's words and nearly as much of it as the claim's best
        window anywhere.
        """
        ix = self.index
        lo_w = int(np.searchsorted(ix.word_seg, main.first_segment))
        hi_w = int(np.searchsorted(ix.word_seg, main.last_segment, side="right"))
        reach = CLAIM_REACH * ix.passage_words
        i0 = int(np.searchsorted(self.focus, focus - reach))
        i1 = int(np.searchsorted(self.focus, focus + reach, side="right"))
        far: list[tuple[int, float, list[_Term], bool]] = []
        for q in claims:
            norm = sum(t.weight for t in q)
            if not q or norm <= 0 or i1 <= i0:
                continue
            inside = _coverage(q, lo_w, hi_w) / norm
            if 1.0 - inside < CLAIM_GAIN:
                continue
            scores = _window_scores(ix, q, self.focus[i0:i1]) / norm
            w = int(np.argmax(scores))
            best = float(scores[w])
            if best < CLAIM_MIN_SCORE or best - inside < CLAIM_GAIN:
                continue
            # Scoring every window costs more: only for the few claims that got this far.
            if best < CLAIM_HERE * float(_window_scores(ix, q, self.focus).max()) / norm:
                continue
            f = int(self.focus[i0 + w])
            lo, hi = f - ix.width * LEAN, f + ix.width * (1 - LEAN)
            words = sum(_coverage([_Term(t.key, t.groups, 1.0)], lo, hi) > 0 for t in q
                        if "+" not in t.key)
            if words < CLAIM_MIN_WORDS:  # one word alone is no evidence of where a claim was said
                continue
            if any(abs(f - g) < ix.width for g, _, _, _ in far):  # the same spot as another claim
                continue
            far.append((f, best, q, inside >= CLAIM_COVERED))
        return far

    def _join(self, parts: list[Context], main: Context, sep: int) -> Context:
        """Excerpts in transcript order, those touching or overlapping merged, then grown into
        what is left of the budget without meeting their neighbours."""
        merged: list[list[int]] = []
        for p in sorted(parts, key=lambda c: c.first_segment):
            if merged and p.first_segment <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], p.last_segment)
            else:
                merged.append([p.first_segment, p.last_segment])
        whole = all(p.text == " ".join(s.text for s in self.index.transcript.segments[
            p.first_segment:p.last_segment + 1]) for p in parts)
        if not whole:  # a segment longer than its share was cut: keep the single passage
            return main
        score = main.score
        if len(merged) == 1:
            lo, hi = merged[0]
            return self.passages.grow(lo, hi, score, self.budget)
        left = self.budget - (len(merged) - 1) * sep - sum(
            self.passages.tokens_of(lo, hi) for lo, hi in merged)
        grown: list[Context] = []
        # Share what is left evenly among the excerpts not yet grown; then what is still
        # left (less than a segment each) to whichever can take it.
        for rest in (True, False):
            grown = []
            for i, (lo, hi) in enumerate(merged):
                floor = merged[i - 1][1] + 2 if i else 0
                ceiling = merged[i + 1][0] - 2 if i + 1 < len(merged) else None
                own = self.passages.tokens_of(lo, hi)
                extra = left // (len(merged) - i) if rest else left
                g = self.passages.grow(lo, hi, score, own + extra, floor, ceiling)
                left -= self.passages.tokens_of(g.first_segment, g.last_segment) - own
                merged[i] = [g.first_segment, g.last_segment]
                grown.append(g)
        excerpts = [Excerpt(g.text, g.first_segment, g.last_segment, g.start, g.end) for g in grown]
        starts = [e.start for e in excerpts if e.start is not None]
        ends = [e.end for e in excerpts if e.end is not None]
        return Context(EXCERPT_SEPARATOR.join(e.text for e in excerpts), excerpts[0].first_segment,
                       excerpts[-1].last_segment, min(starts) if starts else None,
                       max(ends) if ends else None, score, tuple(excerpts))

    def _jump(self, prev: int, cur: int) -> float:
        """Cost of moving from one note's spot to the next: far jumps are unlikely, backward
        ones more so."""
        dist = (cur - prev) / max(1, self.index.n_words)
        if cur >= prev - self.index.width / 2:
            return JUMP_COST * max(dist, 0.0)
        return BACKWARD_PENALTY + BACKWARD_JUMP_COST * -dist

    def _viterbi(self, cands: list[list[tuple[float, int]]]) -> list[int | None]:
        """Best candidate per note, preferring an order that moves forward through the episode."""
        best: list[list[float]] = []
        back: list[list[int | None]] = []
        prev_idx: int | None = None  # last note that had candidates
        for i, picks in enumerate(cands):
            if not picks:
                best.append([])
                back.append([])
                continue
            row, brow = [], []
            for s, w in picks:
                if prev_idx is None:
                    row.append(s)
                    brow.append(None)
                    continue
                options = [(best[prev_idx][j] + s - self._jump(pw, w), j)
                           for j, (_, pw) in enumerate(cands[prev_idx])]
                val, j = max(options)
                row.append(val)
                brow.append(j)
            best.append(row)
            back.append(brow)
            prev_idx = i
        path: list[int | None] = [None] * len(cands)
        if prev_idx is None:
            return path
        j: int | None = int(np.argmax(best[prev_idx]))
        i: int | None = prev_idx
        while i is not None and j is not None:
            path[i] = j
            nj = back[i][j]
            i = next((k for k in range(i - 1, -1, -1) if cands[k]), None)
            j = nj
        return path


def align_episode(notes: list[NoteItem], transcript: Transcript | None, counter: TokenCounter,
                  budget: int = DEFAULT_CONTEXT_TOKENS) -> list[Context | None]:
    """Contexts for an episode's notes, in order; all None without a transcript."""
    if transcript is None or not notes:
        return [None] * len(notes)
    return Aligner(transcript, counter, budget).align(notes)
