"""Grouping note sections into episodes across files, and giving each episode its transcript."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cards.config import build_settings
from cards.episodes import build_episodes, slugify
from cards.errors import ConfigError
from cards.ingest.notes import parse_notes_text
from cards.pipeline import load

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
N000, N001, T002, T003, N004 = (SEEDS / n for n in (
    "000_afbeb462ed58c10d.txt", "001_88cdf00b6de09240.txt", "002_0fe13fd03e9aaf95.txt",
    "003_34925e2c796f303a.txt", "004_bd517cc6001931b3.txt"))
SAFE_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

needs_seeds = pytest.mark.skipif(not SEEDS.is_dir() or not all(p.exists() for p in (N000, N001, T002, T003, N004)),
                                 reason="seed notes and transcripts not present")


def _settings(tmp: Path, toml: str | None = None):
    path = tmp / "cards.toml"
    if toml is not None:
        path.write_text(toml, encoding="utf-8")
    return build_settings(config_path=path)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Every seed loaded once: notes 000, 001, 004 and transcripts 002, 003."""
    if not SEEDS.is_dir() or not all(p.exists() for p in (N000, N001, T002, T003, N004)):
        pytest.skip("seed notes and transcripts not present")
    settings = _settings(tmp_path_factory.mktemp("cfg"))
    return load([N000, N001, N004], [T002, T003], settings).episodes


def _by_title(episodes, title):
    return next(e for e in episodes if e.title == title)


# -- the seeds --------------------------------------------------------------------------------

@needs_seeds
def test_one_episode_across_files_with_differently_worded_headings(seeds):
    matches = [e for e in seeds if "Patrick McKenzie" in e.title]
    assert len(matches) == 1
    ep = matches[0]
    assert ep.title == "Patrick McKenzie on Dwarkesh (7/28)"
    assert ep.sources == [str(N000), str(N001)]
    ids = [i.id for i in ep.items]
    assert len(ids) == len(set(ids))
    texts = [i.text for i in ep.items]
    assert len(texts) == len(set(texts))
    # The bullet is in both files (mojibake repaired in 001): one item, two sources.
    (item,) = [i for i in ep.items if i.text.startswith("big tech companies didn’t do this")]
    assert [s.path for s in item.sources] == [str(N000), str(N001)]
    assert item.sources[0].line_start == 195
    assert len(ep.items) == 37


@needs_seeds
def test_every_shared_episode_merges(seeds):
    for title, files in [("Karpathy on No Priors (9/6)", 2), ("Ricki on Complex Systems (8/23)", 2)]:
        ep = _by_title(seeds, title)
        assert len(ep.sources) == files
        assert all(len(i.sources) == 2 for i in ep.items)


@needs_seeds
def test_prose_notes_join_their_episode(seeds):
    ep = next(e for e in seeds if "Sholto" in e.title)
    assert str(N004) in ep.sources
    assert [e for e in seeds if str(N004) in e.sources] == [ep]
    kinds = [i.kind for i in ep.items]
    assert kinds.count("prose") >= 20 and kinds.count("bullet") == 19
    # The bullets of the headed files come first, the prose after them.
    assert kinds == sorted(kinds)  # "bullet" < "prose"
    assert ep.video_id == "UTuuTTnjxMQ"


@needs_seeds
def test_transcripts_go_to_the_right_episode(seeds):
    lex = _by_title(seeds, "Dylan, Nathan on Lex")
    assert len(lex.items) == 36
    assert lex.transcript is not None and Path(lex.transcript.path) == T002
    assert lex.match_score is not None and lex.match_score >= 0.5
    (latent,) = [e for e in seeds if e.transcript is not None and Path(e.transcript.path) == T003]
    assert latent.items == [] and latent.sources == []
    assert latent.as_dict()["notes"] == 0
    assert latent.match_score is None


@needs_seeds
def test_never_one_transcript_for_two_episodes(seeds):
    paths = [e.transcript.path for e in seeds if e.transcript is not None]
    assert len(paths) == len(set(paths)) == 2


@needs_seeds
def test_similar_headings_of_distinct_episodes_stay_apart(seeds):
    titles = [e.title for e in seeds]
    assert "Dylan and Jon on Dwarkesh (9/10)" in titles
    assert "Dylan, Nathan on Lex" in titles
    assert "Dario, Amanda, Chris on Lex" in titles
    assert len(seeds) == 8  # seven headed episodes and the Latent Space transcript
    assert len({e.slug for e in seeds}) == len(seeds)


@needs_seeds
def test_item_order_follows_the_notes(seeds):
    lex = _by_title(seeds, "Dylan, Nathan on Lex")
    assert [i.position for i in lex.items] == list(range(36))
    lines = [i.source.line_start for i in lex.items]
    assert lines == sorted(lines)
    assert lex.items[0].text == "top labs all all have their own crawlers"


