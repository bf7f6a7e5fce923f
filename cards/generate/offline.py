"""The offline generator: a few extractive cards from the note itself, no LLM.

A fallback that keeps the whole pipeline usable and testable without a server. It
prefers no card to a weak one, and makes a card only where the note's own wording
has a shape that stands alone:

- "what is X, Y" or "what's X? Y" (a question with its answer) -> "What is X?" / "Y"
- "term: definition" for a named idea                            -> "What is term?" / "definition"
- "Subject <verb> … 27x …": a claim with a quantity after its verb -> a cloze on that quantity,
  its unit with it ("80GB", "15T", "3.35TB/s", "$500B")
- "X is the only/first/most …" or "the most … was X"             -> a cloze on the name X
- "X's mission is to …", "X's edge is the …": an attribute         -> "What is X's edge?" / "the …"
- "X is <short noun phrase>": a term                              -> "What is X?" / "<noun phrase>"

Nothing is made from reactions, questions, doubts, time-relative wording ("next
year"), sentences that lean on what came before ("this", "he", "there"), fragments
without a subject and verb, timestamps or version numbers ("GPT-4"). Drafts record
the generator as "offline", and a later run with an LLM configured regenerates them.
"""

from __future__ import annotations

import re

from cards.check import TIME_RELATIVE
from cards.generate.base import Request, Result
from cards.lexicon import content_words
from cards.schema import MAX_BACK, MAX_FRONT, MAX_QUOTE, Card, CardSet

MODEL = "extractive-v3"  # part of every offline draft's spec: a change here regenerates them
MAX_WORDS = 25  # a cloze sentence or an answer longer than this is prose, not a card

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\s+->\s+")
_PARENS = re.compile(r"\s*\([^()]*\)")
# "what is tranium, amazon's chip", "what's MFU? model flops utilization": the question and its answer.
_QUESTION_ANSWER = re.compile(r"^(?:what(?:['’]s| is| are)|who(?:['’]s| is)) ([^,?:]{2,60})(?:[,:]|\?)\s*(.{3,200})$", re.I)
_COLON = re.compile(r"^([^:()]{2,60}):\s+(.{3,300})$")
# A quantity: digits with separators, a range ("5-10", "30 to 300"), a scale and a unit, said
# apart ("10 gigawatts", "3.35 TB/s") or attached ("80GB", "15T", "3.35TB/s", "27x", "$500B"). An
# attached letter that makes an ordinal, a time of day, a decade or a name ("2nd", "10am", "80s",
# "3d") is no unit; the whole number is taken or none ("3.35TB/s" is never cut to "3").
_SAID_UNIT = (r"%|x|k|m|b|bn|billion|million|trillion|thousand|gigawatts?|megawatts?|gw|mw|kw|nm|times"
              r"|[kmgtp]b(?:/s|ps)?|[kmgtp]?flops|ms|ns|hz|[kmg]hz|tokens/s")
_ATTACHED_UNIT = r"(?!(?:st|nd|rd|th|am|pm|s|d)\b)(?:[kmbtxw]\b|[a-z]{2,5}(?:/[a-z]{1,3})?)"
_NUMBER = re.compile(
    r"(?<![\w$.\-/:])(\$?\d[\d,.]*(?:\s?(?:-|–|to)\s?\$?\d[\d,.]*)?\+?"
    rf"(?:{_ATTACHED_UNIT}|\s?(?:{_SAID_UNIT})(?![\w/]))?)"
    r"(?![\w\-/:]|[.,]\d)",
    re.I,
)
_TIMESTAMP = re.compile(r"\b\d{1,2}:\d{2}\b")
_REACTION = re.compile(
    r"\b(?:lmao|lmfao|lol|wtf|omg|hype|holy shit|shit|fuck\w*|damn|crazy|insane|wild|cracked|goated|bruh|"
    r"ahh+|hmm+|wow|yikes)\b|[\U0001F300-\U0001FAFF\u2600-\u27BF]",
    re.I,
)
_SITUATION = re.compile(r"\b(?:going on|happening|the deal|up with|the point|the reason)\b", re.I)
# A hedge makes a clause no fact; the listener doubting the note makes no sentence of it one.
_DOUBT = re.compile(r"\?|\b(?:might|maybe|probably|i think|i guess|perhaps)\b", re.I)
_DISBELIEF = re.compile(
    r"\b(?:is (?:this|that|it) (?:true|right)|not sure|i (?:don'?t|do not) (?:think|buy|get)|idk|unclear)\b", re.I)
