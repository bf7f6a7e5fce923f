"""The `cards` command: argument handling and printing only; the work is in cards.pipeline.

Heavy modules (openai, genanki, textual, numpy) are imported inside the commands
that need them, so `cards --help` stays fast.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cards.errors import CardsError

app = typer.Typer(
    name="cards",
    help="Turn podcast notes and transcripts into Anki decks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

Notes = Annotated[list[Path], typer.Argument(help="Notes files or folders (markdown).", show_default=False)]
Transcripts = Annotated[
    Optional[list[Path]],
    typer.Option("--transcripts", "-t", help="A transcript file or folder; repeat for more.", show_default=False),
]
EpisodeOpt = Annotated[Optional[str], typer.Option("--episode", "-e", help="Only this episode (its slug).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Workspace = Annotated[
    Optional[Path],
    typer.Option("--workspace", "-w", envvar="CARDS_WORKSPACE", help="Workspace folder [default: decks]."),
]
ContextTokens = Annotated[
    Optional[int],
    typer.Option("--context-tokens", envvar="CARDS_CONTEXT_TOKENS", help="Passage size in tokens [default: 350]."),
]
Model = Annotated[Optional[str], typer.Option("--model", "-m", envvar="CARDS_MODEL",
                                              help="Model name [default: gpt-5-mini].")]
BaseUrl = Annotated[Optional[str], typer.Option("--base-url", envvar="OPENAI_BASE_URL",
                                                help="OpenAI-compatible server URL.")]
Offline = Annotated[bool, typer.Option("--offline", help="Use the offline extractive generator.")]
Realign = Annotated[bool, typer.Option("--realign", help="Align notes to their transcripts again, even if "
                                                          "the passages kept in the workspace are current.")]
Prompts = Annotated[Optional[Path], typer.Option("--prompts", envvar="CARDS_PROMPTS",
                                                 help="Folder with prompt templates to use instead.")]
Timeout = Annotated[Optional[float], typer.Option("--timeout", envvar="CARDS_TIMEOUT",
                                                  help="Seconds one request may take in all [default: 60].")]
MaxTokens = Annotated[Optional[int], typer.Option("--max-tokens", envvar="CARDS_MAX_TOKENS",
                                                  help="Reply limit in tokens [default: 1200; 6000 for reasoning "
                                                       "models].")]
Structured = Annotated[Optional[str], typer.Option("--structured", envvar="CARDS_STRUCTURED",
                                                   help="Reply format: auto, json_schema, json_object or text "
                                                        "[default: auto].")]

Critic = Annotated[Optional[bool], typer.Option("--critic/--no-critic", envvar="CARDS_CRITIC",
                                                help="A second request per note that keeps, rewrites or drops "
                                                     "the drafted cards [default: off].")]


def _shorten(text: str | None, limit: int) -> str:
    from cards.models import shorten  # here, not at the top: `cards --help` imports no dataclasses

    return shorten(text, limit)


def _plural(n: int, word: str) -> str:
    from cards.models import plural

    return plural(n, word)


def _err(message: str) -> None:
    _say(f"error: {message}")


def _say(message: str) -> None:
    """One line on stderr, `cards: ` first; file names and replies in it are made inert for the terminal."""
    from cards.terminal import visible

    sys.stderr.write(f"cards: {visible(message)}\n")


def handled(fn):
    """Turn expected failures into one line on stderr and an exit status, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            _check_utf8(fn, kwargs)
            return fn(*args, **kwargs)
        except CardsError as e:
            _err(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            _err("interrupted; everything finished so far is saved")
            raise typer.Exit(130) from None
        except OSError as e:
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            _err(f"{where}{e.strerror or e}")
            raise typer.Exit(1) from None
        except sqlite3.DatabaseError as e:  # one met outside a Store block, which names the workspace itself
            if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                _err(f"cannot write workspace: {e}")
                raise typer.Exit(1) from None
            _err(f"workspace database error: {e}; restore it from a backup, or start a new workspace"
                 " with --workspace DIR")
            raise typer.Exit(2) from None

    return wrapper


def _check_utf8(fn, arguments: dict) -> None:
    """Refuse, by name, an argument (or the environment variable behind it) that is not UTF-8.

    The shell hands such bytes over as lone surrogates (`--front $'caf\\xe9'`), which would reach
    the workspace, a deck or the terminal and fail there; a path so named is refused the same way.
    """
    for name, value in arguments.items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            text = str(v) if isinstance(v, (str, Path)) else ""
            if any("\ud800" <= c <= "\udfff" for c in text):
                raw = repr(text.encode("utf-8", "surrogateescape"))[1:]  # 'caf\xe9', control bytes escaped
                raise CardsError(f"{_param_name(fn, name)}: {raw} is not valid UTF-8 text; pass it as UTF-8"
                                 + (" (rename the file)" if isinstance(v, Path) else ""))


def _param_name(fn, name: str) -> str:
    """How the person typed a command's parameter: `--front`, `NOTES`, with its environment variable."""
    import typing

    from typer.models import ArgumentInfo, OptionInfo

    try:
        meta = getattr(typing.get_type_hints(fn, include_extras=True).get(name), "__metadata__", ())
    except Exception:  # noqa: BLE001 - only the wording of an error depends on it
        meta = ()
    info = next((m for m in meta if isinstance(m, (OptionInfo, ArgumentInfo))), None)
    shown = name.upper() if isinstance(info, ArgumentInfo) else f"--{name.rstrip('_').replace('_', '-')}"
    if isinstance(info, OptionInfo) and info.param_decls:
        shown = next((d for d in info.param_decls if d.startswith("--")), shown)
    envvar = getattr(info, "envvar", None)
    return f"{shown} (or {envvar})" if isinstance(envvar, str) else shown


def _console(stderr: bool = False):
    """Where every message goes. Markup is off: notes, transcripts and replies are printed as typed,
    so a heading such as `# Show [/foo]` is text, not a rich tag."""
    from cards.terminal import console

    return console(stderr=stderr)


def _print_json(data) -> None:
    from cards.terminal import json_text

    text = json_text(json.dumps(data, indent=2, ensure_ascii=False))
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        # A stdout that cannot encode the text (PYTHONIOENCODING=ascii, a legacy
        # code page) gets the same JSON with \u escapes, not a traceback or "?".
        text = json.dumps(data, indent=2, ensure_ascii=True)
    sys.stdout.write(text + "\n")


# Columns of prose wrap at spaces and share what is left. Key columns (slugs, ids, numbers, times)
# keep each value whole: at 80 columns a slug breaks only after one of its hyphens
# ("dylan-patel-on-" / "latent-space"), and a header breaks between its words.
_KEY_COLUMNS = {"slug", "episode", "id"}
_SHORT = 12  # a column whose values are all this short, without spaces, is a key column too


def _key_columns(columns: list[str], rows: list[list[str]]) -> set[int]:
    return {i for i, c in enumerate(columns)
            if c in _KEY_COLUMNS or all(len(r[i]) <= _SHORT and " " not in r[i] for r in rows)}


_PROSE_MIN = 12


def _break_at_hyphens(text: str, width: int) -> str:
    """Lines of at most `width` characters, broken only after a hyphen (a longer piece stays whole)."""
    lines: list[str] = []
    for piece in re.findall(r"[^-]*-|[^-]+$", text):
        if lines and len(lines[-1]) + len(piece) <= width:
            lines[-1] += piece
        else:
            lines.append(piece)
    return "\n".join(lines) or text


def _fit_columns(columns: list[str], rows: list[list[str]], width: int,
                 key_columns: set[int]) -> tuple[list[str], list[list[str]], int]:
    """Headers and cells of the non-prose columns reshaped so the table fits `width` without cutting
    words, and the narrowest the prose columns may then be."""
    keys = sorted(key_columns)
    n_prose = len(columns) - len(keys)
    room = width - (3 * len(columns) + 1) - n_prose * _PROSE_MIN  # minus borders, padding and prose
    deficit = sum(max([len(r[i]) for r in rows] + [len(columns[i])]) for i in keys) - room
    if deficit <= 0:
        return columns, rows, _PROSE_MIN
    # First wrap only the headers wider than their values, no more than needed ("left in" / "Anki").
    import textwrap

    wrapped = list(columns)
    for i in sorted(keys, key=lambda i: max(len(r[i]) for r in rows) - len(columns[i]) if rows else 0):
        values = max([len(r[i]) for r in rows] + [0])
        words = max(len(w) for w in columns[i].split())
        target = max(values, words, len(columns[i]) - deficit)
        if " " not in columns[i] or target >= len(columns[i]):
            continue
        wrapped[i] = textwrap.fill(columns[i], target)
        deficit -= len(columns[i]) - max(values, *(len(w) for w in wrapped[i].split("\n")))
        if deficit <= 0:
            return wrapped, rows, _PROSE_MIN
    # Headers one word per line; values without hyphens stay whole; hyphenated ones share what is left.
    columns = [c.replace(" ", "\n") if i in keys else c for i, c in enumerate(columns)]

    def pieces(value: str) -> list[str]:
        return re.findall(r"[^-]*-|[^-]+$", value) or [value]

    def narrowest(i: int) -> int:
        return max(len(p) for v in [*columns[i].split("\n"), *(r[i] for r in rows)] for p in pieces(v))

    hyphenated = [i for i in keys if any("-" in r[i] and len(r[i]) > narrowest(i) for r in rows)]
    solid = [i for i in keys if i not in hyphenated]
    widths = {i: max([len(w) for w in columns[i].split("\n")] + [len(r[i]) for r in rows]) for i in solid}
    over = sum(widths.values()) - room
    if hyphenated:
        share = (room - sum(widths.values())) // len(hyphenated)
        for i in hyphenated:
            budget = max(share, narrowest(i))
            over += budget
            rows = [[_break_at_hyphens(v, budget) if j == i else v for j, v in enumerate(r)] for r in rows]
    # Whatever the key columns still need comes out of the prose columns, down to a few characters.
    prose_min = _PROSE_MIN - (max(0, over) + n_prose - 1) // n_prose if n_prose else _PROSE_MIN
    return columns, rows, max(4, prose_min)


def _table(title: str, columns: list[str], rows: list[list], caption: str | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    from cards.terminal import visible

    console = _console()
    # Made inert before the widths are measured, so an escape shown as `\x1b` keeps the borders straight.
    cells = [[visible(v.plain if isinstance(v, Text) else "" if v is None else str(v)) for v in r] for r in rows]
    title = visible(title)
    keys = _key_columns(columns, cells)
    headers, cells, prose_min = _fit_columns(columns, cells, console.width, keys)
    t = Table(title=Text(title), show_lines=False)
    for i, header in enumerate(headers):
        if i in keys:
            t.add_column(Text(header), no_wrap=True, overflow="ellipsis")
        else:
            t.add_column(Text(header), overflow="fold", min_width=prose_min)
    for r in cells:
        t.add_row(*[Text(v) for v in r])
    console.print(t)
    if caption:  # below the table at full width, rather than squeezed to the table's width
        console.print(Text(caption))


def _settings(**given):
    from cards.config import build_settings

    return build_settings(**given)


class _Busy:
    """A transient spinner with the current step and its elapsed time, on stderr, while files are read,
    grouped and aligned: a big input is never minutes of silence. Shown only on a terminal, so stdout
    (JSON included) and captured output stay clean."""

    def __init__(self) -> None:
        self.console = _console(stderr=True)
        self.progress = None
        self.task = None

    def __call__(self, message: str) -> None:
        if not self.console.is_terminal:
            return
        if self.progress is None:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False),
                                     TimeElapsedColumn(), console=self.console, transient=True)
            self.task = self.progress.add_task(message, total=None)
            self.progress.start()
        else:
            self.progress.update(self.task, description=message)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def __enter__(self) -> _Busy:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _load(notes, transcripts, settings, busy=None, *, create_workspace: bool = False):
    from cards.pipeline import load

    return load(list(notes), list(transcripts or []), settings, on_step=busy, create_workspace=create_workspace)