@needs_seeds
def test_slugs_are_safe_and_stable_across_runs_and_argument_order(seeds, tmp_path):
    assert all(SAFE_SLUG.match(e.slug) for e in seeds)
    again = load([N001, N004, N000], [T003, T002], _settings(tmp_path)).episodes
    assert sorted(e.slug for e in again) == sorted(e.slug for e in seeds)
    first = {e.slug: sorted(i.id for i in e.items) for e in seeds}
    second = {e.slug: sorted(i.id for i in e.items) for e in again}
    assert first == second


# -- small examples ---------------------------------------------------------------------------

REACTOR = """\
[00:00:00.000 --> 00:00:04.000]   Welcome to Reactor Talk, I'm here with Ada Quill.
[00:00:04.000 --> 00:00:09.000]   The sodium reactor in Kemmerer runs at 345 megawatts electric.
[00:00:09.000 --> 00:00:15.000]   Molten salt storage lets the plant boost output to 500 megawatts for five hours.
[00:00:15.000 --> 00:00:21.000]   The fuel is HALEU, enriched to almost 20 percent uranium 235.
"""
GARDEN = """\
[00:00:00.000 --> 00:00:04.000]   This is Garden Hour and my guest today is Bram Otter.
[00:00:04.000 --> 00:00:09.000]   Tomato blight spreads fastest when the leaves stay wet overnight.
[00:00:09.000 --> 00:00:15.000]   Copper fungicide only slows the blight down, it never cures an infected plant.
[00:00:15.000 --> 00:00:21.000]   Mulch keeps the soil from splashing spores onto the lower leaves.
"""
NOTES_A = """\
# Ada Quill on Reactor Talk
- the sodium reactor in Kemmerer runs at 345 megawatts
- molten salt storage boosts output to 500 megawatts for five hours

# Bram Otter on Garden Hour
- tomato blight spreads fastest when leaves stay wet overnight
- copper fungicide only slows the blight
"""
NOTES_B = """\
# Kemmerer reactor chat
- fuel is HALEU enriched to almost 20 percent
"""


@pytest.fixture
def example(tmp_path):
    folder = tmp_path / "input"
    (folder / "transcripts").mkdir(parents=True)
    (folder / "transcripts" / "reactor.txt").write_text(REACTOR, encoding="utf-8")
    (folder / "transcripts" / "garden.txt").write_text(GARDEN, encoding="utf-8")
    (folder / "a.md").write_text(NOTES_A, encoding="utf-8")
    (folder / "b.md").write_text(NOTES_B, encoding="utf-8")
    return folder


def _load(folder: Path, toml: str | None = None):
    settings = _settings(folder, toml)
    return load([folder / "a.md", folder / "b.md"], [folder / "transcripts"], settings).episodes


def test_without_pins(example):
    eps = {e.slug: e for e in _load(example)}
    assert set(eps) == {"ada-quill-on-reactor-talk", "bram-otter-on-garden-hour", "kemmerer-reactor-chat"}
    assert Path(eps["ada-quill-on-reactor-talk"].transcript.path).name == "reactor.txt"
    assert Path(eps["bram-otter-on-garden-hour"].transcript.path).name == "garden.txt"
    assert eps["kemmerer-reactor-chat"].transcript is None


def test_pins_override_title_and_transcript_and_merge_an_alias(example):
    toml = """
[episodes.ada-quill-on-reactor-talk]
title = "Reactor Talk with Ada Quill"
transcript = "transcripts/garden.txt"
aliases = ["Kemmerer reactor chat"]

[episodes.bram-otter-on-garden-hour]
transcript = false
"""
    eps = {e.slug: e for e in _load(example, toml)}
    ada = eps["ada-quill-on-reactor-talk"]
    assert ada.title == "Reactor Talk with Ada Quill"
    assert [i.text for i in ada.items] == [
        "the sodium reactor in Kemmerer runs at 345 megawatts",
        "molten salt storage boosts output to 500 megawatts for five hours",
        "fuel is HALEU enriched to almost 20 percent",
    ]
    assert ada.sources == [str(example / "a.md"), str(example / "b.md")]
    assert Path(ada.transcript.path).name == "garden.txt"
    assert ada.match_score == 1.0
    bram = eps["bram-otter-on-garden-hour"]
    assert bram.transcript is None and len(bram.items) == 2
    assert "kemmerer-reactor-chat" not in eps
    # The transcript nobody took is listed on its own, with no notes.
    (rest,) = [e for e in eps.values() if e.transcript is not None and e is not ada]
    assert Path(rest.transcript.path).name == "reactor.txt" and rest.items == []


def test_pin_under_a_new_slug_gathers_its_aliases(example):
    toml = '[episodes.reactor]\naliases = ["Ada Quill on Reactor Talk", "Kemmerer reactor chat"]\n'
    eps = {e.slug: e for e in _load(example, toml)}
    assert set(eps) == {"reactor", "bram-otter-on-garden-hour"}
    assert len(eps["reactor"].items) == 3
    assert eps["reactor"].title == "Ada Quill on Reactor Talk"
    assert Path(eps["reactor"].transcript.path).name == "reactor.txt"


