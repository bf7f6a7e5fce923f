"""The structured-output schema the LLM fills in.

The docstrings and field descriptions below are sent to the model as part of the
JSON schema: they are prompt text and are kept consistent with prompts/ and with
the rules that `cards.check` lints.

A reply states the note's claims first (one to three sentences, what the listener meant to
remember), then cards that each name the claim they test by its number; `cards.claims` drops a
card that names no stated claim. The critic's reply (`CriticReply`) judges drafted cards: keep,
rewrite or drop, with the rule a card breaks.

Strict mode: every field is required in the schema sent (the SDK lists them all), no field
carries a default into the schema, and no unsupported keyword is used. `claim` and `claims`
have Python defaults only so that the offline generator, which states no claims, can build
cards without them.

Bounds: a reply is untrusted, so a card set holds at most three cards and three claims
(`maxItems` in the schema) and every text has a generous length cap, checked here when a reply is validated.
The string caps are kept out of the JSON schema sent to the model, because OpenAI's strict
structured outputs do not accept `maxLength`; a reply over any bound fails validation and is
recorded as that note's bad reply.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_CARDS = 3
MAX_FRONT = 600
MAX_BACK = 600
MAX_QUOTE = 1000
MAX_TAGS = 8
MAX_TAG = 40
MAX_CLAIMS = 3
MAX_CLAIM = 400
MAX_WHY = 400
# The rules a critic can say a card breaks ("none" for a card it keeps).
CRITIC_RULES = ("none", "side-detail", "give-away", "guessable", "premise", "list", "vague-time")


def at_most(limit: int):
    """A string validator refusing text over `limit` characters (kept out of the JSON schema)."""
    def check(value: str) -> str:
        if len(value) > limit:
            raise ValueError(f"longer than {limit} characters ({len(value):,})")
        return value

    return AfterValidator(check)


Front = Annotated[str, at_most(MAX_FRONT)]
Back = Annotated[str, at_most(MAX_BACK)]
Quote = Annotated[str, at_most(MAX_QUOTE)]
Tag = Annotated[str, at_most(MAX_TAG)]
Claim = Annotated[str, at_most(MAX_CLAIM)]
Why = Annotated[str, at_most(MAX_WHY)]


def _no_default(schema: dict) -> None:
    # Strict structured outputs take no `default`; the field stays required in the schema sent.
    schema.pop("default", None)


def _no_titles(schema: dict) -> None:
    # Pydantic titles each property with its own name again: tokens in every request that say nothing.
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)


class _Claimed(BaseModel):
    """The claim a card tests, named first so the card is written for it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_titles)

    claim: int = Field(
        default=0,
        description=(
            "The number of the claim this card tests (1 for the first in `claims`). A card that names "
            "no stated claim is thrown away."
        ),
        json_schema_extra=_no_default,
    )


class Card(_Claimed):
    """One flashcard that tests one claim of the listener's note, made precise by the transcript excerpts."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_titles)

    kind: Literal["basic", "cloze"] = Field(
        description=(
            "'basic' (the default), or 'cloze' when one term, name or number in one sentence is the thing "
            "to remember."
        )
    )
    front: Front = Field(
        description=(
            "basic: a short question (about twenty words at most) whose one acceptable answer is the "
            "claim's point; one cue naming the company, model or person, no second fact; never yes/no "
            "or a choice between two; no other card's answer. cloze: one sentence with exactly one "
            "{{c1::deletion}}."
        )
    )
    back: Back = Field(
        description=(
            "basic: the short answer (a name, a number with its unit, a few words). cloze: brief extra "
            "context, or empty."
        )
    )
    quote: Quote = Field(
        description=(
            "A few words to one sentence copied exactly from the excerpts (or the note when there are "
            "none) that support the answer."
        )
    )
    tags: list[Tag] = Field(
        description="One to three lowercase topic tags ('semiconductors').",
        max_length=MAX_TAGS,
    )


class CardSet(BaseModel):
    """The note's claims, then one card per claim. No claims and no cards for a pure reaction, hype or small talk."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_titles)

    claims: list[Claim] = Field(
        default_factory=list,
        description=(
            "What the listener meant to remember: one claim per distinct fact or point the note itself "
            "records, at most three, each one sentence made precise by the excerpts. None for a pure "
            "reaction, hype or small talk."
        ),
        max_length=MAX_CLAIMS,
        json_schema_extra=_no_default,
    )
    cards: list[Card] = Field(
        description=(
            "One card per claim, testing its point, never a side detail of the excerpts. Never more cards "
            "than claims."
        ),
        max_length=MAX_CARDS,
    )


class Verdict(BaseModel):
    """The critic's judgement of one drafted card."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_titles)

    card: int = Field(description="The number of the drafted card judged (1 for the first).")
    action: Literal["keep", "rewrite", "drop"] = Field(
        description=(
            "'keep' a card that breaks no rule; 'rewrite' a card on the claim's point whose wording breaks "
            "a rule; 'drop' a card on a side detail, or one no rewrite can save."
        )
    )
    rule: Literal[CRITIC_RULES] = Field(  # type: ignore[valid-type]
        description=(
            "The rule the card breaks: side-detail (tests the excerpts, not the claim), give-away (the "
            "question or a sibling card gives the answer), guessable (two-way choice or obvious guess), "
            "premise (the claim sits in the question), list (asks for a set), vague-time ('this year', "
            "'the next model'); 'none' when kept."
        )
    )
    why: Why = Field(description="One short sentence: what is wrong, or empty when kept.")
    front: Front = Field(description="The rewritten front when 'rewrite'; otherwise an empty string.")
    back: Back = Field(description="The rewritten back when 'rewrite'; otherwise an empty string.")


class CriticReply(BaseModel):
    """One verdict per drafted card, in the cards' order."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_titles)

    verdicts: list[Verdict] = Field(description="One verdict for each drafted card.", max_length=MAX_CARDS)
