"""Parse markdown podcast notes into sections (one per episode heading) of raw items.

Handles what real notes look like: YAML front matter, any heading level for
episodes, `-`/`*`/`+`/numbered bullets, bullets that run on across lines,
nested bullets, block quotes, emphasis markup, plain-text sub-headings, and
files of prose paragraphs with no headings or bullets at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cards.errors import InputError
from cards.ingest.text import read_text
from cards.models import NoteSection, RawItem

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
_BULLET = re.compile(r"^([ \t]*)(?:[-*+]|\d{1,3}[.)])[ \t]+(.*)$")
_EMPTY_BULLET = re.compile(r"^[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]*$")
_QUOTE = re.compile(r"^[ \t]{0,3}>[ \t]?(.*)$")
_RULE = re.compile(r"^[ \t]*(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_URL = re.compile(r"https?://[^\s<>()\[\]]+")
_MD_LINK = re.compile(r"\[([^\]\n]{1,500})\]\((https?://[^)\s]+)\)")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
# Emphasis markers count only outside words, as the italic ones below do, so
# "2**10" stays a power; the span stops at the next marker of its kind, which
# keeps a long line full of unclosed "**" linear rather than quadratic.
_BOLD = re.compile(r"(?<!\w)(\*\*|__)(?=\S)((?:(?!\1).)+?)(?<=\S)\1(?!\w)")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])")
_ITALIC_UNDER = re.compile(r"(?<![\w_])_(?=[^\s_])([^_\n]+?)(?<=[^\s_])_(?![\w_])")
_CODE_SPAN = re.compile(r"(`+)[^`\n]+?\1")
_SUBHEADING_MAX = 80


def _strip_emphasis(text: str) -> str:
    text = _BOLD.sub(r"\2", text)
    text = _ITALIC_STAR.sub(r"\1", text)
    return _ITALIC_UNDER.sub(r"\1", text)


def strip_markup(text: str) -> str:
    """Remove emphasis markers and turn markdown links into 'text (url)'; code spans stay verbatim."""
    text = _MD_LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})", text)
    if "`" not in text:
        return _strip_emphasis(text)
    # `__init__` and `a*b*c` are code: emphasis is stripped only between spans.
    out, pos = [], 0
    for m in _CODE_SPAN.finditer(text):
        out += [_strip_emphasis(text[pos:m.start()]), m.group(0)]
        pos = m.end()
    out.append(_strip_emphasis(text[pos:]))
    return "".join(out)


def _indent_width(ws: str) -> int:
    return len(ws.expandtabs(4))


@dataclass
class _Item:
    kind: str
    lines: list[str]
    start: int
    end: int
    section: str | None
    base_indent: int = 0
    child_indents: list[int] = field(default_factory=list)


@dataclass
class _Section:
    heading: str | None
    line: int
    body: list[tuple[int, str]] = field(default_factory=list)


def _front_matter(lines: list[str]) -> tuple[int, dict[str, str]]:
    """Skip YAML front matter; return the first body line index and simple key: value pairs."""
    if not lines or lines[0].strip() != "---":
        return 0, {}
    meta: dict[str, str] = {}
    for i in range(1, min(len(lines), 200)):
        if lines[i].strip() in ("---", "..."):
            return i + 1, meta
        key, sep, value = lines[i].partition(":")
        if sep and key.strip() and not key.startswith((" ", "\t")):
            meta[key.strip().lower()] = value.strip().strip("\"'")
    return 0, {}


def _split_sections(lines: list[str], first: int) -> list[_Section]:
    levels = []
    in_fence = False
    for line in lines[first:]:
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (m := _HEADING.match(line)):
            levels.append(len(m.group(1)))
    top = min(levels) if levels else None
    sections = [_Section(None, first + 1)]
    in_fence = False
    for idx in range(first, len(lines)):
        line = lines[idx]
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line)
        if m and len(m.group(1)) == top:
            sections.append(_Section(strip_markup(m.group(2)).strip(), idx + 1))
        else:
            sections[-1].body.append((idx + 1, line))
    return sections


def _parse_body(body: list[tuple[int, str]]) -> list[_Item]:
    items: list[_Item] = []
    # A markdown sub-heading holds until the next heading; a plain-text one
    # ("VaccinateCA:") only for the group of lines right below it.
    heading_section: str | None = None
    section: str | None = None
    current: _Item | None = None
    quote: _Item | None = None
    prev_blank = True
    n = len(body)

    def line_below(i: int) -> str | None:
        # The line right below decides whether a bare line is a sub-heading.
        return body[i + 1][1] if i + 1 < n else None

    for i, (lineno, raw) in enumerate(body):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            # A blank line ends a quote and any run-on, but a loose list's nested
            # bullets may still follow, so the current bullet stays open.
            prev_blank, quote, section = True, None, heading_section
            continue
        if _RULE.match(line):
            current = quote = None
            prev_blank = True
            continue
        if stripped.startswith("<!--") or _EMPTY_BULLET.match(line):
            continue
        if m := _HEADING.match(line):  # a deeper heading than the episode level: a sub-section
            heading_section = section = strip_markup(m.group(2)).strip() or heading_section
            current = quote = None
            prev_blank = True
            continue
        if m := _QUOTE.match(line):
            text = m.group(1).strip()
            if quote is None:
                quote = _Item("quote", [], lineno, lineno, section)
                items.append(quote)
            if text:
                quote.lines.append(text)
            quote.end = lineno
            current = None
            prev_blank = False
            continue
        quote = None
        if m := _BULLET.match(line):
            indent = _indent_width(m.group(1))
            text = m.group(2).strip()
            if current is not None and current.kind == "bullet" and indent > current.base_indent:
                # Depth counts the open levels above this one, so lists indented by
                # two spaces nest as deep as lists indented by four.
                stack = current.child_indents
                while stack and stack[-1] >= indent:
                    stack.pop()
                stack.append(indent)
                current.lines.append("  " * len(stack) + "- " + text)
                current.end = lineno
            else:
                current = _Item("bullet", [text], lineno, lineno, section, indent)
                items.append(current)
            prev_blank = False
            continue
        # A bare line: run-on of the bullet above, a sub-heading, or a paragraph.
        below = line_below(i)
        below_is_bullet = below is not None and bool(_BULLET.match(below))
        is_aside = stripped.startswith("(") and stripped.endswith(")")
        if current is not None and not prev_blank and not is_aside:
            if current.kind == "bullet" and stripped.endswith(":") and below_is_bullet \
                    and len(stripped) <= _SUBHEADING_MAX:
                section, current = strip_markup(stripped[:-1]).strip(), None
            else:
                current.lines.append(stripped)
                current.end = lineno
            prev_blank = False
            continue
        short = len(stripped) <= _SUBHEADING_MAX
        if short and (stripped.endswith(":") or (below_is_bullet and not stripped.endswith("."))):
            section = strip_markup(stripped.rstrip(":")).strip()
            current = None
        else:
            current = _Item("prose", [stripped], lineno, lineno, section)
            items.append(current)
        prev_blank = False
    return items


def _item_text(item: _Item) -> str:
    return strip_markup("\n".join(item.lines)).strip()


def parse_notes_text(text: str, path: str) -> list[NoteSection]:
    """Split a notes file into sections of raw items; a file with no headings is one section."""
    lines = text.split("\n")
    first, meta = _front_matter(lines)
    sections = _split_sections(lines, first)
    date = meta.get("date")
    out: list[NoteSection] = []
    for sec in sections:
        items = []
        for it in _parse_body(sec.body):
            body = _item_text(it)
            # A paragraph that is only links identifies the episode; it is not a note.
            if it.kind == "prose" and not _URL.sub("", body).strip():
                continue
            if body:
                items.append(RawItem(body, it.kind, it.section, it.start, it.end))
        links = tuple(dict.fromkeys(u.rstrip(".,;") for _, line in sec.body for u in _URL.findall(line)))
        if sec.heading is None and not items:
            continue
        out.append(NoteSection(sec.heading, path, sec.line, tuple(items), links, date))
    if not any(s.items for s in out):
        raise InputError("no notes found (no bullets, quotes or paragraphs)", path=path)
    return out


def parse_notes(path: Path) -> list[NoteSection]:
    return parse_notes_text(read_text(path), str(path))
