"""The structured-output schema the LLM fills in.

The docstrings and field descriptions below are sent to the model as part of the
JSON schema: they are prompt text and are kept consistent with prompts/ and with
the rules that `cards.check` lints.

Bounds: a reply is untrusted, so a card set holds at most three cards (`maxItems` in the
schema) and every text has a generous length cap, checked here when a reply is validated.
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


def _at_most(limit: int):
    def check(value: str) -> str:
        if len(value) > limit:
            raise ValueError(f"longer than {limit} characters ({len(value):,})")
        return value

    return AfterValidator(check)


Front = Annotated[str, _at_most(MAX_FRONT)]
Back = Annotated[str, _at_most(MAX_BACK)]
Quote = Annotated[str, _at_most(MAX_QUOTE)]
Tag = Annotated[str, _at_most(MAX_TAG)]


class Card(BaseModel):
    """One flashcard that tests one idea the listener's note records, made precise by the transcript passage."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["basic", "cloze"] = Field(
        description=(
            "'basic' for a question and answer (the default). 'cloze' only when a single key term, "
            "name or number inside one sentence is the thing to remember."
        )
    )
    front: Front = Field(
        description=(
            "basic: a precise question with exactly one acceptable answer, which shows what shape of "
            "answer is wanted; never yes/no; no claim in the premise, no other card's answer, no "
            "opening with the show or guests. cloze: one sentence with exactly one deletion written "
            "{{c1::like this}}."
        )
    )
    back: Back = Field(
        description=(
            "basic: the answer, a short phrase or at most two sentences, with units for quantities, "
            "not readable from the question. cloze: optional extra context, or an empty string."
        )
    )
    quote: Quote = Field(
        description=(
            "A short verbatim excerpt (a few words to one sentence) copied exactly from the transcript "
            "passage, or from the note when there is no passage, that supports the answer."
        )
    )
    tags: list[Tag] = Field(
        description="One to three lowercase topic tags, single words or hyphenated (e.g. 'semiconductors').",
        max_length=MAX_TAGS,
    )


class CardSet(BaseModel):
    """The cards for one note. An empty list is correct only when the note names nothing to test."""

    model_config = ConfigDict(extra="forbid")

    cards: list[Card] = Field(
        description=(
            "Zero to three cards, one idea each, testing the note's own point. Empty only for pure "
            "reactions or hype with no nameable idea."
        ),
        max_length=MAX_CARDS,
    )
