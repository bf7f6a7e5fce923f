"""Grouping and matching through indexes: the same answers as comparing every pair, without doing so."""

from __future__ import annotations

import random

import cards.episodes as episodes
from cards.episodes import _group_headed, _same_episode, build_episodes
from cards.models import NoteSection, RawItem

GUESTS = ["Ada Abbott", "Boris Brandt", "Chen Costa", "Dana Dorsey", "Eli Eriksen", "Farah Fournier"]
SHOWS = ["Lex", "Dwarkesh", "No Priors"]
ITEMS = [f"note number {i} about chips" for i in range(40)] + ["LMAO", "wtf", "so true"]


def _all_pairs(sections):
    """The grouping rule stated plainly: each section joins the first group holding a section it matches."""
    groups: list[list[NoteSection]] = []
    for sec in sections:
        target = next((g for g in groups if any(_same_episode(sec, s) for s in g)), None)
        if target is None:
            target = []
            groups.append(target)
        target.append(sec)
    return groups


def _random_sections(rnd: random.Random, n: int) -> list[NoteSection]:
    out = []
    for i in range(n):
        guest, show = rnd.choice(GUESTS), rnd.choice(SHOWS)
        form = rnd.randrange(6)
        date = rnd.choice(["(7/28)", "(8/1)", ""])
        heading = [f"{guest} on {show} {date}", f"{show}: {guest} {date}", f"{guest.split()[0]} {date}",
                   "Interview", f"{guest} {rnd.choice(GUESTS)} {show}", f"episode {date}"][form]
        items = tuple(RawItem(t, "bullet", None, k, k) for k, t in enumerate(rnd.sample(ITEMS, rnd.randrange(0, 7))))
        out.append(NoteSection(heading, f"f{i % 3}.md", i, items))
    return out


def test_indexed_grouping_equals_comparing_every_pair():
    rnd = random.Random(5)
    for trial in range(60):
        sections = _random_sections(rnd, rnd.randrange(2, 40))
        got = [g.sections for g in _group_headed(sections, {})]
        assert got == _all_pairs(sections), trial


def test_grouping_compares_only_candidates(monkeypatch):
    # 2,000 distinct episodes of one show: all share the show's name and two
    # reactions (too few of their notes to make them one), yet the index offers
    # almost no pair to compare.
    calls = 0
    real = episodes._same

    def counting(a, b):
        nonlocal calls
        calls += 1
        return real(a, b)

    monkeypatch.setattr(episodes, "_same", counting)
    sections = []
    for i in range(2000):
        items = (RawItem("LMAO", "bullet", None, 1, 1), RawItem("so true", "bullet", None, 2, 2),
                 RawItem(f"guest {i} built fab {i}", "bullet", None, 3, 3),
                 RawItem(f"margin {i} percent", "bullet", None, 4, 4),
                 RawItem(f"power {i} gigawatts", "bullet", None, 5, 5),
                 RawItem(f"cost {i} dollars", "bullet", None, 6, 6))
        sections.append(NoteSection(f"Guest{i} Person{i} on Dwarkesh", "a.md", i * 10, items))
    # The same episodes again in an older export, headings worded differently.
    for i in range(0, 2000, 10):
        items = (RawItem(f"guest {i} built fab {i}", "bullet", None, 1, 1),
                 RawItem(f"margin {i} percent", "bullet", None, 2, 2))
        sections.append(NoteSection(f"Dwarkesh episode: Person{i} Guest{i}", "b.md", i, items))
    groups = _group_headed(sections, {})
    assert len(groups) == 2000
    assert all(len(g.sections) == 2 for g in groups[::10])
    assert calls < 5 * len(sections)  # all pairs would be about two million


def test_many_note_only_episodes_stay_apart_and_merge_across_files():
    sections = []
    for i in range(300):
        items = tuple(RawItem(f"claim {i}-{k}", "bullet", None, k, k) for k in range(3))
        sections.append(NoteSection(f"Guest{i} Person{i} on Lex", "a.md", i, items))
        if i % 7 == 0:
            sections.append(NoteSection(f"Person{i} Guest{i} (Lex)", "b.md", i, items[:2]))
    eps = build_episodes(sections, [])
    assert len(eps) == 300
    assert sum(len(e.sources) == 2 for e in eps) == len(range(0, 300, 7))
