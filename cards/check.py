"""Card lint and grounding: pure functions over card text, no I/O.

`lint` flags cards that break the card quality rules in DESIGN.md (and the prompt
that asks the LLM to follow them); `grounding` measures whether a card's supporting
quote really occurs in the transcript passage or the note. Warnings are strings
"code: message" so the review screen can show them and tools can filter on the code.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from rapidfuzz import fuzz, process

from cards.lexicon import MATCH_STOPWORDS, SCALE_WORDS, match_words, number_value

GROUNDED = 0.8
"""A card whose quote scores below this was probably not copied from its source."""

MAX_CHARS = 200
MAX_FRONT_WORDS = 30
MAX_SENTENCES = 2
MAX_CLOZES = 2

UNGROUNDED = "ungrounded: the quote was not found in the transcript passage or the note"
ANSWER_SUPPORTED = 0.5
"""An answer with fewer than this share of its words in the passage or the note is unsupported."""
UNSUPPORTED = "unsupported-answer: most of the answer's words are in neither the transcript passage nor the note"

CLOZE = re.compile(r"\{\{c(\d+)::(.*?)(?:::(.*?))?\}\}", re.S)

# Words that carry no fact; dropped before comparing what a question and answer say.
STOPWORDS = frozenset(
    """a an the is are am was were be been being do does did done doing has have had having
    will would can could shall should may might must of in on at to for from by with about as
    into onto over under than then so and or but if it its it's this that these those there
    here they them their he him his she her we our you your i me my what which who whom whose
    when where why how according said says say per via also just very really actually exactly
    mostly mainly""".split()
)

_WORD = re.compile(r"[^\W_]+")
_SPACE = re.compile(r"\s+")
_APOSTROPHE = re.compile(r"[’‘`´]")
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_VOWELS = frozenset("aeiouy")


def stem(word: str) -> str:
    """A deliberately light suffix stripper: serve/serves/served/serving all become 'serv'.

    Tokens with digits (v3, 256, h100) are identifiers and stay as they are.
    """
    w = word.casefold()
    if any(c.isdigit() for c in w):
        return w
    if w.endswith("ing") and len(w) > 4 and _VOWELS & set(w[:-3]):
        w = w[:-3]
    elif w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("ed") and len(w) > 3 and w[-3] != "e" and _VOWELS & set(w[:-2]):
        w = w[:-2]
    elif w.endswith("es") and len(w) > 3:
        w = w[:-2]
    elif w.endswith("s") and len(w) > 3 and not w.endswith(("ss", "is")):
        w = w[:-1]
    if len(w) > 2 and w.endswith("e"):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]
    return w


def words(text: str) -> list[str]:
    """The words of a text in their original case, NFKC, with "n't" spelled out as 'not'."""
    text = unicodedata.normalize("NFKC", _APOSTROPHE.sub("'", text))
    text = re.sub(r"n't\b", " not", text, flags=re.I)
    return _WORD.findall(text)


def content_stems(text: str, stopwords: frozenset[str] = STOPWORDS) -> set[str]:
    """Stems of the words that carry meaning; small number words become digits."""
    out = set()
    for w in words(text):
        w = w.casefold()
        w = _NUMBER_WORDS.get(w, w)
        if w in stopwords or (len(w) == 1 and not w.isdigit()):
            continue
        out.add(stem(w))
    return out


def plain(text: str) -> str:
    """Text as auto-captions would have it: casefolded, no punctuation, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"['’‘`´]", "", text)
    text = re.sub(r"[\W_]+", " ", text)
    return text.strip()


def cloze_deletions(text: str) -> list[str]:
    """The non-empty texts of the {{cN::...}} deletions, in order."""
    return [m.group(2).strip() for m in CLOZE.finditer(text) if m.group(2).strip()]


def unclozed(text: str) -> str:
    """A cloze sentence as the learner reads it after answering."""
    return CLOZE.sub(lambda m: m.group(2), text)


# ---------------------------------------------------------------------------- lint

