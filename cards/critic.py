"""The critic: an optional second request per note that judges the drafted cards.

It is sent the note, its excerpts, the claims the reply stated and the cards kept for
them, and returns one verdict per card (cards.schema.CriticReply): keep, rewrite (with the
new front and back) or drop, with the rule the card breaks. It goes through the same
generator as the cards (structured outputs with their fallbacks, retries, bounds), and its
replies are kept in the same response cache under their own key, which includes the
critic prompt's own version (prompts/critic.md).

Applying the verdicts never loses a card: a dropped card is set aside (stored rejected,
with the critic's rule and words as its reason, so review can bring it back); a rewrite
replaces the card's front and back, and the draft keeps the critic's remark. A card the
critic gives no verdict for is kept as drafted.
"""

from __future__ import annotations

import json
from dataclasses import replace

from cards.claims import Tied
from cards.models import stable_id
from cards.schema import CriticReply

# Tokens one critic reply takes, for estimates: a verdict per card, a rewrite now and then.
CRITIC_OUTPUT_GUESS = 150


def schema_json() -> str:
    return json.dumps(CriticReply.model_json_schema(), sort_keys=True)


def render_claims(claims: list[str]) -> str:
    return "\n".join(f"{n}. {c}" for n, c in enumerate(claims, 1)) or "(none)"


def render_cards(tied: list[Tied], claims: list[str]) -> str:
    """The drafted cards as <card> blocks; their text (a reply, so untrusted) is escaped, the tags are not."""
    from cards.prompts import Block, escape_untrusted

    blocks = []
    for n, t in enumerate(tied, 1):
        c = t.card
        head = f'<card n="{n}" kind="{c.kind}" claim="{c.claim}">'
        front, back = escape_untrusted(c.front.strip()), escape_untrusted(c.back.strip())
        blocks.append(f"{head}\nfront: {front}\nback: {back}\n</card>")
    return Block("\n".join(blocks) or "(none)")


def messages(template, *, episode_title: str, show: str, people: str, date: str, note: str, passage: str,
             claims: list[str], cards: list[Tied]) -> list[dict]:
    return template.render(episode_title=episode_title, show=show, people=people, date=date, note=note,
                           passage=passage, claims=render_claims(claims), cards=render_cards(cards, claims))


def cache_key(model: str, version: str, msgs: list[dict]) -> str:
    return stable_id("critic", model, version, json.dumps(msgs, sort_keys=True), schema_json(), length=32)


def apply(cards: list[Tied], reply: CriticReply) -> list[Tied]:
    """The cards after the critic's verdicts (the first verdict for each card number counts)."""
    verdicts = {}
    for v in reply.verdicts:
        verdicts.setdefault(v.card, v)
    out = []
    for n, t in enumerate(cards, 1):
        v = verdicts.get(n)
        if v is None or v.action == "keep":
            out.append(t)
            continue
        why = " ".join(v.why.split())
        label = f"critic {v.rule}" + (f": {why}" if why else "")
        if v.action == "drop":
            out.append(replace(t, reason=label))
        elif v.front.strip() and (t.card.kind == "cloze" or v.back.strip()):
            card = t.card.model_copy(update={"front": v.front.strip(), "back": v.back.strip()})
            out.append(replace(t, card=card, remark=label.replace("critic ", "critic rewrote ", 1)))
        else:
            out.append(t)  # a rewrite with nothing in it: keep the card as drafted
    return out
