"""Reading text files the way people's notes actually arrive: any common encoding, damaged or not."""

from __future__ import annotations

import codecs
import os
import re
import stat
from pathlib import Path

from cards.errors import InputError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Control characters that never occur in text files; tab, LF, CR, FF are fine.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_MOJIBAKE_HINT = re.compile("[\u00c2\u00c3\u00e2\u201a\u00c4\u00f0\u00fc\u00c5\ufffd]")


def decode(data: bytes, path: str) -> str:
    """Decode bytes to text: BOMs, UTF-8, then CP-1252/Latin-1; refuse binaries."""
    if not data.strip():
        raise InputError("file is empty", path=path)
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom):].decode(encoding)
            except UnicodeDecodeError as e:
                raise InputError(f"cannot decode as {encoding} at byte {e.start + len(bom)}: {e.reason}",
                                 path=path) from None
            if not text.strip():
                raise InputError("file is empty", path=path)
            return text
    if b"\x00" in data[:8192]:
        raise InputError("binary file, not text", path=path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    sample = text[:65536]
    if sample and len(_CONTROL.findall(sample)) > max(8, len(sample) // 100):
        raise InputError("binary file, not text", path=path)
    return text


def _restore_lost_lead_byte(run: str) -> str:
    # UTF-8 read as Mac Roman loses an emoji's lead byte 0xF0 when it was shown as
    # the Apple logo (U+F8FF) and then dropped: "👀" arrives as "üëÄ". The
    # remaining three bytes start with 0x9F, which is never a valid lead byte.
    try:
        raw = run.encode("mac_roman")
    except UnicodeEncodeError:
        return run
    if not raw or raw[0] != 0x9F:
        return run
    out = []
    i = 0
    while i < len(raw):
        if raw[i] == 0x9F and i + 3 <= len(raw):
            try:
                out.append((b"\xf0" + raw[i:i + 3]).decode("utf-8"))
                i += 3
                continue
            except UnicodeDecodeError:
                return run
        out.append(raw[i:i + 1].decode("mac_roman"))
        i += 1
    return "".join(out)


def _lost_lead_byte_candidate(m: re.Match) -> bool:
    # Only a run standing apart from ASCII letters: inside a word, "üçü" is
    # Turkish ("küçük"), not a fries emoji that lost its first byte.
    run, s = m.group(0), m.string
    if "\uf8ff" in run:
        return False
    before = s[m.start() - 1] if m.start() else " "
    after = s[m.end()] if m.end() < len(s) else " "
    return not (before.isascii() and before.isalnum()) and not (after.isascii() and after.isalnum())


def repair(text: str) -> str:
    """Undo mojibake (ftfy, plus the Mac Roman lost-lead-byte case) and normalise line ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _MOJIBAKE_HINT.search(text):
        import ftfy  # only when the text looks damaged: ftfy costs ~50 ms to import

        text = _NON_ASCII_RUN.sub(
            lambda m: _restore_lost_lead_byte(m.group(0)) if _lost_lead_byte_candidate(m) else m.group(0),
            text,
        )
        text = ftfy.fix_text(text, uncurl_quotes=False, normalization="NFC")
        # ftfy judges a whole line at once and leaves damage next to genuine
        # non-ASCII text; a second pass over each remaining run catches it.
        text = _NON_ASCII_RUN.sub(lambda m: ftfy.fix_encoding(m.group(0)), text)
    return text


# Far above any notes file or transcript (a three-hour transcript is about 200 KB); a bigger
# input is a mistake, such as /dev/zero or a video given as -t, and is refused before it is read.
MAX_INPUT_BYTES = 64 * 1024 * 1024
_NOT_REGULAR = "not a regular file (a pipe, device or socket); give a notes or transcript file"
_TOO_BIG = f"file is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB, the limit for notes and transcripts"


def _read_bytes(path: Path) -> bytes:
    # stat first: opening a FIFO for reading blocks until a writer comes, and a device never ends.
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(21, "Is a directory", str(path))
    if not stat.S_ISREG(st.st_mode):
        raise InputError(_NOT_REGULAR, path=str(path))
    if st.st_size > MAX_INPUT_BYTES:
        raise InputError(_TOO_BIG, path=str(path))
    # O_NONBLOCK: should the path have become a FIFO since the stat, open still returns at once.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise InputError(_NOT_REGULAR, path=str(path))
        data = fh.read(MAX_INPUT_BYTES + 1)  # a file growing while read stops at the limit too
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(_TOO_BIG, path=str(path))
    return data


def read_bytes(path: Path) -> bytes:
    """A text file's bytes, as read_text takes them: checked, bounded; errors name the file."""
    try:
        return _read_bytes(path)
    except FileNotFoundError:
        raise InputError("no such file", path=str(path)) from None
    except IsADirectoryError:
        raise InputError("is a folder, expected a file", path=str(path)) from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path=str(path)) from None


def read_text(path: Path) -> str:
    """Read, decode and repair a text file; errors name the file."""
    return repair(decode(read_bytes(path), str(path)))
