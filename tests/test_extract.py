"""`generate --from-transcript`: claims found chunk by chunk in a transcript with no notes become
labelled notes, then cards, through the real SDK against the fake server; a later notes file for
the same episode merges with them."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from conftest import SEEDS
from fakeserver import FakeOpenAI, default_responder, no_network, user_text
from typer.testing import CliRunner

from cards.cli import app
from cards.extract import (Chunk, ClaimSet, Line, chunks, found_claims, is_extracted, locate, merge,
                           near_duplicate)
from cards.models import NoteItem, Source
from cards.store import DB_NAME, Store

KEY = "sk-test-secret"
WHISPER = SEEDS / "003_34925e2c796f303a.txt"
needs_seeds = pytest.mark.skipif(not WHISPER.is_file(), reason="seeds not present")
runner = CliRunner()

# Claims the fake model finds, by a phrase of the transcript line they are on.
KNOWN = {
    "ramping up TPU production massively": "Google is ramping up TPU production massively.",
    "530,000 this quarter": "About 530,000 H100 GPUs were manufactured in the quarter of the recording.",
}


def claims_responder(body: dict):
    """A fake model: for a stretch of transcript, claims quoting its lines (the known ones first)."""
    text = user_text(body)
    m = re.search(r"<transcript>\n(.*?)\n</transcript>", text, re.S)
    if not m:
        return default_responder(body)
    limit = int(re.search(r'max-claims="(\d+)"', text).group(1))
    lines = m.group(1).splitlines()
    out = []
    for phrase, claim in KNOWN.items():
        for line in lines:
            if phrase in line:
                out.append({"claim": claim, "quote": phrase, "time": line[1:line.index("]")]})
    for line in lines[1::7]:
        words = line.split("] ", 1)[1].split()
        if len(words) > 16 and len(out) < limit:
            out.append({"claim": "On the show: " + " ".join(words[4:14]), "quote": " ".join(words[2:15]),
                        "time": "0:00"})
    out.append({"claim": "A claim the transcript never makes.", "quote": "words nobody said on this show at all",
                "time": "1:00"})
    return {"claims": out}


def cli(*args: str, srv: FakeOpenAI | None = None):
    env = {"OPENAI_API_KEY": KEY} if srv else {}
    extra = ["--base-url", srv.base_url] if srv else []
    with no_network():
        return runner.invoke(app, [*args, *extra], env=env)


def extraction_requests(srv: FakeOpenAI) -> list:
    return [r for r in srv.requests if r.path.endswith("/chat/completions") and "<transcript>" in user_text(r.json)]


def card_requests(srv: FakeOpenAI) -> list:
    return [r for r in srv.requests if r.path.endswith("/chat/completions") and "<note>" in user_text(r.json)]


def notes_of(ws: Path) -> list[tuple]:
    db = sqlite3.connect(ws / DB_NAME)
    try:
        return db.execute("SELECT id, episode, text, kind, active FROM notes ORDER BY position").fetchall()
    finally:
        db.close()


def _deck_fields(path: Path) -> list[str]:
    """Every note's fields in an exported deck, as stored."""
    import tempfile
    import zipfile

    with zipfile.ZipFile(path) as z, tempfile.TemporaryDirectory() as tmp:
        name = next(n for n in z.namelist() if n.startswith("collection.anki2"))
        db_path = z.extract(name, tmp)
        db = sqlite3.connect(db_path)
        try:
            return [r[0] for r in db.execute("SELECT flds FROM notes")]
        finally:
            db.close()


# -- chunks, quotes, near-duplicates ----------------------------------------------------------------

