"""Card lint rules, each shown triggering and not triggering, and grounding."""

from __future__ import annotations

import pytest

from cards.check import (
    GROUNDED,
    UNGROUNDED,
    check_card,
    edit_problem,
    grounding,
    lint,
    plain,
    sentences,
    stem,
)

GOOD_FRONT = "According to Dylan Patel, how many experts does DeepSeek V3 use?"
GOOD_BACK = "256 experts"
GOOD_CLOZE = "DeepSeek V3 uses {{c1::256}} experts, far more than the ~32 of other models."


def codes(kind: str, front: str, back: str) -> list[str]:
    return [w.split(":", 1)[0] for w in lint(kind, front, back)]


# ------------------------------------------------------------------ good cards pass


@pytest.mark.parametrize(
    "kind,front,back",
    [
        ("basic", GOOD_FRONT, GOOD_BACK),
        ("cloze", GOOD_CLOZE, ""),
        ("basic", "What is Trainium, according to Dylan Patel?", "Amazon's in-house AI training chip"),
        ("basic", "In which year did Google announce the TPU v5e?", "2023"),
        ("basic", "Which company designs Trainium, per Dylan Patel?", "Amazon"),
        ("basic", "Why did Amazon build Trainium, per Dylan Patel?", "To cut its dependence on Nvidia GPUs."),
        ("basic", "How does a mixture-of-experts model keep inference cheap?",
         "It routes each token to a few experts, so most weights stay idle. Only 8 of 256 run."),
        ("cloze", "Amazon designs {{c1::Trainium}} for training.", "Dylan Patel on the SemiAnalysis episode"),
    ],
)
def test_cards_that_follow_the_rules_get_no_warning(kind, front, back):
    assert lint(kind, front, back) == []


def test_warnings_are_code_and_message():
    (warning,) = lint("basic", "", "256 experts")
    code, message = warning.split(": ", 1)
    assert code == "empty-front"
    assert message


# ------------------------------------------------------------------------- empty


def test_empty_front_and_back():
    assert codes("basic", "  ", "") == ["empty-front", "empty-back"]
    assert "empty-front" in codes("cloze", "", "")


def test_cloze_may_have_an_empty_back():
    assert "empty-back" not in codes("cloze", GOOD_CLOZE, "")
    assert "empty-back" in codes("basic", GOOD_FRONT, "   ")


# -------------------------------------------------------------------------- long


def test_long_front_by_words_and_by_characters():
    wordy = "According to Dylan Patel " + " ".join(["really"] * 30) + " what is Trainium?"
    assert "long-front" in codes("basic", wordy, "a chip")
    chars = "What is " + "x" * 200 + "?"
    assert "long-front" in codes("basic", chars, "a chip")
    assert "long-front" not in codes("basic", "What is " + "x" * 150 + "?", "a chip")


def test_long_front_ignores_cloze_markup():
    # 195 visible characters, over 200 with the markup.
    text = "{{c1::Trainium}} " + "y" * 185 + "."
    assert len(text) > 200
    assert "long-front" not in codes("cloze", text, "")


def test_long_back_by_sentences_and_by_characters():
    three = "Trainium is Amazon's chip. It trains models. It competes with Nvidia."
    assert "long-back" in codes("basic", "What is Trainium?", three)
    two = "Trainium is Amazon's chip. It trains models."
    assert "long-back" not in codes("basic", "What is Trainium?", two)
    assert "long-back" in codes("basic", "What is Trainium?", "a " + "very " * 50 + "long chip")


def test_sentence_count_ignores_decimals_and_abbreviations():
    assert len(sentences("It has 3.5 TB, e.g. in the U.S. Steel cluster. Done.")) == 2
    assert len(sentences("One. Two! Three?")) == 3
    assert "long-back" not in codes("basic", "How big is it?", "About 3.5 TB, e.g. for the U.S. market.")


# ------------------------------------------------------------------------ yes/no


@pytest.mark.parametrize(
    "front",
    [
        "Is Trainium made by Amazon?",
        "Does DeepSeek V3 use 256 experts?",
        "Can the TPU v5e train large models?",
        "According to Dylan Patel, did Google sell TPUs to others?",
        "Doesn't Nvidia make the H100?",
        "Were HBM shortages the main bottleneck in 2024?",
    ],
)
def test_yes_no_questions_are_flagged(front):
    assert "yes-no" in codes("basic", front, "Yes")


