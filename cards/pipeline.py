"""The library's main jobs, as plain functions the CLI (or any program) calls.

load -> align -> generate (LLM or offline, cached, incremental) -> check + dedupe -> export.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cards.config import PRICES_DATE, Settings
from cards.errors import GenerationError, InputError
from cards.models import (Context, Draft, Episode, NoteItem, Transcript, content_hash, format_span,
                          generation_spec, plural, stable_id)

NOTE_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".org"}
TRANSCRIPT_SUFFIXES = {".txt", ".srt", ".vtt", ".text", ".md"}
SKIP_NAMES = {"readme.md", "readme.txt", "readme"}
OUTPUT_TOKENS_GUESS = 180  # per note, for estimates: one to three short cards as JSON
# A note longer than this goes into the prompt cut, with a marker; real bullets are far shorter
# (the longest of the seeds is about 600 characters). The note itself, and its id, stay whole.
MAX_NOTE_CHARS = 4000
NOTE_CUT_MARK = "\n[… the rest of this note was cut: it is longer than {limit:,} characters]"


# -- loading ---------------------------------------------------------------------------------

def _expand(paths: list[Path], suffixes: set[str], what: str) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if not p.exists():
            raise InputError("no such file or folder", path=str(p))
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes
                           and f.name.lower() not in SKIP_NAMES and not f.name.startswith("."))
            if not found:
                raise InputError(f"folder has no {what} files ({', '.join(sorted(suffixes))})", path=str(p))
            files.extend(found)
        else:
            files.append(p)
    return list(dict.fromkeys(files))


@dataclass
class Loaded:
    episodes: list[Episode]
    note_files: list[str]
    transcript_files: list[str]
    notices: list[str] = field(default_factory=list)  # things the person should know, one line each


Step = Callable[[str], None]  # told what a long step is doing, for a progress display


def _no_step(message: str) -> None:
    pass


def input_files(notes: list[Path], transcripts: list[Path]) -> tuple[list[Path], list[Path]]:
    """The notes and transcript files named, folders expanded; a file given as both is a transcript."""
    t_files = _expand(transcripts, TRANSCRIPT_SUFFIXES, "transcript")
    t_set = {f.resolve() for f in t_files}
    n_files = [f for f in _expand(notes, NOTE_SUFFIXES, "notes") if f.resolve() not in t_set]
    if not n_files and not t_files:
        raise InputError("no notes files given")
    return n_files, t_files


def _read_each(files: list[Path], parse, what: str, step: Step) -> list:
    out = []
    for i, f in enumerate(files, 1):
        step(f"reading {what} {i}/{len(files)}: {f.name}")
        out.append(parse(f))
    return out


def read_notes(files: list[Path], cache=None, step: Step = _no_step) -> list:
    """Every notes file's sections, in file order; from the cache where the content was parsed before."""
    from cards.ingest.notes import parse_notes

    return [s for sections in _read_each(files, cache.notes if cache else parse_notes, "notes", step)
            for s in sections]


def read_transcripts(files: list[Path], cache=None, step: Step = _no_step) -> list:
    """Every transcript, parsed; from the cache where the content was parsed before."""
    from cards.ingest.transcripts import parse_transcript

    return _read_each(files, cache.transcript if cache else parse_transcript, "transcripts", step)


def group_episodes(sections: list, transcripts: list, settings: Settings, cache=None,
                   step: Step = _no_step) -> list[Episode]:
    from cards.episodes import build_episodes

    step(f"grouping {plural(len(sections), 'note section')} into episodes")
    return build_episodes(sections, transcripts, settings.pins, match=cache.match if cache else None)


def load(notes: list[Path], transcripts: list[Path], settings: Settings, on_step: Step | None = None, *,
         create_workspace: bool = False) -> Loaded:
    """Read every notes and transcript file and group them into episodes.

    Files parsed before (same content, same code) come from the workspace's cache
    when there is a workspace; `create_workspace` makes one for commands that
    write it anyway.
    """
    from cards.cache import FileCache, open_store
    from cards.store import Store, damaged

    step = on_step or _no_step
    n_files, t_files = input_files(notes, transcripts)
    store = open_store(settings.workspace)
    try:
        cache = FileCache(store) if store is not None or create_workspace else None
        sections = read_notes(n_files, cache, step)
        parsed = read_transcripts(t_files, cache, step)
        episodes = group_episodes(sections, parsed, settings, cache, step)
        if store is None and create_workspace:  # made or upgraded only once the input read cleanly
            store = Store(settings.workspace)
        if cache is not None and cache.dirty:
            cache.flush(store)
        notices = recognise_episodes(episodes, store, settings.pins) if store is not None else []
    except sqlite3.DatabaseError as e:
        raise damaged(e, store.path if store is not None else settings.workspace) from None
    finally:
        if store is not None:
            store.close()
    return Loaded(episodes, [str(f) for f in n_files], [str(f) for f in t_files], notices)


