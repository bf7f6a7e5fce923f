"""Transcript parsing: format detection, each format's quirks, bad input, the real seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from cards.errors import InputError
from cards.ingest.transcripts import parse_transcript, parse_transcript_text
from cards.models import Segment

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
YOUTUBE_SEED = SEEDS / "002_0fe13fd03e9aaf95.txt"
WHISPER_SEED = SEEDS / "003_34925e2c796f303a.txt"


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def seed(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"seed transcript not available: {path}")
    return path


# --- YouTube caption dumps ---------------------------------------------------

YOUTUBE = """\
Transcript
dQw4w9WgXcQ • Never Gonna Give You Up | Official Video
/tmp/out/0001_dQw4w9WgXcQ.txt
Kind: captions
Language: en
we're no strangers to
[Music]

love you know the rules
"""


def test_youtube_header_gives_title_video_id_and_url(tmp_path):
    t = parse_transcript(write(tmp_path, "captions.txt", YOUTUBE))
    assert t.format == "youtube"
    assert t.video_id == "dQw4w9WgXcQ"
    assert t.title == "Never Gonna Give You Up | Official Video"
    assert t.url == "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    assert not t.timed


def test_youtube_lines_become_untimed_segments_with_file_line_numbers(tmp_path):
    t = parse_transcript(write(tmp_path, "captions.txt", YOUTUBE))
    # Header lines are not text; [Music] describes sound, not speech.
    assert t.segments == (
        Segment("we're no strangers to", 6),
        Segment("love you know the rules", 9),
    )


def test_youtube_header_without_id_line_still_detected():
    t = parse_transcript_text("Kind: captions\nLanguage: en\nhello there\nfriend\n", "x.txt")
    assert t.format == "youtube"
    assert t.video_id is None and t.url is None
    assert [s.text for s in t.segments] == ["hello there", "friend"]
    assert [s.line for s in t.segments] == [3, 4]


def test_id_line_needs_an_eleven_character_id():
    t = parse_transcript_text("Transcript\nshortid • A title\nsome words\n", "x.txt")
    assert t.format == "plain"
    assert t.video_id is None
    assert t.segments[0].text == "Transcript"


# --- Whisper -------------------------------------------------------------------

WHISPER = """\
[00:00:00.000 --> 00:00:06.500]   [MUSIC]
[00:00:06.500 --> 00:00:09.240]   Hey everyone, welcome to the podcast.
[00:00:09.240 --> 00:00:12.620]   This is Alessio.
[01:02:03.250 --> 01:02:04.000]   Late in the show.
"""


def test_whisper_times_and_text():
    t = parse_transcript_text(WHISPER, "w.txt")
    assert t.format == "whisper"
    assert t.timed
    assert t.segments[0] == Segment("Hey everyone, welcome to the podcast.", 2, 6.5, 9.24)
    assert t.segments[1].text == "This is Alessio."
    assert t.segments[2].start == pytest.approx(3723.25)
    assert t.segments[2].end == pytest.approx(3724.0)
    assert t.segments[2].line == 4


def test_whisper_minutes_only_and_comma_decimals():
    text = "[00:01,500 --> 00:03,250]  one\n[01:10.5 --> 01:12.75]  two\n"
    t = parse_transcript_text(text, "w.txt")
    assert t.format == "whisper"
    assert [(s.start, s.end) for s in t.segments] == [(1.5, 3.25), (70.5, 72.75)]


def test_whisper_end_before_start_is_clamped_and_kept():
    text = "[00:00:05.000 --> 00:00:04.000]  backwards\n[00:00:05.000 --> 00:00:06.000]  fine\n"
    t = parse_transcript_text(text, "w.txt")
    assert t.segments[0] == Segment("backwards", 1, 5.0, 5.0)
    assert len(t.segments) == 2


def test_whisper_continuation_line_joins_the_cue_above():
    text = (
        "[00:00:01.000 --> 00:00:02.000]  first part\n"
        "and the rest\n"
        "[00:00:02.000 --> 00:00:03.000]  next\n"
    )
    t = parse_transcript_text(text, "w.txt")
    assert [s.text for s in t.segments] == ["first part and the rest", "next"]


def test_one_broken_whisper_timestamp_is_skipped():
    text = (
        "[00:00:01.000 --> 00:00:02.000]  one\n"
        "[00:00:02.000 --> 00:0x:03.000]  broken\n"
        "[00:00:03.000 --> 00:00:04.000]  three\n"
        "[00:00:04.000 --> 00:00:05.000]  four\n"
    )
    t = parse_transcript_text(text, "w.txt")
    assert [s.text for s in t.segments] == ["one", "three", "four"]
    assert [s.line for s in t.segments] == [1, 3, 4]


def test_all_broken_whisper_timestamps_raise_with_line():
    text = "\n[00:00:0a.000 --> 00:00:02.000]  one\n[00:00:02.000 -> 00:00:03.000]  two\n"
    with pytest.raises(InputError) as e:
        parse_transcript_text(text, "w.txt")
    assert e.value.line == 2
    assert e.value.path == "w.txt"
    assert "malformed timestamp '[00:00:0a.000 --> 00:00:02.000]'" in str(e.value)
    assert str(e.value).startswith("w.txt:2: ")


def test_out_of_range_timestamp_in_a_one_cue_file_raises():
    with pytest.raises(InputError) as e:
        parse_transcript_text("[00:00:00.000 --> 00:75:00.000]  too long\n", "w.txt")
    assert e.value.line == 1
    assert "00:75:00.000" in e.value.message


# --- SRT -----------------------------------------------------------------------

SRT = """\
1
00:00:01,000 --> 00:00:02,500
Hello <i>there</i>,
general Kenobi.

