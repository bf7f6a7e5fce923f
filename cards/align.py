"""Find, for each note item, the transcript passage it came from.

Notes are terse and in the listener's words; captions are unpunctuated and
misheard. The method, with no LLM:

1. Words on both sides are canonicalised and lightly stemmed; transcript words
   that are absent from the note side are reached by fuzzy spelling
   ("trianing"), by joining two caption words ("microwave gang" for
   "microwavegang") and by initials ("MLA" for "multi ... latent attention").
2. Each note scores overlapping windows of the transcript: the IDF weight of
   each note term present (rare words count most), plus a bonus where two
   adjacent note terms occur close together.
3. Notes mostly follow the episode's order, so the final choice is a Viterbi
   path over each note's best windows with a soft penalty for going backwards:
   strong evidence can still overrule the order.
4. The passage is cut verbatim from whole segments around the best spot, sized
   by tokens, with the segments' start and end times when the transcript has them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cards.lexicon import STOPWORDS, words
from cards.models import Context, NoteItem, Transcript
from cards.tokens import TokenCounter

WINDOW = 80  # words per scoring window
STEP = 10  # words between window starts
CANDIDATES = 6  # windows per note considered by the order model
BACKWARD_PENALTY = 0.1  # cost, in normalised score, of placing a note before the previous one
JUMP_COST = 0.5  # cost of a jump across the whole transcript; backward jumps pay it twice
LEAN = 0.6  # where the evidence sits in the passage (0.5 = centred)
REST_FACTOR = 0.3  # weight of words from a note's run-on lines and children
MIN_SCORE = 0.12  # below this a note gets no context
DEFAULT_CONTEXT_TOKENS = 350
_SUFFIXES = ("ities", "ity", "ness", "ings", "ing", "edly", "ed", "ies", "es", "ers", "er", "est", "ly", "s", "e")


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


@dataclass
class _Index:
    """A transcript prepared for scoring: stems per word, their positions, window IDF."""

    transcript: Transcript
    stems: list[str]
    word_seg: np.ndarray  # segment index of each word
    positions: dict[str, np.ndarray]
    idf: dict[str, float]
    n_windows: int
    seg_tokens: list[int]
    initials: dict[str, np.ndarray]
    vocab: list[str]  # single caption words, for fuzzy spelling matches
    words_per_token: float


def _build_index(transcript: Transcript, counter: TokenCounter) -> _Index:
    stems: list[str] = []
    seg_of: list[int] = []
    for si, seg in enumerate(transcript.segments):
        for w in words(seg.text):
            stems.append(stem(w))
            seg_of.append(si)
    pos: dict[str, list[int]] = {}
    for i, s in enumerate(stems):
        pos.setdefault(s, []).append(i)
    # Two caption words heard apart may be one word in the notes.
    for i in range(len(stems) - 1):
        joined = stems[i] + stems[i + 1]
        if len(joined) >= 7 and joined not in STOPWORDS:
            pos.setdefault(stem(joined), []).append(i)
    # Acronyms: initials of three consecutive content words ("multi latent attention").
    content_idx = [i for i, s in enumerate(stems) if s not in STOPWORDS and not s.isdigit()]
    initials: dict[str, list[int]] = {}
    for a, b, c in zip(content_idx, content_idx[1:], content_idx[2:]):
        if c - a <= 5:
            initials.setdefault(stems[a][0] + stems[b][0] + stems[c][0], []).append(a)
    vocab = sorted({s for s in stems if len(s) >= 4 and s not in STOPWORDS})
    positions = {k: np.asarray(v, dtype=np.int64) for k, v in pos.items()}
    n_windows = max(1, math.ceil(max(len(stems) - WINDOW, 0) / STEP) + 1)
    idf = {}
    for k, arr in positions.items():
        df = len(np.unique(arr // (WINDOW * 2)))
        idf[k] = math.log(1 + (n_windows * STEP / (WINDOW * 2)) / df)
    seg_tokens = [counter.count(s.text) + 1 for s in transcript.segments]
    return _Index(transcript, stems, np.asarray(seg_of, dtype=np.int64), positions, idf, n_windows,
                  seg_tokens, {k: np.asarray(v, dtype=np.int64) for k, v in initials.items()},
                  vocab, len(stems) / max(1, sum(seg_tokens)))


def _vocab_lookup(index: _Index, term: str) -> tuple[str, float] | None:
    """The transcript's spelling of a note term, with a confidence discount."""
    if term in index.positions:
        return term, 1.0
    if len(term) >= 5 and not term[0].isdigit():
        from rapidfuzz import fuzz, process

        # A misspelling keeps its first letter and roughly its length ("trianing").
        hit = process.extractOne(
            term, index.vocab, scorer=fuzz.ratio, score_cutoff=82,
            processor=None,
        )
        if hit is not None and hit[0][0] == term[0] and abs(len(hit[0]) - len(term)) <= 2:
            return hit[0], 0.8
    return None


