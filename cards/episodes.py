"""Group note sections from many files into episodes and give each its transcript."""

from __future__ import annotations

import bisect
import functools
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from statistics import median
from urllib.parse import parse_qs, urlparse

from cards.context import episode_context
from cards.lexicon import content_words, words
from cards.models import Episode, NoteItem, NoteSection, Source, Transcript, normalise

_DATE = re.compile(r"\(?\b(\d{1,2}/\d{1,2}(?:/\d{2,4})?)\b\)?")
_HEADING_STOP = frozenset(
    "on and with w x episode ep podcast pod the a an of feat ft featuring interview part show talk".split()
)
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")
MATCH_THRESHOLD = 0.5  # below this confidence a transcript is not given to an episode
_PAIR_WINDOW = 8  # two note words found this close in the transcript count as a phrase hit


def _path_key(path: str) -> str:
    # cards.toml paths are relative to its folder, command-line ones to the working directory.
    return str(Path(path).resolve())


def slugify(text: str, fallback: str = "episode") -> str:
    """A filesystem-safe slug made from the text itself, never from its position.

    A heading written in Latin letters keeps the slug it always had (identity: decks, GUIDs and
    the workspace hang on it). One with letters of another script is spelled out in Latin where
    that is simple (Cyrillic, Greek); letters that are not (CJK, Hebrew, Arabic, …) give a short
    stable hash of the normalised heading, so two such headings never share a slug by position.
    """
    norm = normalise(text)
    if any(c.isalpha() and not _latin(c) for c in norm):
        return _foreign_slug(norm)
    slug = _SLUG_JUNK.sub("-", norm.replace("'", "")).strip("-")[:80].strip("-")
    return slug or fallback


def _latin(c: str) -> bool:
    import unicodedata

    return c.isascii() or unicodedata.name(c, "").startswith("LATIN")


# Simple letter-by-letter spellings (casefolded input): Cyrillic after ISO 9 / BGN without diacritics,
# Greek after ELOT 743 without diacritics.
_TRANSLIT = str.maketrans({
    **dict(zip("абвгдезийклмнопрстуфыэ", "abvgdezijklmnoprstufye")),
    "ё": "e", "ж": "zh", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ь": "",
    "ю": "yu", "я": "ya", "є": "ye", "і": "i", "ї": "yi", "ґ": "g", "ў": "u", "ј": "j", "љ": "lj",
    "њ": "nj", "ћ": "c", "ђ": "dj", "џ": "dz", "ѕ": "dz",
    **dict(zip("αβγδεζηικλμνξοπρστυφω", "avgdeziiklmnxoprstyfo")),
    "θ": "th", "χ": "ch", "ψ": "ps", "ς": "s",
})


def _foreign_slug(norm: str) -> str:
    import hashlib
    import unicodedata

    # Greek accents decompose into base letter + mark and the marks go; й and ё are letters of their own.
    base = norm.replace("\u0439", "j").replace("\u0451", "e")
    base = "".join(c for c in unicodedata.normalize("NFD", base) if not unicodedata.combining(c))
    spelled = unicodedata.normalize("NFC", base).translate(_TRANSLIT)
    if all(_latin(c) for c in spelled if c.isalpha()):
        slug = _SLUG_JUNK.sub("-", spelled.replace("'", "")).strip("-")[:80].strip("-")
        if slug:
            return slug
    digest = hashlib.sha256(norm.encode("utf-8")).hexdigest()[:8]
    # Latin letters and digits in the heading (a date, a guest's name) keep the slug readable.
    readable = _SLUG_JUNK.sub("-", norm.replace("'", "")).strip("-")[:60].strip("-")
    return f"{readable}-{digest}" if readable else f"episode-{digest}"


def heading_key(heading: str) -> tuple[frozenset[str], str | None]:
    """The words that name an episode, and its date if the heading has one."""
    m = _DATE.search(heading)
    date = m.group(1) if m else None
    text = _DATE.sub(" ", heading)
    return frozenset(w for w in words(text) if w not in _HEADING_STOP), date