# What the linter calls time-relative, plus the words of a note that only make sense when it was written.
_NOTE_TIME = re.compile(r"\b(?:next|this|last|coming) gen(?:eration)?\b|\b(?:soon|now|yet|alrd|already|ago)\b"
                        r"|\b\w+['’]s (?:next|upcoming|latest|new)\b",  # "nvidia's next chip" is a later one
                        re.I)
# Words that lean on context the card will not have; a possessive only when it opens the
# sentence ("Their MLA…"), since later ones refer back inside it ("California … their vaccines").
_DEICTIC = re.compile(r"\b(?:this|these|those|he|she|him|they|them|we|us|i|me|there|here|both|"
                      r"above|below|former|latter)\b|^(?:his|her|their|its|it|our|your|my)\b",
                      re.I)
# Where a sentence's first claim ends: "…30-300 trillion synapses so we might…", "…synapses, GPT is…".
_CLAUSE_END = re.compile(r",\s+|\s+(?:so|but|because|which|whereas|while|although)\s+", re.I)
_VAGUE_START = re.compile(r"^(?:a|an|another|some|so|such|when|if|because|by|and|but|or|also|then|"
                          r"the first|the other|literal(?:ly)?|example|examples)\b|\b(?:how|why|what|who)\b", re.I)
_VERBS = frozenset(
    """is are was were has have had will would can could should may must does do did cost costs need needs
    generate generates generated make makes made take takes took use uses used spend spends spent run runs
    build builds built earn earns earned raise raised reach reaches reached grow grows grew hold holds save
    saves cut cuts get gets got pay pays paid sell sells sold lose loses lost produce produces produced train
    trains trained ship ships shipped draw draws drew burn burns burned injected""".split()
)
_SUPERLATIVE = re.compile(r"^(?:the|a)\s+(?:only|first|last|largest|biggest|smallest|best|worst|most|least|"
                          r"fastest|cheapest|oldest|newest|\w+est)\b", re.I)
_EVALUATIVE = re.compile(r"^(?:so|very|super|really|pretty|quite|too|incredibly|extremely|usually|often|always|"
                         r"never|more|less|better|worse|key|important|major|good|bad|great|huge)\b|\bthan\b", re.I)
# Heads of a "term: …" line that name a container, not an idea.
_CONTAINERS = frozenset(
    """example examples project idea ideas question questions note notes thought thoughts takeaway takeaways
    point points topic topics angle split difference differences thing things stuff related paper article
    study post book episode part section summary backstory backstories list""".split()
)
_NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten several many few main".split())


def _clean(s: str) -> str:
    """Trimmed of quotes, spaces and trailing punctuation ("cheaper than o1!." -> "cheaper than o1")."""
    return s.strip().strip("\"'“”").strip().rstrip(" .;,:!?").strip()


def _sentence(s: str) -> str:
    """One clean sentence: capitalised, parentheses balanced or dropped, one full stop."""
    s = _PARENS.sub("", s)
    if s.count("(") != s.count(")"):
        s = s.split("(", 1)[0]
    s = re.sub(r"\s+", " ", _clean(s))
    return s[0].upper() + s[1:] + "." if s else s


def _stands_alone(s: str, opening: bool = True) -> bool:
    """No reaction, doubt, time-relative or deictic word, no timestamp; with `opening`, no vague first word."""
    return not (_REACTION.search(s) or _DOUBT.search(s) or TIME_RELATIVE.search(s) or _NOTE_TIME.search(s)
                or _DEICTIC.search(s) or _TIMESTAMP.search(s) or (opening and _VAGUE_START.match(s)))


