"""Text made safe for a terminal: every control character shown as an escape, never obeyed.

Notes, transcripts, file names and LLM replies are untrusted. A note or reply holding
`ESC ] 52 ; c ; … BEL` would otherwise write the reader's clipboard, and an ESC [ or a
right-to-left override would repaint or reorder what `cards` prints. `visible` is the one
function every printed string goes through: the rich console (`console`), the error lines,
and the review screen. The workspace keeps the text exactly as it came; only what reaches
the screen is changed.

What counts as control: C0 except newline and tab (ESC, BEL, CR, backspace, …), DEL, C1
(U+0080–U+009F, where CSI and OSC have one-byte forms), the bidi embeddings, overrides and
isolates (U+202A–U+202E, U+2066–U+2069), the bidi marks (U+200E, U+200F, U+061C) and the
line and paragraph separators (U+2028, U+2029). Each becomes its Python escape (`\\x1b`,
`\\u202e`), so the reader sees that something was there and what it was.

JSON output is data, not display: `json.dumps` already writes C0 as `\\u001b`; `json_text`
writes the C1 and bidi characters as `\\uXXXX` escapes too, so the parsed value is unchanged
and a terminal showing the JSON obeys nothing.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Inside JSON text these can only occur within strings, where \uXXXX means the same character.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def visible(text: str) -> str:
    """`text` with every terminal control character replaced by its escape (`\\x1b`, `\\u202e`)."""
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


def json_text(text: str) -> str:
    """JSON text with the C1 and bidi characters escaped as `\\uXXXX` (C0 already is)."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def console(stderr: bool = False, **kwargs):
    """A rich console whose every printed text goes through `visible`; markup and highlighting off."""
    from rich.console import Console
    from rich.segment import Segment

    class SafeConsole(Console):
        # Everything rich prints (tables, progress bars, plain lines) is rendered to segments here;
        # the control segments are rich's own cursor and style codes, the rest is text.
        def render(self, renderable, options=None):
            for segment in super().render(renderable, options):
                if segment.control or not _CONTROL.search(segment.text):
                    yield segment
                else:
                    yield Segment(visible(segment.text), segment.style)

    kwargs.setdefault("highlight", False)
    kwargs.setdefault("markup", False)
    return SafeConsole(stderr=stderr, **kwargs)