def _link_keys(links: tuple[str, ...]) -> tuple[frozenset[str], set[str]]:
    """Words from the links' paths (episode pages name their guests) and YouTube video ids."""
    toks: set[str] = set()
    ids: set[str] = set()
    for url in links:
        u = urlparse(url)
        host = u.netloc.lower()
        if "youtube.com" in host:
            ids.update(parse_qs(u.query).get("v", []))
        elif host.endswith("youtu.be"):
            ids.add(u.path.strip("/"))
        else:
            last = u.path.rstrip("/").rsplit("/", 1)[-1]
            toks.update(w for w in words(last.replace("-", " ").replace("_", " ")) if w not in _HEADING_STOP)
    return frozenset(toks), ids


@dataclass
class _Group:
    sections: list[NoteSection] = field(default_factory=list)
    title: str = ""

    @property
    def heading(self) -> str | None:
        # The fullest headed section names the episode; ties go to the file whose
        # path sorts first, so the slug does not depend on argument order.
        headed = [s for s in self.sections if s.heading]
        return min(headed, key=_fullest_first).heading if headed else None

    def keys(self) -> set[str]:
        return set().union(*(heading_key(s.heading or "")[0] for s in self.sections))

    def item_keys(self) -> set[str]:
        return {normalise(i.text) for s in self.sections for i in s.items}


def _fullest_first(sec: NoteSection) -> tuple:
    return (sec.heading is None, -len(sec.items), sec.path, sec.line)


def _pinned(heading: str | None, aliases: dict[str, str]) -> str | None:
    """The pinned slug a heading belongs to: named as an alias, or slugifying to the pinned slug."""
    if not heading:
        return None
    return aliases.get(normalise(heading)) or aliases.get(slugify(heading))


@dataclass(frozen=True)
class _Facts:
    """What grouping compares about one headed section, computed once."""

    named: bool  # the heading is not empty
    heading: str  # normalised
    keys: frozenset[str]  # naming words
    date: str | None
    items: frozenset[str]  # normalised item texts
    n_items: int


def _facts(sec: NoteSection) -> _Facts:
    keys, date = heading_key(sec.heading or "")
    return _Facts(bool(sec.heading), normalise(sec.heading or ""), keys, date, frozenset(normalise(i.text) for i in sec.items),
                  len(sec.items))


def _same(a: _Facts, b: _Facts) -> bool:
    """Whether two headed sections are one episode: the rule of `_same_episode`, on precomputed facts."""
    if a.named and b.named and a.heading == b.heading:
        return True  # even a heading of stop words only ("Interview", "Episode")
    ka, kb = a.keys, b.keys
    if not ka or not kb:
        return False
    jac = len(ka & kb) / len(ka | kb)
    if a.date and b.date and a.date != b.date and jac < 1:
        return False
    if jac >= 0.75:
        return True
    shared = len(a.items & b.items)
    small = min(a.n_items, b.n_items) or 1
    if shared >= 2 and shared >= 0.5 * small:
        return True
    return jac >= 0.4 and (a.date is not None and a.date == b.date or shared >= 2)


def _same_episode(a: NoteSection, b: NoteSection) -> bool:
    return _same(_facts(a), _facts(b))


# Candidates for `_same` come from prefix filtering, as in set-similarity joins.
# Naming words and item texts are ordered rarest first; two sets with an overlap of
# at least t share an element within their first |x| - t + 1 elements. Each rule
# of `_same` gets an index of such prefixes, so every pair a rule could accept is
# offered, and the grouping is exactly that of comparing all pairs, at the cost of
# the pairs that share something rare:
#   equal headings, equal naming words  exact lookups
#   Jaccard >= 0.75                     naming-word prefixes
#   half the notes shared               item prefixes
#   Jaccard >= 0.4, same date           naming-word prefixes, within the date
#   Jaccard >= 0.4, two notes shared    (naming word, item) pairs of both prefixes
# (Sections whose dates differ match only with equal naming words.) A section
# plays a "small" role, probing sections at least its size, and a "large" one,
# probed by smaller sections; the weaker overlap bound of each role sets its prefix.


