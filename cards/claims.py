"""Tie a reply's cards to the claims it states, and set aside the cards that test none.

A reply (cards.schema.CardSet) states the note's claims first, then cards that each name
the claim they test by its number. Checked here, not trusted:

- a card naming no stated claim (0, a number past the claims, or any card when the reply
  states no claims) tests nothing the listener meant to remember: set aside, "no-claim";
- there are never more cards than claims: once the reply has as many cards as claims, any
  further card is set aside, "extra-card".

Set-aside cards are not thrown away: they are stored as rejected drafts with the reason, so
review shows them and can bring one back.
"""

from __future__ import annotations

from dataclasses import dataclass

from cards.schema import Card, CardSet

NO_CLAIM = "no-claim"
EXTRA_CARD = "extra-card"


@dataclass
class Tied:
    """One card of a reply with the claim it tests, or the reason it was set aside."""

    card: Card
    claim: str | None  # the claim's sentence
    reason: str | None = None  # why the card was set aside; None when kept
    remark: str | None = None  # what changed it when kept (a critic's rewrite)


def tie(reply: CardSet) -> list[Tied]:
    """Each card of the reply, in order, kept with its claim or set aside with a reason."""
    claims = [c.strip() for c in reply.claims]
    out: list[Tied] = []
    kept = 0
    for card in reply.cards:
        n = card.claim
        if not 1 <= n <= len(claims) or not claims[n - 1]:
            stated = f"{len(claims)} stated" if claims else "the reply states none"
            out.append(Tied(card, None, f"{NO_CLAIM}: the card names claim {n}, {stated}"))
            continue
        claim = claims[n - 1]
        if kept >= len(claims):
            out.append(Tied(card, claim, f"{EXTRA_CARD}: more cards than the {len(claims)} claim(s) stated"))
            continue
        kept += 1
        out.append(Tied(card, claim))
    return out


def untied(cards: list[Card]) -> list[Tied]:
    """Cards from a generator that states no claims (the offline one): all kept, no claim."""
    return [Tied(c, None) for c in cards]
