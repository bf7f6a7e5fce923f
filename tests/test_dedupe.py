"""Duplicate detection: what counts as the same card, which card is kept, and scale-safe filtering."""

from __future__ import annotations

import random

import pytest

from cards.dedupe import Candidate, candidate, draft_rank, find_duplicates
from cards.models import Draft


def card(id, front, back="", episode="ep1", kind="basic", rank=(0,), exported=False):
    return Candidate(id=id, episode=episode, front=front, back=back, kind=kind, rank=rank, exported=exported)


def dup(a: Candidate, b: Candidate, **kw) -> bool:
    """Whether two cards are found to be duplicates (whichever is kept)."""
    mapping = find_duplicates([a, b], **kw)
    return mapping.get(a.id) == b.id or mapping.get(b.id) == a.id


# ----------------------------------------------------------------- what is the same


@pytest.mark.parametrize(
    "front_a,front_b",
    [
        ("Which chip does the TPU v5e mostly serve as?", "which chip is the TPU v5e mostly serving as"),
        ("What is Trainium?", "what is trainium"),
        ("What is Trainium?", "What's Trainium?"),
        ("What is Trainium?", "  WHAT IS TRAINIUM  "),
        ("According to Dylan Patel, how many experts does DeepSeek V3 use?",
         "How many experts does DeepSeek V3 use, according to Dylan Patel?"),
        ("Which company makes Trainium?", "What company makes Trainium?"),
        ("How many experts does DeepSeek V3 use?", "How many experts is DeepSeek V3 using?"),
        ("Ｗhat is Ｔrainium？", "What is Trainium?"),  # NFKC: full-width letters
    ],
)
def test_rewordings_are_duplicates(front_a, front_b):
    assert dup(card("a", front_a, "x"), card("b", front_b, "x"))


@pytest.mark.parametrize(
    "front_a,front_b",
    [
        ("How many experts does DeepSeek V3 have?", "How many experts does Mixtral have?"),
        ("What is Trainium?", "What is Inferentia?"),
        ("How much HBM does the H100 have?", "How much HBM does the H200 have?"),
        ("How much HBM does the H100 have?", "How much HBM does the H100 NVL have?"),
        ("How many experts does DeepSeek V3 use?", "How many experts does DeepSeek V2 use?"),
        ("What did Nvidia ship in 2023?", "What did Nvidia ship in 2024?"),
        ("When did Amazon launch Trainium?", "Where did Amazon launch Trainium?"),
        ("Why did Amazon build Trainium?", "Why didn't Amazon build Trainium?"),
        ("How many experts does DeepSeek V3 use?", "How many layers does DeepSeek V3 use?"),
    ],
)
def test_different_questions_are_not_duplicates(front_a, front_b):
    assert not dup(card("a", front_a, "x"), card("b", front_b, "x"))


LONG_Q = (
    "According to Dylan Patel on the SemiAnalysis episode, how many routed experts per token "
    "does {} activate during inference on H800 clusters?"
)


def test_long_questions_differing_in_one_word_are_similar_enough():
    # One swapped ordinary word in 14 is Jaccard 13/15: a rewording. The same swap of a
    # name is a different question (below).
    a = card("a", LONG_Q.format("DeepSeek"), "8")
    b = card("b", LONG_Q.format("DeepSeek").replace("inference", "serving"), "8")
    assert dup(a, b)


@pytest.mark.parametrize(
    "other",
    [
        LONG_Q.format("Mixtral"),  # a swapped name
        LONG_Q.format("mixtral").lower(),  # still a name: another card writes "Mixtral"
        LONG_Q.format("DeepSeek").replace("H800", "H100"),  # a swapped version
        LONG_Q.format("DeepSeek").replace("H800 clusters", "H800 Ascend clusters"),  # an added name
    ],
)
def test_long_questions_naming_different_things_are_not_duplicates(other):
    a = card("a", LONG_Q.format("DeepSeek"), "8")
    b = card("b", other, "8")
    c = card("c", "What is Mixtral?", "a model")
    assert find_duplicates([a, b, c]) == {}


@pytest.mark.parametrize(
    "back_a,back_b",
    [
        ("Made by Amazon for in-house training", "Made by Google for in-house training"),
        ("256 experts with 8 active", "256 experts with 16 active"),
    ],
)
def test_answers_swapping_a_name_or_number_are_different(back_a, back_b):
    q = "What is Trainium?"
    assert not dup(card("a", q, back_a), card("b", q, back_b))


def test_same_question_with_clearly_different_answers_is_two_facts():
    a = card("a", "What does Dylan Patel call the main bottleneck?", "HBM supply")
    b = card("b", "What does Dylan Patel call the main bottleneck?", "Power")
    assert find_duplicates([a, b]) == {}