@pytest.mark.parametrize(
    "front",
    [
        "Is Trainium made by Amazon or by Google?",  # a choice
        "Which chip does Amazon use for training?",
        "What does Dylan Patel say is the main bottleneck?",
        "In 2024, what limited Nvidia's output?",
        "Does Trainium train models",  # not phrased as a question; other rules apply
    ],
)
def test_open_and_choice_questions_are_not_yes_no(front):
    assert "yes-no" not in codes("basic", front, "Amazon")


# ------------------------------------------------------------------- enumeration


@pytest.mark.parametrize(
    "back",
    [
        "HBM, power and packaging",
        "HBM; power; CoWoS packaging",
        "Lack of HBM, power constraints, and slow packaging",
        "- HBM\n- power\n- packaging",
        "1) HBM 2) power",
    ],
)
def test_list_answers_are_enumerations(back):
    assert "enumeration" in codes("basic", "What limits Nvidia's output?", back)


@pytest.mark.parametrize(
    "back",
    [
        "HBM supply",
        "HBM and power",  # two items: a pair, not a set
        "256 experts, of which 8 are active for each token",
        "1,000,000 tokens",
        "The packaging step, which only TSMC can do at scale",
        "Distribution, not producing the content, is the limiting factor",  # a contrast, graded READY
    ],
)
def test_ordinary_answers_are_not_enumerations(back):
    assert "enumeration" not in codes("basic", "What limits Nvidia's output?", back)


@pytest.mark.parametrize(
    "front",
    [
        "List the chips Amazon designs.",
        "Name all of Google's TPU generations.",
        "What are the three bottlenecks Dylan Patel names?",
        "Which two companies make HBM?",
    ],
)
def test_questions_asking_for_a_set_are_enumerations(front):
    assert "enumeration" in codes("basic", front, "Trainium")


@pytest.mark.parametrize(
    "front",
    [
        "What is a linked list?",
        "Name the company that makes Trainium.",
        "What are experts in a mixture-of-experts model?",
    ],
)
def test_questions_for_one_thing_are_not_enumerations(front):
    assert "enumeration" not in codes("basic", front, "Amazon")


def test_cloze_deleting_a_list_is_an_enumeration():
    assert "enumeration" in codes("cloze", "Nvidia is limited by {{c1::HBM, power and packaging}}.", "")
    assert "enumeration" not in codes("cloze", "Nvidia is limited by {{c1::HBM supply}}.", "")


# ------------------------------------------------------------ answer in question


def test_answer_readable_from_question():
    assert "answer-in-question" in codes("basic", "Which company makes Amazon's Trainium chip?", "Amazon")
    assert "answer-in-question" in codes(
        "basic", "How many experts does DeepSeek V3's 256-expert layer use?", "256 experts"
    )


def test_answer_not_readable_from_question():
    assert "answer-in-question" not in codes("basic", GOOD_FRONT, GOOD_BACK)
    assert "answer-in-question" not in codes("basic", "Which company makes Trainium?", "Amazon")


def test_choice_questions_may_contain_their_answer():
    assert "answer-in-question" not in codes("basic", "Is Trainium made by Amazon or Google?", "Amazon")


def test_answer_words_are_compared_as_stems():
    # "TPUs" and "serve" in the question give away "TPU serving" in the answer.
    assert "answer-in-question" in codes("basic", "What do Google's TPUs mostly serve?", "TPU serving")


def test_cloze_whose_deletion_is_repeated_outside_it():
    assert "answer-in-question" in codes("cloze", "{{c1::Trainium}} is the chip called Trainium.", "")
    assert "answer-in-question" not in codes("cloze", GOOD_CLOZE, "")


# ----------------------------------------------------------------- several ideas


@pytest.mark.parametrize(
    "front",
    [
        "What is Trainium? Who makes it?",
        "What is Trainium and how does it compare to the TPU?",
        "Who founded SemiAnalysis, and when?",
        "What is Trainium, how is it used?",
    ],
)
def test_several_ideas(front):
    assert "several-ideas" in codes("basic", front, "Amazon's chip")


@pytest.mark.parametrize(
    "front",
    [
        GOOD_FRONT,
        "Besides HBM, what limits Nvidia's output?",
        "What do Amazon and Google both build?",
    ],
)
def test_one_idea(front):
    assert "several-ideas" not in codes("basic", front, "power")


# --------------------------------------------------------------------- cloze form


def test_cloze_without_a_deletion():
    assert "cloze-missing" in codes("cloze", "DeepSeek V3 uses 256 experts.", "")
    assert "cloze-missing" in codes("cloze", "DeepSeek V3 uses {{c1::}} experts.", "")
    assert "cloze-missing" not in codes("cloze", GOOD_CLOZE, "")