@app.command()
@handled
def episodes(notes: Notes, transcripts: Transcripts = None, workspace: Workspace = None,
             json_out: JsonOpt = False) -> None:
    """List the episodes found in the notes, with their transcripts (and slugs the workspace knows)."""
    settings = _settings(workspace=workspace)
    with _Busy() as busy:
        loaded = _load(notes, transcripts, settings, busy)
    data = [e.as_dict() for e in loaded.episodes]
    if json_out:
        return _print_json(data)
    _episodes_table(data)


_EPISODE_COLUMNS = ("slug", "title", "show", "people", "date", "notes", "transcript")
# Who gets room after the slug and note count, in turn. Title, show and people wrap between words.
_EPISODE_EXTRAS = ("title", "transcript", "people", "show", "date")
_WRAPPING = {"title": (6, 16), "show": (4, 12), "people": (6, 12)}  # narrowest and widest minimum


def _episodes_table(data: list[dict]) -> None:
    """The episodes, one line each with the slug whole (it is what --episode and cards.toml take).

    After the slug and the note count, title, transcript, people, show and date get room in
    that order while the terminal has it; a column that does not fit is left out (`--json`
    has them all). Title, show and people wrap between words; a transcript name is cut with
    an ellipsis.
    """
    from rich.table import Table
    from rich.text import Text

    from cards.terminal import visible

    def transcript(e: dict) -> str:
        if not e["transcript"]:
            return "-"
        name = Path(e["transcript"]).name
        return name if e["match_score"] is None else f"{name} ({e['match_score']:.2f})"

    values = {"slug": [e["slug"] for e in data], "title": [e["title"] for e in data],
              "show": [e["show"] or "-" for e in data], "people": [", ".join(e["people"]) or "-" for e in data],
              "date": [e["date"] or "-" for e in data], "notes": [str(e["notes"]) for e in data],
              "transcript": [transcript(e) for e in data]}
    values = {k: [visible(v) for v in vs] for k, vs in values.items()}
    wanted = {k: max([len(v) for v in vs] + [len(k)]) for k, vs in values.items()}
    console = _console()
    widths = {"slug": wanted["slug"], "notes": wanted["notes"]}
    used = widths["slug"] + widths["notes"] + 7  # two columns' borders and padding
    if used > console.width:  # a slug too long for any table here: each on a line of its own
        console.print(Text("Episodes", style="bold"))
        for i in range(len(data)):
            console.print(Text(values["slug"][i]), no_wrap=True, overflow="ignore", crop=False)
            console.print(Text(f"    {values['notes'][i]} notes · transcript {values['transcript'][i]} · "
                               f"{values['title'][i]}"), no_wrap=True, overflow="ellipsis")
        return
    def narrowest(name: str) -> int:
        if name in _WRAPPING:  # the longest word, within bounds (a longer word folds)
            low, high = _WRAPPING[name]
            longest = max([len(w) for v in values[name] for w in v.split()] + [len(name)])
            return min(wanted[name], max(low, min(high, longest)))
        return min(wanted[name], 10) if name == "transcript" else wanted[name]

    for name in _EPISODE_EXTRAS:
        need = narrowest(name) + 3
        if used + need <= console.width:
            widths[name] = need - 3
            used += need
    for name in _EPISODE_EXTRAS:  # what is left widens them, in the same order
        if name in widths:
            more = min(console.width - used, wanted[name] - widths[name])
            widths[name] += more
            used += more
    columns = [c for c in _EPISODE_COLUMNS if c in widths]
    t = Table(title=Text("Episodes"))
    for name in columns:
        if name in _WRAPPING:
            t.add_column(Text(name), overflow="fold", width=widths[name])
        else:
            t.add_column(Text(name), no_wrap=True, overflow="ellipsis", width=widths[name])
    for i in range(len(data)):
        t.add_row(*[Text(values[name][i]) for name in columns])
    console.print(t)
    left_out = [c for c in _EPISODE_COLUMNS if c not in widths]
    if left_out:
        console.print(Text(f"Not shown at this width: {', '.join(left_out)} (see --json)."))