_LEAD_IN = re.compile(
    r"^(?:according to|in|on|per|from|for|during|at|when|after|before|as|while|speaking)\b"
    r"[^,?]{0,100},\s*",
    re.I,
)
_YES_NO_OPENERS = frozenset(
    """is are am was were do does did can could will would should shall has have had may might
    must isn aren wasn weren don doesn didn cannot couldn won wouldn shouldn hasn haven
    hadn""".split()
)
_OR = re.compile(r"\bor\b", re.I)
_COUNT = r"(?:\d+|two|three|four|five|six|seven|eight|nine|ten|several|some|all)"
_ASKS_FOR_LIST = re.compile(
    rf"^(?:list|enumerate)\b"
    rf"|\b(?:list|name|give|state|identify)\s+(?:all|every|each|any|{_COUNT})\b"
    rf"|\b(?:list|name|give|state|identify)\s+the\s+{_COUNT}\b"
    rf"|\bwhat\s+(?:are|were)\s+(?:the\s+)?{_COUNT}\b"
    rf"|\bwhich\s+{_COUNT}\b",
    re.I,
)
_BULLET_LINE = re.compile(r"^\s*(?:[-*•·▪]|\d+[.)]|\(\d+\)|[a-z]\))\s+", re.M)
_INLINE_NUMBERED = re.compile(r"(?:^|\s)\(?\d+\)\s")
_ITEM_SPLIT = re.compile(r"\s*[;,]\s+(?:(?:and|or)\s+)?|\s+(?:and|&)\s+", re.I)
_SECOND_QUESTION = re.compile(r"(\band|,|;)\s+(?:what|how|why|when|where|who|which)\b", re.I)
_QUESTION_START = re.compile(
    r"^\W*(?:what|how|why|when|where|who|whom|whose|which|is|are|was|were|do|does|did|can|could|"
    r"will|would|should|has|have|had)\b",
    re.I,
)
# Wording that changes meaning as time passes ("in the next few years" is a span, not a thing).
TIME_RELATIVE = re.compile(
    r"\b(?:this|next|last|coming|past) (?:year|month|week|quarter|decade|summer|winter|spring|fall)\b"
    r"|\bthe next (?!\d|few\b|several\b|couple\b|two\b|three\b|decade\b)[A-Za-z][\w-]*"
    r"|\b(?:recently|currently|nowadays|these days|right now|upcoming|today|soon|lately|so far|as of now"
    r"|at the moment|at present|the latest)\b",
    re.I,
)
_VAGUE_SPEAKER = re.compile(r"\bthe\s+(?:guest|speaker|interviewee|podcast guest)\b", re.I)
# "According to the discussion", "as mentioned": a source the learner will not have in mind later.
_VAGUE_SOURCE = re.compile(
    r"\b(?:according to|per|based on)\s+(?:the|this)\s+"
    r"(?:discussion|conversation|episode|podcast|interview|talk|passage|excerpt|transcript|text|source)\b"
    r"|\b(?:in|from|during)\s+(?:the|this)\s+(?:discussion|conversation|passage|excerpt|transcript|text)\b"
    r"|\bas\s+(?:discussed|mentioned|described|noted|stated|explained)\b"
    r"|\b(?:the|this)\s+(?:discussion|conversation|passage|excerpt|transcript)\s+(?:says|said|mentions|suggests|notes)\b",
    re.I)
_ABBREVIATIONS = re.compile(
    r"\b(?:e\.g|i\.e|etc|vs|approx|ca|mr|mrs|ms|dr|prof|inc|ltd|no|st)\.", re.I
)
_SENTENCE_END = re.compile(r"[.!?]+(?:[\"')\]]*)(?:\s+|$)")


def sentences(text: str) -> list[str]:
    """Split text into sentences, not at common abbreviations, initials or decimals."""
    text = _ABBREVIATIONS.sub(lambda m: m.group(0)[:-1], text.strip())
    text = re.sub(r"\b([A-Z])\.(?=[A-Z]?\.?\s)", r"\1", text)  # U.S. Steel, J. Smith
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if _WORD.search(p)]


def _question(front: str) -> str:
    """The question with a leading context cue ("According to X, ...") removed."""
    return _LEAD_IN.sub("", front.strip().lstrip("\"'“‘([ "))


def _is_yes_no(front: str) -> bool:
    q = _question(front)
    if not q.rstrip().rstrip("\"'”’)").endswith("?"):
        return False
    first = _WORD.match(q)
    if not first:
        return False
    opener = first.group(0).casefold()
    if opener not in _YES_NO_OPENERS:
        return False
    # "Is X or Y?" asks to choose, which has exactly one answer.
    return not _OR.search(q)