def test_cloze_with_many_deletions():
    three = "{{c1::DeepSeek V3}} uses {{c2::256}} experts and {{c3::8}} active ones."
    assert "cloze-many" in codes("cloze", three, "")
    two = "{{c1::DeepSeek V3}} uses {{c2::256}} experts."
    assert "cloze-many" not in codes("cloze", two, "")


def test_cloze_hint_is_not_the_answer():
    assert lint("cloze", "DeepSeek V3 uses {{c1::256::number}} experts, far more than others.", "") == []


def test_basic_card_with_cloze_markers():
    assert "cloze-in-basic" in codes("basic", "DeepSeek V3 uses {{c1::256}} experts.", "256")
    assert "cloze-in-basic" in codes("basic", "How many experts?", "{{c1::256}}")
    assert "cloze-in-basic" not in codes("basic", GOOD_FRONT, GOOD_BACK)
    assert "cloze-in-basic" not in codes("cloze", GOOD_CLOZE, "")


# -------------------------------------------------------------------- vague speaker


def test_the_guest_instead_of_a_name():
    assert "vague-speaker" in codes("basic", "How many experts does the guest say V3 uses?", "256")
    assert "vague-speaker" not in codes("basic", GOOD_FRONT, GOOD_BACK)


# -------------------------------------------------------------------------- stems


@pytest.mark.parametrize(
    "words",
    [
        ("serve", "serves", "served", "serving"),
        ("use", "uses", "used", "using"),
        ("expert", "experts"),
        ("TPU", "TPUs"),
        ("company", "companies"),
        ("speed", "speeds"),
        ("run", "running"),
    ],
)
def test_stem_joins_inflections(words):
    assert len({stem(w) for w in words}) == 1


def test_stem_keeps_identifiers_and_distinct_words():
    assert stem("v3") == "v3" and stem("h100s") == "h100s"
    assert stem("thing") == "thing"
    assert stem("trainium") != stem("inferentia")


# ---------------------------------------------------------------------- grounding


CAPTION = (
    "so deepseek v3 has like 256 experts which is way more than the usual thirty two "
    "and then amazons tranium is their own training chip"
)


def test_plain_drops_case_and_punctuation():
    assert plain("Amazon’s  Trainium — it's FAST!") == "amazons trainium its fast"


def test_punctuated_quote_is_found_in_unpunctuated_captions():
    score = grounding("DeepSeek V3 has, like, 256 experts", "v3 has 256 experts", CAPTION)
    assert score == 1.0


def test_quote_from_the_note_when_there_is_no_transcript():
    assert grounding("v3 has 256 experts", "V3 has 256 experts!", None) == 1.0
    assert grounding("v3 has 256 experts", "V3 has 256 experts!", "") == 1.0


def test_best_of_context_and_note():
    note = "what is tranium, amazon's chip"
    from_note = grounding("what is tranium", note, CAPTION)
    assert from_note == 1.0
    assert grounding("deepseek v3 has like 256 experts", note, CAPTION) == 1.0


def test_small_transcription_differences_still_ground():
    score = grounding("Amazon's Trainium is their own training chip", "", CAPTION)
    assert GROUNDED <= score < 1.0


def test_invented_quote_is_not_grounded():
    assert grounding("Google sells TPUs to Anthropic through its cloud", "v3 has 256 experts", CAPTION) < GROUNDED


def test_quote_longer_than_its_source_is_not_grounded_by_containing_it():
    quote = "v3 has 256 experts and Google sells TPUs to Anthropic through its cloud business"
    assert grounding(quote, "v3 has 256 experts", None) < GROUNDED


def test_empty_quote_scores_zero():
    assert grounding("", "note", CAPTION) == 0.0
    assert grounding(" ?! ", "note", CAPTION) == 0.0


def test_empty_sources_score_zero():
    assert grounding("v3 has 256 experts", "", None) == 0.0


def test_grounding_is_fast_enough_for_long_contexts():
    long_context = " ".join([CAPTION] * 200)  # ~5,000 words; must simply work
    assert grounding("amazons tranium is their own training chip", "", long_context) == 1.0


# --------------------------------------------------------------------- check_card


def test_check_card_adds_ungrounded():
    warnings, score = check_card("basic", GOOD_FRONT, GOOD_BACK, "Google sells TPUs to Anthropic", "", CAPTION)
    assert score < GROUNDED
    assert warnings == [UNGROUNDED]


def test_check_card_good_card_is_clean():
    warnings, score = check_card(
        "basic", GOOD_FRONT, GOOD_BACK, "DeepSeek V3 has like 256 experts", "v3 has 256 experts", CAPTION
    )
    assert warnings == []
    assert score == 1.0


