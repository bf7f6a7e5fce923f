"""The offline generator: simple extractive cards from the note itself, no LLM.

A fallback that keeps the whole pipeline usable and testable without a server.
It only makes a card where the note's own wording has an obvious shape:

- "what is X, Y" (the listener's question with its answer) -> "What is X?" / "Y"
- "X: Y" with a short X                                     -> "<episode>: what about X?" / "Y"
- a sentence with a number                                    -> cloze on the number
- "X is/are Y" with a short X                                 -> "<episode>: what is X?" / "Y"

Everything else (reactions, questions without an answer, long prose) gets no
card. Drafts record the generator as "offline", and a later run with an LLM
configured regenerates them.
"""

from __future__ import annotations

import re

from cards.generate.base import Request, Result
from cards.lexicon import content_words
from cards.schema import Card

MODEL = "extractive-v1"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_QUESTION_ANSWER = re.compile(r"^(what(?:'s| is| are)|who(?:'s| is)) ([^,?]{2,60})[,:]\s*(.{3,200})$", re.I)
_COLON = re.compile(r"^([^:]{2,50}):\s+(.{3,240})$")
_NUMBER = re.compile(
    r"(?<![\w$])(\$?\d[\d,.]*(?:\s?[-–]\s?\d[\d,.]*)?\+?"
    r"(?:\s?(?:%|x|k|m|b|bn|billion|million|trillion|gigawatts?|nm))?)(?!\w)",
    re.I,
)
_PRONOUN = re.compile(r"^(this|that|it|there|he|she|they|we|i|you|in|on|at|for|example)\b", re.I)
_IS = re.compile(r"^(.{3,50}?)\s+(is|are|was|were)\s+(.{3,200})$", re.I)
_REACTION = re.compile(r"\b(lmao|lol|wtf|hype|omg)\b", re.I)


def _clean(s: str) -> str:
    return s.strip().strip("\"'“”").rstrip(" .;,")


def _tidy_sentence(s: str) -> str:
    s = s.strip()
    return s[0].upper() + s[1:] if s else s


def cards_for(note: str, episode: str) -> list[Card]:
    first = note.split("\n", 1)[0].strip()
    sentences = [s for s in _SENTENCE.split(first) if s.strip()]
    if not sentences or len(content_words(first)) < 2:
        return []
    lead = _clean(sentences[0])
    tag = ["offline"]
    if m := _QUESTION_ANSWER.match(lead):
        term, answer = _clean(m.group(2)), _clean(m.group(3))
        return [Card(kind="basic", front=f"What is {term}?", back=answer, quote=first, tags=tag)]
    if (m := _COLON.match(lead)) and len(m.group(1).split()) <= 6:
        topic, answer = _clean(m.group(1)), _clean(m.group(2))
        return [Card(kind="basic", front=f"{episode}: what about {topic}?", back=answer, quote=first, tags=tag)]
    for sentence in sentences[:3]:
        s = _clean(sentence)
        if _REACTION.search(s) or s.endswith("?"):
            continue
        m = _NUMBER.search(s)
        if m and len(s.split()) >= 4:
            text = s[: m.start()] + "{{c1::" + m.group(1) + "}}" + s[m.end():]
            return [Card(kind="cloze", front=_tidy_sentence(text) + ".", back=f"({episode})", quote=sentence.strip(),
                         tags=tag)]
    if (m := _IS.match(lead)) and not _REACTION.search(lead) and len(m.group(1).split()) <= 5 \
            and "," not in m.group(1) and not _PRONOUN.match(m.group(1)):
        subject, verb, rest = _clean(m.group(1)), m.group(2).lower(), _clean(m.group(3))
        if len(content_words(rest)) >= 1 and not lead.endswith("?"):
            return [Card(kind="basic", front=f"{episode}: what {verb} {subject}?", back=rest, quote=first, tags=tag)]
    return []


class OfflineGenerator:
    """Implements the Generator protocol without any network."""

    name = "offline"
    model = MODEL

    async def generate(self, request: Request) -> Result:
        cards = cards_for(request.note.text, request.episode_title)
        from cards.schema import CardSet

        return Result(note_id=request.note.id, key=request.key, cards=cards,
                      raw=CardSet(cards=cards).model_dump_json())

    async def aclose(self) -> None:
        return None