def _query(index: _Index, text: str) -> list[tuple[str, np.ndarray, float]]:
    """Note terms that occur in the transcript: (term, positions, weight).

    A note's first line is its main claim; run-on lines and children add detail,
    so their words count for less.
    """
    out: dict[str, tuple[np.ndarray, float]] = {}
    first, _, rest = text.partition("\n")
    for part, factor in ((first, 1.0), (rest, REST_FACTOR)):
        for w in words(part):
            if w in STOPWORDS or len(w) < 2:
                continue
            found = _vocab_lookup(index, stem(w))
            if found is not None:
                key, conf = found
                entry = (index.positions[key], index.idf[key] * conf * factor)
            elif 2 <= len(w) <= 4 and w.isalpha() and w in index.initials:
                key, entry = "^" + w, (index.initials[w], 2.5 * factor)  # a rare, specific acronym
            else:
                continue
            if key not in out or out[key][1] < entry[1]:
                out[key] = entry
    return [(k, p, wt) for k, (p, wt) in out.items()]


def _presence(pos: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """Whether each window [start, start + width) holds at least one of the sorted positions."""
    return np.searchsorted(pos, starts + width) > np.searchsorted(pos, starts)


def _window_scores(index: _Index, query: list[tuple[str, np.ndarray, float]]) -> np.ndarray:
    starts = np.arange(index.n_windows) * STEP
    total = np.zeros(index.n_windows)
    hits = np.zeros(index.n_windows)
    for _, pos, wt in query:
        present = _presence(pos, starts, WINDOW)
        total += present * wt
        hits += present
    # Several different note terms close together: a phrase, not chance.
    if len(query) > 1:
        total += np.maximum(hits - 1, 0) * 0.15 * np.mean([q[2] for q in query])
    return total


def _evidence_centre(query: list[tuple[str, np.ndarray, float]], window: int) -> float:
    """Weighted mean position of the note terms found in the chosen window."""
    lo, hi = window * STEP, window * STEP + WINDOW
    pts, wts = [], []
    for _, pos, wt in query:
        inside = pos[(pos >= lo) & (pos < hi)]
        if len(inside):
            pts.append(float(inside.mean()))
            wts.append(wt)
    return float(np.average(pts, weights=wts)) if pts else lo + WINDOW / 2


def _best_span(index: _Index, query: list[tuple[str, np.ndarray, float]], window: int, width: int) -> int:
    """Start of the passage-sized span, containing the chosen window, that holds the most evidence."""
    lo = max(0, window * STEP + WINDOW - width)
    hi = max(lo, min(window * STEP, len(index.stems) - width))
    starts = np.arange(lo, hi + 1, 5)
    if len(starts) == 0:
        return max(0, window * STEP)
    score = np.zeros(len(starts))
    for _, pos, wt in query:
        score += _presence(pos, starts, width) * wt
    # Among spans holding equal evidence prefer the one centred on where the
    # evidence is densest, so the source sits in the middle of the passage.
    # The passage leans a little backwards: a note is written after the words
    # were said, and the claim tends to come before the talk that follows it.
    score -= np.abs(starts + width * LEAN - _evidence_centre(query, window)) * 1e-6
    return int(starts[int(np.argmax(score))])


def _passage(index: _Index, first_word: int, last_word: int, budget: int, score: float) -> Context:
    """Whole segments covering the words, then trimmed or grown evenly to the token budget."""
    segs = index.transcript.segments
    n = len(segs)
    lo = int(index.word_seg[first_word]) if len(index.word_seg) else 0
    hi = int(index.word_seg[min(last_word, len(index.word_seg) - 1)]) if len(index.word_seg) else 0
    used = sum(index.seg_tokens[lo:hi + 1])
    while used > budget and hi > lo:
        if (hi - lo) % 2:
            used -= index.seg_tokens[hi]
            hi -= 1
        else:
            used -= index.seg_tokens[lo]
            lo += 1
    grow_lo = True
    while lo > 0 or hi < n - 1:
        if (grow_lo and lo > 0) or hi == n - 1:
            if used + index.seg_tokens[lo - 1] > budget:
                break
            lo -= 1
            used += index.seg_tokens[lo]
        else:
            if used + index.seg_tokens[hi + 1] > budget:
                break
            hi += 1
            used += index.seg_tokens[hi]
        grow_lo = not grow_lo
    text = " ".join(s.text for s in segs[lo:hi + 1])
    starts = [s.start for s in segs[lo:hi + 1] if s.start is not None]
    ends = [s.end for s in segs[lo:hi + 1] if s.end is not None]
    return Context(text, lo, hi, starts[0] if starts else None, ends[-1] if ends else None, score)


class Aligner:
    """Aligns the notes of one episode to its transcript."""

    def __init__(self, transcript: Transcript, counter: TokenCounter, budget: int = DEFAULT_CONTEXT_TOKENS):
        self.index = _build_index(transcript, counter)
        self.budget = budget

    def candidates(self, note: NoteItem) -> tuple[list[tuple[float, int]], list]:
        query = _query(self.index, note.text)
        if not query:
            return [], query
        scores = _window_scores(self.index, query)
        norm = sum(q[2] for q in query) * 1.3
        order = np.argsort(-scores)
        picked: list[tuple[float, int]] = []
        for w in order.tolist():
            if len(picked) >= CANDIDATES or scores[w] <= 0:
                break
            if all(abs(w - p) * STEP >= WINDOW for _, p in picked):
                picked.append((float(scores[w]) / norm, w))
        return picked, query

    def align(self, notes: list[NoteItem]) -> list[Context | None]:
        cands = [self.candidates(n) for n in notes]
        path = self._viterbi([c for c, _ in cands])
        out: list[Context | None] = []
        for (picks, query), choice in zip(cands, path):
            if choice is None:
                out.append(None)
                continue
            score, w = picks[choice]
            if score < MIN_SCORE:
                out.append(None)
                continue
            width = max(WINDOW, int(self.budget * self.index.words_per_token))
            start = _best_span(self.index, query, w, width)
            out.append(_passage(self.index, start, start + width - 1, self.budget, min(score, 1.0)))
        return out

    def _jump(self, prev: int, cur: int) -> float:
        """Cost of moving from one note's window to the next: far jumps are unlikely, backward ones more so."""
        dist = (cur - prev) / self.index.n_windows
        if cur >= prev - WINDOW // STEP:
            return JUMP_COST * max(dist, 0.0)
        return BACKWARD_PENALTY + 2 * JUMP_COST * -dist

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
        i = prev_idx
        while i is not None and j is not None:
            path[i] = j
            nj = back[i][j]
            pi = next((k for k in range(i - 1, -1, -1) if cands[k]), None)
            i, j = pi, nj
        return path


def align_episode(notes: list[NoteItem], transcript: Transcript | None, counter: TokenCounter,
                  budget: int = DEFAULT_CONTEXT_TOKENS) -> list[Context | None]:
    """Contexts for an episode's notes, in order; all None without a transcript."""
    if transcript is None or not notes:
        return [None] * len(notes)
    return Aligner(transcript, counter, budget).align(notes)
