"""Time and score duplicate detection on synthetic cards.

Builds N cards (default 50,000) from question templates filled with many distinct
made-up products, companies, people and numbers, about 10% of them planted
near-duplicates of other cards (reworded, reordered, re-cased, re-punctuated, with
reworded answers), runs `cards.dedupe.find_duplicates` and prints a table.

    python benchmarks/dedupe.py [--n 50000] [--seed 7] [--threshold 0.85] [--scope all]

A found pair is correct when both cards come from the same planted fact; recall is
correct pairs over planted duplicates (with --scope episode, over those planted in
the same episode as their original). Some planted rewordings are deliberately beyond
the matcher (synonyms, "when" for "what year"), so recall below 100% is expected.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cards.dedupe import Candidate, find_duplicates  # noqa: E402

SYLLABLES = "ka ri to ne va lo zu mi sha pe dro qui fen tor lux gan bel cor dax ish".split()
FIRST = "Dylan Ada Priya Marco Lena Kenji Omar Sofia Ravi Chen Tara Felix Nora Ivan Maya".split()
LAST = "Patel Novak Okafor Lindqvist Moreau Tanaka Haddad Rossi Kowalski Brennan Ito Silva".split()
UNITS = "experts layers heads chips racks tokens GPUs cores".split()
THINGS = "HBM supply|power|packaging|memory bandwidth|networking|cooling|software|yield".split("|")
ROLES = [
    "an inference chip", "a training chip", "a network switch", "a memory controller",
    "a video encoder",
]
ADJS = "training inference networking storage custom".split()

# Each template: a question, its answer, and rewordings a person or an LLM might produce.
# Rewordings marked "hard" use synonyms or another question word; they probe recall limits.
TEMPLATES = [
    dict(
        front="How many {unit} does {E} use?",
        back="{N} {unit}",
        alts=["How many {unit} is {E} using?", "{E} uses how many {unit}?",
              "how many {unit} does {E} actually use"],
        backs=["{N}", "about {N} {unit}"],
    ),
    dict(
        front="What is {E}?",
        back="{C}'s {adj} chip",
        alts=["What's {E}?", "what is {E}", "What exactly is {E}?"],
        backs=["A {adj} chip from {C}", "{C} {adj} chip"],
    ),
    dict(
        front="Which company makes {E}?",
        back="{C}",
        alts=["What company makes {E}?", "Which company is making {E}?",
              "Who is {E} made by?"],  # hard
        backs=["{C}.", "It's made by {C}"],
    ),
    dict(
        front="According to {P}, what is the main bottleneck for {E}?",
        back="{thing}",
        alts=["What is the main bottleneck for {E}, according to {P}?",
              "according to {P} what is the main bottleneck for {E}",
              "According to {P}, what's the biggest constraint on {E}?"],  # hard
        backs=["{thing}.", "The {thing}"],
    ),
    dict(
        front="In what year did {C} launch {E}?",
        back="{year}",
        alts=["What year did {C} launch {E} in?", "In which year was {E} launched by {C}?",
              "When did {C} launch {E}?"],  # hard
        backs=["In {year}", "{year}."],
    ),
    dict(
        front="Which chip does the {E} mostly serve as?",
        back="{role}",
        alts=["which chip is the {E} mostly serving as", "What chip does the {E} mostly serve as?"],
        backs=["{role}.", "Mostly {role}"],
    ),
    dict(
        front="How much HBM does the {E} have, in GB?",
        back="{N} GB",
        alts=["In GB, how much HBM does the {E} have?", "How much HBM, in GB, has the {E} got?"],
        backs=["{N} GB of HBM", "{N}GB"],
    ),
    dict(
        front="Who leads the {adj} team at {C}, according to {P2}?",
        back="{P}",
        alts=["According to {P2}, who leads the {adj} team at {C}?",
              "who is leading {C}'s {adj} team according to {P2}"],
        backs=["{P}.", "It is {P}"],
    ),
    dict(
        kind="cloze",
        front="{E} uses {{{{c1::{N}}}}} {unit}, according to {P}.",
        back="",
        alts=["According to {P}, {E} uses {{{{c1::{N}}}}} {unit}.",
              "{E} is using {{{{c1::{N}}}}} {unit} according to {P}"],
        backs=[""],
    ),
    dict(
        kind="cloze",
        front="{C} launched {E} in {{{{c1::{year}}}}}.",
        back="",
        alts=["In {{{{c1::{year}}}}}, {C} launched {E}.",
              "{E} was launched by {C} in {{{{c1::{year}}}}}"],
        backs=[""],
    ),
]


def _name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def _pool(size: int, make) -> list[str]:
    out: set[str] = set()
    while len(out) < size:
        out.add(make())
    return sorted(out)


def _noise(rng: random.Random, text: str) -> str:
    """Case and punctuation changes that do not change the words."""
    r = rng.random()
    if r < 0.25:
        text = text.lower()
    elif r < 0.35 and "{{" not in text:  # cloze markers must stay lower-case
        text = text.upper()
    if rng.random() < 0.4:
        if "{{" in text:
            text = text.rstrip("?.")
        else:
            text = text.translate(str.maketrans("", "", "?.,!'"))
    if rng.random() < 0.3:
        text = re.sub(r" ", "  ", text, count=1)
    return text


def make_cards(n: int, seed: int) -> tuple[list[Candidate], dict[str, int], int]:
    """N candidates, the fact each came from, and how many are planted duplicates."""
    rng = random.Random(seed)
    def product() -> str:
        return f"{_name(rng, 2)} {rng.choice(['', 'V', 'X', 'Pro '])}{rng.randint(1, 9)}"

    products = _pool(max(200, n // 6), product)
    companies = _pool(max(50, n // 60), lambda: _name(rng, rng.choice([2, 3])))
    people = [f"{f} {l}" for f in FIRST for l in LAST]
    planted = n // 10
    base_n = n - planted

    cards: list[Candidate] = []
    fact: dict[str, int] = {}
    seen_fronts: set[str] = set()
    slots_of: list[tuple[dict, dict]] = []
    while len(cards) < base_n:
        t = rng.choice(TEMPLATES)
        slots = dict(
            E=rng.choice(products), C=rng.choice(companies), P=rng.choice(people),
            P2=rng.choice(people), N=rng.choice([2, 4, 8, 16, 32, 64, 96, 128, 141, 192, 256, 512]),
            unit=rng.choice(UNITS), thing=rng.choice(THINGS), role=rng.choice(ROLES),
            adj=rng.choice(ADJS), year=rng.randint(2012, 2026),
        )
        front = t["front"].format(**slots)
        if front in seen_fronts:
            continue
        seen_fronts.add(front)
        cid = f"c{len(cards):06d}"
        fact[cid] = len(slots_of)
        slots_of.append((t, slots))
        cards.append(Candidate(cid, f"ep{rng.randrange(max(1, n // 100))}", front,
                               t["back"].format(**slots), t.get("kind", "basic"),
                               (rng.random(),), exported=rng.random() < 0.01))

    for k in range(planted):
        origin = rng.randrange(base_n)
        t, slots = slots_of[fact[cards[origin].id]]
        front = rng.choice([t["front"], *t["alts"]]).format(**slots)
        back = rng.choice([t["back"], *t["backs"]]).format(**slots)
        if front == t["front"].format(**slots) and back == t["back"].format(**slots):
            front = _noise(rng, front) + (" " if rng.random() < 0.5 else "")
        elif rng.random() < 0.5:
            front = _noise(rng, front)
        cid = f"d{k:06d}"
        fact[cid] = fact[cards[origin].id]
        # Same episode most of the time: a bullet noted twice, or regenerated.
        if rng.random() < 0.8:
            episode = cards[origin].episode
        else:
            episode = f"ep{rng.randrange(max(1, n // 100))}"
        cards.append(Candidate(cid, episode, front, back, t.get("kind", "basic"), (rng.random(),)))

    rng.shuffle(cards)
    return cards, fact, planted


def score(result: dict[str, str], fact: dict, planted: int) -> tuple[int, float, float]:
    """Found pairs, precision and recall against the planted facts."""
    found = len(result)
    correct = sum(fact[a] == fact[b] for a, b in result.items())
    precision = correct / found if found else 1.0
    recall = correct / planted if planted else 1.0
    return found, precision, recall


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="number of cards (default 50000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threshold", type=float, default=0.85)
    parser.add_argument("--scope", choices=["all", "episode"], default="all")
    args = parser.parse_args(argv)

    cards, fact, planted = make_cards(args.n, args.seed)
    if args.scope == "episode":
        # Copies planted in another episode are not duplicates within an episode.
        fact = {c.id: (fact[c.id], c.episode) for c in cards}
        planted = len(cards) - len(set(fact.values()))
    start = time.perf_counter()
    result = find_duplicates(cards, threshold=args.threshold, scope=args.scope)
    seconds = time.perf_counter() - start
    found, precision, recall = score(result, fact, planted)

    head = ["cards", "planted", "found", "precision", "recall", "seconds"]
    row = [
        f"{len(cards):,}", f"{planted:,}", f"{found:,}",
        f"{precision:.3f}", f"{recall:.3f}", f"{seconds:.2f}",
    ]
    widths = [max(len(h), len(v)) for h, v in zip(head, row)]
    print(f"find_duplicates(threshold={args.threshold}, scope={args.scope!r}), seed {args.seed}")
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


if __name__ == "__main__":
    main()
