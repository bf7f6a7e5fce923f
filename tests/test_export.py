"""Export writes decks that the real Anki imports, and re-imports update instead of duplicating."""

from __future__ import annotations

import errno
import os
import zipfile
from pathlib import Path

import pytest

from cards import export
from cards.errors import ExportError
from cards.export import (
    CLOZE_MODEL_ID,
    QA_MODEL_ID,
    DeckInfo,
    anki_tags,
    deck_id,
    deck_name,
    export_deck,
)
from cards.models import Draft

collection = pytest.importorskip("anki.collection")
from anki.import_export_pb2 import ImportAnkiPackageUpdateCondition  # noqa: E402

T0 = 1_700_000_000.0
DECK = DeckInfo(
    slug="acquired-tsmc",
    title="Acquired: TSMC",
    url="https://example.com/episodes/tsmc",
    video_id="dQw4w9WgXcQ",
)
XSS = "<script>alert(1)</script>"


def draft(n: int, front: str, back: str = "an answer", *, kind: str = "basic", **kw) -> Draft:
    values = dict(
        id=f"{n:016x}",
        note_id=f"note{n}",
        episode=DECK.slug,
        kind=kind,
        front=front,
        back=back,
        quote="a verbatim quote",
        tags=["chips"],
        generator="offline",
        model="none",
        prompt_version="1",
    )
    values.update(kw)
    return Draft(**values)


def open_collection(path: Path):
    return collection.Collection(str(path))


def import_apkg(col, apkg: Path):
    """The current (Rust) importer; IF_NEWER is also Anki's default for notes and note types."""
    condition = ImportAnkiPackageUpdateCondition.IMPORT_ANKI_PACKAGE_UPDATE_CONDITION_IF_NEWER
    options = collection.ImportAnkiPackageOptions(
        update_notes=condition,
        update_notetypes=condition,
        merge_notetypes=False,
        with_scheduling=False,
    )
    request = collection.ImportAnkiPackageRequest(package_path=str(apkg), options=options)
    return col.import_anki_package(request).log


def notes_by_guid(col) -> dict:
    return {note.guid: note for note in (col.get_note(nid) for nid in col.find_notes(""))}


@pytest.fixture
def col(tmp_path):
    c = open_collection(tmp_path / "c.anki2")
    yield c
    c.close()


def test_import_then_edit_and_reexport_updates_the_same_notes(tmp_path, col):
    out = tmp_path / "decks"
    drafts = [
        draft(1, "How many experts does DeepSeek v3 have?", "256", tags=["mixture of experts", "ai"]),
        draft(2, "TSMC's founder was {{c1::Morris Chang::person}}.", "", kind="cloze", context_start=754.9),
        draft(3, "Which chip is Amazon's Trainium?", "Amazon's ML training chip"),
    ]
    apkg = export_deck(drafts, DECK, out, now=T0)
    assert apkg == out / "acquired-tsmc.apkg"

    log = import_apkg(col, apkg)
    assert len(log.new) == 3
    notes = notes_by_guid(col)
    assert set(notes) == {d.id for d in drafts}
    qa = notes[drafts[0].id]
    assert qa.note_type()["name"] == "cards Q/A"
    assert qa.note_type()["id"] == QA_MODEL_ID
    assert list(qa.keys()) == ["Front", "Back", "Quote", "Note", "Episode", "Source"]
    assert qa["Front"] == "How many experts does DeepSeek v3 have?"
    assert qa["Back"] == "256"
    assert qa["Quote"] == "a verbatim quote"
    assert qa["Episode"] == "Acquired: TSMC"
    assert qa["Source"] == '<a href="https://example.com/episodes/tsmc">Episode page</a>'
    assert sorted(qa.tags) == ["acquired-tsmc", "ai", "mixture-of-experts"]
    cloze = notes[drafts[1].id]
    assert cloze.note_type()["name"] == "cards Cloze"
    assert cloze.note_type()["id"] == CLOZE_MODEL_ID
    assert list(cloze.keys()) == ["Text", "Extra", "Quote", "Note", "Episode", "Source"]
    assert cloze["Source"] == (
        '<a href="https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;t=754s">Video at 12:34</a>'
    )
    # the cloze deletion works: one card whose question hides the answer behind the hint
    (card,) = cloze.cards()
    assert "[person]" in card.question() and "Morris Chang" not in card.question()
    assert "Morris Chang" in card.answer()
    assert col.decks.name(card.did) == "Podcasts::Acquired: TSMC"
    assert {col.get_card(c).did for c in col.find_cards("")} == {card.did}
    # cards keep the order of the drafts
    firsts = [col.get_card(c) for c in col.find_cards("")]
    by_guid = {c.note().guid: c.due for c in firsts}
    assert by_guid[drafts[0].id] < by_guid[drafts[1].id] < by_guid[drafts[2].id]
    notetypes_before = sorted(n.name for n in col.models.all_names_and_ids())
    decks_before = sorted(d.name for d in col.decks.all_names_and_ids())

    drafts[0].front = "How many routed experts does DeepSeek v3 have?"
    drafts[2].status = "rejected"
    apkg2 = export_deck(drafts, DECK, out, now=T0 + 60)
    assert apkg2 == apkg

    log = import_apkg(col, apkg2)
    # every note in the newer file counts as updated, edited or not; none is added
    assert len(log.new) == 0 and len(log.updated) == 2
    notes = notes_by_guid(col)
    assert len(notes) == 3  # Anki never deletes on import; the rejected card stays until removed there
    assert notes[drafts[0].id]["Front"] == "How many routed experts does DeepSeek v3 have?"
    assert notes[drafts[1].id]["Text"] == "TSMC's founder was {{c1::Morris Chang::person}}."
    assert col.card_count() == 3
    assert sorted(n.name for n in col.models.all_names_and_ids()) == notetypes_before
    assert sorted(d.name for d in col.decks.all_names_and_ids()) == decks_before

    # the new file itself holds only the cards that are still wanted
    fresh = open_collection(tmp_path / "fresh.anki2")
    try:
        import_apkg(fresh, apkg2)
        assert set(notes_by_guid(fresh)) == {drafts[0].id, drafts[1].id}
    finally:
        fresh.close()