def recognise_episodes(episodes: list[Episode], store, pins: dict) -> list[str]:
    """Give an episode whose heading was reworded the slug the workspace knows it by.

    An episode with a slug the workspace has never seen, whose notes mostly (half or
    more) are the current notes of a known episode absent from this reading, is that
    episode: it keeps its slug (so its note ids, cards and deck), and the new heading
    becomes its title. Pinned episodes keep the slug their pin gives them.
    """
    from dataclasses import replace

    from cards.models import normalise

    known = {e.slug: e for e in store.episodes()}
    present = {e.slug for e in episodes}
    unknown = [e for e in episodes if e.slug not in known and e.slug not in pins and e.items]
    if not unknown:
        return []
    texts = {slug: {normalise(t) for t in ts} for slug, ts in store.active_note_texts().items()
             if slug not in present}
    notices = []
    for ep in unknown:
        mine = {normalise(i.text) for i in ep.items}
        best, overlap = None, 0
        for slug, theirs in texts.items():
            shared = len(mine & theirs)
            if shared > overlap:
                best, overlap = slug, shared
        if best is None or overlap * 2 < len(mine) or (overlap < 2 and len(mine) > 1):
            continue
        old_title = known[best].title
        ep.slug = best
        ep.items = [replace(i, episode=best, id=NoteItem.make_id(best, i.text)) for i in ep.items]
        del texts[best]
        notices.append(f"heading reworded: {ep.title!r} is the episode {best} (was {old_title!r}); "
                       "it keeps its cards and deck")
    return notices


def select(episodes: list[Episode], slug: str | None) -> list[Episode]:
    if slug is None:
        return episodes
    chosen = [e for e in episodes if e.slug == slug]
    if not chosen:
        known = ", ".join(e.slug for e in episodes) or "none"
        raise InputError(f"no episode {slug!r} (known: {known})")
    return chosen


def known_episode(store, slug: str | None) -> None:
    """Refuse an --episode the workspace has never seen, listing the ones it has."""
    if slug is None:
        return
    slugs = [e.slug for e in store.episodes()]
    if slug not in slugs:
        raise InputError(f"no episode {slug!r} in the workspace (known: {', '.join(slugs) or 'none'})")


def align(episodes: list[Episode], settings: Settings, counter=None,
          on_episode: Callable[[Episode], None] | None = None,
          on_step: Step | None = None) -> dict[str, list[Context | None]]:
    from cards.align import align_episode
    from cards.tokens import counter_for

    counter = counter or counter_for(settings.model)
    out = {}
    for i, ep in enumerate(episodes, 1):
        if on_step and ep.transcript is not None:
            on_step(f"aligning {i}/{len(episodes)}: {ep.slug} ({plural(len(ep.items), 'note')})")
        out[ep.slug] = align_episode(ep.items, ep.transcript, counter, settings.context_tokens)
        if on_episode:
            on_episode(ep)
    return out


# -- requests ----------------------------------------------------------------------------------

def _neighbours(items: list[NoteItem], i: int, k: int = 2) -> str:
    lines = []
    for j in range(max(0, i - k), min(len(items), i + k + 1)):
        if j != i:
            first = items[j].text.split("\n", 1)[0]
            lines.append("- " + (first[:160] + "…" if len(first) > 160 else first))
    return "\n".join(lines) or "(none)"


def prompt_note(text: str) -> str:
    """The note as the prompt carries it: whole, or cut at MAX_NOTE_CHARS with a marker."""
    if len(text) <= MAX_NOTE_CHARS:
        return text
    return text[:MAX_NOTE_CHARS] + NOTE_CUT_MARK.format(limit=MAX_NOTE_CHARS)


def long_notes(jobs) -> list[tuple[NoteItem, Episode]]:
    """The notes of these jobs that the prompt carries cut."""
    return [(j.note, j.episode) for j in jobs if len(j.note.text) > MAX_NOTE_CHARS]


def _schema_json() -> str:
    from cards.schema import CardSet

    return json.dumps(CardSet.model_json_schema(), sort_keys=True)


@dataclass(frozen=True)
class Job:
    episode: Episode
    note: NoteItem
    context: Context | None
    spec: str  # content_hash of `parts`
    parts: dict
    request: object  # cards.generate.base.Request


