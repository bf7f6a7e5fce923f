"""Every test runs offline and hermetic: no ambient keys or settings, no tokenizer download,
and a working directory of its own (so no cards.toml from the repository is read).

Tests that read files shipped with the repository must use absolute paths, e.g.
`Path(__file__).resolve().parents[1] / "examples"`; the working directory is the test's tmp_path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
# Real notes and transcripts beside the repository; tests using them skip when absent.
SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"

# Environment that would change what a test does or where it connects.
_AMBIENT = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_ADMIN_KEY",
            "OPENAI_CUSTOM_HEADERS", "DATA_GYM_CACHE_DIR")


@pytest.fixture(autouse=True)
def _hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No OpenAI or CARDS_* settings from the environment, an empty tiktoken cache, cwd = tmp_path."""
    for name in _AMBIENT:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("CARDS_"):
            monkeypatch.delenv(name, raising=False)
    cache = tmp_path / ".tiktoken-cache"
    cache.mkdir()
    # tiktoken looks here first and cards.tokens never downloads: an empty folder means "estimate".
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    from cards.tokens import counter_for

    counter_for.cache_clear()  # a counter cached under another test's environment must not leak
    monkeypatch.chdir(tmp_path)


# -- a small matching example: two episodes, six bullets, two Whisper transcripts ----------------

NOTES = """\
---
title: "Podcast notes"
---

# Ada Quill on Reactor Talk

- the sodium reactor in Kemmerer runs at 345 megawatts
- molten salt storage lets the plant boost output to 500 megawatts for five hours
- fuel is HALEU, enriched to almost 20 percent uranium 235

# Bram Otter on Garden Hour

- tomato blight spreads fastest when leaves stay wet overnight
- copper fungicide only slows the blight, it never cures an infected plant
- mulch keeps soil from splashing spores onto the lower leaves
"""

REACTOR = """\
[00:00:00.000 --> 00:00:04.000]   Welcome to Reactor Talk, I'm here with Ada Quill.
[00:00:04.000 --> 00:00:08.000]   Thanks for having me, it's great to be on Reactor Talk.
[00:00:08.000 --> 00:00:13.000]   So tell us about the sodium reactor you are building in Kemmerer, Wyoming.
[00:00:13.000 --> 00:00:18.000]   Sure. The sodium cooled reactor in Kemmerer runs at 345 megawatts electric.
[00:00:18.000 --> 00:00:23.000]   It replaces a coal plant, so the grid connection is already there.
[00:00:23.000 --> 00:00:28.000]   What makes it different from a normal light water reactor?
[00:00:28.000 --> 00:00:34.000]   The big thing is molten salt storage. Heat goes into tanks of molten salt,
[00:00:34.000 --> 00:00:40.000]   and that storage lets the plant boost output to 500 megawatts for about five hours.
[00:00:40.000 --> 00:00:45.000]   So it can follow demand, like a peaker plant does in the evening.
[00:00:45.000 --> 00:00:50.000]   And what about the fuel, is that the same as existing plants?
[00:00:50.000 --> 00:00:56.000]   No, the fuel is HALEU, high assay low enriched uranium.
[00:00:56.000 --> 00:01:02.000]   It is enriched to almost 20 percent uranium 235, compared with five percent today.
[00:01:02.000 --> 00:01:07.000]   Supply of that fuel has been the hardest part of the whole project.
"""

GARDEN = """\
[00:00:00.000 --> 00:00:04.000]   This is Garden Hour and my guest today is Bram Otter.
[00:00:04.000 --> 00:00:09.000]   Bram, everyone asks about tomato blight this time of year.
[00:00:09.000 --> 00:00:15.000]   Right. Tomato blight spreads fastest when the leaves stay wet overnight.
[00:00:15.000 --> 00:00:20.000]   So water in the morning, at the base of the plant, never in the evening.
[00:00:20.000 --> 00:00:26.000]   People spray copper fungicide and think the problem is solved.
[00:00:26.000 --> 00:00:32.000]   But copper only slows the blight down, it never cures a plant that is infected.
[00:00:32.000 --> 00:00:37.000]   Once a plant is infected, pull it out and bag it, do not compost it.
[00:00:37.000 --> 00:00:43.000]   The other cheap trick is mulch, a good layer of straw around each plant.
[00:00:43.000 --> 00:00:49.000]   Mulch keeps the soil from splashing spores up onto the lower leaves when it rains.
[00:00:49.000 --> 00:00:54.000]   And take off the lowest leaves too, once the plant is tall enough.
"""


@dataclass
class Example:
    """Paths of a written example, and its notes text (tests rewrite it to add or change bullets)."""

    folder: Path
    notes: Path
    transcripts: Path  # a folder with one Whisper transcript per episode
    text: str

    @property
    def bullets(self) -> list[str]:
        return [line[2:] for line in self.text.splitlines() if line.startswith("- ")]

    def rewrite(self, text: str) -> None:
        self.text = text
        self.notes.write_text(text, encoding="utf-8")


def write_example(folder: Path) -> Example:
    """Write the notes file and its two transcripts under `folder`."""
    transcripts = folder / "transcripts"
    transcripts.mkdir(parents=True)
    (transcripts / "reactor-talk.txt").write_text(REACTOR, encoding="utf-8")
    (transcripts / "garden-hour.txt").write_text(GARDEN, encoding="utf-8")
    notes = folder / "notes.md"
    notes.write_text(NOTES, encoding="utf-8")
    return Example(folder, notes, transcripts, NOTES)


@pytest.fixture
def write_notes(tmp_path: Path) -> Example:
    """A notes file (2 episodes, 6 bullets) and matching Whisper transcripts, in tmp_path/input."""
    return write_example(tmp_path / "input")


def offline_workspace(folder: Path, *then: list[str]) -> Path:
    """The example above generated offline into `folder/ws` (then each further command run on it), as
    hermetic as `_hermetic`, for module-scoped fixtures that build a workspace once and copy it per test."""
    from typer.testing import CliRunner

    from cards.cli import app

    example = write_example(folder / "input")
    ws = folder / "ws"
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(("CARDS_", "OPENAI_")):
                mp.delenv(name)
        mp.chdir(folder)
        (folder / "tiktoken").mkdir()
        mp.setenv("TIKTOKEN_CACHE_DIR", str(folder / "tiktoken"))
        for args in (["generate", str(example.notes), "-t", str(example.transcripts), "--offline"], *then):
            result = CliRunner().invoke(app, [*args, "-w", str(ws)])
            assert result.exit_code == 0, result.output
    return ws