@needs_seeds
def test_the_whisper_seed_is_cut_into_stretches_of_about_twelve_minutes_with_a_claim_per_four():
    from cards.ingest.transcripts import parse_transcript

    t = parse_transcript(WHISPER)
    parts = chunks(t)
    assert len(parts) == 6
    length = t.segments[-1].end
    assert 16 <= sum(c.max_claims for c in parts) <= round(length / 240) + 1  # 68 minutes: about 17
    for c in parts:
        assert 4 * 60 <= c.end - c.start <= 16 * 60  # the last may be short; one under 4 minutes joins the one before
        assert c.render().startswith(f"[{c.span.split('–')[0]}] ")
    # Every segment's text is in exactly one stretch, in order.
    joined = " ".join(x.text for c in parts for x in c.lines)
    assert joined == " ".join(s.text.strip() for s in t.segments if s.text.strip())


def _chunk(max_claims: int = 2) -> Chunk:
    lines = (Line("Welcome back to the show, everyone.", 0.0, 1),
             Line("Google's actually ramping up TPU production massively, right?", 31.0, 9),
             Line("There's 400,000 to 500,000 manufactured last quarter.", 65.0, 17))
    return Chunk(0, lines, 0.0, 90.0, max_claims)


def test_a_claim_keeps_its_quote_only_when_the_transcript_has_it_and_takes_the_lines_time():
    ch = _chunk()
    assert locate("google's ACTUALLY ramping up TPU production", ch).start == 31.0
    assert locate("four hundred thousand GPUs", ch) is None
    assert locate("Theres 400,000 to 500,000 manufactred last quarter", ch).line == 17  # nearly verbatim
    reply = ClaimSet.model_validate({"claims": [
        {"claim": "Made up.", "quote": "we never said this on the show", "time": "0:10"},
        {"claim": "Google ramps up TPU production.", "quote": "ramping up TPU production massively", "time": "9:99"},
        {"claim": "About 450,000 H100s were made last quarter.", "quote": "400,000 to 500,000 manufactured",
         "time": ""},
        {"claim": "Welcome.", "quote": "Welcome back to the show", "time": "0:00"},  # over the stretch's share
    ]})
    found, dropped = found_claims(reply, ch)
    assert [(f.claim, f.start, f.line) for f in found] == [("Google ramps up TPU production.", 31.0, 9),
                                                           ("About 450,000 H100s were made last quarter.", 65.0, 17)]
    assert dropped == 2


def test_the_listeners_note_wins_over_a_near_duplicate_claim():
    assert near_duplicate("Google is ramping up TPU production massively.", "google ramping up tpu production")
    assert not near_duplicate("Google is ramping up TPU production massively.", "H100 shipments this quarter")
    found, _ = found_claims(ClaimSet.model_validate({"claims": [
        {"claim": "Google is ramping up TPU production massively.", "quote": "ramping up TPU production massively",
         "time": ""},
        {"claim": "About 450,000 H100s were made last quarter.", "quote": "400,000 to 500,000 manufactured",
         "time": ""}]}), _chunk())
    own = NoteItem(NoteItem.make_id("ep", "google ramping up TPU production"), "ep", "google ramping up TPU production",
                   "bullet", None, (Source("n.md", 3, 3),), 0)
    items, replaced = merge("ep", [own], found, "t.txt")
    assert [i.kind for i in items] == ["bullet", "extracted"]
    assert items[1].text == "[extracted at 1:05] About 450,000 H100s were made last quarter. " \
                            "“400,000 to 500,000 manufactured”"
    assert is_extracted(items[1].text) and not is_extracted(own.text)
    assert list(replaced) == [own.id]


def test_offline_says_in_one_line_that_claims_need_an_llm(tmp_path):
    r = cli("generate", "-t", str(tmp_path), "--from-transcript", "--offline", "-w", str(tmp_path / "ws"))
    assert r.exit_code == 2
    assert r.stderr.strip() == ("cards: error: --from-transcript needs an LLM to find an episode's claims "
                                "(--offline was given)")


# -- the seed: Latent Space with Dylan Patel, a Whisper transcript and no notes ---------------------------