def test_reexport_in_the_same_second_is_ignored_by_anki(tmp_path, col):
    # Documents why `now` must advance: Anki keeps its note unless the incoming one is newer.
    d = draft(1, "Old question?")
    import_apkg(col, export_deck([d], DECK, tmp_path, now=T0))
    d.front = "New question?"
    import_apkg(col, export_deck([d], DECK, tmp_path, now=T0 + 0.5))
    assert notes_by_guid(col)[d.id]["Front"] == "Old question?"
    import_apkg(col, export_deck([d], DECK, tmp_path, now=T0 + 1))
    assert notes_by_guid(col)[d.id]["Front"] == "New question?"


def test_untrusted_text_arrives_escaped(tmp_path, col):
    hostile = DeckInfo(slug="x", title=f"Ep {XSS}", url="javascript:alert(1)")
    d = draft(
        1,
        f"Q {XSS}\nline two",
        f"A {XSS}",
        quote=f"said {XSS}",
        note_text=f"my {XSS} & more",
        tags=[f"bad tag {XSS}"],
    )
    c = draft(2, f"{XSS} {{{{c1::<b>bold</b>::<i>hint</i>}}}} & co", f"extra {XSS}", kind="cloze")
    import_apkg(col, export_deck([d, c], hostile, tmp_path, now=T0))
    notes = notes_by_guid(col)
    qa = notes[d.id]
    assert qa["Front"] == "Q &lt;script&gt;alert(1)&lt;/script&gt;<br>line two"
    assert qa["Back"] == "A &lt;script&gt;alert(1)&lt;/script&gt;"
    assert qa["Quote"] == "said &lt;script&gt;alert(1)&lt;/script&gt;"
    assert qa["Note"] == "my &lt;script&gt;alert(1)&lt;/script&gt; &amp; more"
    assert qa["Episode"] == "Ep &lt;script&gt;alert(1)&lt;/script&gt;"
    assert qa["Source"] == ""  # a javascript: URL never becomes a link
    assert all(" " not in t for t in qa.tags)
    cz = notes[c.id]
    assert cz["Text"] == (
        "&lt;script&gt;alert(1)&lt;/script&gt; "
        "{{c1::&lt;b&gt;bold&lt;/b&gt;::&lt;i&gt;hint&lt;/i&gt;}} &amp; co"
    )
    assert cz["Extra"] == "extra &lt;script&gt;alert(1)&lt;/script&gt;"
    (card,) = cz.cards()
    assert "<script>" not in card.question() and "<script>" not in card.answer()
    assert "&lt;b&gt;bold&lt;/b&gt;" in card.answer()
    # the deck name is plain text for Anki: markup from the heading is dropped, and it cannot nest
    assert col.decks.name(card.did) == "Podcasts::Ep alert(1)"


def test_control_characters_never_split_fields(tmp_path, col):
    d = draft(1, "front\x1fsneaky\x00", "back\x07")
    import_apkg(col, export_deck([d], DECK, tmp_path, now=T0))
    note = notes_by_guid(col)[d.id]
    assert note["Front"] == "frontsneaky"
    assert note["Back"] == "back"
    assert note["Quote"] == "a verbatim quote"


def test_cloze_without_deletion_becomes_a_qa_card(tmp_path, col):
    d = draft(1, "No deletion in this sentence.", "extra", kind="cloze")
    import_apkg(col, export_deck([d], DECK, tmp_path, now=T0))
    note = notes_by_guid(col)[d.id]
    assert note.note_type()["name"] == "cards Q/A"
    assert len(note.cards()) == 1


def test_skipped_drafts_are_not_exported(tmp_path, col):
    drafts = [
        draft(1, "kept?"),
        draft(2, "rejected?", status="rejected"),
        draft(3, "duplicate?", status="duplicate", duplicate_of=f"{1:016x}"),
        draft(4, "superseded?", superseded=True),
        draft(5, "  \n "),
    ]
    import_apkg(col, export_deck(drafts, DECK, tmp_path, now=T0))
    assert set(notes_by_guid(col)) == {drafts[0].id}


