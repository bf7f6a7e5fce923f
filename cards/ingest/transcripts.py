"""Parse episode transcripts into segments: YouTube captions, Whisper, SRT, WebVTT or plain text.

The format is told by content; a .srt or .vtt name only settles which of the
two a file of cues is. Timed formats forgive the odd broken timestamp (that cue
is skipped) but refuse a file whose timestamps are mostly broken, naming the
first bad line: silently turning such a file into untimed text would hide the
problem. Segments that only describe sound ("[MUSIC]", "(upbeat music)") are
dropped in every format: they match nothing in anyone's notes.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from cards.errors import InputError
from cards.ingest.text import read_text
from cards.models import Segment, Transcript, shorten

# A timestamp: [h+:]m+:ss[.,fff]. Range checks happen in _seconds, so that
# "00:75:00.000" is reported as malformed rather than read as text.
_TS = r"(?:(\d+):)?(\d{1,3}):(\d{1,2})(?:[.,](\d{1,3}))?"
_WHISPER = re.compile(rf"^\s*\[\s*{_TS}\s*-->\s*{_TS}\s*\](.*)$")
# Anything that tries to be a Whisper line: "[" then (maybe) a time then an arrow.
# A sign is allowed so that a negative time ("-00:00:01,000") is a broken timing line, not text.
_WHISPER_LOOSE = re.compile(r"^\s*\[(?=[^\]\n]*:)\s*(?:[-+−]?\d\S*\s*)?-->")
_CUE_TIMING = re.compile(rf"^\s*{_TS}\s*-->\s*{_TS}(?:\s.*)?$")
# Anything that tries to be an SRT/VTT timing line; needs a colon so that a
# caption saying "1 --> 2" stays text.
_CUE_LOOSE = re.compile(r"^\s*(?=.*:)(?:[-+−]?\d\S*\s*)?-->")

_YT_ID_TITLE = re.compile(r"^([A-Za-z0-9_-]{11})\s+[•·]\s+(.+?)\s*$")
_YT_KIND = re.compile(r"^kind:\s*(?:captions|subtitles|asr)\b", re.I)
_YT_LANGUAGE = re.compile(r"^language:\s*\S", re.I)
_YT_PATH = re.compile(r"^(?:/|~/|\./|[A-Za-z]:[\\/])\S")
_YT_HEADER_MAX = 8

_VTT_BLOCK = re.compile(r"^(?:NOTE|STYLE|REGION)(?:\s|$)")
# Markup inside cues: <c>, </c>, <v Speaker>, <00:00:01.234>, <font ...>;
# a bare "<" followed by a space ("3 < 5") is text.
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<\d[\d:.]*>")
# A WebVTT voice tag names who speaks: <v Roger Bingham>, <v.loud Esme>.
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^<>]+?)\s*>")
_ASS_TAG = re.compile(r"\{\\[^{}]*\}")
_SPACE = re.compile(r"\s+")

# A whole segment that only describes sound: [MUSIC], [BLANK_AUDIO], (upbeat music), ♪♪.
_NON_SPEECH = re.compile(r"^(?:\[[^\[\]]*\]|\([^()]*\)|[♪♫\s]+)$")

_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"'”’)\]])\s+")
_LONG_LINE = 400
_FRAC = (1, 10, 100, 1000)


_object_new = object.__new__


def _fast_segment(
    text: str, line: int, start: float | None = None, end: float | None = None
) -> Segment:
    # A frozen dataclass's __init__ costs about 1 µs (object.__setattr__ per
    # field), most of the time spent on an 8,000-line caption file; filling
    # the instance dict directly gives an identical, equal object.
    seg = _object_new(Segment)
    seg.__dict__.update(text=text, line=line, start=start, end=end)
    return seg


def _pick_segment_factory():
    """The fast path when Segment is still a plain frozen dataclass, else its constructor."""
    if hasattr(Segment, "__slots__") or hasattr(Segment, "__post_init__"):
        return Segment
    try:
        ok = _fast_segment("x", 1, 0.0, 1.0) == Segment("x", 1, 0.0, 1.0)
    except (AttributeError, TypeError):
        ok = False
    return _fast_segment if ok else Segment


_segment = _pick_segment_factory()


def parse_transcript(path: Path) -> Transcript:
    """Read and parse a transcript file; problems raise InputError naming the file."""
    return parse_transcript_text(read_text(path), str(path))


def parse_transcript_text(text: str, path: str) -> Transcript:
    """Parse transcript text; `path` names the source in the result and in errors."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    fmt, header_end, title, video_id = _detect(lines, path)
    if fmt == "whisper":
        segments = _parse_whisper(lines, path)
    elif fmt in ("srt", "vtt"):
        segments = _parse_cues(lines, path, vtt=fmt == "vtt")
    elif fmt == "youtube":
        segments = _parse_lines(lines, header_end)
    else:
        segments = _parse_plain(lines)
    if not segments:
        raise InputError("no transcript text", path=path)
    segments = _mark_turns(segments)
    return Transcript(path=path, format=fmt, segments=tuple(segments), title=title,
                      video_id=video_id)