# "…, X or Y?": the options at the end of a question.
_CHOICE = re.compile(r"\b([^\W_][\w'’-]*(?:\s+[\w'’-]+){0,5})\s*,?\s+or\s+([\w'’-]+(?:\s+[\w'’-]+){0,5})\s*\??\s*$",
                     re.I)


def _two_way(front: str, back: str) -> bool:
    """'Did X rise or fall?' -> 'Rise': the answer is (mostly) one of the options the question ends with."""
    m = _CHOICE.search(_question(front).rstrip(" \"'”’)"))
    if not m or re.match(r"not\b", m.group(2), re.I):
        return False  # "… or not?" is a yes/no question
    main = _PARENS.sub("", back).split(":", 1)[0]
    wanted = content_stems(main)
    if not wanted:
        return False
    options = content_stems(m.group(1)) | content_stems(m.group(2))
    return len(wanted & options) / len(wanted) >= 0.5


def _joins_questions(front: str) -> bool:
    """'What is X and how does it work?': a second question joined to a first one."""
    # Only after a question: "FLOPS, memory, and what third one?" completes a list.
    q = _question(front)
    return any(_QUESTION_START.match(q[: m.start()]) for m in _SECOND_QUESTION.finditer(q))


# Examples and glosses are not the answer's items: "Reasoning models, such as R1 and o1"; nor is
# what a contrast rules out: "Distribution, not producing the content, is the limit".
_EXAMPLES = re.compile(r"\s*\([^()]*\)|[,;:]?\s*\b(?:such as|e\.g\.|for example|for instance|including|like)\b[^.;]*"
                       r"|,\s*(?:not|rather than|instead of)\b[^,.;]*", re.I)


def _enumeration_in(answer: str) -> bool:
    text = answer.strip()
    if len(_BULLET_LINE.findall(text)) >= 2 or len(_INLINE_NUMBERED.findall(text)) >= 2:
        return True
    text = _EXAMPLES.sub("", text)
    for sentence in sentences(text) or [text]:
        items = [i for i in _ITEM_SPLIT.split(sentence.strip().rstrip(".!?")) if _WORD.search(i)]
        # Short items are a list; long ones are clauses of an ordinary sentence.
        if len(items) >= 3 and all(len(i.split()) <= 4 for i in items):
            return True
    return False


def _readable_from(answer: str, question: str) -> bool:
    wanted = content_stems(answer)
    if not wanted:
        return False
    given = content_stems(question)
    return len(wanted & given) / len(wanted) >= 0.8


_ASKED_FOR = re.compile(r"\b(?:what|which|how many|how much)\s+(?:kind of\s+|sort of\s+|type of\s+)?([^\W_]+)", re.I)


def _circular(front: str, back: str) -> bool:
    """The answer opens by repeating a phrase of the question (not the kind of thing asked for).

    "If superhuman persuasion arrives, what could be embedded?" -> "Superhuman persuasion…".
    """
    lead = terms(_PARENS.sub("", back))[:2]
    if len(lead) < 2:
        return False
    question = _question(front)
    asked = {stem(m.group(1).casefold()) for m in _ASKED_FOR.finditer(question)}
    q = terms(question)
    return not asked & set(lead) and any(q[i:i + 2] == lead for i in range(len(q) - 1))