def build_jobs(episodes: list[Episode], contexts: dict[str, list[Context | None]], template,
               generator_name: str, model: str, only: set[str] | None = None) -> list[Job]:
    """The request for each note (of `only`, when given), rendered from the prompt template."""
    from cards.generate.base import Request
    from cards.prompts import render_passage

    schema = _schema_json()
    jobs = []
    for ep in episodes:
        for i, (item, ctx) in enumerate(zip(ep.items, contexts[ep.slug])):
            if only is not None and item.id not in only:
                continue
            messages = template.render(
                episode_title=ep.full_title or ep.title, show=ep.show or "", people=", ".join(ep.people),
                date=ep.date or "", section=item.section or "", neighbours=_neighbours(ep.items, i),
                note=prompt_note(item.text), passage=render_passage(ctx.parts if ctx else ()),
                time=(format_span(ctx.start, ctx.end) or "") if ctx else "",
            )
            key = stable_id(model, template.version, json.dumps(messages, sort_keys=True), schema, length=32)
            spec, parts = generation_spec(generator_name, model, template.version, item.text, ctx)
            jobs.append(Job(ep, item, ctx, spec, parts,
                            Request(item, ctx, ep.title, tuple(messages), key)))
    return jobs


# -- generation ----------------------------------------------------------------------------------

@dataclass
class RunSummary:
    run_id: int
    generator: str
    model: str
    prompt_version: str
    per_episode: list[dict] = field(default_factory=list)
    total: dict = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    skipped: int = 0  # notes already done, no request needed
    cost: float = 0.0
    priced: bool = True
    duplicates: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # why notes were sent
    notices: list[str] = field(default_factory=list)
    waiting: int = 0  # new notes held back until their episode's transcript is given

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "generator": self.generator, "model": self.model,
                "prompt_version": self.prompt_version, "episodes": self.per_episode, "total": self.total,
                "failures": self.failures, "up_to_date": self.skipped, "cost_usd": round(self.cost, 6),
                "priced": self.priced, "duplicates": self.duplicates, "reasons": self.reasons,
                "notices": self.notices, "waiting": self.waiting}


def make_generator(settings: Settings, notify: Callable[[str], None] | None = None):
    """The generator the settings ask for; `notify` hears one-line notices during the run (a fallback)."""
    if settings.llm_configured:
        from cards.generate.openai import OpenAIGenerator

        return OpenAIGenerator(settings.model, base_url=settings.base_url, api_key=settings.api_key,
                               timeout=settings.timeout, max_tokens=settings.max_tokens,
                               structured=settings.structured, notify=notify)
    from cards.generate.offline import OfflineGenerator

    return OfflineGenerator()


def cost_of(settings: Settings, model: str, tokens_in: int, cached: int, tokens_out: int) -> float | None:
    price = settings.price(model)
    if price is None:
        return None
    p_in, p_cached, p_out = price
    return ((tokens_in - cached) * p_in + cached * p_cached + tokens_out * p_out) / 1e6


def _drafts_from(job: Job, cards, gen_id: str, generator: str, model: str, version: str, now: float) -> list[Draft]:
    out = []
    for n, c in enumerate(cards):
        out.append(Draft(
            id=stable_id(gen_id, str(n)), note_id=job.note.id, episode=job.episode.slug, kind=c.kind,
            front=c.front.strip(), back=c.back.strip(), quote=c.quote.strip(), tags=list(c.tags),
            generator=generator, model=model, prompt_version=version, note_text=job.note.text,
            context_text=job.context.text if job.context else None,
            context_start=job.context.start if job.context else None,
            context_end=job.context.end if job.context else None, created=now, updated=now,
        ))
    return out