def test_same_input_and_time_give_the_same_bytes(tmp_path):
    drafts = [draft(1, "q1?"), draft(2, "The {{c1::x}} y", kind="cloze")]
    a = export_deck(drafts, DECK, tmp_path / "a", now=T0).read_bytes()
    b = export_deck(drafts, DECK, tmp_path / "b", now=T0).read_bytes()
    c = export_deck(drafts, DECK, tmp_path / "c", now=T0 + 1).read_bytes()
    assert a == b
    assert a != c


def test_deck_names_and_ids():
    assert deck_name("Podcasts", "Acquired: TSMC") == "Podcasts::Acquired: TSMC"
    assert deck_name("Podcasts", "Part 1 :: Part 2") == "Podcasts::Part 1 : Part 2"
    assert deck_name("Podcasts", "tab\there\x00 and\nnewline") == "Podcasts::tab here and newline"
    assert deck_name("Learning::Podcasts", "T") == "Learning::Podcasts::T"
    assert deck_name("", "T") == "T"
    assert deck_name("Podcasts", " :: ") == "Podcasts::Untitled"
    name = deck_name("Podcasts", "Acquired: TSMC")
    assert deck_id(name) == deck_id(name) == deck_id("Podcasts::Acquired: TSMC")
    assert deck_id(name) != deck_id(deck_name("Podcasts", "Acquired: Nvidia"))
    assert 1 < deck_id(name) < 2**53


def test_tags_are_anki_safe():
    assert anki_tags(["ep", "two words", " spaced\tout ", "", "ep", "EP", "a\x00b", "x\ny"]) == [
        "ep",
        "two-words",
        "spaced-out",
        "a-b",
        "x-y",
    ]


def test_slug_never_escapes_the_output_folder(tmp_path):
    out = tmp_path / "decks"
    path = export_deck([draft(1, "q?")], DeckInfo(slug="../../evil/x", title="T"), out, now=T0)
    assert path.parent == out
    assert path.name == "evil-x.apkg"
    with pytest.raises(ExportError):
        export_deck([draft(1, "q?")], DeckInfo(slug="..", title="T"), out, now=T0)
    assert sorted(p.name for p in out.iterdir()) == ["evil-x.apkg"]


def test_package_is_a_plain_apkg(tmp_path):
    path = export_deck([draft(1, "q?")], DECK, tmp_path, now=T0)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["collection.anki2", "media"]
        assert zf.read("media") == b"{}"
    assert path.stat().st_mode & 0o044  # not left private like a temp file


@pytest.mark.parametrize("where", ["write", "replace"])
def test_failed_write_keeps_the_old_deck(tmp_path, monkeypatch, where):
    out = tmp_path / "decks"
    path = export_deck([draft(1, "old?")], DECK, out, now=T0)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        if where == "write":
            Path(args[1]).write_bytes(b"partial")  # a half-written temp file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "write":
        monkeypatch.setattr(export, "_write_apkg", disk_full)
    else:
        monkeypatch.setattr(export.os, "replace", disk_full)

    with pytest.raises(ExportError) as info:
        export_deck([draft(1, "new?")], DECK, out, now=T0 + 5)
    assert str(info.value).startswith(f"{path}: cannot write deck: ")
    assert os.strerror(errno.ENOSPC) in str(info.value)
    assert info.value.path == str(path)
    assert path.read_bytes() == before
    assert [p.name for p in out.iterdir()] == ["acquired-tsmc.apkg"]  # no temp file left behind


def test_unwritable_folder_is_an_export_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="cannot write deck"):
        export_deck([draft(1, "q?")], DECK, blocker / "decks", now=T0)


def test_the_back_shows_each_text_once(tmp_path, col):
    """An offline cloze quotes the note itself and its extra may name the episode: each is shown once."""
    note = "oai has 75% gross margins for inference. that's crazy"
    offline = draft(1, "Oai has {{c1::75%}} gross margins for inference.", f"({DECK.title})", kind="cloze",
                    quote="oai has 75% gross margins for inference.", note_text=note, context_start=754.0)
    llm = draft(2, "What gross margin does OpenAI make on inference?", "North of 75%", note_text=note,
                quote="they have north of 75% gross margins")
    import_apkg(col, export_deck([offline, llm], DECK, tmp_path, now=T0))
    notes = notes_by_guid(col)
    first = notes[offline.id]
    assert first["Quote"] == "" and first["Extra"] == "" and first["Note"] == note
    (card,) = first.cards()
    answer = card.answer()
    for text in (note, DECK.title):
        assert answer.count(text) == 1, text
    assert "Video at 12:34" in answer  # the source link does not name the episode again
    second = notes[llm.id]
    assert second["Quote"] == "they have north of 75% gross margins"  # a quote from the passage stays
    (card,) = second.cards()
    assert card.answer().count(DECK.title) == 1


def test_a_quote_is_dropped_only_when_the_card_already_shows_its_words():
    from cards.export import _repeats

    assert _repeats("(Dylan on Lex)", "Dylan on Lex") and _repeats("the note", "so this is the note, then")
    assert not _repeats("AI", "she said so") and not _repeats("art", "start here")