@app.command()
@handled
def align(notes: Notes, transcripts: Transcripts = None, episode: EpisodeOpt = None,
          context_tokens: ContextTokens = None, workspace: Workspace = None, json_out: JsonOpt = False) -> None:
    """Show, for each note, the transcript passage it came from."""
    from cards.pipeline import align as align_all
    from cards.models import format_span
    from cards.pipeline import select

    settings = _settings(context_tokens=context_tokens, workspace=workspace)
    with _Busy() as busy:
        loaded = _load(notes, transcripts, settings, busy)
        eps = select(loaded.episodes, episode)
        contexts = align_all(eps, settings, on_step=busy)
    data = [
        {"episode": ep.slug, "note": item.text, "note_id": item.id, "section": item.section,
         "source": {"path": item.source.path, "line": item.source.line_start},
         "context": None if ctx is None else ctx.as_dict()}
        for ep in eps for item, ctx in zip(ep.items, contexts[ep.slug])
    ]
    if json_out:
        return _print_json(data)
    rows = []
    for d in data:
        c = d["context"]
        passage = "-" if c is None else matched_part(c["text"], d["note"])
        when = "" if c is None else format_span(c["start"], c["end"]) or ""
        rows.append([d["episode"], _shorten(d["note"].split("\n")[0], 70), when,
                     "-" if c is None else f"{c['score']:.2f}", passage])
    _table("Alignment", ["episode", "note", "time", "score", "passage"], rows)


def matched_part(passage: str, note: str, width: int = 120) -> str:
    """The stretch of a passage, at most `width` characters, holding most of the note's words.

    That is the part that shows whether the alignment is right; the passage's first characters are
    often the talk before it. Cuts are marked with an ellipsis.
    """
    from cards.check import content_stems

    tokens = passage.split()
    if len(passage) <= width or not tokens:
        return _shorten(" ".join(tokens), width)
    wanted = content_stems(note)
    hits = [content_stems(t) & wanted for t in tokens]
    best, best_score = (0, 0), -1
    for i in range(len(tokens)):
        length, seen, j = -1, set(), i
        while j < len(tokens) and length + 1 + len(tokens[j]) <= width - 2:
            length += 1 + len(tokens[j])
            seen |= hits[j]
            j += 1
        # Most distinct note words; among equals, the window starting on a hit (then the earliest).
        score = len(seen) * 2 + (1 if hits[i] else 0)
        if j > i and score > best_score:
            best, best_score = (i, j), score
    i, j = best
    return ("…" if i > 0 else "") + " ".join(tokens[i:j]) + ("…" if j < len(tokens) else "")