def test_check_card_keeps_lint_warnings():
    warnings, score = check_card("basic", "Is V3 big?", "Yes", "v3 has 256 experts", "v3 has 256 experts", None)
    assert score == 1.0
    assert [w.split(":")[0] for w in warnings] == ["yes-no"]


@pytest.mark.parametrize("kind, front, back, problem", [
    ("basic", "How many experts does DeepSeek V3 use?", "256", None),
    ("cloze", "DeepSeek V3 uses {{c1::256}} experts.", "", None),
    ("basic", "   ", "256", "the front cannot be empty"),
    ("basic", "How many experts does DeepSeek V3 use?", " ", "a question needs an answer on the back"),
    ("cloze", "DeepSeek V3 uses 256 experts.", "", "a cloze card's front needs a deletion like {{c1::term}}"),
    ("cloze", "DeepSeek V3 uses {{c1::  }} experts.", "", "a cloze card's front needs a deletion like {{c1::term}}"),
])
def test_edit_problem_is_the_one_rule_for_edits(kind, front, back, problem):
    assert edit_problem(kind, front, back) == problem


# ---------------------------------------------------------- rules that hold on unseen notes


@pytest.mark.parametrize("front, back", [
    ("Is Trainium made by Amazon or by Google?", "Amazon"),
    ("On Lex Fridman, did fab costs rise or fall as chips got cheaper?", "Rise: they double every few years."),
    ("Per Dylan Patel, is inference bound by memory bandwidth or by FLOPS?", "Memory bandwidth."),
])
def test_a_two_way_choice_that_offers_the_answer_is_flagged(front, back):
    assert "two-way" in codes("basic", front, back)


@pytest.mark.parametrize("front, back", [
    ("What do labs use instead of Common Crawl or licensed data?", "Their own web crawlers."),
    ("Is scaling still working or not, per Dylan Patel?", "Yes"),
    ("Which lab, per Nathan Lambert, trains on Common Crawl?", "AI2"),
])
def test_or_without_an_offered_answer_is_no_two_way_choice(front, back):
    assert "two-way" not in codes("basic", front, back)


@pytest.mark.parametrize("front", [
    "According to the discussion, what limits inference speed?",
    "As mentioned, what limits inference speed?",
    "What limits inference speed, based on this conversation?",
])
def test_a_vague_source_is_flagged(front):
    assert "vague-source" in codes("basic", front, "Memory bandwidth")
    assert "vague-source" not in codes("basic", "On Latent Space, what limits inference speed?", "Memory bandwidth")


@pytest.mark.parametrize("front", [
    "Which chip will Nvidia ship soon, per Dylan Patel?",
    "What is the latest Llama's context length?",
    "What has DeepSeek released so far?",
])
def test_vague_time_words_are_time_relative(front):
    assert "time-relative" in codes("basic", front, "Something")


def _note_codes(note: str, front: str, back: str, kind: str = "basic") -> list[str]:
    from cards.check import note_warnings

    return [w.split(":", 1)[0] for w in note_warnings(kind, front, back, note)]


@pytest.mark.parametrize("note, front, back", [
    # A name the note does not give, on a question that is hardly about the note.
    ("nvidia is the only semiconductor chips that has never had a fab",
     "According to Dylan Patel, which company created the foundry business model of only making chips designed "
     "by others?", "TSMC."),
    # A figure the note does not give.
    ("china's infra, datacenter, power capacity is not even comparable to the US's",
     "How much power will OpenAI's Stargate data center draw once fully built out?", "About 2 GW."),
])
def test_a_figure_or_name_the_note_does_not_give_is_a_side_detail(note, front, back):
    assert "side-detail" in _note_codes(note, front, back)


@pytest.mark.parametrize("note, front, back", [
    # The note's own figure, or a correction of it on the note's own question.
    ("aws generates 60+% of amazon's profit. it's only ~15% of the revenue",
     "On Lex Fridman, what share of Amazon's profit does AWS generate?", "Over 80% (possibly over 90%)."),
    ("v3 has 256 experts. other models only have ~32", "How many experts does DeepSeek V3 have?", "256 experts."),
    # Who said the note's quote: a name, on a question that is the note.
    ('"superhuman persuation will come before superintelligence" hmm what does this look like?',
     "Who is quoted as saying that superhuman persuasion will come before superintelligence?", "Sam Altman."),
    ("nvidia is the only semiconductor chips that has never had a fab",
     "What makes Nvidia unique among semiconductor companies?", "It is the only one that never had a fab."),
])
def test_the_notes_own_answer_is_no_side_detail(note, front, back):
    assert "side-detail" not in _note_codes(note, front, back)