def lint(kind: str, front: str, back: str) -> list[str]:
    """Warnings ("code: message") for a card that breaks the card quality rules."""
    warnings: list[str] = []
    cloze = kind == "cloze"
    deletions = cloze_deletions(front)
    shown_front = unclozed(front) if cloze else front

    if not front.strip():
        what = "cloze text" if cloze else "question"
        warnings.append(f"empty-front: the {what} is empty")
    if not back.strip() and not cloze:
        warnings.append("empty-back: the answer is empty")

    n_words = len(shown_front.split())
    if len(shown_front) > MAX_CHARS or n_words > MAX_FRONT_WORDS:
        warnings.append(
            f"long-front: {n_words} words; ask a short question and lean on a context cue"
        )
    n_sentences = len(sentences(back))
    if len(back.strip()) > MAX_CHARS or n_sentences > MAX_SENTENCES:
        warnings.append(
            f"long-back: {n_sentences} sentences, {len(back.strip())} characters; "
            "answer with a phrase or at most two sentences"
        )

    if cloze:
        if not deletions:
            warnings.append("cloze-missing: a cloze card needs a deletion like {{c1::term}}")
        elif len(deletions) > MAX_CLOZES:
            warnings.append(
                f"cloze-many: {len(deletions)} deletions; delete only the one key term"
            )
        # The back of a cloze is extra context (often the episode), not the answer.
        if any(_enumeration_in(d) for d in deletions):
            warnings.append("enumeration: the deletion is a list; make one card per item")
        rest = CLOZE.sub(" ", front)
        if deletions and all(_readable_from(d, rest) for d in deletions):
            warnings.append(
                "answer-in-question: the deleted text also appears outside the deletion"
            )
    else:
        if CLOZE.search(front) or CLOZE.search(back):
            warnings.append("cloze-in-basic: a basic card contains {{c1::...}} cloze markers")
        if _is_yes_no(front):
            warnings.append("yes-no: a yes/no question; ask for the fact itself")
        if _ASKS_FOR_LIST.search(_question(front)) or _enumeration_in(back):
            warnings.append("enumeration: the card asks for a set; make one card per item")
        if back.strip() and not _OR.search(front) and _readable_from(back, front):
            warnings.append("answer-in-question: the answer can be read from the question")
        if _two_way(front, back):
            warnings.append("two-way: the answer is one of two options the question offers; ask without the options")
        if front.count("?") >= 2 or _joins_questions(front):
            warnings.append("several-ideas: the question asks more than one thing; split it")
        if _circular(front, back):
            warnings.append("circular: the answer begins with the question's own words; ask for what is new")

    if TIME_RELATIVE.search(shown_front) or TIME_RELATIVE.search(back):
        warnings.append("time-relative: 'this year', 'the next X' or 'today' will mean something else later; "
                        "name the thing or the year")
    if _VAGUE_SPEAKER.search(shown_front) or _VAGUE_SPEAKER.search(back):
        warnings.append("vague-speaker: name the speaker or the episode instead of 'the guest'")
    if _VAGUE_SOURCE.search(shown_front):
        warnings.append("vague-source: 'according to the discussion' names no source; name the speaker or the episode")
    return warnings


# ------------------------------------------------------------------------ grounding


def _found_in(quote: str, source: str) -> float:
    if not source:
        return 0.0
    score = fuzz.partial_ratio(quote, source) / 100
    # partial_ratio aligns the shorter text inside the longer one; a quote longer than
    # its source can only be partly copied from it, however well the source fits inside.
    if len(quote) > len(source):
        score *= len(source) / len(quote)
    return score


def grounding(quote: str, note: str, context: str | None) -> float:
    """How well the quote occurs, near-verbatim, in the transcript passage or the note (0..1).

    Text is compared without case or punctuation because transcripts are unpunctuated
    auto-captions while quotes come back punctuated.
    """
    q = plain(quote)
    if not q:
        return 0.0
    return max(_found_in(q, plain(context or "")), _found_in(q, plain(note)))


# --------------------------------------------------------------- support of words
#
# Whether the words of one text are found in another, the way a listener or an
# automatic transcript may have spelt them: numbers compared by value (lexicon's
# match_words: "27x" = "27 times", "1M" = "1 million"), words by `stem`, then
# tolerating a mis-hearing or misspelling ("tranium" for "trainium"), a clipped word
# ("quant" for "quantitative") and an acronym ("nlp" for "natural language processing").

FUZZY = 80  # rapidfuzz ratio for a misspelt or misheard word ("mman" heard for "altman")
_PREFIX = 4  # a clipped word keeps at least this many letters
_PARENS = re.compile(r"\s*\([^()]*\)")


# Words that carry no fact of their own: "27x" is said "27 times", "75%" "75 percent".
_NO_FACT = frozenset({"yes", "times", "percent", "cent"})


def terms(text: str) -> list[str]:
    """The content terms of a text, in order: numbers by value, other words stemmed."""
    return list(_terms(text))