def _detect(lines: list[str], path: str) -> tuple[str, int, str | None, str | None]:
    """(format, index of the first body line, title, video id)."""
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    if first.startswith("WEBVTT"):
        return "vtt", 0, None, None
    youtube = _youtube_header(lines)
    if youtube is not None:
        return ("youtube", *youtube)

    sample = [ln for ln in lines[:2000] if ln.strip()][:300]
    whisper = sum(1 for ln in sample if _WHISPER_LOOSE.match(ln))
    if whisper and whisper * 10 >= len(sample) * 3:
        return "whisper", 0, None, None
    timings = [i for i, ln in enumerate(sample) if _CUE_LOOSE.match(ln)]
    suffix = Path(path).suffix.lower()
    # A subtitle file opens with a timing line, or an index line and then one.
    opens_with_cue = bool(timings) and timings[0] <= 1
    named = suffix in (".srt", ".vtt")
    if timings and (opens_with_cue or len(timings) * 8 >= len(sample) or named):
        # SRT writes "00:00:01,000"; a headerless file with "00:00:01.000" is WebVTT.
        first_timing = sample[timings[0]]
        vtt = suffix == ".vtt" or (suffix != ".srt" and "," not in first_timing.split("-->")[0])
        return ("vtt" if vtt else "srt"), 0, None, None
    return "plain", 0, None, None


def _youtube_header(lines: list[str]) -> tuple[int, str | None, str | None] | None:
    """The header that YouTube caption dumps start with, or None when there is none."""
    title = video_id = None
    captions = False
    seen_header = False
    end = 0
    for i, raw in enumerate(lines[:_YT_HEADER_MAX]):
        ln = raw.strip()
        if not ln:
            end = i + 1
            continue
        m = _YT_ID_TITLE.match(ln)
        if m and video_id is None:
            video_id, title = m.group(1), m.group(2)
        elif _YT_KIND.match(ln):
            captions = True
        elif _YT_LANGUAGE.match(ln) or ln.casefold() == "transcript":
            pass
        elif seen_header and _YT_PATH.match(ln):
            pass
        else:
            break
        seen_header = True
        end = i + 1
    if video_id is None and not captions:
        return None
    return end, title, video_id


def _seconds(hours: str | None, minutes: str, secs: str, frac: str | None) -> float | None:
    """Seconds from timestamp fields; None when a field is out of range."""
    s = int(secs)
    m = int(minutes)
    # Minutes may exceed 59 only when there is no hours field ("75:30.000").
    if s > 59 or (hours is not None and m > 59):
        return None
    value = m * 60 + s
    if hours:
        value += int(hours) * 3600
    if frac:
        return value + int(frac) / _FRAC[len(frac)]
    return float(value)