def _jaccard_prefixes(num: int, den: int):
    """Prefix lengths (small role, large role) of n words for Jaccard >= num/den.

    With |x| = n <= m = |y| and τ = num/den, Jaccard >= τ needs an overlap
    o >= τ(n + m)/(1 + τ); since n >= τm, o >= 2τn/(1 + τ) and o >= τm.
    """
    def lengths(n: int) -> tuple[int, int]:
        small = -(-2 * num * n // (num + den))
        large = -(-num * n // den)
        return n - small + 1, n - large + 1

    return lengths


def _half_prefixes(n: int) -> tuple[int, int]:
    """Prefix lengths of n distinct items for an overlap of at least max(2, half the smaller)."""
    return max(0, n - max(2, (n + 1) // 2) + 1), max(0, n - 1)


def _two_prefixes(n: int) -> tuple[int, int]:
    """Prefix lengths of n distinct items for an overlap of at least two."""
    return max(0, n - 1), max(0, n - 1)


_J75 = _jaccard_prefixes(3, 4)
_J40 = _jaccard_prefixes(2, 5)


class _Prefixes:
    """One rule's index: (role, token) -> group -> [(section, size)].

    Kept by group, so a probe walks the groups a token is in (few, when many
    sections share it because they are one episode) and stops at the first match.
    Most tokens belong to one section only, so keys are hashes (a collision only
    offers one more candidate to check) and a lone entry is a bare tuple.
    """

    def __init__(self):
        self.index: dict[int, tuple[int, int, int] | dict[int, list[tuple[int, int]]]] = {}

    def probe(self, small: list, large: list, n: int, before: int | None,
              found: dict[int, list[tuple[list, int, bool]]]) -> None:
        """Add to `found` the groups (earlier than `before`) that hold candidates, with where to look."""
        index = self.index
        for role, tokens in ((1, small), (0, large)):
            # In the small role, others are at least this size; in the large one, smaller.
            for t in tokens:
                value = index.get(hash((role, t)))
                if value is None:
                    continue
                groups = {value[0]: [value[1:]]} if type(value) is tuple else value
                for g, entries in groups.items():
                    if before is None or g < before:
                        found.setdefault(g, []).append((entries, n, role == 1))

    def add(self, i: int, small: list, large: list, n: int, group: int) -> None:
        index = self.index
        for role, tokens in ((0, small), (1, large)):
            for t in tokens:
                key = hash((role, t))
                value = index.get(key)
                if value is None:
                    index[key] = (group, i, n)
                    continue
                if type(value) is tuple:
                    value = index[key] = {value[0]: [value[1:]]}
                value.setdefault(group, []).append((i, n))


class _Candidates:
    """An index over the sections seen so far, answering: which could be the same episode as this one?"""

    def __init__(self, facts: list[_Facts]):
        self.word_rank = self._ranks(f.keys for f in facts)
        self.item_rank = self._ranks(f.items for f in facts)
        # The earliest group holding a section with this heading, or these naming words:
        # such a section is always the same episode.
        self.by_heading: dict[str, int] = {}
        self.by_keys: dict[frozenset[str], int] = {}
        self.rules = {name: _Prefixes() for name in ("j75", "half", "dated", "cross")}

    @staticmethod
    def _ranks(sets) -> dict[str, tuple[int, str]]:
        freq: dict[str, int] = defaultdict(int)
        for s in sets:
            for t in s:
                freq[t] += 1
        return {t: (f, t) for t, f in freq.items()}

    def tokens(self, f: _Facts) -> dict[str, tuple[list, list, int]]:
        """Each rule's (small-role prefix, large-role prefix, size) for one section."""
        if not f.keys:
            return {}
        words = sorted(f.keys, key=self.word_rank.__getitem__)
        items = sorted(f.items, key=self.item_rank.__getitem__)
        n, k = len(words), len(items)
        j75, j40, half, two = _J75(n), _J40(n), _half_prefixes(k), _two_prefixes(k)
        out = {"j75": (words[:j75[0]], words[:j75[1]], n), "half": (items[:half[0]], items[:half[1]], k)}
        if f.date:
            out["dated"] = ([(f.date, w) for w in words[:j40[0]]], [(f.date, w) for w in words[:j40[1]]], n)
        shared = items[:two[0]]
        if len(shared) >= 1 and k >= 2:
            out["cross"] = ([(w, t) for w in words[:j40[0]] for t in shared],
                            [(w, t) for w in words[:j40[1]] for t in shared], n)
        return out

    def definite(self, f: _Facts) -> int | None:
        """The earliest group that surely takes this section, if any."""
        found = [g for g in (self.by_heading.get(f.heading) if f.named else None,
                             self.by_keys.get(f.keys) if f.keys else None) if g is not None]
        return min(found) if found else None

    def first_match(self, f: _Facts, tokens, same) -> int | None:
        """The earliest group holding a section that `same` says is this section's episode."""
        target = self.definite(f)
        found: dict[int, list[tuple[list, int, bool]]] = {}
        if f.keys:  # every rule but equal headings needs naming words on both sides
            for name, (small, large, n) in tokens.items():
                self.rules[name].probe(small, large, n, target, found)
        for g in sorted(found):
            seen: set[int] = set()
            for entries, n, at_least in found[g]:
                for j, m in entries:
                    if (m >= n if at_least else m < n) and j not in seen:
                        seen.add(j)
                        if same(j):
                            return g
        return target

    def add(self, i: int, f: _Facts, tokens, group: int) -> None:
        if f.named:
            self.by_heading[f.heading] = min(group, self.by_heading.get(f.heading, group))
        if f.keys:
            self.by_keys[f.keys] = min(group, self.by_keys.get(f.keys, group))
            for name, (small, large, n) in tokens.items():
                self.rules[name].add(i, small, large, n, group)


def _same_as(facts: list[_Facts], i: int, j: int) -> bool:
    return _same(facts[i], facts[j])


def _group_headed(sections: list[NoteSection], aliases: dict[str, str]) -> list[_Group]:
    """Each section joins the first group holding a section of the same episode, else starts one.

    Only the sections the index offers are compared, so this is as fast as the
    sections are distinct, and gives what comparing every pair would.
    """
    groups: list[_Group] = []
    by_alias: dict[str, int] = {}
    facts = [_facts(s) for s in sections]
    index = _Candidates(facts)
    for i, sec in enumerate(sections):
        alias = _pinned(sec.heading, aliases)
        target = by_alias.get(alias) if alias else None
        tokens = index.tokens(facts[i])
        if target is None:
            # The earliest group with a matching section wins, as a scan in order would find it.
            target = index.first_match(facts[i], tokens, functools.partial(_same_as, facts, i))
        if target is None:
            target = len(groups)
            groups.append(_Group())
        groups[target].sections.append(sec)
        index.add(i, facts[i], tokens, target)
        if alias:
            by_alias[alias] = target
    return groups


class _TranscriptIndex:
    """Word positions of one transcript, for phrase-hit scoring."""

    def __init__(self, transcript: Transcript, all_words: list[str] | None = None):
        self.transcript = transcript
        self.positions: dict[str, list[int]] = defaultdict(list)
        if all_words is None:
            all_words = words(transcript.text)
        for i, w in enumerate(all_words):
            self.positions[w].append(i)
        self.intro = set(all_words[:1500]) | set(words(transcript.title or ""))
        self._near: dict[tuple[str, str], bool] = {}

    def near(self, a: str, b: str) -> bool:
        known = self._near.get((a, b))
        if known is not None:
            return known
        pa, pb = self.positions.get(a), self.positions.get(b)
        found = False
        if pa and pb:
            if len(pa) > len(pb):
                pa, pb = pb, pa
            for p in pa:
                j = bisect.bisect_left(pb, p - _PAIR_WINDOW)
                if j < len(pb) and pb[j] <= p + _PAIR_WINDOW:
                    found = True
                    break
        self._near[(a, b)] = found
        return found

    def forget(self) -> None:
        self._near.clear()

    def rate(self, pairs: _Pairs) -> float:
        """The share of the notes' adjacent word pairs found close together here."""
        hits = sum(n for (a, b), n in pairs.counts.items() if self.near(a, b))
        return hits / pairs.total if pairs.total else 0.0


@dataclass
class _Pairs:
    """The adjacent content-word pairs of an episode's notes, each with how often it occurs."""

    counts: dict[tuple[str, str], int]
    total: int

    @classmethod
    def of(cls, texts: list[str]) -> _Pairs:
        counts: dict[tuple[str, str], int] = {}
        total = 0
        for text in texts:
            cw = content_words(text)
            for pair in zip(cw, cw[1:]):
                counts[pair] = counts.get(pair, 0) + 1
                total += 1
        return cls(counts, total)


def _median_without(ordered: list[float], value: float) -> float:
    """statistics.median of `ordered` (sorted) with one occurrence of `value` left out."""
    skip = bisect.bisect_left(ordered, value)
    n = len(ordered) - 1

    def at(k: int) -> float:
        return ordered[k] if k < skip else ordered[k + 1]

    return at(n // 2) if n % 2 else (at(n // 2 - 1) + at(n // 2)) / 2


def _confidence(rate: float, chance: float, names: set[str], intro: set[str]) -> float:
    content = max(0.0, min(1.0, (rate - max(0.1, chance)) / 0.15))
    name_cov = len(names & intro) / len(names) if names else 0.0
    return 0.6 * content + 0.4 * name_cov


# Up to this many (episode, transcript) pairs, every pair is scored; beyond it,
# only the pairs an index of rare word pairs proposes.
EXACT_MATCH_PAIRS = 5_000
_CHANCE_SAMPLE = 15  # episodes scored against every transcript, to judge what chance gives
_CANDIDATES = 3  # transcripts per episode proposed by rare word pairs


def _all_scores(groups, pairs: list[_Pairs], indexes: list[_TranscriptIndex]) -> list[tuple[float, int, int]]:
    scores = []
    for ti, idx in enumerate(indexes):
        rates = [idx.rate(p) for p in pairs]
        idx.forget()  # every pair was asked once: keeping the answers only holds memory
        ordered = sorted(rates)
        for gi, (_, _, names) in enumerate(groups):
            chance = _median_without(ordered, rates[gi]) if len(rates) >= 3 else 0.1
            scores.append((_confidence(rates[gi], chance, names, idx.intro), gi, ti))
    return scores


def _indexed_scores(groups, pairs: list[_Pairs], indexes: list[_TranscriptIndex]) -> list[tuple[float, int, int]]:
    """Scores of the likely pairs only: those sharing rare word pairs or names, found through indexes.

    A word pair is rare when few transcripts hold both words; each episode's rare
    pairs that occur close together in a transcript vote for it, and the few best
    voted transcripts, with those whose opening names the episode's rare name
    words, are scored exactly. What chance gives a transcript is the median rate
    of a fixed sample of episodes, instead of every other one.
    """
    n_t = len(indexes)
    rare = max(4, int(n_t ** 0.5))
    holding: dict[str, list[int]] = defaultdict(list)
    opening: dict[str, list[int]] = defaultdict(list)
    for ti, idx in enumerate(indexes):
        for w in idx.positions:
            holding[w].append(ti)
        for w in idx.intro:
            opening[w].append(ti)
    step = max(1, len(groups) // _CHANCE_SAMPLE)
    sample = [pairs[gi] for gi in range(0, len(groups), step)][:_CHANCE_SAMPLE]
    chance = [median(idx.rate(p) for p in sample) for idx in indexes]
    scores = []
    for gi, (_, _, names) in enumerate(groups):
        votes: dict[int, int] = defaultdict(int)
        for (a, b), n in pairs[gi].counts.items():
            ha, hb = holding.get(a), holding.get(b)
            if not ha or not hb or min(len(ha), len(hb)) > rare:
                continue
            for ti in set(ha).intersection(hb):
                if indexes[ti].near(a, b):
                    votes[ti] += n
        chosen = set(sorted(votes, key=lambda ti: (-votes[ti], ti))[:_CANDIDATES])
        for w in names:
            if len(opening.get(w, ())) <= rare:
                chosen.update(opening.get(w, ()))
        for ti in sorted(chosen):
            idx = indexes[ti]
            scores.append((_confidence(idx.rate(pairs[gi]), chance[ti], names, idx.intro), gi, ti))
    return scores


def _match_transcripts(
    groups: list[tuple[str, list[str], set[str]]], transcripts: list[Transcript], exact_pairs: int | None = None,
    tokens: Callable[[Transcript], list[str]] | None = None,
) -> dict[str, tuple[Transcript, float]]:
    """Give each episode (slug, note texts, name words) at most one transcript and vice versa.

    Confidence mixes two signals: how many of the notes' adjacent word pairs occur
    close together in the transcript (notes paraphrase, but keep pairs like "gross
    margins"), against what the same transcript gives other episodes' notes by
    chance; and whether the names in the heading occur in the transcript's title
    or opening. Small archives score every pair; large ones the pairs an index
    proposes, so the work grows with the archive, not with its square.
    `tokens(transcript)`, if given, is `words(transcript.text)` (kept from an earlier run).
    """
    if not groups or not transcripts:
        return {}
    indexes = [_TranscriptIndex(t, tokens(t) if tokens else None) for t in transcripts]
    pairs = [_Pairs.of(texts) for _, texts, _ in groups]
    limit = EXACT_MATCH_PAIRS if exact_pairs is None else exact_pairs
    if len(groups) * len(transcripts) <= limit:
        scores = _all_scores(groups, pairs, indexes)
    else:
        scores = _indexed_scores(groups, pairs, indexes)
    out: dict[str, tuple[Transcript, float]] = {}
    used_t: set[int] = set()
    for conf, gi, ti in sorted(scores, reverse=True):
        slug = groups[gi][0]
        if conf < MATCH_THRESHOLD or slug in out or ti in used_t:
            continue
        out[slug] = (transcripts[ti], conf)
        used_t.add(ti)
    return out


def _attach_headless(sec: NoteSection, groups: list[_Group], video_ids: dict[str, int]) -> _Group | None:
    """Find the episode that headingless (prose) notes are about: links first, then content."""
    link_words, ids = _link_keys(sec.links)
    for vid in ids:
        if vid in video_ids:
            return groups[video_ids[vid]]
    best, best_score = None, 0.0
    for g in groups:
        keys = g.keys()
        if link_words and keys:
            score = len(link_words & keys) / len(keys)
            if score > best_score:
                best, best_score = g, score
    if best is not None and best_score >= 0.5:
        return best
    mine = set(content_words(" ".join(i.text for i in sec.items), 3))
    ranked = []
    for g in groups:
        theirs = set(content_words(" ".join(i.text for s in g.sections for i in s.items), 3))
        if mine and theirs:
            ranked.append((len(mine & theirs) / len(mine | theirs), id(g), g))
    ranked.sort(reverse=True)
    if ranked and ranked[0][0] >= 0.08 and (len(ranked) == 1 or ranked[0][0] >= 1.3 * ranked[1][0]):
        return ranked[0][2]
    return None


def _headless_title(sec: NoteSection) -> str:
    link_words, _ = _link_keys(sec.links)
    for url in sec.links:
        last = urlparse(url).path.rstrip("/").rsplit("/", 1)[-1]
        if link_words and last and "youtube" not in url:
            return last.replace("-", " ").replace("_", " ").strip().title()
    return PurePath(sec.path).stem


def _merge_items(slug: str, sections: list[NoteSection]) -> list[NoteItem]:
    """One NoteItem per distinct text, in the order of the fullest section.

    Items found only in another section go next to their neighbour: after the
    shared item above them, or before the first shared one; a section sharing
    nothing goes at the end.
    """
    # `order` is a linked list (nid -> next, nid -> previous) so placing an item next
    # to its neighbour costs the same however long the episode is.
    head, tail = "\0head", "\0tail"
    nxt: dict[str, str] = {head: tail}
    prv: dict[str, str] = {tail: head}

    def insert_before(node: str, nid: str) -> None:
        before = prv[node]
        nxt[before], prv[nid], nxt[nid], prv[node] = nid, before, node, nid

    data: dict[str, dict] = {}
    for sec in sorted(sections, key=_fullest_first):
        last: str | None = None  # this section's last item placed in `order`
        pending: list[str] = []  # new items above the first shared one
        in_pending: set[str] = set()
        for raw in sec.items:
            nid = NoteItem.make_id(slug, raw.text)
            src = Source(sec.path, raw.line_start, raw.line_end)
            if nid in data:
                if src not in data[nid]["seen"]:
                    data[nid]["seen"].add(src)
                    data[nid]["sources"].append(src)
                if nid in in_pending:  # the same text twice in one section
                    continue
                if last is None:
                    for p in pending:
                        insert_before(nid, p)
                    pending, in_pending = [], set()
                last = nid
                continue
            data[nid] = {"raw": raw, "sources": [src], "seen": {src}}
            if last is None:
                pending.append(nid)
                in_pending.add(nid)
            else:
                insert_before(nxt[last], nid)
                last = nid
        for p in pending:
            insert_before(tail, p)
    order = []
    node = nxt[head]
    while node != tail:
        order.append(node)
        node = nxt[node]
    return [
        NoteItem(nid, slug, data[nid]["raw"].text, data[nid]["raw"].kind, data[nid]["raw"].section,
                 tuple(data[nid]["sources"]), pos)
        for pos, nid in enumerate(order)
    ]


def build_episodes(
    sections: list[NoteSection], transcripts: list[Transcript], pins: dict[str, dict] | None = None,
    *, match=None,
) -> list[Episode]:
    """Group sections into episodes, attach prose notes, and match transcripts.

    `pins` (from cards.toml) maps an episode slug to {"title", "transcript", "aliases"}.
    `match(groups, transcripts, compute)`, if given, may answer the matching from a
    cache instead of calling `compute(groups, transcripts)`.
    """
    pins = pins or {}
    aliases = {normalise(a): slug for slug, p in pins.items() for a in [slug, *p.get("aliases", [])]}
    headed = [s for s in sections if s.heading is not None]
    headless = [s for s in sections if s.heading is None]
    groups = _group_headed(headed, aliases)

    def slug_of(g: _Group) -> str:
        for s in g.sections:
            pinned = _pinned(s.heading, aliases)
            if pinned:
                return pinned
        return slugify(g.heading or g.title)

    # Prose notes that name a video id join the episode whose transcript has it;
    # that needs transcripts matched first, on the headed episodes alone.
    pinned_paths = {_path_key(p["transcript"]): slug for slug, p in pins.items() if p.get("transcript")}
    free = [t for t in transcripts if _path_key(t.path) not in pinned_paths]
    summary = [(slug_of(g), [i.text for s in g.sections for i in s.items], g.keys()) for g in groups]
    # An episode pinned to a transcript, or to none (`transcript = false`), takes no part in matching.
    unpinned = [x for x in summary if "transcript" not in pins.get(x[0], {})]
    matched = match(unpinned, free, _match_transcripts) if match else _match_transcripts(unpinned, free)
    video_ids = {t.video_id: i for i, g in enumerate(groups)
                 for t, _ in [matched.get(summary[i][0], (None, 0))] if t is not None and t.video_id}
    for sec in headless:
        g = _attach_headless(sec, groups, video_ids)
        if g is None:
            g = _Group(title=_headless_title(sec))
            groups.append(g)
        g.sections.append(sec)

    episodes: list[Episode] = []
    seen_slugs: set[str] = set()
    for g in groups:
        heading = g.heading
        slug = slug_of(g)
        base, n = slug, 2
        while slug in seen_slugs:
            slug, n = f"{base}-{n}", n + 1
        seen_slugs.add(slug)
        title = pins.get(slug, {}).get("title") or heading or g.title
        ep = Episode(slug=slug, title=title, sources=list(dict.fromkeys(s.path for s in g.sections)),
                     items=_merge_items(slug, g.sections),
                     date=next((s.date for s in g.sections if s.date), None))
        ep.links = tuple(u for s in g.sections for u in s.links)
        link_words, ids = _link_keys(ep.links)
        if ids:
            ep.video_id = sorted(ids)[0]
            ep.url = f"https://www.youtube.com/watch?v={ep.video_id}"
        episodes.append(ep)

    by_path = {_path_key(t.path): t for t in transcripts}
    taken: set[str] = set()
    for ep in episodes:
        pin = pins.get(ep.slug, {})
        if "transcript" in pin:
            t = by_path.get(_path_key(pin["transcript"])) if pin["transcript"] else None
            ep.transcript, ep.match_score = t, (1.0 if t else None)
        elif ep.slug in matched:
            ep.transcript, ep.match_score = matched[ep.slug]
        if ep.transcript is not None:
            taken.add(ep.transcript.path)
            ep.video_id = ep.transcript.video_id or ep.video_id
            ep.url = ep.transcript.url or ep.url
    # Prose notes with only a video link still meet their transcript here.
    for ep in episodes:
        if ep.transcript is None and ep.video_id:
            t = next((t for t in transcripts if t.video_id == ep.video_id and t.path not in taken), None)
            if t is not None:
                ep.transcript, ep.match_score = t, 1.0
                taken.add(t.path)
    for t in transcripts:
        if t.path not in taken:
            title = t.title or PurePath(t.path).stem
            slug = slugify(title)
            while slug in seen_slugs:
                slug += "-t"
            seen_slugs.add(slug)
            episodes.append(Episode(slug=slug, title=title, transcript=t, match_score=None,
                                    video_id=t.video_id, url=t.url))
    for ep in episodes:
        episode_context(ep, pins.get(ep.slug))
    return episodes