@functools.lru_cache(maxsize=4096)
def _terms(text: str) -> tuple[str, ...]:
    # Cached: a note's cards share its note and passage, and checks run over every draft.
    out = []
    for w in match_words(text):
        if number_value(w) is not None:
            out.append(w)
        elif len(w) > 1 and w not in MATCH_STOPWORDS and w not in STOPWORDS and w not in _NO_FACT:
            out.append(stem(w))
    return tuple(out)


def _acronyms(order: list[str]) -> set[str]:
    return {"".join(t[0] for t in order[i:i + n]) for n in (2, 3, 4) for i in range(len(order) - n + 1)}


class Pool:
    """The terms of a source text, for tolerant look-ups."""

    def __init__(self, *texts: str | None):
        self.order = [t for text in texts if text for t in terms(text)]
        # A scale word said alone is a number too: "trillion RMB" holds "a trillion".
        self.set = set(self.order) | {str(v) for w, v in SCALE_WORDS.items() if w in self.order}
        self.words = sorted(t for t in self.set if number_value(t) is None)
        self.acronyms = _acronyms(self.order)

    def has(self, term: str) -> bool:
        if term in self.set:
            return True
        if number_value(term) is not None or len(term) < 3:
            return False
        if 2 <= len(term) <= 4 and term in self.acronyms:
            return True
        if len(term) >= _PREFIX and any(w.startswith(term) or (len(w) >= _PREFIX and term.startswith(w))
                                        for w in self.words):
            return True
        return len(term) >= 5 and process.extractOne(term, self.words, scorer=fuzz.ratio,
                                                      score_cutoff=FUZZY) is not None

    @classmethod
    def of(cls, text_terms: list[str]) -> Pool:
        """A pool over terms already computed."""
        pool = cls()
        pool.order = list(text_terms)
        pool.set = set(pool.order)
        pool.words = sorted(t for t in pool.set if number_value(t) is None)
        pool.acronyms = _acronyms(pool.order)
        return pool

    def share(self, text_terms: list[str]) -> float | None:
        """The share of the (distinct) terms found here; None when there are none.

        Terms in order also count as found when their initials are a word here
        ("natural language processing" where the source says "nlp").
        """
        if not text_terms:
            return None
        found = {t for t in text_terms if self.has(t)}
        for n in (4, 3, 2):
            for i in range(len(text_terms) - n + 1):
                run = text_terms[i:i + n]
                if "".join(t[0] for t in run) in self.set:
                    found.update(run)
        distinct = set(text_terms)
        return len(found & distinct) / len(distinct)


def answer_of(kind: str, front: str, back: str) -> str:
    """What the learner must recall: the deletions of a cloze, the back of a question."""
    return " ".join(cloze_deletions(front)) if kind == "cloze" else back


@functools.lru_cache(maxsize=64)
def _source_pool(context: str | None, note: str) -> Pool:
    return Pool(context, note)


def answer_support(kind: str, front: str, back: str, note: str, context: str | None) -> float | None:
    """The share of the answer's content words and numbers found in the passage or the note.

    A parenthesis in the answer glosses it ("MLA (multi-head latent attention)"); it is
    judged only when the answer has nothing outside one.
    """
    answer = answer_of(kind, front, back)
    main = terms(_PARENS.sub("", answer))
    pool = _source_pool(context, note)
    share = pool.share(main or terms(answer))
    # An expansion of an acronym the sources give ("Multi-head latent attention (MLA)" where a
    # caption misheard the words) is as supported as the acronym.
    initials = "".join(w[0] for w in re.findall(r"[^\W\d_]+", _PARENS.sub("", answer))).lower()
    for gloss in re.findall(r"\(([A-Za-z]{2,8})\)", answer):
        rest = iter(initials)  # the acronym's letters, in order, among the words' initials ("mhla" ⊇ "mla")
        if initials[:1] == gloss[0].lower() and all(ch in rest for ch in gloss.lower()):
            share = max(share or 0.0, pool.share(terms(gloss)) or 0.0)
    return share


# ------------------------------------------------------------- the note and its cards
#
# Checks that need the listener's note or the other cards made from it: a card must
# test what the note says (not a side detail of the passage), must not state the
# note's claim as its premise, and must not give away a sibling card's answer.

