"""Exact and near-duplicate detection among cards: pure, no I/O, fast on tens of thousands.

Two cards are duplicates when they ask the same question and give compatible answers:

- A question is compared as the set of light stems of its content words: NFKC,
  casefolded, punctuation and stopwords such as is/does/the dropped, which->what,
  "two"->"2", and -s/-es/-ed/-ing stripped. Word order, case, punctuation, auxiliaries
  and tense do not matter. Jaccard similarity of the two sets must reach `threshold`.
- Names and numbers must be equal: a question about Mixtral is not one about DeepSeek
  V3 however alike the rest is. A name is a stem written with a capital letter
  mid-sentence anywhere in the input (so "tpu" counts in a lower-cased rewording once
  any card writes "TPU"), or one with a digit: 256, v3, h100.
- The same question with clearly different answers is two facts (or a contradiction
  the reviewer should see), not a duplicate: the answers may not each hold a name or
  number the other lacks, and must share more than half of the shorter answer's stems.
  An empty answer matches only an empty answer.
- Cloze cards are compared with cloze cards only: the question is the sentence with its
  deletions filled in, the answer is the deleted text.

Duplicates are joined into clusters, transitively. Each cluster keeps one card: an
exported one first (it is already in someone's Anki collection), then the highest
`rank`, then the earliest in the input; every other card in it maps to the kept one.
Exported cards are never marked as duplicates.

Candidate pairs come from an inverted index over each question's rarest stems (the
AllPairs prefix filter), which finds every pair above the threshold without comparing
all pairs: 50,000 cards take a few seconds.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cards.check import GROUNDED, STOPWORDS, cloze_deletions, plain, stem, unclozed, words

SCOPES = ("all", "episode")

_WH = frozenset({"what", "which", "who", "whom", "whose", "when", "where", "why", "how"})
# Question words stay: "when did X launch" and "where did X launch" are different cards.
_STOP = STOPWORDS - _WH - {"not"}
_SYNONYMS = {"which": "what", "whats": "what", "hows": "how", "whos": "who", "wheres": "where"}
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}


@dataclass(frozen=True)
class Candidate:
    """A card to compare: its question and answer, where it belongs and how good it is."""

    id: str
    episode: str
    front: str
    back: str = ""
    kind: str = "basic"
    rank: Any = ()  # sortable; higher is better; all candidates must use the same shape
    exported: bool = False


def draft_rank(draft) -> tuple:
    """Default preference between drafts: approved, edited, grounded, fewer warnings, older."""
    return (
        draft.status == "approved",
        draft.status != "rejected",
        bool(draft.edited),
        draft.grounding is not None and draft.grounding >= GROUNDED,
        -len(draft.warnings),
        -draft.created,
    )


def candidate(draft) -> Candidate:
    """The Candidate for a `cards.models.Draft`, ranked by `draft_rank`."""
    return Candidate(
        id=draft.id,
        episode=draft.episode,
        front=draft.front,
        back=draft.back,
        kind=draft.kind,
        rank=draft_rank(draft),
        exported=draft.exported is not None,
    )


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DECIMAL = re.compile(r"(?<=\d)\.(?=\d)")
_UNIT_AFTER_NUMBER = re.compile(r"\b(\d+(?:p\d+)?)([^\W\d_]+)\b")
_NUMBER = re.compile(r"\d+(?:p\d+)?")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?:;])\s+|\n")


def _tokens(text: str, cache: dict[str, str | None]) -> list[tuple[str, bool]]:
    """(stem, written-with-a-capital-mid-sentence) for each content word.

    Numbers are kept whole ("1,000" and "1.5" are one token each) and split from a unit
    written against them, so "141GB" reads as "141 GB". `cache` maps word -> stem (None
    for a dropped word) across one call of find_duplicates.
    """
    text = _THOUSANDS.sub("", text)
    text = _DECIMAL.sub("p", text)
    text = _UNIT_AFTER_NUMBER.sub(r"\1 \2", text)
    out = []
    for sentence in _SENTENCE_BREAK.split(text):
        ws = words(sentence)
        # ALL CAPS or Title Case text says nothing about which words are names.
        shouting = len(ws) >= 3 and sum(not w.islower() for w in ws) > 0.6 * len(ws)
        after_number = False
        for pos, w in enumerate(ws):
            low = w.casefold()
            if low in cache:
                s = cache[low]
            else:
                t = _SYNONYMS.get(low, _NUMBER_WORDS.get(low, low))
                dropped = t in _STOP or (len(t) == 1 and not t.isdigit())
                s = cache[low] = None if dropped else stem(t)
            if s is None and after_number and len(low) == 1:
                s = low  # a unit: 1B is not 1T
            if s is not None:
                out.append((s, pos > 0 and not shouting and not w.islower()))
            after_number = _NUMBER.fullmatch(low) is not None
    return out


def _names(stems: Iterable[str], capitalised: set[str]) -> frozenset[str]:
    """The stems that identify something: names, numbers, versions such as v3 or h100."""
    return frozenset(s for s in stems if s in capitalised or any(c.isdigit() for c in s))


@dataclass
class _Question:
    """One distinct question (stem set) within one comparison block."""

    stems: frozenset[str]
    members: list[int]  # indexes of _Answer groups


@dataclass
class _Answer:
    """Cards with the same question and the same answer stems: duplicates of each other."""

    stems: frozenset[str]
    names: frozenset[str]
    cards: list[int]


def _answers_compatible(a: _Answer, b: _Answer) -> bool:
    """Not clearly different: no swapped name or number, most of the shorter answer shared."""
    if not a.stems or not b.stems:
        return a.stems == b.stems
    if a.names - b.names and b.names - a.names:
        return False
    return len(a.stems & b.stems) > 0.5 * min(len(a.stems), len(b.stems))


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_duplicates(
    cands: Sequence[Candidate], threshold: float = 0.85, scope: str = "all"
) -> dict[str, str]:
    """Map each duplicate card's id to the id of the card it duplicates (the one to keep).

    scope "all" compares cards across episodes; "episode" only within an episode.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], not {threshold!r}")
    ids = [c.id for c in cands]
    if len(set(ids)) != len(ids):
        raise ValueError("candidate ids must be unique")

    # Names are judged across the whole input: "tpu" is a name in every card once one
    # card writes "TPU", so a lower-cased rewording still counts it.
    parsed = []
    capitalised: set[str] = set()
    cache: dict[str, str | None] = {}
    for c in cands:
        cloze = c.kind == "cloze"
        q_tokens = _tokens(unclozed(c.front) if cloze else c.front, cache)
        a_tokens = _tokens(" ".join(cloze_deletions(c.front)) if cloze else c.back, cache)
        capitalised.update(s for s, cap in q_tokens if cap)
        capitalised.update(s for s, cap in a_tokens if cap)
        q_stems = frozenset(s for s, _ in q_tokens) or frozenset({"\0" + plain(c.front)})
        parsed.append((q_stems, frozenset(s for s, _ in a_tokens)))

    # Questions naming different things never match, so only questions with the same
    # names (and kind, and episode when asked) meet. Cards with the same question stems
    # and answer stems are duplicates at once; the rest compares distinct questions.
    questions: list[_Question] = []
    answers: list[_Answer] = []
    block_of: list[tuple] = []
    by_question: dict[tuple, int] = {}
    by_answer: dict[tuple[int, frozenset[str]], int] = {}
    for i, (c, (q_stems, a_stems)) in enumerate(zip(cands, parsed)):
        block = (
            c.kind == "cloze",
            c.episode if scope == "episode" else None,
            _names(q_stems, capitalised),
        )
        qi = by_question.get((block, q_stems))
        if qi is None:
            qi = by_question[(block, q_stems)] = len(questions)
            questions.append(_Question(q_stems, []))
            block_of.append(block)
        ai = by_answer.get((qi, a_stems))
        if ai is None:
            ai = by_answer[(qi, a_stems)] = len(answers)
            answers.append(_Answer(a_stems, _names(a_stems, capitalised), []))
            questions[qi].members.append(ai)
        answers[ai].cards.append(i)

    uf = _UnionFind(len(cands))
    for a in answers:
        for j in a.cards[1:]:
            uf.union(a.cards[0], j)

    def join(qa: _Question, qb: _Question) -> None:
        for x in qa.members:
            for y in qb.members:
                if x != y and _answers_compatible(answers[x], answers[y]):
                    uf.union(answers[x].cards[0], answers[y].cards[0])

    for q in questions:
        if len(q.members) <= 16:
            join(q, q)
            continue
        # Many answers to one question ("What does he mean?"): compatible answers share
        # a stem, so compare only those that do.
        by_stem: dict[str, list[int]] = defaultdict(list)
        for x in q.members:
            for s in answers[x].stems:
                by_stem[s].append(x)
        done: set[tuple[int, int]] = set()
        for group in by_stem.values():
            for k, x in enumerate(group):
                for y in group[k + 1 :]:
                    if (x, y) not in done:
                        done.add((x, y))
                        if _answers_compatible(answers[x], answers[y]):
                            uf.union(answers[x].cards[0], answers[y].cards[0])

    # Prefix filtering (the AllPairs join): order each question's stems rarest first and
    # visit questions from the smallest. Two sets with Jaccard >= t share a stem among the
    # first |x| - ceil(t|x|) + 1 stems of the larger (the probe) and the first
    # |y| - ceil(2t/(1+t)|y|) + 1 of the smaller (the indexed prefix), so only those are
    # looked up and indexed, and every pair above the threshold is still found.
    df: dict[str, int] = defaultdict(int)
    for q in questions:
        for s in q.stems:
            df[s] += 1
    index: dict[tuple, list[int]] = defaultdict(list)
    eps = 1e-9
    t = threshold
    t_index = 2 * t / (1 + t)
    for qi in sorted(range(len(questions)), key=lambda k: len(questions[k].stems)):
        q = questions[qi]
        stems = q.stems
        size = len(stems)
        ordered = sorted(stems, key=lambda s: (df[s], s))
        block = block_of[qi]
        min_size = t * size - eps
        seen: set[int] = set()
        for s in ordered[: size - math.ceil(t * size - eps) + 1]:
            for qj in index.get((block, s), ()):
                if qj in seen:
                    continue
                seen.add(qj)
                other = questions[qj]
                other_size = len(other.stems)
                if other_size < min_size:
                    continue
                common = len(stems & other.stems)
                if common >= t * (size + other_size - common) - eps:
                    join(q, other)
        for s in ordered[: size - math.ceil(t_index * size - eps) + 1]:
            index[(block, s)].append(qi)

    clusters: dict[int, list[int]] = defaultdict(list)
    for i in range(len(cands)):
        clusters[uf.find(i)].append(i)
    result: dict[str, str] = {}
    for members in clusters.values():
        if len(members) < 2:
            continue
        keep = max(members, key=lambda i: (cands[i].exported, cands[i].rank, -i))
        for i in members:
            if i != keep and not cands[i].exported:
                result[cands[i].id] = cands[keep].id
    return result