def test_same_question_with_different_numbers_is_two_facts():
    a = card("a", "How many experts does DeepSeek V3 use?", "256 experts")
    b = card("b", "How many experts does DeepSeek V3 use?", "128 experts")
    assert find_duplicates([a, b]) == {}


@pytest.mark.parametrize(
    "back_a,back_b",
    [
        ("256 experts", "256"),
        ("256 experts", "about 256 experts"),
        ("141 GB", "141GB"),
        ("Amazon", "It's made by Amazon."),
        ("An inference chip", "inference chip"),
    ],
)
def test_same_question_with_reworded_answers_is_a_duplicate(back_a, back_b):
    q = "How many experts does DeepSeek V3 use?"
    assert dup(card("a", q, back_a), card("b", q, back_b))


def test_units_written_against_numbers_stay_apart():
    q = "How many parameters does Llama 3 have?"
    assert not dup(card("a", q, "405B"), card("b", q, "405T"))


def test_empty_answer_matches_only_an_empty_answer():
    q = "What is Trainium?"
    assert not dup(card("a", q, ""), card("b", q, "Amazon's chip"))
    assert dup(card("a", q, ""), card("b", q, ""))


def test_exact_copies_are_duplicates_even_without_content_words():
    assert dup(card("a", "What is it?", ""), card("b", "what is it", ""))
    assert not dup(card("a", "What is it?", ""), card("b", "Who is it?", ""))


def test_cloze_is_compared_with_cloze_only():
    c1 = card("a", "DeepSeek V3 uses {{c1::256}} experts.", kind="cloze")
    c2 = card("b", "DeepSeek V3 is using {{c1::256}} experts", kind="cloze")
    c3 = card("c", "DeepSeek V3 uses {{c1::128}} experts.", kind="cloze")
    basic = card("d", "DeepSeek V3 uses 256 experts.", "256")
    mapping = find_duplicates([c1, c2, c3, basic])
    assert mapping == {"b": "a"}


def test_threshold_controls_how_close_is_close_enough():
    a = card("a", "What does the TPU v5e mostly serve as at Google?", "inference chip")
    b = card("b", "What does the TPU v5e serve as at Google?", "inference chip")
    # "mostly" is a stopword, so these are equal; add a real word to one of them.
    c = card("c", "What does the TPU v5e primarily serve as at Google?", "inference chip")
    assert dup(a, b, threshold=1.0)
    assert not dup(a, c, threshold=0.85)
    assert dup(a, c, threshold=0.6)


def test_bad_arguments():
    a = card("a", "What is Trainium?")
    with pytest.raises(ValueError, match="scope"):
        find_duplicates([a], scope="deck")
    with pytest.raises(ValueError, match="threshold"):
        find_duplicates([a], threshold=0)
    with pytest.raises(ValueError, match="unique"):
        find_duplicates([a, a])


def test_empty_and_single_inputs():
    assert find_duplicates([]) == {}
    assert find_duplicates([card("a", "What is Trainium?")]) == {}


# --------------------------------------------------------------------------- scope


def test_scope_all_finds_duplicates_across_episodes():
    a = card("a", "What is Trainium?", "Amazon's chip", episode="ep1")
    b = card("b", "what is trainium", "Amazon's chip", episode="ep2")
    assert find_duplicates([a, b], scope="all") == {"b": "a"}


def test_scope_episode_keeps_copies_in_other_episodes():
    a = card("a", "What is Trainium?", "Amazon's chip", episode="ep1")
    b = card("b", "what is trainium", "Amazon's chip", episode="ep2")
    c = card("c", "What is Trainium", "Amazon's chip", episode="ep1")
    assert find_duplicates([a, b, c], scope="episode") == {"c": "a"}


# -------------------------------------------------------------------- which is kept


def test_higher_rank_is_kept():
    a = card("a", "What is Trainium?", "chip", rank=(0,))
    b = card("b", "what is trainium", "chip", rank=(1,))
    assert find_duplicates([a, b]) == {"a": "b"}


def test_equal_rank_keeps_the_earlier_card():
    a = card("a", "What is Trainium?", "chip")
    b = card("b", "what is trainium", "chip")
    assert find_duplicates([a, b]) == {"b": "a"}
    assert find_duplicates([b, a]) == {"a": "b"}


def test_exported_card_is_kept_over_a_better_ranked_one():
    a = card("a", "What is Trainium?", "chip", rank=(0,), exported=True)
    b = card("b", "what is trainium", "chip", rank=(9,))
    assert find_duplicates([b, a]) == {"b": "a"}