2
00:00:03,000 --> 00:00:04,000
{\\an8}Second &amp; last

3
00:00:05,000 --> 00:00:06,000
42
"""


def test_srt_multiline_cues_join_with_a_space(tmp_path):
    t = parse_transcript(write(tmp_path, "episode.srt", SRT))
    assert t.format == "srt"
    assert t.segments[0] == Segment("Hello there, general Kenobi.", 3, 1.0, 2.5)


def test_srt_strips_markup_and_keeps_numeric_captions(tmp_path):
    t = parse_transcript(write(tmp_path, "episode.txt", SRT))
    assert t.format == "srt"  # by content, not by name
    assert [s.text for s in t.segments] == ["Hello there, general Kenobi.", "Second & last", "42"]
    assert t.segments[2].start == 5.0


def test_srt_without_blank_lines_between_cues():
    text = "1\n00:00:01,000 --> 00:00:02,000\nfirst\n2\n00:00:02,000 --> 00:00:03,000\nsecond\n"
    t = parse_transcript_text(text, "x.srt")
    assert [(s.text, s.line) for s in t.segments] == [("first", 3), ("second", 6)]


def test_one_broken_srt_timestamp_skips_only_that_cue():
    text = SRT.replace("00:00:03,000 --> 00:00:04,000", "00:00:03,000 --> 00:00:04,0000")
    text += "\n4\n00:00:07,000 --> 00:00:08,000\nfourth\n"
    t = parse_transcript_text(text, "x.srt")
    assert [s.text for s in t.segments] == ["Hello there, general Kenobi.", "42", "fourth"]


def test_all_broken_srt_timestamps_raise_with_line():
    text = "1\n00:00:01;000 --> 00:00:02;000\nfirst\n\n2\n00:00:99,000 --> 00:00:03,000\nsecond\n"
    with pytest.raises(InputError) as e:
        parse_transcript_text(text, "bad.srt")
    assert e.value.line == 2
    assert "00:00:01;000 --> 00:00:02;000" in e.value.message


# --- WebVTT --------------------------------------------------------------------

VTT = """\
WEBVTT
Kind: captions
Language: en

STYLE
::cue { color: yellow }

NOTE this block is a comment
spanning two lines

intro-cue
00:01.000 --> 00:02.500 align:start position:0%
<v Roger Bingham>We are in New York &lt;City&gt;&nbsp;today

00:00:03.000 --> 00:00:04.000
Caf&eacute; <b>talk</b> &amp; more
"""

# YouTube's automatic captions: word-timed lines that roll up, each line
# repeated at the start of the next cue, with 10 ms cues in between.
YOUTUBE_VTT = """\
WEBVTT
Kind: captions
Language: en

00:00:00.160 --> 00:00:03.070 align:start position:0%
 
the<00:00:00.520><c> following</c><00:00:00.760><c> is</c>

00:00:03.070 --> 00:00:03.080 align:start position:0%
the following is
 

00:00:03.080 --> 00:00:05.829 align:start position:0%
the following is
a<00:00:03.280><c> conversation</c><00:00:03.800><c> with</c>

00:00:05.829 --> 00:00:05.839 align:start position:0%
a conversation with
 