# A leading clause that states something as given: "Given X, …", "If X, …".
_PREMISE_CLAUSE = re.compile(
    r"^(?:given|since|because|if|as|after|with|despite|although|though|while|now that|considering|assuming)"
    r"\b[^,?]*,", re.I)
# Premises inside a question: a parenthesis, or a comparison it leans on.
_PREMISE_INNER = re.compile(r"\([^()]*\)|\b(?:in contrast (?:with|to)|unlike|compared (?:with|to))\b[^,?]*", re.I)
# "Besides X, what…", "X, Y and what third one?": naming the other items is the point.
_EXCLUDES = re.compile(
    r"\b(?:besides|other than|apart from|aside from|except|alongside|in addition to|not counting)\b"
    r"|\b(?:what|which)\s+(?:other|else|second|third|fourth|fifth|last|remaining|final)\b",
    re.I)
OFF_NOTE = 0.2  # below this share of the note's words in the card, and none in its answer
PREMISE_TERMS = 2  # note words in a premise that make it the note's claim


def _premise(question: str) -> str:
    q = _question(question)
    parts = [m.group(0) for m in _PREMISE_INNER.finditer(q)]
    m = _PREMISE_CLAUSE.match(q)
    if m:
        parts.append(m.group(0))
    return " ".join(parts)


def _meets(a: list[str], b: list[str]) -> bool:
    """Whether two term lists share a term, tolerating spelling either way."""
    return bool(a and b) and (bool(Pool.of(b).share(a)) or bool(Pool.of(a).share(b)))


# A name: capitalised words ("Strait of Malacca", "Moonshot AI") or one acronym ("TSMC").
_NAME_WORD = re.compile(r"^(?:[A-Z][\w'’.&-]*|\d[\w.]*)$")
_NAME_JOINER = frozenset({"of", "the", "de", "and", "for", "&", "von", "van", "la", "le"})
_ACRONYM = re.compile(r"^[A-Z][A-Z0-9&.-]*[A-Z0-9]s?$")
SIDE_COVERED = 0.35  # a card with less of the note than this, whose answer the note does not give, is aside
SIDE_FIGURE_TERMS = 6  # an answer longer than this is a claim with a figure in it, not a figure


def _answer_head(answer: str) -> str:
    """The answer without its gloss: no parenthesis, nothing after a colon, dash or semicolon, no full stop."""
    head = re.split(r"\s*[:;—–]\s+|\s+-\s+|,\s+", _PARENS.sub("", answer).strip(), maxsplit=1)[0]
    return head.strip().rstrip(".!")


def _is_name(text: str) -> bool:
    ws = text.split()
    if not 1 <= len(ws) <= 4 or ws[0].casefold() in _NAME_JOINER:
        return False
    if not all(_NAME_WORD.match(w) or w.casefold() in _NAME_JOINER for w in ws):
        return False
    capitals = [w for w in ws if w.casefold() not in _NAME_JOINER]
    # One capitalised word may just open a sentence ("Distribution."); an acronym or two words name something.
    return len(capitals) >= 2 or any(_ACRONYM.match(w) for w in capitals)


def _side_detail(answer_text: str, note_terms: list[str]) -> str | None:
    """'figure' or 'name' when the answer is one the note does not give: a detail of the passage."""
    head = _answer_head(answer_text)
    head_terms = terms(head)
    if not head_terms or _meets(head_terms, note_terms):
        return None
    numbers = [t for t in head_terms if number_value(t) is not None]
    if numbers and len(head_terms) <= SIDE_FIGURE_TERMS:
        note_numbers = {t for t in note_terms if number_value(t) is not None}
        if not set(numbers) & note_numbers:
            return "figure"
    if not numbers and _is_name(head):
        return "name"
    return None


def note_warnings(kind: str, front: str, back: str, note: str) -> list[str]:
    """Warnings for a card measured against the note it was made from."""
    note_terms = terms(note)
    if not note_terms:
        return []
    question = unclozed(front) if kind == "cloze" else front
    answer_text = answer_of(kind, front, back)
    answer = terms(answer_text)
    out = []
    if answer and not _meets(answer, note_terms):
        covered = Pool(question, back).share(note_terms) or 0.0
        premise = terms(_premise(question)) if kind != "cloze" else []
        if covered < OFF_NOTE:
            out.append("off-note: the card tests a detail the note does not mention; test the note's point")
        elif premise and sum(Pool.of(premise).has(t) for t in set(note_terms)) >= PREMISE_TERMS:
            out.append("claim-in-premise: the question states the note's claim as given; ask for the claim")
    if not out and answer and (what := _side_detail(answer_text, note_terms)) \
            and (Pool(question, back).share(note_terms) or 0.0) < SIDE_COVERED:
        out.append(f"side-detail: the answer is a {what} the note does not give; test the note's point")
    return out