def _verb_at(words: list[str]) -> int | None:
    for i, w in enumerate(words):
        if w.casefold() in _VERBS or (i and w.casefold().endswith("ed") and len(w) > 4):
            return i
    return None


def _quantity_cloze(sentence: str) -> str | None:
    """The sentence with its claim's quantity (the first after the verb) deleted, or None."""
    s = _PARENS.sub("", sentence)
    if s.count("(") != s.count(")"):
        s = s.split("(", 1)[0]
    s = _clean(s)
    for cut in _CLAUSE_END.finditer(s):
        head = s[: cut.start()]
        if _NUMBER.search(head) and _verb_at(head.split()) and len(head.split()) >= 4:
            s = head  # the first claim is whole before this point
            break
    words = s.split()
    if not (4 <= len(words) <= MAX_WORDS) or not _stands_alone(s):
        return None
    verb = _verb_at(words)
    if not verb or len(content_words(" ".join(words[:verb]))) < 1:
        return None  # no subject before the verb: a fragment
    after = len(" ".join(words[: verb + 1]))
    m = next((m for m in _NUMBER.finditer(s) if m.start() >= after), None)
    if m is None:
        return None
    value = m.group(1).strip()
    lead = re.match(r"\$?(\d[\d,.]*)", value).group(1).rstrip(",.")
    if re.search(rf"(?<![\d.,]){re.escape(lead)}(?!\d)", s[: m.start()] + s[m.end():]):
        return None  # the same number again elsewhere would give the deletion away
    return _sentence(s[: m.start()] + "{{c1::" + value + "}}" + s[m.start() + len(value):])


def _name_cloze(sentence: str) -> str | None:
    """'X is the only …' or 'the most … was X': a cloze on the name the claim is about."""
    s = _clean(_PARENS.sub("", sentence))
    m = re.match(r"^(.{2,40}?)\s+(is|are|was|were)\s+(.{3,200})$", s, re.I)
    if not m or not _stands_alone(s) or len(s.split()) > MAX_WORDS:
        return None
    subject, verb, rest = m.group(1), m.group(2), m.group(3)
    rest = re.sub(r"^(?:just|only|really|basically|actually|still|truly)\s+(?=(?:the|a)\s)", "", rest, flags=re.I)
    if _SUPERLATIVE.match(rest) and len(subject.split()) <= 3 and not _VAGUE_START.match(subject):
        return _sentence(f"{{{{c1::{subject}}}}} {verb} {rest}")
    if _SUPERLATIVE.match(subject) and len(rest.split()) <= 3:
        return _sentence(f"{subject} {verb} {{{{c1::{rest}}}}}")
    return None


def _definition(term: str, answer: str) -> Card | None:
    """'What is term?' for a named idea, when the answer is one self-contained phrase."""
    quoted = term.strip()[:1] in "\"“'"
    term, answer = _clean(term), _clean(_PARENS.sub("", answer))
    words = term.split()
    if not (1 <= len(words) <= 4) or any(c.isdigit() for c in term) or _VAGUE_START.search(term) \
            or not _stands_alone(term, opening=False):
        return None
    if {words[0].casefold(), words[-1].casefold()} & _CONTAINERS or words[0].casefold() in _NUMBER_WORDS:
        return None
    n = len(answer.split())
    # A definition may open with "if" or "when" ("if a question is harder, spend more cycles").
    if not (3 <= n <= MAX_WORDS) or not _stands_alone(answer, opening=False) or answer.count(",") >= 2 \
            or "/" in answer:
        return None
    shown = f"“{term}”" if quoted else term
    return _card("basic", f"What is {shown}?", answer, f"{term}: {answer}", ["offline"])


def cards_for(note: str) -> list[Card]:
    """At most one card from the note's first line; none unless its shape is clear, or too long for a card."""
    return [c for c in _cards_for(note) if c is not None]


def _card(kind: str, front: str, back: str, quote: str, tags: list[str]) -> Card | None:
    """A card within the schema's bounds: a side too long for a card makes none; the quote is cut verbatim."""
    if len(front) > MAX_FRONT or len(back) > MAX_BACK:
        return None
    return Card(kind=kind, front=front, back=back, quote=quote[:MAX_QUOTE], tags=tags)