00:00:05.839 --> 00:00:08.000 align:start position:0%
a conversation with
Dylan<00:00:06.100><c> Patel</c>
"""


def test_vtt_strips_settings_tags_and_entities(tmp_path):
    t = parse_transcript(write(tmp_path, "talk.vtt", VTT))
    assert t.format == "vtt"
    assert t.segments == (
        Segment("» Roger Bingham: We are in New York <City> today", 13, 1.0, 2.5),
        Segment("Café talk & more", 16, 3.0, 4.0),
    )


def test_vtt_header_note_and_style_blocks_are_not_text():
    text = " ".join(s.text for s in parse_transcript_text(VTT, "talk.vtt").segments)
    for word in ("Kind", "captions", "color", "comment", "intro-cue"):
        assert word not in text


def test_youtube_vtt_rolling_duplicates_are_dropped():
    t = parse_transcript_text(YOUTUBE_VTT, "auto.vtt")
    assert [s.text for s in t.segments] == [
        "the following is",
        "a conversation with",
        "Dylan Patel",
    ]
    assert [s.start for s in t.segments] == [0.16, 3.08, 5.839]
    assert t.text == "the following is a conversation with Dylan Patel"


def test_headerless_cues_with_dot_decimals_are_vtt():
    t = parse_transcript_text("00:00:01.000 --> 00:00:02.000\nhi\n", "x.txt")
    assert t.format == "vtt"
    assert t.segments == (Segment("hi", 2, 1.0, 2.0),)


def test_one_broken_vtt_timestamp_is_skipped():
    text = VTT + "\n00:00:05.000 --> 00:00:0.6.000\nbroken\n\n00:00:07.000 --> 00:00:08.000\nlast\n"
    t = parse_transcript_text(text, "talk.vtt")
    assert [s.text for s in t.segments][-1] == "last"
    assert "broken" not in t.text
    assert len(t.segments) == 3


# --- plain text ------------------------------------------------------------------


def test_plain_text_is_one_segment_per_line():
    t = parse_transcript_text("My Episode\n\nfirst line\n  second line  \n", "p.txt")
    assert t.format == "plain"
    assert t.segments == (
        Segment("My Episode", 1),
        Segment("first line", 3),
        Segment("second line", 4),
    )
    assert t.title is None
    assert not t.timed


def test_long_plain_line_splits_at_sentence_ends_on_the_same_line():
    sentences = [f"Sentence number {i} says something worth keeping in mind." for i in range(30)]
    line = " ".join(sentences)
    t = parse_transcript_text(f"title\n{line}\n", "p.txt")
    body = t.segments[1:]
    assert len(body) > 1
    assert all(s.line == 2 for s in body)
    assert all(len(s.text) <= 400 for s in body)
    assert all(s.text.endswith(".") for s in body)
    assert " ".join(s.text for s in body) == line


def test_long_line_without_punctuation_is_cut_at_spaces():
    line = " ".join(["word"] * 300)
    t = parse_transcript_text(line, "p.txt")
    assert len(t.segments) > 1
    assert all(len(s.text) <= 400 for s in t.segments)
    assert " ".join(s.text for s in t.segments) == line


def test_a_lone_timestamp_like_line_does_not_make_plain_text_timed():
    lines = ["some prose"] * 20 + ["[00:00:01.000 --> 00:00:02.000] quoted once"]
    t = parse_transcript_text("\n".join(lines), "p.txt")
    assert t.format == "plain"
    assert len(t.segments) == 21


# --- bad input and encodings -------------------------------------------------------


def test_empty_file_names_the_file(tmp_path):
    path = write(tmp_path, "empty.txt", "  \n\n")
    with pytest.raises(InputError) as e:
        parse_transcript(path)
    assert e.value.path == str(path)
    assert str(path) in str(e.value)


def test_binary_file_names_the_file(tmp_path):
    path = tmp_path / "audio.srt"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(InputError) as e:
        parse_transcript(path)
    assert e.value.path == str(path)
    assert "binary" in e.value.message


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(InputError) as e:
        parse_transcript(tmp_path / "nope.vtt")
    assert "nope.vtt" in str(e.value)


def test_only_sound_descriptions_is_no_transcript_text():
    with pytest.raises(InputError) as e:
        parse_transcript_text("[00:00:00.000 --> 00:00:05.000]   [MUSIC]\n", "w.txt")
    assert e.value.message == "no transcript text"
    assert e.value.path == "w.txt"


def test_vtt_header_alone_is_no_transcript_text():
    with pytest.raises(InputError, match="no transcript text"):
        parse_transcript_text("WEBVTT\n\n", "x.vtt")


def test_utf16_with_bom_and_crlf(tmp_path):
    text = SRT.replace("\n", "\r\n").replace("general", "général")
    path = write(tmp_path, "win.srt", "\ufeff" + text, encoding="utf-16-le")
    t = parse_transcript(path)
    assert t.format == "srt"
    assert t.segments[0] == Segment("Hello there, général Kenobi.", 3, 1.0, 2.5)
    assert not any("\r" in s.text for s in t.segments)


def test_crlf_youtube_and_bom_in_text():
    t = parse_transcript_text("\ufeff" + YOUTUBE.replace("\n", "\r\n"), "c.txt")
    assert t.format == "youtube"
    assert t.video_id == "dQw4w9WgXcQ"
    assert t.segments[-1] == Segment("love you know the rules", 9)


# --- the real seeds --------------------------------------------------------------------


def test_seed_youtube_captions():
    t = parse_transcript(seed(YOUTUBE_SEED))
    assert t.format == "youtube"
    assert "Lex Fridman Podcast #459" in t.title
    assert t.video_id == "_1f-o0nqpEI"
    assert t.url == "https://www.youtube.com/watch?v=_1f-o0nqpEI"
    assert len(t.segments) > 8000
    assert t.segments[0] == Segment("the following is a conversation with", 6)
    assert not t.timed


def test_seed_whisper_transcript():
    t = parse_transcript(seed(WHISPER_SEED))
    assert t.format == "whisper"
    assert t.timed
    assert t.segments[0].start == 6.5
    assert t.segments[0].text.startswith("Hey everyone, welcome to the Latent Space Podcast")
    assert all(s.start is not None and s.end >= s.start for s in t.segments)
    assert len(t.segments) > 1500
    assert "[BLANK_AUDIO]" not in t.text