async def _run(jobs: list[Job], store, generator, version: str, run_id: int, concurrency: int, force: bool,
               on_done: Callable[[Job, bool], None]) -> None:
    from cards.schema import CardSet

    sem = asyncio.Semaphore(concurrency)

    async def one(job: Job) -> None:
        request = job.request
        # The reply format in use (a fallback from structured outputs) is part of the cache key.
        key = generator.cache_key(request.key) if hasattr(generator, "cache_key") else request.key
        cached = None if force else store.cached_response(key)
        gen_id = stable_id(job.note.id, job.spec, str(run_id), str(time.time_ns()))
        cards = None
        if cached is not None:
            try:
                cards = CardSet.model_validate_json(cached).cards
            except ValueError:
                cards = None  # cached before the schema's bounds, and over them: ask again
        if cards is not None:
            store.record_generation(
                gen_id=gen_id, note=job.note, spec=job.spec, parts=job.parts, generator=generator.name,
                model=generator.model, prompt_version=version, key=key, error=None,
                drafts=_drafts_from(job, cards, gen_id, generator.name, generator.model, version, store.clock()),
                tokens_in=0, tokens_out=0, cached_tokens=0, requests=0, from_cache=True, raw=None, run_id=run_id)
            on_done(job, True)
            return
        async with sem:
            result = await generator.generate(request)
        store.record_generation(
            gen_id=gen_id, note=job.note, spec=job.spec, parts=job.parts, generator=generator.name,
            model=generator.model, prompt_version=version, key=result.key, error=result.error,
            drafts=_drafts_from(job, result.cards, gen_id, generator.name, generator.model, version, store.clock())
            if result.ok else [],
            tokens_in=result.tokens_in, tokens_out=result.tokens_out, cached_tokens=result.cached_tokens,
            requests=result.requests, from_cache=False, raw=result.raw, run_id=run_id)
        on_done(job, result.ok)

    tasks = [asyncio.create_task(one(j)) for j in jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await generator.aclose()


# -- planning: what a run would send, and why --------------------------------------------------------

def transcript_hash(transcript: Transcript) -> str:
    """The transcript's content (text and times), not its file: a moved or re-saved file is the same."""
    return content_hash("transcript1", [[x.text, x.start, x.end] for x in transcript.segments])


def _align_version() -> str:
    from cards import align

    return align.ALIGN_VERSION


@dataclass
class EpisodePlan:
    episode: Episode
    contexts: list[Context | None]
    align_versions: list[str | None]
    changes: object  # cards.lineage.NoteChanges
    transcript_hash: str | None
    waiting: set[str] = field(default_factory=set)  # new notes held back until the transcript is given
    unchanged: bool = False  # the workspace already holds exactly this episode: nothing to write


@dataclass
class Plan:
    episodes: list[EpisodePlan]
    jobs: list[Job]  # what would be sent
    states: dict[str, str]  # note id -> new | changed | outdated | failed | up to date | waiting
    reasons: dict[str, str]  # note id -> why it would be sent
    notices: list[str]
    missing: list[str]  # workspace episodes gone from notes files that were read
    old_passages: int  # notes whose passage an older aligner chose


def _why(parts: dict, before: dict | None) -> str:
    if before is None:
        return "inputs unknown"
    if parts["generator"] != before.get("generator"):
        return "offline → LLM" if before.get("generator") == "offline" else "generator changed"
    for key, reason in (("model", "new model"), ("prompt", "new prompt"), ("note", "edited note"),
                        ("passage", "passage changed")):
        if parts[key] != before.get(key):
            return reason
    return "inputs unknown"


def _unchanged(p: EpisodePlan, record, stored: dict) -> bool:
    """Whether the workspace already records this episode and its notes exactly as read now."""
    ep, c = p.episode, p.changes
    if record is None or record.missing or c.new or c.retired or c.returning or c.edited:
        return False
    if (record.title, record.url, record.video_id) != (ep.title, ep.url, ep.video_id):
        return False
    if p.transcript_hash is not None and p.transcript_hash != record.transcript_hash:
        return False
    if ep.transcript is not None and ep.transcript.path != record.transcript:
        return False
    for item in ep.items:
        k = stored[item.id]
        if (k.position, k.section, k.spans) != (item.position, item.section,
                                                tuple((s.path, s.line_start, s.line_end) for s in item.sources)):
            return False
    return True


def make_plan(store, loaded: Loaded, settings: Settings, template, generator_name: str, model: str, *,
              episode: str | None = None, force: bool = False, realign: bool = False, counter=None) -> Plan:
    """Decide each note's passage and whether it needs generating, without changing anything.

    Passages already in the workspace are kept: they are refreshed only when the
    episode's transcript changed or with `realign`. An episode aligned before and read
    without its transcript keeps its passages, and its new notes wait for it.
    """
    from cards.lineage import note_changes

    episodes = [e for e in select(loaded.episodes, episode) if e.items]
    read = set(loaded.note_files)
    version = _align_version()
    plans: list[EpisodePlan] = []
    fresh_needed: dict[str, set[str] | None] = {}  # slug -> note ids needing a passage (None: all)
    notices: list[str] = []
    preds: dict[str, str | None] = {}  # note id -> the bullet it was edited from
    records: list = []  # each plan's EpisodeRecord, or None
    stores: dict[str, dict] = {}  # slug -> its stored notes
    old_passages = 0
    for ep in episodes:
        stored = store.notes(ep.slug) if store else {}
        record = store.episode(ep.slug) if store else None
        changes = note_changes(stored, ep.items, read)
        for item in ep.items:
            preds[item.id] = changes.edited.get(item.id) or (stored[item.id].predecessor if item.id in stored
                                                             else None)
        th = transcript_hash(ep.transcript) if ep.transcript else None
        known = [stored.get(i.id) for i in ep.items]
        plan = EpisodePlan(ep, [k.context if k else None for k in known],
                           [k.align_version if k else version for k in known], changes, th)
        # Passages from before the workspace kept transcript hashes are taken as current.
        legacy = record is not None and not record.transcript_hash and any(k and k.context for k in known)
        if ep.transcript is None and record is not None and (record.transcript_hash or legacy):
            plan.waiting = {i.id for i, k in zip(ep.items, known) if k is None}
            notices.append(f"{ep.slug}: no transcript given; kept the passages aligned before"
                           + (f", and {plural(len(plan.waiting), 'new note')} wait for it" if plan.waiting else ""))
        elif ep.transcript is not None and (realign or record is None
                                            or (record.transcript_hash != th and not legacy)):
            fresh_needed[ep.slug] = None
            if record is not None and record.transcript_hash and not realign:
                notices.append(f"{ep.slug}: its transcript changed; passages aligned again")
        elif ep.transcript is not None:
            new = {i.id for i, k in zip(ep.items, known) if k is None}
            if new:
                fresh_needed[ep.slug] = new
        old_passages += sum(1 for i, k in zip(ep.items, known)
                            if k is not None and k.context is not None and k.align_version not in (None, version)
                            and ep.slug not in fresh_needed)
        plans.append(plan)
        records.append(record)
        stores[ep.slug] = stored
    for p, record in zip(plans, records):
        p.unchanged = _unchanged(p, record, stores[p.episode.slug]) and p.episode.slug not in fresh_needed
    to_align = [p.episode for p in plans if p.episode.slug in fresh_needed]
    if to_align:
        fresh = align(to_align, settings, counter)
        for p in plans:
            wanted = fresh_needed.get(p.episode.slug, set())
            if p.episode.slug not in fresh_needed:
                continue
            for n, item in enumerate(p.episode.items):
                if wanted is None or item.id in wanted:
                    p.contexts[n] = fresh[p.episode.slug][n]
                    p.align_versions[n] = version

    # Which notes need generating, and why.
    ids = [i.id for p in plans for i in p.episode.items]
    lookup = ids + [x for x in preds.values() if x]
    history = store.generation_states(lookup) if store else {}
    states: dict[str, str] = {}
    reasons: dict[str, str] = {}
    todo: set[str] = set()
    for p in plans:
        for item, ctx in zip(p.episode.items, p.contexts):
            if item.id in p.waiting:
                states[item.id] = "waiting"
                continue
            spec, parts = generation_spec(generator_name, model, template.version, item.text, ctx)
            h = history.get(item.id)
            done = h.spec if h else None
            if done == spec and not force:
                states[item.id] = "up to date"
                continue
            todo.add(item.id)
            pred = history.get(preds[item.id]) if preds[item.id] else None
            if done is None and (pred is None or pred.spec is None):
                states[item.id], reasons[item.id] = ("failed", "failed before") if h else ("new", "new note")
            elif done is None:
                states[item.id], reasons[item.id] = "changed", "edited note"
            elif done == spec:
                states[item.id], reasons[item.id] = "up to date", "forced"
            else:
                why = _why(parts, h.parts)
                states[item.id] = "changed" if why == "edited note" else "outdated"
                reasons[item.id] = why
            if h is not None and h.failed_since:
                states[item.id] = "failed"
    contexts = {p.episode.slug: p.contexts for p in plans}
    jobs = build_jobs([p.episode for p in plans], contexts, template, generator_name, model, only=todo)
    missing: list[str] = []
    if store is not None and episode is None:
        present = {e.slug for e in loaded.episodes}
        for slug, files in store.note_sources().items():
            if slug not in present and files and files <= read:
                missing.append(slug)
        for slug in missing:
            notices.append(f"{slug}: no longer in your notes; its cards end, and any already in Anki are "
                           "left there (see `cards status`)")
    if old_passages:
        notices.append(f"{plural(old_passages, 'passage')} chosen by an older aligner; "
                       "`cards generate --realign` refreshes them (notes whose passage changes are sent again)")
    return Plan(plans, jobs, states, reasons, notices, missing, old_passages)


def generate(loaded: Loaded, settings: Settings, *, episode: str | None = None, force: bool = False,
             realign: bool = False, generator=None, progress=None,
             notify: Callable[[str], None] | None = None) -> RunSummary:
    """Generate drafts for every note that needs them; each result is committed as it arrives."""
    from cards.prompts import load_prompt
    from cards.store import Store

    template = load_prompt(settings.prompts)
    generator = generator or make_generator(settings, notify)
    with Store(settings.workspace) as store, store.exclusive("cards generate"):
        plan = make_plan(store, loaded, settings, template, generator.name, generator.model, episode=episode,
                         force=force, realign=realign)
        for p in plan.episodes:
            if p.unchanged:
                continue
            store.sync_episode(p.episode, p.contexts, p.changes, align_versions=p.align_versions,
                               transcript_hash=p.transcript_hash, waiting=p.waiting)
        if plan.missing:
            store.mark_missing(plan.missing)
        todo = plan.jobs
        skipped = sum(1 for s in plan.states.values() if s == "up to date")
        run_id = store.start_run(generator.name, generator.model, template.version)
        status = "interrupted"
        try:
            if progress:
                progress.start([p.episode for p in plan.episodes], todo)
            try:
                asyncio.run(_run(todo, store, generator, template.version, run_id, settings.concurrency, force,
                                 progress.advance if progress else (lambda job, ok: None)))
            except GenerationError:
                status = "stopped"  # the server cannot serve this run; what finished is kept
                raise
            status = "ok"
        finally:
            if progress:
                progress.stop()
            rows = store.run_usage_by_episode(run_id)
            tin = sum(r["tokens_in"] or 0 for r in rows)
            tout = sum(r["tokens_out"] or 0 for r in rows)
            tcached = sum(r["cached_tokens"] or 0 for r in rows)
            cost = cost_of(settings, generator.model, tin, tcached, tout) if generator.name != "offline" else 0.0
            run = store.finish_run(run_id, status, cost or 0.0)
        summary = RunSummary(run_id, generator.name, generator.model, template.version, skipped=skipped,
                             cost=cost or 0.0, priced=cost is not None)
        summary.per_episode = [dict(r) for r in rows]
        summary.total = {k: run[k] for k in ("notes", "cards", "requests", "cached", "failed", "tokens_in",
                                             "tokens_out", "cached_tokens")}
        summary.failures = [{"episode": r["episode"], "note": r["note_text"], "error": r["error"]}
                            for r in store.failed_generations(run_id)]
        summary.reasons = _count(plan.reasons[j.note.id] for j in todo)
        summary.notices = loaded.notices + plan.notices
        summary.waiting = sum(1 for s in plan.states.values() if s == "waiting")
        # Only episodes whose cards changed are checked again; a no-op rerun checks nothing.
        touched = {j.episode.slug for j in todo} | {p.episode.slug for p in plan.episodes
                                                    if p.changes.retired or p.changes.returning}
        if plan.missing:  # cards elsewhere may have been duplicates of the ones that just ended
            summary.duplicates = check_and_dedupe(store, None)
        else:
            summary.duplicates = check_and_dedupe(store, None, episodes=touched) if touched else 0
    return summary


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


# -- estimates -----------------------------------------------------------------------------------

def _offline_model() -> str:
    from cards.generate.offline import OfflineGenerator

    return OfflineGenerator.model


def _workspace_if_any(settings: Settings):
    """The workspace, opened, if there is one; else a stand-in that is None. Use with `with`."""
    from contextlib import nullcontext

    from cards.store import DB_NAME, Store

    if (settings.workspace / DB_NAME).is_file():
        return Store(settings.workspace, create=False)
    return nullcontext(None)


def _plan_readonly(store, loaded: Loaded, settings: Settings, *, episode: str | None, force: bool = False,
                   realign: bool = False, counter=None) -> Plan:
    """The plan a generate run would make now (from the workspace, if `store`); changes nothing."""
    from cards.prompts import load_prompt

    template = load_prompt(settings.prompts)
    name = "openai" if settings.llm_configured else "offline"
    model = settings.model if name == "openai" else _offline_model()
    return make_plan(store, loaded, settings, template, name, model, episode=episode, force=force,
                     realign=realign, counter=counter)


def estimate(loaded: Loaded, settings: Settings, *, episode: str | None = None, force: bool = False,
             realign: bool = False) -> dict:
    """What a run would send, without sending anything."""
    from cards.tokens import counter_for

    counter = counter_for(settings.model)
    with _workspace_if_any(settings) as store:
        plan = _plan_readonly(store, loaded, settings, episode=episode, force=force, realign=realign,
                              counter=counter)
        todo = plan.jobs
        if not force and store is not None:
            todo = [j for j in todo if store.cached_response(j.request.key) is None]
    schema_tokens = counter.count(_schema_json())
    per_ep: dict[str, dict] = {}
    for j in todo:
        row = per_ep.setdefault(j.episode.slug, {"episode": j.episode.slug, "requests": 0, "tokens_in": 0})
        row["requests"] += 1
        row["tokens_in"] += schema_tokens + sum(counter.count(m["content"]) + 4 for m in j.request.messages)
    tin = sum(r["tokens_in"] for r in per_ep.values())
    tout = OUTPUT_TOKENS_GUESS * len(todo)
    cost = cost_of(settings, settings.model, tin, 0, tout)
    return {
        "model": settings.model, "llm_configured": settings.llm_configured, "notes": len(plan.states),
        "requests": len(todo), "tokens_in": tin, "tokens_out_estimate": tout,
        "tokens_per_request": round(tin / len(todo)) if todo else 0,
        "cost_usd": None if cost is None else round(cost, 4),
        "prices_date": PRICES_DATE, "reasons": _count(plan.reasons[j.note.id] for j in todo),
        "notices": loaded.notices + plan.notices,
        "token_counter": counter.label, "episodes": list(per_ep.values()),
        "notes_cut": [{"episode": ep.slug, "path": note.source.path, "line": note.source.line_start,
                       "chars": len(note.text)} for note, ep in long_notes(todo)],
    }


# -- status ----------------------------------------------------------------------------------------

_NOTE_STATES = ("new", "changed", "outdated", "failed", "waiting", "up to date")


def status(settings: Settings, loaded: Loaded | None = None, *, episode: str | None = None) -> dict:
    """Per episode: notes by state, what the next generate would send and why, drafts, and what export does.

    Without notes (`loaded` None) only what the workspace knows is shown.
    """
    from cards import lineage
    from cards.store import Store

    with Store(settings.workspace, create=False) as store:
        plan = _plan_readonly(store, loaded, settings, episode=episode) if loaded is not None else None
        out: dict = {"episodes": [], "notices": (loaded.notices + plan.notices) if plan else []}
        records = {e.slug: e for e in store.episodes()}
        slugs = sorted(records)
        if plan is not None:
            slugs = sorted(set(slugs) | {p.episode.slug for p in plan.episodes})
        if episode is not None:
            if episode not in slugs:
                raise InputError(f"no episode {episode!r} (known: {', '.join(slugs) or 'none'})")
            slugs = [episode]
        by_slug = {p.episode.slug: p for p in plan.episodes} if plan else {}
        live: dict[str, list[Draft]] = {}
        for d in store.drafts(include_superseded=False):
            live.setdefault(d.episode, []).append(d)
        lineages = store.lineages()
        for slug in slugs:
            rec = records.get(slug)
            row: dict = {"episode": slug, "title": by_slug[slug].episode.title if slug in by_slug else rec.title,
                         "missing": bool(rec and rec.missing) or (plan is not None and slug in plan.missing)}
            if plan is not None and slug in by_slug:
                ids = [i.id for i in by_slug[slug].episode.items]
                row["notes"] = {k: sum(1 for i in ids if plan.states.get(i) == k) for k in _NOTE_STATES}
                row["next_generate"] = {"requests": sum(1 for j in plan.jobs if j.episode.slug == slug),
                                        "reasons": _count(plan.reasons[i] for i in ids if i in plan.reasons)}
            drafts = live.get(slug, [])
            counts = {k: 0 for k in ("draft", "approved", "rejected", "duplicate")}
            for d in drafts:
                if d.revision_of is None:
                    counts[d.status] = counts.get(d.status, 0) + 1
            counts["pending_revisions"] = sum(1 for d in drafts if d.revision_of)
            row["drafts"] = counts
            export_plan = lineage.export_plan(drafts, lineages.get(slug, {}), include_drafts=False)
            row["export"] = export_plan.counts()
            row["left_in_anki"] = export_plan.left_in_anki
            out["episodes"].append(row)
    return out


# -- checks and duplicates -----------------------------------------------------------------------

def check_and_dedupe(store, episode: str | None, threshold: float = 0.85, scope: str = "all", *,
                     episodes: set[str] | None = None) -> int:
    """Lint and ground the live drafts of an episode (or of `episodes`, or all), then mark duplicates.

    Returns how many of them are duplicates.
    """
    from cards.check import check_note_cards
    from cards.dedupe import candidate, find_duplicates

    drafts = store.drafts(include_superseded=False)
    wanted = None if episode is None and episodes is None else {episode} if episode else set(episodes or ())
    # Every live draft takes part in finding duplicates; only the selected ones change.
    selected = {d.id for d in drafts if wanted is None or d.episode in wanted}
    results = {}
    # A note's cards are checked together: one card's question must not give away another's answer.
    # A pending revision stands alone: its siblings are the cards it would replace. So does a rejected
    # or duplicate card: it is never studied, so it cannot give another card's answer away.
    by_note: dict[str, list[Draft]] = {}
    for d in drafts:
        if d.id in selected:
            alone = d.revision_of or d.status in ("rejected", "duplicate")
            by_note.setdefault(d.id if alone else d.note_id, []).append(d)
    for group in by_note.values():
        checked = check_note_cards([(d.kind, d.front, d.back, d.quote) for d in group], group[0].note_text,
                                   group[0].context_text)
        for d, (warnings, score) in zip(group, checked):
            d.warnings, d.grounding = results[d.id] = warnings, score
    store.set_checks(results)
    # A pending revision is judged against the card it revises, in review, not here.
    live = [d for d in drafts if d.status != "rejected" and not d.revision_of]
    mapping = find_duplicates([candidate(d) for d in live], threshold=threshold, scope=scope)
    mapping = {dup: keep for dup, keep in mapping.items() if dup in selected}
    cleared = [d.id for d in live if d.status == "duplicate" and d.id not in mapping and d.id in selected]
    store.set_duplicates(mapping, cleared)
    return len(mapping)


# -- export --------------------------------------------------------------------------------------

def export(settings: Settings, *, episode: str | None = None, out: Path | None = None,
           include_drafts: bool = False, now: float | None = None, audio: Path | None = None,
           on_clip: Callable[[str, int], None] | None = None) -> list[dict]:
    """Write one .apkg per episode with its current cards; say what Anki will do with each.

    Each card is written under its lineage's GUID with the time its content last
    changed, so a re-import updates what changed here and leaves the rest (and any
    edit made inside Anki) alone. With `audio` (a file or folder; see `cards.clips`), or
    an episode's `audio` pin in cards.toml, each card with a timed moment gets its clip.
    `on_clip(episode, n)` is told how many clips an episode is about to cut, then once
    per clip with n = 0.
    """
    from cards import clips as clipping
    from cards.export import DeckInfo, export_deck
    from cards.store import Store

    out = out or settings.workspace
    written = []
    with Store(settings.workspace, create=False) as store:
        known_episode(store, episode)
        eps = [e for e in store.episodes() if episode is None or e.slug == episode]
        for ep in eps:
            when = now if now is not None else time.time()
            plan = store.export_plan(ep.slug, include_drafts)
            row = {"episode": ep.slug, "title": ep.title, "path": None, "cards": len(plan.cards),
                   "approved": sum(d.status == "approved" for d in plan.cards), **plan.counts(),
                   "left_in_anki_cards": plan.left_in_anki}
            # A note keeps playing the clip it was given, also in a deck written without the audio (Anki
            # has the file), so its content and time do not depend on --audio.
            known = clipping.recorded(store.db, [d.lineage for d in plan.cards])
            stamps = {guid: added for guid, (_, added) in known.items()}
            clips = {}
            pinned = settings.pins.get(ep.slug, {}).get("audio")
            if plan.cards and (audio is not None or pinned):
                clips, new_stamps, report = clipping.for_export(
                    store.db, ep.slug, ep.transcript, plan.cards, audio, pinned, only_episode=len(eps) == 1,
                    now=when, on_clip=on_clip)
                row.update(report)
                stamps.update(new_stamps)
            if stamps:  # a new clip changes its note: Anki takes it only as a newer note
                plan = store.export_plan(ep.slug, include_drafts, stamps)
                row.update(plan.counts())
            if plan.cards:
                sounds = {guid: (name, None) for guid, (name, _) in known.items()}
                sounds.update({guid: (c.name, c.data) for guid, c in clips.items()})
                path = export_deck(plan.cards, DeckInfo(ep.slug, ep.title, ep.url, ep.video_id), out,
                                   prefix=settings.deck_prefix, now=when, clips=sounds)
                store.record_export(plan.cards, when)
                if clips:
                    with store.tx() as db:
                        clipping.record(db, clips, new_stamps)
                row["path"] = str(path)
            if plan.cards or plan.left_in_anki or plan.left_out:
                written.append(row)
    return written


def push(settings: Settings, *, episode: str | None = None, include_drafts: bool = False,
         audio: Path | None = None, now: float | None = None,
         on_clip: Callable[[str, int], None] | None = None) -> list[dict]:
    """Export, then have the running Anki import each deck through AnkiConnect (`cards.push`).

    Anki is asked first, so when it cannot be reached nothing is written or recorded.
    The decks are the files export writes, in the workspace, given to Anki by absolute path.
    """
    from cards.push import AnkiConnect

    client = AnkiConnect(settings.anki_url, settings.anki_key)
    client.check()
    rows = export(settings, episode=episode, out=settings.workspace.resolve(), include_drafts=include_drafts,
                  now=now, audio=audio, on_clip=on_clip)
    for row in rows:
        row["pushed"] = False
    for row in rows:
        if row["path"]:
            client.import_package(Path(row["path"]))
            row["pushed"] = True
    return rows