def test_pinned_transcript_found_however_the_path_was_written(example, tmp_path, monkeypatch):
    # cwd is not the config's folder: the pin is relative to cards.toml, the argument to the cwd.
    toml = '[episodes.bram-otter-on-garden-hour]\ntranscript = "transcripts/garden.txt"\n'
    settings = _settings(example, toml)
    rel = Path("input") / "transcripts" / "garden.txt"
    monkeypatch.chdir(tmp_path)
    eps = {e.slug: e for e in load([example / "a.md"], [rel, example / "transcripts" / "reactor.txt"],
                                   settings).episodes}
    assert eps["bram-otter-on-garden-hour"].transcript is not None
    assert Path(eps["bram-otter-on-garden-hour"].transcript.path).name == "garden.txt"
    assert eps["bram-otter-on-garden-hour"].match_score == 1.0


def test_one_transcript_pinned_twice_is_a_config_error(tmp_path):
    toml = ('[episodes.one]\ntranscript = "t.txt"\n'
            '[episodes.two]\ntranscript = "./t.txt"\n')
    with pytest.raises(ConfigError, match="already pinned") as e:
        _settings(tmp_path, toml)
    assert "cards.toml" in str(e.value)


@pytest.mark.parametrize("slug", ['"../escape"', '"Has Spaces"', '"a/b"'])
def test_pinned_slug_must_be_filesystem_safe(tmp_path, slug):
    with pytest.raises(ConfigError, match="slug"):
        _settings(tmp_path, f'[episodes.{slug}]\ntitle = "x"\n')


def test_bad_setting_types_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="concurrency"):
        _settings(tmp_path, '[settings]\nconcurrency = "8"\n')


def test_items_only_in_a_later_file_go_next_to_their_neighbours():
    a = parse_notes_text("# Ep (1/2)\n- one\n- two\n- three\n- four\n- five\n", "a.md")
    b = parse_notes_text("# Ep (1/2)\n- zero\n- two\n- two and a half\n- five\n- six\n", "b.md")
    c = parse_notes_text("# Ep (1/2)\n- unrelated\n- also unrelated\n", "c.md")
    (ep,) = build_episodes(c + b + a, [])
    assert [i.text for i in ep.items] == ["one", "zero", "two", "two and a half", "three", "four", "five",
                                         "six", "unrelated", "also unrelated"]
    assert [i.position for i in ep.items] == list(range(10))
    two = next(i for i in ep.items if i.text == "two")
    assert [s.path for s in two.sources] == ["a.md", "b.md"]


def test_same_bullet_in_two_files_is_one_item_with_two_sources():
    a = parse_notes_text("# Ep\n- Shared  Bullet\n- only a\n", "a.md")
    b = parse_notes_text("# Ep\n- shared bullet\n", "b.md")
    (ep,) = build_episodes(a + b, [])
    assert [i.text for i in ep.items] == ["Shared  Bullet", "only a"]
    assert [(s.path, s.line_start) for s in ep.items[0].sources] == [("a.md", 2), ("b.md", 2)]


def test_slugs_are_filesystem_safe_and_unique():
    text = ("# ../../etc/passwd\n- a\n# a/b\\c:d*e?\n- b\n# 日本語\n- c\n# Ünïcødé Tïtle (9/10)\n- d\n"
            "# !!!\n- e\n")
    eps = build_episodes(parse_notes_text(text, "n.md"), [])
    slugs = [e.slug for e in eps]
    assert all(SAFE_SLUG.match(s) for s in slugs), slugs
    assert len(set(slugs)) == len(slugs)
    assert slugify("Dylan, Nathan on Lex") == "dylan-nathan-on-lex"
    assert slugify("Dylan, Nathan on Lex") == slugify("Dylan, Nathan on Lex")


def test_slug_does_not_depend_on_argument_order():
    a = parse_notes_text("# Patrick McKenzie on Dwarkesh (7/28)\n- x one\n- x two\n", "a.md")
    b = parse_notes_text("# Patrick McKenzie Dwarkesh Episode (7/28)\n- x one\n- x two\n", "b.md")
    (one,) = build_episodes(a + b, [])
    (two,) = build_episodes(b + a, [])
    assert one.slug == two.slug == "patrick-mckenzie-on-dwarkesh-7-28"
    assert [i.id for i in one.items] == [i.id for i in two.items]


def test_identical_headings_of_stop_words_only_are_one_episode():
    a = parse_notes_text("# The Episode\n- alpha\n", "a.md")
    b = parse_notes_text("# the  episode\n- beta\n", "b.md")
    (ep,) = build_episodes(a + b, [])
    assert [i.text for i in ep.items] == ["alpha", "beta"]