def _times(m: re.Match) -> tuple[float, float] | None:
    """(start, end) seconds; an end before the start is clamped to the start."""
    g = m.groups()
    start = _seconds(g[0], g[1], g[2], g[3])
    end = _seconds(g[4], g[5], g[6], g[7])
    if start is None or end is None:
        return None
    return start, end if end >= start else start


def _check_bad(bad: list[tuple[int, str]], good: int, path: str) -> None:
    """Forgive a minority of broken timestamps; refuse a file that is mostly broken."""
    if bad and len(bad) > good:
        lineno, raw = bad[0]
        raise InputError(f"malformed timestamp '{raw}'", path=path, line=lineno)


def _is_speech(text: str) -> bool:
    return bool(text) and not (text[0] in "[(♪♫" and _NON_SPEECH.match(text))


def _parse_whisper(lines: list[str], path: str) -> list[Segment]:
    segments: list[Segment] = []
    bad: list[tuple[int, str]] = []
    good = 0
    # Text on a line without a timestamp continues the cue above (dropped with
    # it when that cue was broken); before the first cue it stands untimed.
    pending: list | None = None  # [text, line, start, end] of the open cue
    started = False
    match, loose = _WHISPER.match, _WHISPER_LOOSE.match
    for i, ln in enumerate(lines, 1):
        m = match(ln)
        times = _times(m) if m else None
        if times is not None:
            good += 1
            started = True
            if pending:
                segments.append(_segment(*pending))
            text = m.group(9).strip()
            pending = [text, i, *times] if _is_speech(text) else None
            continue
        if loose(ln):
            raw = ln.strip()
            close = raw.find("]")
            bad.append((i, _clip(raw[: close + 1] if close > 0 else raw)))
            started = True
            if pending:
                segments.append(_segment(*pending))
            pending = None
            continue
        text = ln.strip()
        if not text:
            continue
        if pending:
            pending[0] = f"{pending[0]} {text}"
        elif not started and _is_speech(text):
            segments.append(_segment(text, i))
    if pending:
        segments.append(_segment(*pending))
    _check_bad(bad, good, path)
    return segments


def _clean_cue_line(text: str, srt: bool) -> str:
    if "<" in text:
        text = _TAG.sub("", _VOICE.sub(_voice_marker, text))
    if srt and "{" in text:
        text = _ASS_TAG.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return _SPACE.sub(" ", text).strip()


# Speaker turns. Captions and Whisper mark a new speaker with ">>"; WebVTT names
# them with voice tags. Both become TURN, a plain mark that HTML escaping, Anki
# syntax and word matching all pass over, so a passage still shows who takes over.
TURN = "»"
_CHEVRONS = re.compile(r"(?:^|(?<=\s))>>+\s*")
_VOICE_MARK = re.compile(rf"^{TURN} ([^:{TURN}]{{1,60}}): ")


def _voice_marker(m: re.Match) -> str:
    return f"{TURN} {m.group(1).strip()}: "


def _mark_turns(segments: list[Segment]) -> list[Segment]:
    """">>" as a turn mark; a voice named again by the same speaker's next cue is dropped."""
    out = []
    voice = None
    for seg in segments:
        text = seg.text
        if ">>" in text:
            text = _CHEVRONS.sub(f"{TURN} ", text).strip()
        if text.startswith(TURN):
            m = _VOICE_MARK.match(text)
            if m and m.group(1) == voice:
                text = text[m.end():]
            elif m:
                voice = m.group(1)
        if text != seg.text:
            if not text.strip(f" {TURN}"):
                continue
            seg = _segment(text, seg.line, seg.start, seg.end)
        out.append(seg)
    return out


