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

WINDOW = 60  # words per scoring window
STEP = 10  # words between window starts
CANDIDATES = 6  # windows per note considered by the order model
BACKWARD_PENALTY = 0.25  # cost, in normalised score, of a note placed before the previous one
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
    positions = {k: np.asarray(v, dtype=np.int64) for k, v in pos.items()}
    n_windows = max(1, math.ceil(max(len(stems) - WINDOW, 0) / STEP) + 1)
    idf = {}
    for k, arr in positions.items():
        df = len(np.unique(arr // (WINDOW * 2)))
        idf[k] = math.log(1 + (n_windows * STEP / (WINDOW * 2)) / df)
    seg_tokens = [counter.count(s.text) + 1 for s in transcript.segments]
    return _Index(transcript, stems, np.asarray(seg_of, dtype=np.int64), positions, idf, n_windows,
                  seg_tokens, {k: np.asarray(v, dtype=np.int64) for k, v in initials.items()})


def _vocab_lookup(index: _Index, term: str) -> tuple[str, float] | None:
    """The transcript's spelling of a note term, with a confidence discount."""
    if term in index.positions:
        return term, 1.0
    if len(term) >= 5:
        from rapidfuzz import fuzz, process, utils  # noqa: F401  (imported lazily: align-only)

        hit = process.extractOne(term, index.positions.keys(), scorer=fuzz.ratio, score_cutoff=82)
        if hit is not None:
            return hit[0], 0.8
    return None


def _query(index: _Index, text: str) -> list[tuple[str, np.ndarray, float]]:
    """Note terms that occur in the transcript: (term, positions, weight)."""
    out: dict[str, tuple[np.ndarray, float]] = {}
    for w in words(text):
        if w in STOPWORDS or len(w) < 2:
            continue
        s = stem(w)
        found = _vocab_lookup(index, s)
        if found is not None:
            key, conf = found
            out[key] = (index.positions[key], index.idf[key] * conf)
        elif 2 <= len(w) <= 4 and w.isalpha() and w in index.initials:
            out["^" + w] = (index.initials[w], 2.5)  # a rare, specific acronym hit
    return [(k, p, wt) for k, (p, wt) in out.items()]


def _window_scores(index: _Index, query: list[tuple[str, np.ndarray, float]]) -> np.ndarray:
    n = index.n_windows
    total = np.zeros(n)
    first = np.full((len(query), n), -1, dtype=np.int64)
    for qi, (_, pos, wt) in enumerate(query):
        present = np.zeros(n, dtype=bool)
        # A word at position p lies in windows (p - WINDOW, p] / STEP.
        lo = np.clip((pos - WINDOW + STEP) // STEP, 0, n - 1)
        hi = np.clip(pos // STEP, 0, n - 1)
        for a, b, p in zip(lo.tolist(), hi.tolist(), pos.tolist()):
            present[a:b + 1] = True
            first[qi, a:b + 1] = np.where(first[qi, a:b + 1] < 0, p, first[qi, a:b + 1])
        total += present * wt
    # Two different note terms within a few words of each other: a phrase, not chance.
    if len(query) > 1:
        hits = (first >= 0).sum(axis=0)
        total += np.maximum(hits - 1, 0) * 0.15 * np.mean([q[2] for q in query])
    return total


def _centre(index: _Index, query: list[tuple[str, np.ndarray, float]], window: int) -> int:
    """The word position around which the window's matched note terms cluster."""
    lo, hi = window * STEP, window * STEP + WINDOW
    pts, wts = [], []
    for _, pos, wt in query:
        inside = pos[(pos >= lo) & (pos < hi)]
        if len(inside):
            pts.append(float(np.median(inside)))
            wts.append(wt)
    if not pts:
        return min(lo + WINDOW // 2, len(index.stems) - 1)
    return int(min(np.average(pts, weights=wts), len(index.stems) - 1))


def _passage(index: _Index, centre_word: int, budget: int, score: float) -> Context:
    segs = index.transcript.segments
    c = int(index.word_seg[centre_word]) if len(index.word_seg) else 0
    lo = hi = c
    used = index.seg_tokens[c]
    while used < budget and (lo > 0 or hi < len(segs) - 1):
        # Grow both ways, a little more forward: a note is usually taken just after it was said.
        if hi < len(segs) - 1 and (lo == 0 or (hi - c) <= (c - lo) * 1.5):
            if used + index.seg_tokens[hi + 1] > budget:
                break
            hi += 1
            used += index.seg_tokens[hi]
        else:
            if used + index.seg_tokens[lo - 1] > budget:
                break
            lo -= 1
            used += index.seg_tokens[lo]
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
            out.append(_passage(self.index, _centre(self.index, query, w), self.budget, min(score, 1.0)))
        return out

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
                options = [
                    (best[prev_idx][j] + s - (BACKWARD_PENALTY if w < pw - WINDOW // STEP else 0.0), j)
                    for j, (_, pw) in enumerate(cands[prev_idx])
                ]
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