class _Progress:
    """A rich progress bar per episode while a run goes."""

    def __init__(self, enabled: bool, notice=None, warn_long_notes: bool = False):
        self.enabled = enabled
        self.notice = notice  # said once the run has checked its inputs and is about to start
        self.warn_long_notes = warn_long_notes  # before any request: notes the prompt carries cut
        self.bars: dict[str, int] = {}
        self.progress = None

    def start(self, episodes, jobs) -> None:
        if self.notice:
            self.notice()
        if self.warn_long_notes:
            from cards.pipeline import long_notes

            _warn_long_notes([{"path": n.source.path, "line": n.source.line_start, "chars": len(n.text)}
                              for n, _ in long_notes(jobs)])
        if not self.enabled or not jobs:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=_console(stderr=True), transient=False)
        counts: dict[str, int] = {}
        for j in jobs:
            counts[j.episode.slug] = counts.get(j.episode.slug, 0) + 1
        for ep in episodes:
            if ep.slug in counts:
                self.bars[ep.slug] = self.progress.add_task(_shorten(ep.title, 48), total=counts[ep.slug])
        self.progress.start()

    def advance(self, job, ok: bool) -> None:
        if self.progress is not None:
            self.progress.advance(self.bars[job.episode.slug])

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _warn_long_notes(cut: list[dict]) -> None:
    from cards.pipeline import MAX_NOTE_CHARS

    console = _console(stderr=True)
    for n in cut[:5]:
        console.print(f"warning: {n['path']}:{n['line']}: note of {n['chars']:,} characters; the prompt carries "
                      f"its first {MAX_NOTE_CHARS:,}", soft_wrap=True)
    if len(cut) > 5:
        console.print(f"warning: {len(cut) - 5} more notes over {MAX_NOTE_CHARS:,} characters are cut as well",
                      soft_wrap=True)


def _offline_notice(settings) -> None:
    if not settings.llm_configured:
        why = "--offline was given" if settings.offline else "no OPENAI_API_KEY or --base-url is set"
        _console(stderr=True).print(
            f"Using the offline generator ({why}): simple extractive cards from your notes, no LLM.\n"
            "For real cards set OPENAI_API_KEY (and optionally --model), or point --base-url at any "
            "OpenAI-compatible server (Ollama, vLLM, LM Studio, llama.cpp).", highlight=False)


