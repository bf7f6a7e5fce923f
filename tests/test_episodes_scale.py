"""Grouping and matching through indexes: the same answers as comparing every pair, without doing so."""

from __future__ import annotations

import random

from cards import episodes
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


def _synthetic_archive(n: int):
    """n episodes, each with notes cut from its own transcript; transcripts share a common vocabulary."""
    from cards.models import Segment, Transcript

    rnd = random.Random(n)
    common = [f"common{i}" for i in range(60)]
    groups, transcripts = [], []
    for e in range(n):
        own = [f"topic{e}x{i}" for i in range(25)]
        text = [rnd.choice(common + own) for _ in range(600)]
        segs = tuple(Segment(" ".join(text[i:i + 12]), i // 12 + 1) for i in range(0, len(text), 12))
        transcripts.append(Transcript(f"t{e}.txt", "plain", segs, title=f"Guest{e} interview"))
        notes = []
        for _ in range(8):
            at = rnd.randrange(0, len(text) - 6)
            notes.append(" ".join(text[at:at + 6]))
        groups.append((f"ep-{e}", notes, {f"guest{e}"}))
    rnd.shuffle(transcripts)
    return groups, transcripts


def test_matching_through_the_index_agrees_with_scoring_every_pair():
    groups, transcripts = _synthetic_archive(60)
    exact = episodes._match_transcripts(groups, transcripts, exact_pairs=10**9)
    indexed = episodes._match_transcripts(groups, transcripts, exact_pairs=0)
    assert {k: t.path for k, (t, _) in exact.items()} == {k: t.path for k, (t, _) in indexed.items()}
    assert all(t.path == f"t{k.split('-')[1]}.txt" for k, (t, _) in indexed.items())
    assert len(indexed) >= 55


def test_matching_a_large_archive_scores_few_pairs(monkeypatch):
    groups, transcripts = _synthetic_archive(150)
    scored = 0
    real = episodes._confidence

    def counting(*args):
        nonlocal scored
        scored += 1
        return real(*args)

    monkeypatch.setattr(episodes, "_confidence", counting)
    out = episodes._match_transcripts(groups, transcripts)
    assert len(out) >= 140
    assert scored < 10 * len(groups)  # every pair would be 22,500


def test_the_seeds_match_the_same_through_the_index(monkeypatch, tmp_path):
    from pathlib import Path

    import pytest

    from cards.config import build_settings
    from cards.pipeline import load

    seeds = Path(__file__).resolve().parents[2] / "shared" / "seeds"
    names = ["000_afbeb462ed58c10d.txt", "001_88cdf00b6de09240.txt", "004_bd517cc6001931b3.txt",
             "002_0fe13fd03e9aaf95.txt", "003_34925e2c796f303a.txt"]
    if not all((seeds / n).exists() for n in names):
        pytest.skip("seed notes and transcripts not present")
    settings = build_settings(config_path=tmp_path / "cards.toml", workspace=tmp_path / "ws")
    notes, ts = [seeds / n for n in names[:3]], [seeds / n for n in names[3:]]

    def matches():
        return [(e.slug, e.transcript.path if e.transcript else None, e.match_score)
                for e in load(notes, ts, settings).episodes]

    exact = matches()
    monkeypatch.setattr(episodes, "EXACT_MATCH_PAIRS", 0)
    assert matches() == exact
    assert exact[0][1].endswith("002_0fe13fd03e9aaf95.txt")