def test_exported_cards_are_never_marked():
    a = card("a", "What is Trainium?", "chip", rank=(0,), exported=True)
    b = card("b", "what is trainium", "chip", rank=(5,), exported=True)
    c = card("c", "WHAT IS TRAINIUM", "chip", rank=(9,))
    mapping = find_duplicates([a, b, c])
    assert mapping == {"c": "b"}  # the better exported card; neither exported card is marked


def test_transitive_cluster_points_at_one_kept_card():
    # a~b and b~c, but a and c alone are below the threshold: one cluster, one kept card.
    a = card("a", "What chip does the TPU v5e serve as at Google Cloud?", "inference chip", rank=(1,))
    b = card("b", "What chip does the TPU v5e serve as at Google Cloud today?", "inference chip", rank=(3,))
    c = card("c", "What chip does the TPU v5e serve as at Google Cloud today publicly?", "inference chip",
             rank=(2,))
    assert not dup(a, c)
    assert find_duplicates([a, b, c]) == {"a": "b", "c": "b"}


def _draft(id, front, **kw):
    base = dict(
        id=id, note_id="n", episode="ep1", kind="basic", front=front, back="Amazon's chip", quote="",
        tags=[], generator="openai", model="m", prompt_version="1", created=100.0,
    )
    base.update(kw)
    return Draft(**base)


@pytest.mark.parametrize(
    "better,worse",
    [
        (dict(status="approved"), dict(status="draft")),
        (dict(edited=True), dict(edited=False)),
        (dict(grounding=0.95), dict(grounding=0.4)),
        (dict(grounding=0.95), dict(grounding=None)),
        (dict(warnings=[]), dict(warnings=["yes-no: ..."])),
        (dict(created=50.0), dict(created=100.0)),
        (dict(status="approved", grounding=0.1), dict(status="draft", edited=True, grounding=1.0)),
    ],
)
def test_draft_rank_prefers_reviewed_edited_grounded_older(better, worse):
    good = _draft("good", "What is Trainium?", **better)
    bad = _draft("bad", "what is trainium", **worse)
    assert draft_rank(good) > draft_rank(bad)
    # Whatever the input order, the better draft is kept.
    assert find_duplicates([candidate(bad), candidate(good)]) == {"bad": "good"}
    assert find_duplicates([candidate(good), candidate(bad)]) == {"bad": "good"}


def test_candidate_from_draft():
    d = _draft("x", "{{c1::Trainium}} is Amazon's chip", kind="cloze", exported=123.0)
    c = candidate(d)
    assert (c.id, c.episode, c.kind, c.front, c.exported) == ("x", "ep1", "cloze", d.front, True)
    assert candidate(_draft("y", "q")).exported is False


# ------------------------------------------------------------------------ at scale


def _brute_force_pairs(cands, threshold):
    """Pairs found when every pair is compared alone: the prefix filter must miss none."""
    found = set()
    for i in range(len(cands)):
        for j in range(i + 1, len(cands)):
            if find_duplicates([cands[i], cands[j]], threshold=threshold):
                found.add((cands[i].id, cands[j].id))
    return found


@pytest.mark.parametrize("threshold", [0.6, 0.85, 1.0])
def test_filtering_finds_every_pair_that_direct_comparison_finds(threshold):
    rng = random.Random(3)
    vocab = "chip train serve model expert token memory power cloud inference rack layer".split()
    names = ["Trainium", "TPU", "Mixtral", "V3"]
    cands = []
    for i in range(70):
        ws = rng.sample(vocab, rng.randint(2, 7)) + rng.sample(names, rng.randint(0, 1))
        cands.append(card(f"c{i}", "What " + " ".join(ws) + "?", rng.choice(["a", "a b", "c"])))
    pairs = _brute_force_pairs(cands, threshold)
    assert pairs  # the data must actually contain duplicates
    mapping = find_duplicates(cands, threshold=threshold)
    root = {c.id: mapping.get(c.id, c.id) for c in cands}
    for x, y in pairs:
        assert root[x] == root[y], (x, y)
    # and nothing is clustered that no chain of direct pairs joins
    clusters = {}
    for x, y in pairs:
        clusters.setdefault(root[x], set()).update((x, y))
    for dup_id, kept in mapping.items():
        assert dup_id in clusters[kept] and kept in clusters[kept]


def test_many_cards_with_a_common_name_are_only_matched_correctly():
    cands = [card(f"q{i}", f"How many experts does Nvidia model {i} use?", f"{i} experts") for i in range(300)]
    cands.append(card("copy", "how many experts does nvidia model 7 use", "7"))
    assert find_duplicates(cands) == {"copy": "q7"}