@app.command()
@handled
def generate(
    notes: Annotated[Optional[list[Path]], typer.Argument(
        help="Notes files or folders (markdown); none with --from-transcript -t PATH.", show_default=False)] = None,
    transcripts: Transcripts = None,
    episode: EpisodeOpt = None,
    workspace: Workspace = None,
    model: Model = None,
    base_url: BaseUrl = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", envvar="CARDS_CONCURRENCY",
                                                      help="Requests at once [default: 8].")] = None,
    offline: Offline = False,
    force: Annotated[bool, typer.Option("--force", help="Regenerate the selected notes even if up to date.")] = False,
    realign: Realign = False,
    prompts: Prompts = None,
    context_tokens: ContextTokens = None,
    timeout: Timeout = None,
    max_tokens: MaxTokens = None,
    structured: Structured = None,
    critic: Critic = None,
    batch: Annotated[bool, typer.Option("--batch", help="Send the requests through the Batch API: half the "
                                                         "price, results within 24 h (`cards batch`).")] = False,
    from_transcript: Annotated[bool, typer.Option(
        "--from-transcript", help="First find the key claims of episodes that have a transcript but no notes "
                                  "(or of --episode) and make them notes; needs an LLM.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Generate draft cards for new or changed notes (everything else comes from the workspace).

    Exit status: 0 all notes done, 1 some notes failed (recorded; the next run retries them),
    2 bad input or settings, 3 the run was stopped by the server (key, model, quota, reply
    format, long rate limit, redirect elsewhere, no Batch API) or because it cannot be reached,
    4 another run holds the workspace, 130 interrupted.
    """
    from cards.pipeline import generate as run

    settings = _settings(workspace=workspace, model=model, base_url=base_url, concurrency=concurrency,
                         offline=offline or None, prompts=prompts, context_tokens=context_tokens,
                         timeout=timeout, max_tokens=max_tokens, structured=structured, critic=critic)
    if from_transcript and not settings.llm_configured:
        from cards.pipeline import check_extraction

        check_extraction(settings)
    extracted = None
    with _Busy() as busy:
        loaded = _load(notes or [], transcripts, settings, busy, create_workspace=True)
        if from_transcript:
            busy("finding claims in transcripts")
            extracted = _extract(loaded, settings, episode, busy)
        busy("aligning notes to transcripts and planning the run")

        def notice() -> None:
            busy.stop()  # the run's own progress bars take over
            _offline_notice(settings)

        progress = _Progress(not json_out, notice=notice, warn_long_notes=settings.llm_configured)
        summary = run(loaded, settings, episode=episode, force=force, realign=realign, progress=progress,
                      notify=_say, batch=batch)
    if json_out:
        _print_json(summary.as_dict() | ({"from_transcript": extracted} if extracted is not None else {}))
    else:
        if summary.collected:
            _print_notices([_collected_line(summary.collected)])
        _print_notices(summary.notices)
        _print_summary(summary, settings)
    if summary.failures or (extracted or {}).get("found", {}).get("failed"):
        raise typer.Exit(1)  # recorded, and retried by the next run


def _extract(loaded, settings, episode, busy) -> dict:
    """Find claims in transcripts, saying first what it costs; returns what was found."""
    from cards.pipeline import extract_claims, extraction_plan

    plan = extraction_plan(loaded, settings, episode=episode)
    data = plan.as_dict()
    busy.stop()
    err = _console(stderr=True)
    if not plan.episodes:
        err.print("--from-transcript: no episode has a transcript without notes (give --episode SLUG to pick one)",
                  highlight=False, markup=False, soft_wrap=True)
        return data
    from cards.models import plural

    cost = "cost unknown (model not in the price table)" if plan.cost is None else f"~${plan.cost:.4f}"
    done = f"; {plural(plan.done, 'stretch', 'stretches')} asked about before" if plan.done else ""
    if plan.requests:
        err.print(f"Finding claims in {_plural(len(plan.episodes), 'transcript')}: "
                  f"{_plural(len(plan.requests), 'request')}, ~{plan.tokens_in:,} tokens in, ~{plan.tokens_out:,} "
                  f"out, {cost}{done}; then each claim is a note for cards",
                  highlight=False, markup=False, soft_wrap=True)
    else:
        err.print(f"Claims of {_plural(len(plan.episodes), 'transcript')}: all "
                  f"{plural(plan.done, 'stretch', 'stretches')} asked about before; nothing to send",
                  highlight=False, markup=False, soft_wrap=True)
    if plan.requests:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("finding claims", markup=False), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal)
        task = bar.add_task("claims", total=len(plan.requests))
        with bar:
            got = extract_claims(plan, settings, notify=_say,
                                 on_done=lambda: bar.advance(task))
        data["found"] = got
        line = f"found {_plural(got['claims'], 'claim')}"
        if got["dropped"]:
            line += f" ({got['dropped']} dropped: quote not in the transcript, or over the stretch's share)"
        if got["failed"]:
            line += f"; {plural(len(got['failed']), 'stretch', 'stretches')} failed (asked again on the next run): " \
                    f"{got['failed'][0]['error']}"
        err.print(line, highlight=False, markup=False, soft_wrap=True)
    return data


def _print_notices(notices: list[str]) -> None:
    for line in notices:
        _console(stderr=True).print(line, highlight=False, markup=False)


def _checked(summary) -> str:
    """What the claims check set aside and what the critic did, for the run table's caption."""
    a, c = summary.set_aside, summary.critic_counts
    aside = [f"{n} {k}" for k, n in sorted(a.items())]
    critic = [f"{c[k]} {k}" for k in ("kept", "rewritten", "dropped", "failed") if c.get(k)]
    out = f"; set aside (rejected): {', '.join(aside)}" if aside else ""
    if summary.critic and critic:
        out += f"; critic {summary.critic}: {', '.join(critic)}"
    return out


def _print_summary(summary, settings) -> None:
    rows = [[r["episode"], r["notes"], r["cards"], r["cached"], r["failed"], r["tokens_in"], r["tokens_out"]]
            for r in summary.per_episode]
    t = summary.total
    rows.append(["total", t["notes"], t["cards"], t["cached"], t["failed"], t["tokens_in"], t["tokens_out"]])
    cost = f"${summary.cost:.4f}" if summary.priced else "unknown (model not in the price table)"
    gen = "offline generator" if summary.generator == "offline" else f"{summary.model}"
    _table(f"Run {summary.run_id}: {gen}, prompt {summary.prompt_version}",
           ["episode", "notes", "cards", "from cache", "failed", "tokens in", "tokens out"], rows,
           caption=f"estimated cost {cost}; {_plural(summary.skipped, 'note')} already up to date"
                   + (("; made offline: " if summary.generator == "offline" else "; sent: ")
                      + ", ".join(f"{n} × {why}" for why, n in summary.reasons.items()) if summary.reasons else "")
                   + (f"; {_plural(summary.waiting, 'new note')} waiting for a transcript"
                      if summary.waiting else "")
                   + f"; {_plural(summary.duplicates, 'duplicate')} marked"
                   + _checked(summary))
    if summary.failures:
        reasons: dict[str, int] = {}
        for f in summary.failures:
            reasons[f["error"]] = reasons.get(f["error"], 0) + 1
        _console(stderr=True).print(f"{_plural(len(summary.failures), 'note')} failed (retried on the next run):",
                                    highlight=False, markup=False)
        for reason, n in sorted(reasons.items(), key=lambda x: -x[1]):
            _console(stderr=True).print(f"  {n} × {reason}", highlight=False, markup=False)


@app.command()
@handled
def estimate(
    notes: Annotated[Optional[list[Path]], typer.Argument(
        help="Notes files or folders (markdown); none with --from-transcript -t PATH.", show_default=False)] = None,
    transcripts: Transcripts = None,
    episode: EpisodeOpt = None,
    workspace: Workspace = None,
    model: Model = None,
    base_url: BaseUrl = None,
    offline: Offline = False,
    force: Annotated[bool, typer.Option("--force", help="Count the selected notes even if up to date.")] = False,
    realign: Realign = False,
    prompts: Prompts = None,
    context_tokens: ContextTokens = None,
    critic: Critic = None,
    batch: Annotated[bool, typer.Option("--batch", help="Price the run at Batch API prices (half).")] = False,
    from_transcript: Annotated[bool, typer.Option(
        "--from-transcript", help="Also price finding the claims of transcripts without notes.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """What a generate run would send: requests, tokens and dollars. Sends nothing."""
    from cards.pipeline import estimate as est

    settings = _settings(workspace=workspace, model=model, base_url=base_url, offline=offline or None,
                         prompts=prompts, context_tokens=context_tokens, critic=critic)
    with _Busy() as busy:
        loaded = _load(notes or [], transcripts, settings, busy)
        busy("aligning notes to transcripts")
        data = est(loaded, settings, episode=episode, force=force, realign=realign, batch=batch)
        if from_transcript:
            from cards.pipeline import extraction_plan

            data["from_transcript"] = extraction_plan(loaded, settings, episode=episode).as_dict()
    if settings.llm_configured:
        _warn_long_notes(data["notes_cut"])
    if json_out:
        return _print_json(data)
    _print_notices(data["notices"])
    if not settings.llm_configured:
        _print_notices(["--offline: nothing would be sent; the offline generator makes these cards for free"
                        if settings.offline else f"no API key: this prices a run with {settings.model}; "
                        "without a key, `cards generate` makes offline cards for new notes only"])
    rows = [[e["episode"], e["requests"], e["tokens_in"]] for e in data["episodes"]]
    rows.append(["total", data["requests"], data["tokens_in"]])
    cost = "unknown (model not in the price table)" if data["cost_usd"] is None else f"${data['cost_usd']:.4f}"
    if data["batch"] and data["cost_usd"] is not None:
        cost += f" with the Batch API (live: ${data['cost_live_usd']:.4f})"
    if from_transcript:
        x = data["from_transcript"]
        x_cost = "unknown" if x["cost_usd"] is None else f"${x['cost_usd']:.4f}"
        _print_notices([f"finding claims in {_plural(len(x['episodes']), 'transcript')}: "
                        f"{_plural(x['requests'], 'request')}, ~{x['tokens_in']:,} tokens in, cost {x_cost} (live); "
                        f"then up to {_plural(x['max_claims'], 'claim')}, each a card request"])
    _table(f"Estimate for {data['model']}", ["episode", "requests", "tokens in"], rows,
           caption=f"~{data['tokens_out_estimate']} tokens out; cost {cost} (prices of {data['prices_date']}); "
                   f"tokens: {data['token_counter']}")
    c = data["critic"]
    price = "unknown" if c["cost_usd"] is None else f"${c['cost_usd']:.4f}"
    state = "on, included above" if c["enabled"] else "off; --critic adds it"
    _console().print(f"critic ({c['version']}, {state}): up to {c['requests']} more requests, "
                     f"~{c['tokens_in']} tokens in, ~{c['tokens_out_estimate']} out, {price}",
                     highlight=False, markup=False)


DRAFTS_SHOWN = 50  # rows `cards drafts` shows unless told --limit


@app.command()
@handled
def drafts(
    workspace: Workspace = None,
    episode: EpisodeOpt = None,
    status: Annotated[Optional[str], typer.Option("--status", "-s",
                                                  help="draft, approved, rejected or duplicate.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include superseded drafts.")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=0, help=f"Show at most this many; 0 shows "
                                                 f"every one [default: {DRAFTS_SHOWN} in the table, all with "
                                                 "--json].", show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the drafts in the workspace."""
    from cards.models import DRAFT_STATUSES
    from cards.store import Store

    if status and status not in DRAFT_STATUSES:
        raise CardsError(f"unknown status {status!r} (one of {', '.join(DRAFT_STATUSES)})")
    settings = _settings(workspace=workspace)
    with Store(settings.workspace, readonly=True) as store:
        items = store.drafts(episode=episode, status=status, include_superseded=all_)
    total = len(items)
    if limit is None and not json_out:
        limit = DRAFTS_SHOWN  # a season is hundreds of drafts: thousands of lines nobody scrolls back through
    if limit:
        items = items[:limit]
    if json_out:
        return _print_json([d.as_dict() for d in items])
    why = any(d.reason for d in items)  # why a card was set aside or rewritten when it was made
    _table(_plural(total, "draft") + (f", the first {len(items)} shown" if len(items) < total else ""),
           ["id", "episode", "status", "kind", "front", "back", "warnings"] + (["reason"] if why else []),
           [[d.id[:8], d.episode,
             d.status + (" (superseded)" if d.superseded else " (revision)" if d.revision_of else ""), d.kind,
             _shorten(d.front, 80), _shorten(d.back, 60), len(d.warnings)]
            + ([_shorten(d.reason, 40)] if why else []) for d in items],
           caption=(f"{total - len(items)} more: --limit 0 shows every one, --episode or --status fewer"
                    if len(items) < total else None))


@app.command()
@handled
def dedupe(
    workspace: Workspace = None,
    episode: EpisodeOpt = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Similarity, 0 to 1, to call two cards the same.")]
    = 0.85,
    json_out: JsonOpt = False,
) -> None:
    """Check every draft again and mark duplicates (within and across episodes, and against exported cards)."""
    from cards.pipeline import check_and_dedupe
    from cards.store import Store

    if not 0 < threshold <= 1:
        raise CardsError("threshold must be between 0 and 1")
    settings = _settings(workspace=workspace)
    with Store(settings.workspace, create=False) as store:
        n = check_and_dedupe(store, episode, threshold=threshold)
        dups = [d for d in store.drafts(episode=episode, status="duplicate", include_superseded=False)]
    if json_out:
        return _print_json({"duplicates": n, "drafts": [{"id": d.id, "front": d.front,
                                                         "duplicate_of": d.duplicate_of} for d in dups]})
    _table(_plural(n, "duplicate"), ["id", "episode", "front", "duplicate of"],
           [[d.id[:8], d.episode, _shorten(d.front, 80), (d.duplicate_of or "")[:8]] for d in dups])


@app.command()
@handled
def review(workspace: Workspace = None, episode: EpisodeOpt = None) -> None:
    """Review drafts one by one: approve, reject, edit, skip, undo."""
    from cards.pipeline import known_episode
    from cards.review import run_review
    from cards.store import Store

    settings = _settings(workspace=workspace)
    with Store(settings.workspace, create=False) as store:
        known_episode(store, episode)
        summary = run_review(store, episode)
        if any(summary[k] for k in ("approved", "rejected", "edited", "undup")):
            from cards.pipeline import check_and_dedupe

            check_and_dedupe(store, episode)  # edits and decisions change which card of a pair to keep
    if not summary["total"]:
        _console().print("Nothing to review.")
        return
    _console().print(
        f"{summary['approved']} approved, {summary['rejected']} rejected, {summary['edited']} edited, "
        f"{summary['remaining']} of {summary['total']} still undecided"
        + (f" (revisions: {summary['revisions_accepted']} accepted, {summary['revisions_kept']} old kept)"
           if summary.get("revisions_accepted") or summary.get("revisions_kept") else "") + ".",
        highlight=False, markup=False)
    if summary.get("signal"):  # ctrl+c, SIGINT, SIGTERM or SIGHUP: the shell sees 128 + its number
        import signal

        _err(f"review stopped by {signal.Signals(summary['signal']).name}; every decision made is saved")
        raise typer.Exit(128 + summary["signal"])


def _decide(ids: list[str], workspace, episode, all_: bool, status: str, json_out: bool,
            yes: bool = False) -> None:
    from cards.pipeline import known_episode
    from cards.store import Store

    settings = _settings(workspace=workspace)
    with Store(settings.workspace, create=False) as store:
        if all_:
            if ids:
                raise CardsError("give draft ids or --all, not both")
            known_episode(store, episode)
            drafts = store.drafts(episode=episode, status="draft", include_superseded=False)
            targets = [d.id for d in drafts]
            if episode is None and targets and not yes:
                _confirm_all(status, drafts)
        else:
            if not ids:
                raise CardsError("give draft ids, or --episode SLUG --all")
            targets = store.resolve_ids(ids)
        with store.tx():  # all or nothing: a superseded id among them leaves every draft as it was
            changed = [store.update_draft(i, action=status, status=status) for i in targets]
    if json_out:
        return _print_json([{"id": d.id, "status": d.status} for d in changed])
    _console().print(f"{_plural(len(changed), 'draft')} {status}.", highlight=False)


def _confirm_all(status: str, drafts) -> None:
    """Every episode at once is a big step: say how many drafts in how many episodes, and ask."""
    n_eps = len({d.episode for d in drafts})
    verb = {"approved": "Approve", "rejected": "Reject"}[status]
    question = f"{verb} {_plural(len(drafts), 'undecided draft')} in {_plural(n_eps, 'episode')}?"
    try:
        confirmed = typer.confirm(question, default=False, err=True)
    except typer.Abort:  # no answer: stdin closed or not a person
        confirmed = False
    if not confirmed:
        raise CardsError("not confirmed, nothing changed (--yes decides without asking; --episode SLUG "
                         "decides one episode)")


Ids = Annotated[Optional[list[str]], typer.Argument(help="Draft ids (or unique prefixes).", show_default=False)]
AllOpt = Annotated[bool, typer.Option("--all", help="Every undecided draft of --episode, or of every episode "
                                                    "(after a confirmation).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before deciding every episode's drafts.")]


@app.command()
@handled
def approve(ids: Ids = None, workspace: Workspace = None, episode: EpisodeOpt = None, all_: AllOpt = False,
            yes: YesOpt = False, json_out: JsonOpt = False) -> None:
    """Approve drafts for export."""
    _decide(ids or [], workspace, episode, all_, "approved", json_out, yes)


@app.command()
@handled
def reject(ids: Ids = None, workspace: Workspace = None, episode: EpisodeOpt = None, all_: AllOpt = False,
           yes: YesOpt = False, json_out: JsonOpt = False) -> None:
    """Reject drafts: they are never exported."""
    _decide(ids or [], workspace, episode, all_, "rejected", json_out, yes)


@app.command()
@handled
def edit(
    draft_id: Annotated[str, typer.Argument(help="Draft id (or a unique prefix).")],
    front: Annotated[Optional[str], typer.Option("--front", help="New question / cloze text.")] = None,
    back: Annotated[Optional[str], typer.Option("--back", help="New answer.")] = None,
    workspace: Workspace = None,
    json_out: JsonOpt = False,
) -> None:
    """Edit a draft's front or back; it keeps its id, so Anki updates the same note."""
    from cards.check import edit_problem
    from cards.pipeline import check_and_dedupe
    from cards.store import Store

    if front is None and back is None:
        raise CardsError("give --front and/or --back")
    settings = _settings(workspace=workspace)
    with Store(settings.workspace, create=False) as store:
        (full,) = store.resolve_ids([draft_id])
        fields = {k: v.strip() for k, v in (("front", front), ("back", back)) if v is not None}
        current = store.draft(full)
        problem = edit_problem(current.kind, fields.get("front", current.front), fields.get("back", current.back))
        if problem:
            raise CardsError(problem)
        store.update_draft(full, action="edit", **fields)
        check_and_dedupe(store, store.draft(full).episode)
        d = store.draft(full)
    if json_out:
        return _print_json(d.as_dict())
    _console().print(f"Edited {d.id[:8]}: {d.front}", highlight=False, markup=False)


@app.command()
@handled
def status(
    notes: Annotated[Optional[list[Path]], typer.Argument(help="Notes files or folders: also show what the next "
                                                               "generate would send.", show_default=False)] = None,
    transcripts: Transcripts = None,
    episode: EpisodeOpt = None,
    workspace: Workspace = None,
    model: Model = None,
    base_url: BaseUrl = None,
    offline: Offline = False,
    prompts: Prompts = None,
    all_: Annotated[bool, typer.Option("--all", help="List every episode, also those with nothing to do.")]
    = False,
    json_out: JsonOpt = False,
) -> None:
    """Per episode: notes, what the next generate would send and why, drafts, and what export would do."""
    from cards.pipeline import status as run

    settings = _settings(workspace=workspace, model=model, base_url=base_url, offline=offline or None,
                         prompts=prompts)
    with _Busy() as busy:
        loaded = _load(notes, transcripts, settings, busy) if notes else None
        busy("comparing notes with the workspace")
        data = run(settings, loaded, episode=episode)
    if json_out:
        return _print_json(data)
    _print_notices(data["notices"])
    rows = []
    reasons: dict[str, int] = {}
    quiet = 0
    for e in data["episodes"]:
        n, d, x, send = e.get("notes"), e["drafts"], e["export"], e.get("next_generate")
        for why, k in (send or {}).get("reasons", {}).items():
            reasons[why] = reasons.get(why, 0) + k
        busy = (e["missing"] or (send or {}).get("requests") or d["draft"] or d["pending_revisions"]
                or x["new"] or x["updated"] or x["left_in_anki"])
        if not busy and not all_ and episode is None:
            quiet += 1  # a year of episodes with nothing to do would bury the few that have
            continue
        rows.append([e["episode"] + (" (gone)" if e["missing"] else ""),
                     "-" if n is None else sum(n.values()), "-" if send is None else send["requests"],
                     d["draft"], d["approved"], d["pending_revisions"],
                     x["new"], x["updated"], x["unchanged"], x["left_in_anki"]])
    _table("Status", ["episode", "notes", "send", "draft", "appr", "rev", "new", "upd", "same", "left"], rows,
           caption="send: requests the next generate makes; rev: pending revisions; new/upd/same: what "
                   "export does in Anki; left: cards ended here but still in Anki"
                   + ("" if notes else "; give your notes files to see what generate would send")
                   + (f"; {_plural(quiet, 'more episode')} with nothing to do (--all lists them)"
                      if quiet else ""))
    if reasons:
        _console().print("Next generate sends: " + ", ".join(f"{k} × {why}" for why, k in reasons.items()),
                         highlight=False, markup=False)
    _print_left(data["episodes"])


AudioOpt = Annotated[Optional[Path], typer.Option("--audio", help="The episode's audio file (with --episode), or "
                                                                  "a folder of audio named like the transcripts "
                                                                  "or slugs: each card gets its moment as a clip.")]
IncludeDrafts = Annotated[bool, typer.Option("--include-drafts", help="Also export unreviewed drafts.")]
DeckPrefix = Annotated[Optional[str], typer.Option("--deck-prefix", envvar="CARDS_DECK_PREFIX",
                                                   help="Parent deck [default: Podcasts].")]


class _ClipProgress(_Busy):
    """The clips being cut, per episode, as a transient line on stderr."""

    def __init__(self) -> None:
        super().__init__()
        self.total = self.done = 0

    def clip(self, slug: str, n: int) -> None:
        if n:
            self.total, self.done = n, 0
        else:
            self.done += 1
        self(f"cutting audio clips for {slug}: {self.done} of up to {self.total}")


@app.command()
@handled
def export(
    workspace: Workspace = None,
    episode: EpisodeOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder [default: the workspace].")]
    = None,
    include_drafts: IncludeDrafts = False,
    deck_prefix: DeckPrefix = None,
    audio: AudioOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write one .apkg per episode with its approved cards."""
    from cards.pipeline import export as run

    settings = _settings(workspace=workspace, deck_prefix=deck_prefix)
    with _ClipProgress() as progress:
        written = run(settings, episode=episode, out=out, include_drafts=include_drafts, audio=audio,
                      on_clip=progress.clip)
    if json_out:
        return _print_json(written)
    _print_written(written, include_drafts, "Exported")


@app.command()
@handled
def push(
    workspace: Workspace = None,
    episode: EpisodeOpt = None,
    include_drafts: IncludeDrafts = False,
    deck_prefix: DeckPrefix = None,
    audio: AudioOpt = None,
    anki_url: Annotated[Optional[str], typer.Option("--anki-url", envvar="CARDS_ANKI_URL",
                                                    help="AnkiConnect's address [default: "
                                                         "http://127.0.0.1:8765].")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Export, then import each deck into the running Anki through AnkiConnect."""
    from cards.pipeline import push as run

    settings = _settings(workspace=workspace, deck_prefix=deck_prefix, anki_url=anki_url)
    with _ClipProgress() as progress:
        written = run(settings, episode=episode, include_drafts=include_drafts, audio=audio, on_clip=progress.clip)
    if json_out:
        return _print_json(written)
    _print_written(written, include_drafts, "Pushed to Anki")


def _print_written(written: list[dict], include_drafts: bool, title: str) -> None:
    if not any(w["path"] for w in written):
        hint = "" if include_drafts else " (approve some with `cards review`, or pass --include-drafts)"
        _console().print(f"No cards to export{hint}.", highlight=False)
    if written:
        audio = any("clips" in w for w in written)
        columns = ["episode", "cards", "new", "updated", "unchanged", "left in Anki"] + (["clips"] if audio else [])
        _table(title, columns,
               [[w["episode"], w["cards"], w["new"], w["updated"], w["unchanged"], w["left_in_anki"]]
                + ([w.get("clips", "-")] if audio else []) for w in written])
        for w in written:
            if w.get("no_clips"):
                _console().print(f"No clips for {w['episode']}: {w['no_clips']}.", highlight=False, markup=False)
    paths = [Path(w["path"]) for w in written if w["path"]]
    if paths:
        folders = sorted({str(p.parent) for p in paths})
        _console().print(f"{_plural(len(paths), 'deck')} written to {', '.join(folders)} "
                         f"({', '.join(p.name for p in paths[:3])}{', …' if len(paths) > 3 else ''}); "
                         "import each with File > Import in Anki.", highlight=False, markup=False, soft_wrap=True)
    _print_left(written)
    left_out = sum(w["unreviewed_left_out"] for w in written)
    pending = sum(w["pending_revisions"] for w in written)
    if left_out or pending:
        _console().print(f"Left out: {left_out} unreviewed drafts and {pending} pending revisions "
                         "(review them with `cards review`).", highlight=False, markup=False)


def _print_left(rows: list[dict]) -> None:
    left = [c for r in rows for c in r.get("left_in_anki_cards", r.get("left_in_anki", []))]
    if left:
        _console().print(f"{len(left)} cards ended here but are still in Anki (Anki never deletes on import); "
                         "find them there by their front and delete them:", highlight=False, markup=False)
        for c in left:
            _console().print(f"  {c['guid']}  {c['front'] or ''}", highlight=False, markup=False)


# -- batches -------------------------------------------------------------------------------------

batch_app = typer.Typer(help="Batches sent with `cards generate --batch`: status, collect, cancel.",
                        no_args_is_help=True, rich_markup_mode=None)


def _collected_line(data: dict) -> str:
    """One line saying what importing finished batches did."""
    from cards.models import plural

    parts = [f"imported {plural(data['imported'], 'result')} of "
             f"{plural(len(data['batches']), 'finished batch', 'finished batches')}"]
    if data["failed"]:
        parts.append(f"{data['failed']} failed (retried on the next run)")
    if data["skipped"]:
        parts.append(f"{data['skipped']} already done or no longer needed")
    if data["sent_again_next_run"]:
        parts.append(f"{plural(data['sent_again_next_run'], 'request')} of expired or cancelled batches are sent "
                     "again by the next run")
    if data["still_open"]:
        parts.append(f"{plural(len(data['still_open']), 'batch', 'batches')} still running")
    if data.get("cost_usd") is not None and data["imported"]:
        parts.append(f"cost ${data['cost_usd']:.4f} at batch prices")
    return "; ".join(parts)


def _batch_settings(workspace, base_url, *, need_llm: bool):
    from cards.errors import ConfigError

    settings = _settings(workspace=workspace, base_url=base_url)
    if need_llm and not settings.llm_configured:
        raise ConfigError("batches live on the LLM server: set OPENAI_API_KEY (or --base-url)")
    return settings


def _show_batches(records, json_out: bool) -> None:
    if json_out:
        return _print_json([r.as_dict() for r in records])
    rows = [[r.id, r.status, r.requests, r.completed, r.failed, r.imported, "open" if r.closed is None else "done"]
            for r in records]
    _table("Batches", ["batch", "state", "requests", "completed", "failed", "imported", "here"], rows,
           caption=None if records else "no batches in this workspace")


@batch_app.command("status")
@handled
def batch_status(workspace: Workspace = None, base_url: BaseUrl = None, json_out: JsonOpt = False) -> None:
    """Each batch's state and request counts; open batches are asked about (with a key set)."""
    from cards import batch
    from cards.pipeline import batch_client
    from cards.store import Store

    settings = _batch_settings(workspace, base_url, need_llm=False)
    with Store(settings.workspace, create=False) as store:
        if settings.llm_configured and batch.batches(store, open_only=True):
            with batch_client(settings) as client:
                records = batch.refresh(store, client)
        else:
            records = batch.batches(store)
    _show_batches(records, json_out)


@batch_app.command("collect")
@handled
def batch_collect(workspace: Workspace = None, base_url: BaseUrl = None, json_out: JsonOpt = False) -> None:
    """Import the results of finished batches; collecting twice adds nothing.

    Exit status: 0 done, 1 some results were failures (recorded; the next run retries them),
    2 bad settings or workspace, 3 the server cannot be reached or refuses, 4 a run holds the workspace.
    """
    from cards.pipeline import collect_batches
    from cards.store import Store

    settings = _batch_settings(workspace, base_url, need_llm=True)
    with Store(settings.workspace, create=False) as store, store.exclusive("cards generate"):
        data = collect_batches(store, settings)
    if json_out:
        _print_json(data or {"batches": [], "imported": 0})
    else:
        _console().print(_collected_line(data) if data else "no open batches", highlight=False, markup=False)
    if data.get("failed"):
        raise typer.Exit(1)


@batch_app.command("cancel")
@handled
def batch_cancel(ids: Annotated[Optional[list[str]], typer.Argument(help="Batch ids [default: every open batch].",
                                                                    show_default=False)] = None,
                 workspace: Workspace = None, base_url: BaseUrl = None, json_out: JsonOpt = False) -> None:
    """Cancel open batches; what they finished is still imported by `collect`."""
    from cards import batch
    from cards.pipeline import batch_client
    from cards.store import Store

    settings = _batch_settings(workspace, base_url, need_llm=True)
    with Store(settings.workspace, create=False) as store, batch_client(settings) as client:
        records = batch.cancel(store, client, ids)
    _show_batches(records, json_out)


app.add_typer(batch_app, name="batch")


def main() -> None:
    # Notes are full of emoji and curly quotes; a terminal that cannot show them
    # gets a replacement character rather than a traceback.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    app()


if __name__ == "__main__":
    main()