def sibling_warnings(cards: list[tuple[str, str, str]]) -> list[list[str]]:
    """For the cards (kind, front, back) of one note: warnings where a question holds another card's answer."""
    out: list[list[str]] = [[] for _ in cards]
    questions = [_question(CLOZE.sub(" ", front) if kind == "cloze" else front) for kind, front, _back in cards]
    # Only what an answer adds to its own question can be given away: "The H20 has more of both"
    # gives nothing away to a sibling that names the H20, the subject both cards share.
    answers = [[t for t in terms(_PARENS.sub("", answer_of(*c))) if t not in set(terms(q))]
               for c, q in zip(cards, questions)]
    for i, question in enumerate(questions):
        if _EXCLUDES.search(question):
            continue
        pool = Pool(question)
        for j, answer in enumerate(answers):
            if j != i and answer and (pool.share(answer) or 0) >= SIBLING_SHARE:
                out[i].append(f"sibling-answer: the question gives away the answer of card {j + 1} of this note")
                break
    return out


SIBLING_SHARE = 0.6


def edit_problem(kind: str, front: str, back: str) -> str | None:
    """Why an edited card cannot be saved, or None.

    A cloze card must keep a deletion: Anki cannot turn an imported cloze note into a
    Q/A note, so an export of it would never update the note already in the collection.
    """
    if not front.strip():
        return "the front cannot be empty"
    if kind == "cloze" and not cloze_deletions(front):
        return "a cloze card's front needs a deletion like {{c1::term}}"
    if kind != "cloze" and not back.strip():
        return "a question needs an answer on the back"
    return None


def check_card(
    kind: str, front: str, back: str, quote: str, note: str, context: str | None
) -> tuple[list[str], float]:
    """Lint and note warnings and the grounding score for one card.

    The score is the lower of how well the quote is found in the passage or the note and
    the share of the answer's words found there; either falling short adds a warning.
    """
    warnings = lint(kind, front, back) + note_warnings(kind, front, back, note)
    score = grounding(quote, note, context)
    if score < GROUNDED:
        warnings.append(UNGROUNDED)
    support = answer_support(kind, front, back, note, context)
    if support is not None:
        if support < ANSWER_SUPPORTED:
            warnings.append(UNSUPPORTED)
        score = min(score, support)
    return warnings, score


def check_note_cards(
    cards: list[tuple[str, str, str, str]], note: str, context: str | None
) -> list[tuple[list[str], float]]:
    """check_card for each card (kind, front, back, quote) of one note, plus the checks across them."""
    results = [check_card(kind, front, back, quote, note, context) for kind, front, back, quote in cards]
    extra = sibling_warnings([(kind, front, back) for kind, front, back, _quote in cards])
    return [(warnings + more, score) for (warnings, score), more in zip(results, extra)]


def check_drafts(drafts: list, selected: set[str] | None = None) -> dict[str, tuple[list[str], float]]:
    """Lint warnings and grounding for drafts (any objects with the Draft fields), by id.

    A note's cards are checked together: one card's question must not give away another's answer.
    A pending revision stands alone: its siblings are the cards it would replace. So does a rejected
    or duplicate card: it is never studied, so it cannot give another card's answer away. Only the
    `selected` ids (all, if None) are checked.
    """
    by_note: dict[str, list] = {}
    for d in drafts:
        if selected is None or d.id in selected:
            alone = d.revision_of or d.status in ("rejected", "duplicate")
            by_note.setdefault(d.id if alone else d.note_id, []).append(d)
    results = {}
    for group in by_note.values():
        checked = check_note_cards([(d.kind, d.front, d.back, d.quote) for d in group], group[0].note_text,
                                   group[0].context_text)
        for d, result in zip(group, checked):
            results[d.id] = result
    return results