def _cards_for(note: str) -> list[Card | None]:
    first = note.split("\n", 1)[0].strip()
    if len(content_words(first)) < 2:
        return []
    tag = ["offline"]
    if m := _QUESTION_ANSWER.match(_clean(first)):
        # The answer is the first sentence: "model bandwidth utilization. the inference version of MFU".
        term, answer = _clean(m.group(1)), _clean(re.split(r"(?<=[.!;])\s+", m.group(2), maxsplit=1)[0])
        # A thing named, not a situation asked about ("what is going on with intel? idk").
        named = len(term.split()) <= 4 and not _DEICTIC.search(term) and not _SITUATION.search(term)
        if named and not _REACTION.search(answer) and len(answer.split()) <= MAX_WORDS \
                and "?" not in m.group(2) and not first.rstrip().endswith("?") \
                and not _DISBELIEF.search(answer) and not _DOUBT.search(answer):
            return [_card(kind="basic", front=f"What is {term}?", back=answer, quote=first, tags=tag)]
        return []
    if _DISBELIEF.search(first):
        return []  # the listener doubts what they wrote
    sentences = [s for s in _SENTENCE.split(first) if s.strip()]
    lead = sentences[0].strip()
    if (m := _COLON.match(lead)) and not _REACTION.search(lead):
        card = _definition(m.group(1), m.group(2))
        if card:
            return [card.model_copy(update={"quote": lead})]
        lead = m.group(1)  # "amazon's edge is X: why" -- the claim before the colon may stand alone
    for sentence in sentences[:3]:
        bare = _PARENS.sub("", sentence)
        if _REACTION.search(bare) or bare.rstrip().endswith("?"):
            continue
        text = _quantity_cloze(sentence) or _name_cloze(sentence)
        if text:
            return [_card(kind="cloze", front=text, back="", quote=sentence.strip(), tags=tag)]
    # "X's mission is to …": a purpose, asked for by name.
    m = re.match(r"^(.{3,50}?)\s+(is|are)\s+(to\s.{3,200})$", _clean(lead), re.I)
    if m and _stands_alone(lead) and len(m.group(1).split()) <= 4 and not _VAGUE_START.search(m.group(1)):
        return [_card(kind="basic", front=f"What {m.group(2).lower()} {m.group(1)}?", back=_clean(m.group(3)),
                     quote=first, tags=tag)]
    # "amazon's edge is the custom infra behind aws": an attribute of a named thing.
    m = re.match(r"^([\w-]+'s(?:\s[\w-]+){1,2})\s+(is|are|was|were)\s+((?:the|a|an)\s(.{3,100}))$", _clean(lead), re.I)
    if m and _stands_alone(lead) and not _EVALUATIVE.search(m.group(4)) and len(m.group(3).split()) <= 12:
        return [_card(kind="basic", front=f"What {m.group(2).lower()} {m.group(1)}?", back=m.group(3), quote=lead,
                     tags=tag)]
    # "chain of thought is adaptive compute": a term named by a short noun phrase.
    m = re.match(r"^(.{3,50}?)\s+is\s+([a-z][\w-]*\s[\w-]+)$", _clean(lead), re.I)
    if m and _stands_alone(lead) and not _EVALUATIVE.search(m.group(2)) and not m.group(2).endswith("ing") \
            and not set(content_words(m.group(1))) & set(content_words(m.group(2))) \
            and len(m.group(1).split()) <= 4 and not _VAGUE_START.search(m.group(1)):
        return [_card(kind="basic", front=f"What is {m.group(1)}?", back=m.group(2), quote=first, tags=tag)]
    return []


class OfflineGenerator:
    """Implements the Generator protocol without any network."""

    name = "offline"
    model = MODEL

    async def generate(self, request: Request) -> Result:
        cards = cards_for(request.note.text)
        return Result(note_id=request.note.id, key=request.key, cards=cards,
                      raw=CardSet(cards=cards).model_dump_json())

    async def aclose(self) -> None:
        return None
