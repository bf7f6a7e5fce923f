"""Decoding and repairing text files: encodings, line ends, mojibake, and files that are not text."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from cards.errors import InputError
from cards.ingest.text import decode, read_text, repair

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
SEED_001 = SEEDS / "001_88cdf00b6de09240.txt"

TEXT = "# Ep\n- don’t “quote” me, café 👀\n"


def _read(tmp_path: Path, data: bytes, name: str = "notes.md") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return read_text(path)


# -- encodings --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "data",
    [
        TEXT.encode("utf-8"),
        codecs.BOM_UTF8 + TEXT.encode("utf-8"),
        codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-le-bom", "utf-16-be-bom"],
)
def test_unicode_encodings_decode_to_the_same_text(tmp_path, data):
    text = _read(tmp_path, data)
    assert text == TEXT
    assert not text.startswith("\ufeff")


def test_crlf_and_lone_cr_become_lf(tmp_path):
    text = _read(tmp_path, b"# Ep\r\n- one\r\n- two\rrun on\r- three\n")
    assert text == "# Ep\n- one\n- two\nrun on\n- three\n"
    assert "\r" not in text


def test_crlf_in_utf16_too(tmp_path):
    text = _read(tmp_path, codecs.BOM_UTF16_LE + "a\r\nb\rc".encode("utf-16-le"))
    assert text == "a\nb\nc"


def test_cp1252_fallback_for_bytes_that_are_not_utf8(tmp_path):
    # \xe9 is é in Latin-1 and CP-1252; \x93 \x94 are CP-1252's curly double quotes.
    text = _read(tmp_path, b"- caf\xe9 \x93quoted\x94\n")
    assert text == "- café “quoted”\n"


def test_latin1_fallback_when_cp1252_cannot_decode(tmp_path):
    # \x81 is undefined in CP-1252; Latin-1 decodes every byte.
    text = _read(tmp_path, b"- na\xefve \x81 caf\xe9\n")
    assert "naïve" in text and "café" in text


# -- mojibake -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("damaged", "fixed"),
    [
        ("don‚Äôt", "don’t"),                    # ’ as UTF-8 read as Mac Roman
        ("wait‚Ä¶ what", "wait… what"),          # …
        ("‚Äúquoted‚Äù", "“quoted”"),             # “ ”
        ("tesla is ahead \uf8ffüëÄ.", "tesla is ahead 👀."),  # lead byte shown as the Apple logo
        ("tesla is ahead üëÄ.", "tesla is ahead 👀."),       # lead byte lost altogether
        ("üëÄ", "👀"),
        ("(üëÄ)", "(👀)"),
        ("üëÄüëÄ twice", "👀👀 twice"),
        ("Düsseldorf: don‚Äôt go", "Düsseldorf: don’t go"),  # damage beside genuine non-ASCII
    ],
)
def test_mojibake_repaired_in_short_strings(damaged, fixed):
    assert repair(damaged) == fixed


@pytest.mark.parametrize(
    "genuine",
    [
        "Grüße aus München, café",
        "naïve coöperation, São Paulo, Ñandú, Âme",
        "½ cup, €5 – “fine” — ok…",
        "Ελληνικά, русский, 日本語, 한국어",
        "küçük ev, üçüncü gün",  # Turkish "üçü" reads as a Mac Roman 🍟 missing its lead byte
        "🍟 and 👀 are already fine",
    ],
)
def test_genuine_non_ascii_text_untouched(genuine):
    assert repair(genuine) == genuine


def test_genuine_non_ascii_file_untouched(tmp_path):
    assert _read(tmp_path, "Grüße aus München, café\n".encode("utf-8")) == "Grüße aus München, café\n"


def test_seed_001_mojibake_repaired():
    if not SEED_001.exists():
        pytest.skip("seed notes not present")
    raw = SEED_001.read_bytes().decode("utf-8")
    assert "‚Ä" in raw and "üëÄ" in raw  # the seed really is damaged
    text = read_text(SEED_001)
    for damage in ("‚Ä", "üëÄ", "\uf8ff", "Äô", "\ufffd"):
        assert damage not in text
    assert "👀" in text
    assert "’" in text
    assert "doesn’t" in text or "didn’t" in text


def test_seed_001_parsed_items_carry_no_mojibake():
    if not SEED_001.exists():
        pytest.skip("seed notes not present")
    from cards.ingest.notes import parse_notes

    texts = [i.text for s in parse_notes(SEED_001) for i in s.items]
    joined = "\n".join(texts)
    assert "‚Ä" not in joined and "üëÄ" not in joined
    assert any("👀" in t for t in texts)
    assert any("’" in t for t in texts)


# -- not text ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"   \n\t\n", b"\r\n\r\n", codecs.BOM_UTF8, codecs.BOM_UTF8 + b" \n",
                                  codecs.BOM_UTF16_LE + " \n".encode("utf-16-le")],
                         ids=["empty", "whitespace", "blank-lines", "bom-only", "bom-whitespace",
                              "utf16-whitespace"])
def test_empty_file_is_an_input_error(tmp_path, data):
    path = tmp_path / "empty.md"
    path.write_bytes(data)
    with pytest.raises(InputError, match="empty") as e:
        read_text(path)
    assert e.value.path == str(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",
        b"- a bullet\x00with a NUL\n",
        bytes(range(1, 32)) * 40,  # control characters but no NUL
    ],
    ids=["png", "nul", "controls"],
)
def test_binary_file_is_an_input_error(tmp_path, data):
    path = tmp_path / "image.md"
    path.write_bytes(data)
    with pytest.raises(InputError, match="binary") as e:
        read_text(path)
    assert str(path) in str(e.value)


def test_truncated_utf16_names_the_file(tmp_path):
    path = tmp_path / "cut.md"
    path.write_bytes(codecs.BOM_UTF16_LE + "- hi".encode("utf-16-le")[:-1])  # an odd number of bytes
    with pytest.raises(InputError, match="utf-16") as e:
        read_text(path)
    assert e.value.path == str(path)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_decode_error_names_the_byte_in_the_file():
    data = codecs.BOM_UTF16_LE + b"h\x00i"
    with pytest.raises(InputError, match=r"byte 4\b"):
        decode(data, "x.md")


def test_missing_file_and_folder_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file") as e:
        read_text(tmp_path / "nope.md")
    assert "nope.md" in str(e.value)
    with pytest.raises(InputError, match="folder"):
        read_text(tmp_path)
