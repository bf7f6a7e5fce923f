"""Prompt templates are checked when they load, and the offline generator's card shapes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cards.errors import ConfigError
from cards.generate.base import Request
from cards.generate.offline import OfflineGenerator, cards_for
from cards.models import NoteItem, Source
from cards.prompts import load_prompt

GOOD = """---
version: test-1
---
## system
Rules that never change.

## user
<episode>$episode_title</episode> $section $neighbours $time
<note>$note</note>
<passage>$passage</passage>
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "cards.md").write_text(text, encoding="utf-8")
    return tmp_path


def test_builtin_prompt_loads_with_a_version_and_a_static_system_part():
    p = load_prompt()
    assert p.version
    messages = p.render(episode_title="E", show="", people="", date="", section="S", neighbours="- n", note="NOTE",
                        passage="PASSAGE", time="")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "NOTE" not in messages[0]["content"] and "NOTE" in messages[1]["content"]
    # The prompt asks for what the linter accepts: one deletion written {{c1::...}}.
    assert "{{c1::" in messages[0]["content"]


def test_prompts_folder_overrides_the_builtin(tmp_path):
    p = load_prompt(write(tmp_path, GOOD))
    assert p.version == "test-1"
    out = p.render(episode_title="E", show="", people="", date="", section="", neighbours="", note="n",
                   passage="cost $5", time="")
    assert "cost $5" in out[1]["content"]


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("version: test-1\n", ""), "no `version:`"),
    (GOOD.replace("$passage", "$pasage"), "unknown variable"),
    (GOOD.replace("Rules that never change.", "Rules for $note"), "must be static"),
    (GOOD.replace("## user", "## usr"), "needs a `## system` and a `## user`"),
    (GOOD.replace("$passage", "${passage"), "malformed"),
    (GOOD.replace("<passage>$passage</passage>", ""), "must use $note and $passage"),
    (GOOD.replace("<passage>$passage</passage>", "? <passage>$passage</passage>"), "cannot be on an optional"),
    (GOOD + "? no variable here\n", "has no $variable"),
])
def test_a_broken_template_is_an_error_at_load_time(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_prompt(write(tmp_path, text))
    assert message in str(e.value) and "cards.md" in str(e.value)


def test_a_missing_template_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_prompt(tmp_path)


def test_optional_lines_are_sent_only_with_a_value(tmp_path):
    p = load_prompt(write(tmp_path, GOOD.replace("<note>$note</note>", "? <show>$show</show>\n<note>$note</note>")))
    values = dict(episode_title="E", people="", date="", section="", neighbours="", note="n", passage="p", time="")
    assert "<show>Acme Hour</show>" in p.render(show="Acme Hour", **values)[1]["content"]
    assert "<show>" not in p.render(show="  ", **values)[1]["content"]


def test_passage_excerpts_are_blocks_with_their_times_or_none():
    from cards.models import Excerpt
    from cards.prompts import render_passage

    timed = render_passage((Excerpt("first claim", 0, 2, 723.0, 760.0), Excerpt("second claim", 9, 9, 3600.0, 3630.0)))
    assert timed == ('<excerpt time="12:03–12:40">\nfirst claim\n</excerpt>\n'
                     '<excerpt time="1:00:00–1:00:30">\nsecond claim\n</excerpt>')
    assert render_passage((Excerpt("untimed", 0, 0),)) == "<excerpt>\nuntimed\n</excerpt>"
    assert "no transcript passage" in render_passage(())


def test_the_builtin_prompt_keeps_the_card_rules():
    system = load_prompt().system
    # The rules the graded cards called for, in the words the schema also uses.
    for phrase in ("First state the note's claims", "Never a card on a side detail", "never more cards than claims",
                   "premise", "another card's answer", "the next model", "Do not open with the show",
                   "according to the discussion", "a choice between two", "(\"the bitter lesson\"), even bare",
                   "and so no cards"):
        assert phrase in system, phrase


def test_rendering_without_a_value_is_an_error():
    with pytest.raises(ConfigError, match="passage"):
        load_prompt().render(episode_title="E", section="", neighbours="", note="n", time="")


@pytest.mark.parametrize("note, kind, front, back", [
    ("what is tranium, amazon's chip", "basic", "What is tranium?", "amazon's chip"),
    ("copenhagen principle: the person doing anything gets responsibility for everything -> more hate", "basic",
     "What is copenhagen principle?", "the person doing anything gets responsibility for everything"),
    ("oai has 75% gross margins for inference. that's crazy", "cloze",
     "Oai has {{c1::75%}} gross margins for inference.", ""),
    # Clean punctuation, and the aside in parentheses is not part of the card.
    ("r1 is 27x cheaper than O1!. (oai might have priced up a lot)", "cloze", "R1 is {{c1::27x}} cheaper than O1.", ""),
    # The quantity after the verb carries the claim, not the one in the subject.
    ("SSI with $1 billion would only be able to run a ~30k GPU cluster", "cloze",
     "SSI with $1 billion would only be able to run a ~{{c1::30k}} GPU cluster.", ""),
    ("GPT-4 cost $500 million to train", "cloze", "GPT-4 cost {{c1::$500 million}} to train.", ""),
    # A first claim is cut where the next begins.
    ("brain has 30-300 trillion synapses so we might still be below brain scale", "cloze",
     "Brain has {{c1::30-300 trillion}} synapses.", ""),
    ("nvidia is the only chip company that has never had a fab", "cloze",
     "{{c1::nvidia}} is the only chip company that has never had a fab.", ""),
    ("the most sophisticated money launderer was sbf. he laundered billions", "cloze",
     "The most sophisticated money launderer was {{c1::sbf}}.", ""),
    ("anthropic's mission is to make AGI go well", "basic", "What is anthropic's mission?", "to make AGI go well"),
])
def test_offline_cards_follow_the_note_shape(note, kind, front, back):
    (card,) = cards_for(note)
    assert (card.kind, card.front, card.back) == (kind, front, back)
    assert card.quote in note


@pytest.mark.parametrize("note", [
    "LMAO", "eureka labs hype", "why doesn't google sell tpus?", "packaging",
    # reactions, and the reaction beside a claim
    "tesla is ahead of waymo 👀", "holy shit patrick has played 4-6k hours of video games",
    "huawei is so fucking cracked. no tsmc, can't ship to europe",
    # vague or fragmentary: what is it about, who is he, what does "this" mean
    "so much of semiconductor knowledge is passed down apprentice-master style",
    "research project: find the specialization in the mixtral model", "another example: who someone follows",
    "he had 68 direct reports in his raid guilds", "OpenAI will need 50-100 billion dollars to do this",
    "100k GB200 cluster going up in the middle east", "Started as a random hackathon project at 10 pm",
    "talent density is more important than talent mass", "Memory is a major opportunity",
    # timestamps, version numbers, numbers that give themselves away, time-relative wording
    "Did not understand a single thing from 1:10:00-1:22:00", "you can talk to models in base-64 and it responds",
    "halving the cost of chips every 18 months means doubling the cost of fabs every 18 months",
    "by next year, 300-600k GPU clusters where the GPUs are 2-3x faster",
    # lists and doubts
    "three axes to think about chips: FLOPS, memory bandwidth, interconnect",
    "there are fewer founders in their 20s than 10 years ago. is this true?",
])
def test_offline_makes_no_card_without_a_clear_standalone_claim(note):
    assert cards_for(note) == []


def test_offline_generator_implements_the_seam():
    item = NoteItem("n1", "ep", "v3 has 256 experts", "bullet", None, (Source("f.md", 1, 1),), 0)
    result = asyncio.run(OfflineGenerator().generate(Request(item, None, "Ep", (), "k")))
    assert result.ok and result.requests == 0
    assert [c.front for c in result.cards] == ["V3 has {{c1::256}} experts."]


def test_an_offline_card_from_a_very_long_line_keeps_a_verbatim_quote_within_bounds():
    from cards.schema import MAX_QUOTE

    short = "Chain of thought is adaptive compute."
    (card,) = cards_for(short)
    (long_card,) = cards_for(short + " " + "and so on " * 200)
    assert (long_card.front, long_card.back) == (card.front, card.back)
    assert len(long_card.quote) <= MAX_QUOTE and (short + " and so on").startswith(long_card.quote[:40])


@pytest.mark.parametrize("note", ["Meta spent $40 billion on capex the past year",
                                  "The next Nvidia chip draws 1000 watts per GPU"])
def test_the_offline_generator_makes_no_card_the_linter_would_call_time_relative(note):
    assert cards_for(note) == []


@pytest.mark.parametrize("note, front, back", [
    # A number with its unit attached is one quantity, deleted whole.
    ("h100 has 80GB of HBM3 memory", "H100 has {{c1::80GB}} of HBM3 memory.", ""),
    ("Llama 3 was trained on 15T tokens", "Llama 3 was trained on {{c1::15T}} tokens.", ""),
    ("h100 has 3.35TB/s of memory bandwidth", "H100 has {{c1::3.35TB/s}} of memory bandwidth.", ""),
    ("gpt-4 is ~1.7T params", "Gpt-4 is ~{{c1::1.7T}} params.", ""),
    ("deepseek v3 cost 2.5M gpu hours", "Deepseek v3 cost {{c1::2.5M}} gpu hours.", ""),
    ("openai wanted to raise $500B for stargate", "Openai wanted to raise {{c1::$500B}} for stargate.", ""),
    # The listener's question with its answer after a question mark.
    ("what’s HBM? high bandwidth memory", "What is HBM?", "high bandwidth memory"),
    # The answer is the listener's first sentence; a claim's quantity, not a later clause's.
    ("what is MBU? model bandwidth utilization. the inference version of MFU", "What is MBU?",
     "model bandwidth utilization"),
    ("phones only have ~50GB/s memory bandwidth so no llama 70b on device the normal way",
     "Phones only have ~{{c1::50GB/s}} memory bandwidth.", ""),
])
def test_offline_recall_numbers_with_units_and_answered_questions(note, front, back):
    (card,) = cards_for(note)
    assert (card.front, card.back) == (front, back)


@pytest.mark.parametrize("note", [
    "we are 2nd in line for the h100s",  # an ordinal is no quantity
    "nvidia is 3d stacking the memory",
    "nvidia sold 530k h100s this quarter",  # time-relative
    "the next gen will have 2x the memory",
    "not sure if r1 is really 27x cheaper",  # doubt
    "they have 512 h100s coming online in august",  # leans on who "they" are
    "what is going on with intel? idk",  # a situation asked about, no answer
    "What’s distillation? Distilled models?",  # a question answered with a question
    "LMAO the 80GB h100 is sold out",
    "nvidia's next chip: ~3x llm perf for ~50% more $",  # "next" will mean another chip later
])
def test_offline_recall_keeps_its_precision(note):
    assert cards_for(note) == []


def test_a_changed_offline_generator_is_a_new_generation_spec():
    from cards.generate.offline import MODEL
    from cards.models import generation_spec

    # The version is part of every offline draft's spec, so a run after this change regenerates them.
    assert MODEL == "extractive-v3"
    assert generation_spec("offline", MODEL, "p", "n", None)[0] != generation_spec("offline", "extractive-v2", "p",
                                                                                         "n", None)[0]
