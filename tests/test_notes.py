"""Parsing markdown notes into sections and items, the way real notes are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from cards.errors import InputError
from cards.ingest.notes import parse_notes, parse_notes_text, strip_markup

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


def _seed(name: str) -> Path:
    path = SEEDS / name
    if not path.exists():
        pytest.skip("seed notes not present")
    return path


def items(text: str):
    """(heading, item) pairs of a notes text."""
    return [(s.heading, i) for s in parse_notes_text(text, "notes.md") for i in s.items]


def texts(text: str) -> list[str]:
    return [i.text for _, i in items(text)]


# -- bullets ----------------------------------------------------------------------------------

def test_every_bullet_marker():
    text = "# Ep\n- dash\n* star\n+ plus\n1. one\n2) two\n10. ten\n"
    got = items(text)
    assert [i.text for _, i in got] == ["dash", "star", "plus", "one", "two", "ten"]
    assert all(i.kind == "bullet" for _, i in got)
    assert [i.line_start for _, i in got] == [2, 3, 4, 5, 6, 7]


def test_run_on_lines_fold_into_the_bullet():
    text = "# Ep\n- v3 has 256 experts.\nthis sparsity leaves gpus idle\nthey use auxiliary loss\n- next\n"
    (_, first), (_, second) = items(text)
    assert first.text == "v3 has 256 experts.\nthis sparsity leaves gpus idle\nthey use auxiliary loss"
    assert (first.line_start, first.line_end) == (2, 4)
    assert second.text == "next"


def test_nested_bullets_fold_into_the_parent_keeping_structure():
    text = "# Ep\n- why not the government?\n    - no one owned it\n    - everyone did a part\n- next\n"
    got = texts(text)
    assert got == ["why not the government?\n  - no one owned it\n  - everyone did a part", "next"]


def test_nesting_depth_with_two_space_indents():
    text = "# Ep\n- a\n  - b\n    - c\n  - d\n- e\n"
    assert texts(text) == ["a\n  - b\n    - c\n  - d", "e"]


def test_nesting_depth_with_four_space_indents_and_tabs():
    assert texts("# Ep\n- a\n    - b\n        - c\n- e\n") == ["a\n  - b\n    - c", "e"]
    assert texts("# Ep\n- a\n\t- b\n\t\t- c\n") == ["a\n  - b\n    - c"]


def test_block_quote_is_its_own_item():
    text = "# Ep\n- before\n\n> When you moved from 90 nanometer\n> you got 2x.\n\n- after\n"
    got = [i for _, i in items(text)]
    assert [i.kind for i in got] == ["bullet", "quote", "bullet"]
    assert got[1].text == "When you moved from 90 nanometer\nyou got 2x."
    assert (got[1].line_start, got[1].line_end) == (4, 5)


# -- markup -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("**california** injected 25%", "california injected 25%"),
        ("__bold__ and *italic* and _also_", "bold and italic and also"),
        ("***both***", "both"),
        ("r/microwavegang caused loss spikes", "r/microwavegang caused loss spikes"),
        ("meta's power_plant_no_blow_up operation", "meta's power_plant_no_blow_up operation"),
        ("2*3*4 = 24", "2*3*4 = 24"),
        ("2**10 is 1024 and 3**4 is 81", "2**10 is 1024 and 3**4 is 81"),
        ("a * b * c", "a * b * c"),
        ("`__init__` runs `a*b*c` first, **then** the rest", "`__init__` runs `a*b*c` first, then the rest"),
        ("see [the paper](https://example.com/p)", "see the paper (https://example.com/p)"),
    ],
)
def test_strip_markup(raw, clean):
    assert strip_markup(raw) == clean


def test_emphasis_stripped_in_items():
    got = texts("# Ep\n- **california only injected 25%**\n- r/microwavegang *LMAO*\n- 2*3*4\n")
    assert got == ["california only injected 25%", "r/microwavegang LMAO", "2*3*4"]


# -- sections ---------------------------------------------------------------------------------

def test_plain_text_subheadings_become_the_section():
    text = ("# Patrick on Dwarkesh\nVaccinateCA:\n- centralize information\n- hackathon project\n\n"
            "What is crypto good for?\n- the value hasn't arrived\n\n"
            "Financial plumbing:\n- how hard is laundering?\n\n- loose bullet\n")
    got = [(i.section, i.text) for _, i in items(text)]
    assert got == [
        ("VaccinateCA", "centralize information"),
        ("VaccinateCA", "hackathon project"),
        ("What is crypto good for?", "the value hasn't arrived"),
        ("Financial plumbing", "how hard is laundering?"),
        (None, "loose bullet"),
    ]


def test_colon_line_between_bullets_starts_a_section():
    got = [(i.section, i.text) for _, i in items("# Ep\n- a\nLater:\n- b\n")]
    assert got == [(None, "a"), ("Later", "b")]


def test_double_hash_is_the_episode_level_without_single_hash():
    secs = parse_notes_text("## First Ep\n- a\n### Deeper\n- b\n## Second Ep\n- c\n", "n.md")
    assert [s.heading for s in secs] == ["First Ep", "Second Ep"]
    assert [(i.section, i.text) for i in secs[0].items] == [(None, "a"), ("Deeper", "b")]
    assert secs[1].items[0].section is None
    assert (secs[0].line, secs[1].line) == (1, 5)


def test_deeper_markdown_headings_are_sections_until_the_next():
    text = "# Ep\n## Part one\n- a\n\n- b\n## Part two\n- c\n"
    assert [(i.section, i.text) for _, i in items(text)] == [("Part one", "a"), ("Part one", "b"),
                                                              ("Part two", "c")]


def test_front_matter_skipped_and_its_date_kept():
    text = '---\nlayout: post\ntitle:  "Podcast Notes"\ndate:   2024-07-28\n---\n\n# Ep\n- a\n'
    (sec,) = parse_notes_text(text, "n.md")
    assert sec.heading == "Ep"
    assert sec.date == "2024-07-28"
    assert [i.text for i in sec.items] == ["a"]
    assert sec.items[0].line_start == 8


def test_only_front_matter_is_no_notes(tmp_path):
    path = tmp_path / "front.md"
    path.write_text("---\ntitle: nothing\ndate: 2024-01-01\n---\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="no notes found") as e:
        parse_notes(path)
    assert str(path) in str(e.value)


def test_headings_only_is_no_notes():
    with pytest.raises(InputError, match="no notes found"):
        parse_notes_text("# One\n\n# Two\n", "n.md")


# -- prose ------------------------------------------------------------------------------------

def test_headingless_prose_paragraphs_are_items_and_links_are_collected():
    text = ("First pass, taking notes on what\ndoesn't make sense.\n\n"
            "https://www.youtube.com/watch?v=UTuuTTnjxMQ https://www.dwarkeshpatel.com/p/sholto-douglas\n\n"
            "Softmax?\n\nSee [the post](https://example.com/post).\n")
    (sec,) = parse_notes_text(text, "prose.md")
    assert sec.heading is None
    assert [i.kind for i in sec.items] == ["prose", "prose", "prose"]
    assert [i.text for i in sec.items] == ["First pass, taking notes on what\ndoesn't make sense.", "Softmax?",
                                          "See the post (https://example.com/post)."]
    assert [(i.line_start, i.line_end) for i in sec.items] == [(1, 2), (6, 6), (8, 8)]
    assert sec.links == ("https://www.youtube.com/watch?v=UTuuTTnjxMQ",
                         "https://www.dwarkeshpatel.com/p/sholto-douglas", "https://example.com/post")


def test_megabyte_single_line_bullet(tmp_path):
    body = "word " * 200_000
    path = tmp_path / "big.md"
    path.write_text("# Ep\n- " + body + "\n- short\n", encoding="utf-8")
    (sec,) = parse_notes(path)
    assert len(sec.items) == 2
    assert len(sec.items[0].text) == len(body.strip())
    assert sec.items[1].text == "short"


def test_megabyte_line_of_unclosed_emphasis(tmp_path):
    body = "**a " * 250_000
    (sec,) = parse_notes_text("# Ep\n- " + body + "\n", "big.md")
    assert sec.items[0].text == body.strip()


def test_crlf_notes(tmp_path):
    path = tmp_path / "crlf.md"
    path.write_bytes(b"---\r\ndate: 2024-01-01\r\n---\r\n# Ep\r\n- a\r\nrun on\r\n- b\r\n")
    (sec,) = parse_notes(path)
    assert sec.date == "2024-01-01"
    assert [i.text for i in sec.items] == ["a\nrun on", "b"]


# -- the seeds --------------------------------------------------------------------------------

def test_seed_000():
    secs = parse_notes(_seed("000_afbeb462ed58c10d.txt"))
    assert len(secs) == 7
    by = {s.heading: s for s in secs}
    assert "Dylan, Nathan on Lex" in by
    lex = by["Dylan, Nathan on Lex"]
    assert len(lex.items) == 36
    assert all(s.date == "2024-07-28" for s in secs)
    lex_texts = [i.text for i in lex.items]
    assert "r/microwavegang caused loss spikes LMAO" in lex_texts
    assert "meta's power_plant_no_blow_up operation in pytorch" in lex_texts
    assert "what is tranium, amazon's chip" in lex_texts
    run_on = next(t for t in lex_texts if t.startswith("v3 has 256 experts"))
    assert run_on.count("\n") == 2 and "auxiliary loss" in run_on

    patrick = by["Patrick McKenzie on Dwarkesh (7/28)"]
    sections = [i.section for i in patrick.items]
    assert sections[0] == "VaccinateCA"
    assert {"VaccinateCA", "What is crypto good for?", "Financial plumbing", "Young people"} <= set(sections)
    nested = next(i.text for i in patrick.items if i.text.startswith("why wasn’t this done"))
    assert "\n  - no one called this specifically their responsibility" in nested
    california = next(i.text for i in patrick.items if "california" in i.text)
    assert "**" not in california

    dwarkesh = by["Dylan and Jon on Dwarkesh (9/10)"]
    quotes = [i for i in dwarkesh.items if i.kind == "quote"]
    assert len(quotes) == 1 and quotes[0].text.startswith("When you moved from 90 nanometer")
    semis = [i for i in dwarkesh.items if i.section == "How does one learn about semiconductors?"]
    assert len(semis) == 6


def test_seed_004_prose():
    (sec,) = parse_notes(_seed("004_bd517cc6001931b3.txt"))
    assert sec.heading is None
    assert all(i.kind == "prose" for i in sec.items)
    assert len(sec.items) >= 20
    assert "https://www.youtube.com/watch?v=UTuuTTnjxMQ" in sec.links
    assert any("dwarkeshpatel.com" in u for u in sec.links)
    assert not any(i.text.startswith("http") for i in sec.items)  # the links paragraph is not a note
    assert sec.items[0].text.startswith("First pass")
    assert any(i.text == "Softmax?" for i in sec.items)