@needs_seeds
def test_the_transcript_only_seed_yields_extracted_notes_and_cards_then_merges_a_later_notes_file(tmp_path):
    ws = tmp_path / "ws"
    with FakeOpenAI(responder=claims_responder) as srv:
        r = cli("generate", "-t", str(WHISPER), "--from-transcript", "-w", str(ws), srv=srv)
        assert r.exit_code == 0, r.output
        err = r.stderr
        # The cost is shown before anything is sent, then what was found.
        assert re.search(r"Finding claims in 1 transcript: 6 requests, ~[\d,]+ tokens in, ~[\d,]+ out, ~\$0\.\d{4}",
                         err)
        assert err.index("Finding claims") < err.index("found ")
        asked = extraction_requests(srv)
        assert len(asked) == 6
        assert all(a.json["response_format"]["json_schema"]["name"] == "ClaimSet" for a in asked)
        notes = notes_of(ws)
        assert {n[3] for n in notes} == {"extracted"} and 10 <= len(notes) <= 17
        assert "6 dropped" in err  # each stretch's made-up quote
        assert len(card_requests(srv)) == len(notes)
        # The extracted notes say so, carry their time and quote, and went through the card pipeline.
        with Store(ws) as st:
            drafts = st.drafts(include_superseded=False)
        assert len(drafts) == len(notes)
        tpu = next(d for d in drafts if "TPU production" in d.note_text)
        assert tpu.note_text == "[extracted at 5:49] Google is ramping up TPU production massively. " \
                                "“ramping up TPU production massively”"
        assert "ramping up TPU production massively" in tpu.context_text
        assert tpu.context_start is not None and abs(tpu.context_start - 349) < 90
        assert all(is_extracted(d.note_text) for d in drafts)

        # Review says where the note came from.
        from cards.review import _note

        assert "Extracted from the transcript" in _note(tpu, None).plain
        r = cli("export", "-w", str(ws), "--include-drafts", "--json")
        assert r.exit_code == 0, r.output
        (deck,) = json.loads(r.stdout)
        assert deck["cards"] == len(drafts)
        fields = _deck_fields(Path(deck["path"]))
        assert any("[extracted at 5:49] Google is ramping up TPU production massively." in f for f in fields)

        # Again: nothing is asked or sent twice.
        before = len(srv.requests)
        r = cli("generate", "-t", str(WHISPER), "--from-transcript", "-w", str(ws), srv=srv)
        assert r.exit_code == 0 and len(srv.requests) == before
        assert "all 6 stretches asked about before" in r.stderr

        # A later notes file for the episode: the listener's notes win, the claim they repeat is not sent again.
        notes_file = tmp_path / "notes.md"
        notes_file.write_text("# Dylan Patel on Latent Space\n\n"
                              "- google ramping up TPU production massively\n"
                              "- Celestica builds the TPU boxes; you learn the volumes from the supply chain\n"
                              "- someone from Meta bragging about how many GPUs they have at SF parties\n")
        r = cli("generate", str(notes_file), "-t", str(WHISPER), "-w", str(ws), srv=srv)
        assert r.exit_code == 0, r.output
        assert "is the transcript-only episode 003-34925e2c796f303a" in " ".join(r.stderr.split())
        assert "no longer in your notes" not in r.stderr
        sent = [re.search(r"<note>\n(.*?)\n</note>", user_text(x.json), re.S).group(1)
                for x in card_requests(srv)[len(drafts):]]
        assert sorted(sent) == sorted(["google ramping up TPU production massively",
                                       "Celestica builds the TPU boxes; you learn the volumes from the supply chain",
                                       "someone from Meta bragging about how many GPUs they have at SF parties"])
        after = {n[2]: n for n in notes_of(ws)}
        assert not after[tpu.note_text][4]  # the claim the listener repeated is retired...
        assert sum(1 for n in after.values() if n[3] == "extracted" and n[4]) == len(notes) - 1  # ...the rest stay
        with Store(ws) as st:
            live = st.drafts(include_superseded=False)
        mine = next(d for d in live if d.note_text == "google ramping up TPU production massively")
        assert mine.lineage == tpu.lineage  # and its card carries on the claim's card
        assert {d.episode for d in live} == {"003-34925e2c796f303a"}