def _parse_cues(lines: list[str], path: str, *, vtt: bool) -> list[Segment]:
    """SRT and WebVTT: optional identifier, timing line, text lines, blank line."""
    segments: list[Segment] = []
    bad: list[tuple[int, str]] = []
    good = 0
    n = len(lines)
    # States: header (WEBVTT block), skip (NOTE/STYLE/REGION), cue, after (blank
    # after a cue: stray text still belongs to it), idle (before any cue).
    state = "idle"
    cue: list[tuple[int, str]] | None = None  # None while inside a broken cue
    times: tuple[float, float] | None = None
    prev_last: str | None = None  # last line of the previous cue, for YouTube's rolling captions

    def flush() -> None:
        nonlocal prev_last, cue
        if cue is None or times is None:
            return
        kept = []
        last = None
        for lineno, text in cue:
            cleaned = _clean_cue_line(text, not vtt)
            if not cleaned:
                continue
            last = cleaned
            if vtt and cleaned == prev_last:
                continue
            kept.append((lineno, cleaned))
        if last is not None:
            prev_last = last
        if kept:
            joined = " ".join(t for _, t in kept)
            if _is_speech(joined):
                segments.append(_segment(joined, kept[0][0], times[0], times[1]))
        cue = None

    for i, ln in enumerate(lines):
        lineno = i + 1
        s = ln.strip()
        if vtt and state == "idle" and cue is None and not segments and s.startswith("WEBVTT"):
            state = "header"
            continue
        if s and _CUE_LOOSE.match(s):
            flush()
            m = _CUE_TIMING.match(s)
            t = _times(m) if m else None
            if t is None:
                bad.append((lineno, _clip(s)))
                cue, times = None, None
            else:
                good += 1
                cue, times = [], t
            state = "cue"
            continue
        if not s:
            if state in ("header", "skip"):
                state = "idle"
            elif state == "cue":
                state = "after"
            continue
        if state in ("header", "skip"):
            continue
        if state != "cue" or s.isdigit():
            nxt = lines[i + 1].strip() if i + 1 < n else ""
            if nxt and _CUE_LOOSE.match(nxt):
                continue  # cue identifier (SRT index)
        if state in ("cue", "after"):
            if vtt and state == "after" and _VTT_BLOCK.match(s):
                flush()
                state = "skip"
            elif cue is not None:
                cue.append((lineno, s))
            continue
        if vtt and _VTT_BLOCK.match(s):
            state = "skip"
            continue
        # Text before the first cue has no time; keep it rather than lose words.
        text = _clean_cue_line(s, not vtt)
        if _is_speech(text):
            segments.append(_segment(text, lineno))
    flush()
    _check_bad(bad, good, path)
    return segments


def _parse_lines(lines: list[str], first: int) -> list[Segment]:
    """One segment per non-empty line (YouTube caption dumps)."""
    segments = []
    append, make, non_speech = segments.append, _segment, _NON_SPEECH.match
    for i in range(first, len(lines)):
        text = lines[i].strip()
        if text and not (text[0] in "[(♪♫" and non_speech(text)):
            append(make(text, i + 1))
    return segments


def _parse_plain(lines: list[str]) -> list[Segment]:
    segments = []
    for i, ln in enumerate(lines, 1):
        text = ln.strip()
        if not text or not _is_speech(text):
            continue
        if len(text) <= _LONG_LINE:
            segments.append(_segment(text, i))
        else:
            segments.extend(_segment(chunk, i) for chunk in _split_long(text))
    return segments


def _split_long(text: str) -> list[str]:
    """Cut an over-long line at sentence ends into pieces of at most ~_LONG_LINE characters."""
    pieces: list[str] = []
    for sentence in _SENTENCE_BREAK.split(text):
        while len(sentence) > _LONG_LINE:  # a run-on with no sentence end: cut at a space
            cut = sentence.rfind(" ", 0, _LONG_LINE)
            if cut <= 0:
                cut = _LONG_LINE
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 1 + len(piece) <= _LONG_LINE:
            chunks[-1] = f"{chunks[-1]} {piece}"
        else:
            chunks.append(piece)
    return chunks


def _clip(raw: str, limit: int = 80) -> str:
    return shorten(raw, limit)
