"""The library's main jobs, as plain functions the CLI (or any program) calls.

load -> align -> generate (LLM or offline, cached, incremental) -> check + dedupe -> export.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cards.config import PRICES_DATE, Settings
from cards.errors import InputError
from cards.models import Context, Draft, Episode, NoteItem, format_time, stable_id

NOTE_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".org"}
TRANSCRIPT_SUFFIXES = {".txt", ".srt", ".vtt", ".text", ".md"}
SKIP_NAMES = {"readme.md", "readme.txt", "readme"}
OUTPUT_TOKENS_GUESS = 180  # per note, for estimates: one to three short cards as JSON


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


def load(notes: list[Path], transcripts: list[Path], settings: Settings) -> Loaded:
    """Read every notes and transcript file and group them into episodes."""
    from cards.episodes import build_episodes
    from cards.ingest.notes import parse_notes
    from cards.ingest.transcripts import parse_transcript

    t_files = _expand(transcripts, TRANSCRIPT_SUFFIXES, "transcript")
    t_set = {f.resolve() for f in t_files}
    n_files = [f for f in _expand(notes, NOTE_SUFFIXES, "notes") if f.resolve() not in t_set]
    if not n_files and not t_files:
        raise InputError("no notes files given")
    sections = [s for f in n_files for s in parse_notes(f)]
    parsed = [parse_transcript(f) for f in t_files]
    return Loaded(build_episodes(sections, parsed, settings.pins), [str(f) for f in n_files],
                  [str(f) for f in t_files])


def select(episodes: list[Episode], slug: str | None) -> list[Episode]:
    if slug is None:
        return episodes
    chosen = [e for e in episodes if e.slug == slug]
    if not chosen:
        known = ", ".join(e.slug for e in episodes) or "none"
        raise InputError(f"no episode {slug!r} (known: {known})")
    return chosen


def align(episodes: list[Episode], settings: Settings, counter=None,
          on_episode: Callable[[Episode], None] | None = None) -> dict[str, list[Context | None]]:
    from cards.align import align_episode
    from cards.tokens import counter_for

    counter = counter or counter_for(settings.model)
    out = {}
    for ep in episodes:
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


def _schema_json() -> str:
    from cards.schema import CardSet

    return json.dumps(CardSet.model_json_schema(), sort_keys=True)


@dataclass(frozen=True)
class Job:
    episode: Episode
    note: NoteItem
    context: Context | None
    spec: str  # what makes a generation current: generator, model, prompt version, note, passage
    request: object  # cards.generate.base.Request


def build_jobs(episodes: list[Episode], contexts: dict[str, list[Context | None]], template,
               generator_name: str, model: str) -> list[Job]:
    from cards.generate.base import Request

    schema = _schema_json()
    jobs = []
    for ep in episodes:
        for i, (item, ctx) in enumerate(zip(ep.items, contexts[ep.slug])):
            passage = ctx.text if ctx else "(no transcript passage was found for this note)"
            messages = template.render(
                episode_title=ep.title, section=item.section or "", neighbours=_neighbours(ep.items, i),
                note=item.text, passage=passage, time=format_time(ctx.start) if ctx else "",
            )
            key = stable_id(model, template.version, json.dumps(messages, sort_keys=True), schema, length=32)
            spec = stable_id(generator_name, model, template.version, item.text, ctx.text if ctx else "")
            jobs.append(Job(ep, item, ctx, spec, Request(item, ctx, ep.title, tuple(messages), key)))
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

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "generator": self.generator, "model": self.model,
                "prompt_version": self.prompt_version, "episodes": self.per_episode, "total": self.total,
                "failures": self.failures, "up_to_date": self.skipped, "cost_usd": round(self.cost, 6),
                "priced": self.priced, "duplicates": self.duplicates}


def make_generator(settings: Settings):
    if settings.llm_configured:
        from cards.generate.openai import OpenAIGenerator

        return OpenAIGenerator(settings.model, base_url=settings.base_url, api_key=settings.api_key)
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
        cached = None if force else store.cached_response(request.key)
        gen_id = stable_id(job.note.id, job.spec, str(run_id), str(time.time_ns()))
        if cached is not None:
            cards = CardSet.model_validate_json(cached).cards
            store.record_generation(
                gen_id=gen_id, note=job.note, spec=job.spec, generator=generator.name, model=generator.model,
                prompt_version=version, key=request.key, error=None,
                drafts=_drafts_from(job, cards, gen_id, generator.name, generator.model, version, store.clock()),
                tokens_in=0, tokens_out=0, cached_tokens=0, requests=0, from_cache=True, raw=None, run_id=run_id)
            on_done(job, True)
            return
        async with sem:
            result = await generator.generate(request)
        store.record_generation(
            gen_id=gen_id, note=job.note, spec=job.spec, generator=generator.name, model=generator.model,
            prompt_version=version, key=request.key, error=result.error,
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


def pending_jobs(store, jobs: list[Job], force: bool) -> tuple[list[Job], int]:
    """Jobs whose note has no current generation (or all, with force); and how many are up to date."""
    if force:
        return jobs, 0
    done = store.done_specs(j.note.id for j in jobs)
    todo = [j for j in jobs if (j.note.id, j.spec) not in done]
    return todo, len(jobs) - len(todo)


def generate(loaded: Loaded, settings: Settings, *, episode: str | None = None, force: bool = False,
             generator=None, progress=None) -> RunSummary:
    """Generate drafts for every note that needs them; each result is committed as it arrives."""
    from cards.prompts import load_prompt
    from cards.store import Store

    template = load_prompt(settings.prompts)
    episodes = [e for e in select(loaded.episodes, episode) if e.items]
    generator = generator or make_generator(settings)
    contexts = align(episodes, settings)
    jobs = build_jobs(episodes, contexts, template, generator.name, generator.model)
    read_files = set(loaded.note_files)
    with Store(settings.workspace) as store:
        for ep in episodes:
            store.sync_episode(ep.slug, ep.title, ep.url, ep.video_id, ep.transcript.path if ep.transcript else None,
                               ep.items, contexts[ep.slug], read_files)
        todo, skipped = pending_jobs(store, jobs, force)
        run_id = store.start_run(generator.name, generator.model, template.version)
        status = "interrupted"
        try:
            if progress:
                progress.start(episodes, todo)
            asyncio.run(_run(todo, store, generator, template.version, run_id, settings.concurrency, force,
                             progress.advance if progress else (lambda job, ok: None)))
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
        summary.duplicates = check_and_dedupe(store, None)
    return summary


# -- estimates -----------------------------------------------------------------------------------

def estimate(loaded: Loaded, settings: Settings, *, episode: str | None = None, force: bool = False) -> dict:
    """What a run would send, without sending anything."""
    from cards.prompts import load_prompt
    from cards.store import DB_NAME, Store
    from cards.tokens import counter_for

    template = load_prompt(settings.prompts)
    episodes = [e for e in select(loaded.episodes, episode) if e.items]
    counter = counter_for(settings.model)
    contexts = align(episodes, settings, counter)
    name = "openai" if settings.llm_configured else "offline"
    model = settings.model if name == "openai" else "extractive-v1"
    jobs = build_jobs(episodes, contexts, template, name, model)
    todo = jobs
    if (settings.workspace / DB_NAME).exists():
        with Store(settings.workspace) as store:
            todo, _ = pending_jobs(store, jobs, force)
            todo = [j for j in todo if force or store.cached_response(j.request.key) is None]
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
        "model": settings.model, "llm_configured": settings.llm_configured, "notes": len(jobs),
        "requests": len(todo), "tokens_in": tin, "tokens_out_estimate": tout,
        "tokens_per_request": round(tin / len(todo)) if todo else 0,
        "cost_usd": None if cost is None else round(cost, 4),
        "prices_date": PRICES_DATE,
        "token_counter": counter.label, "episodes": list(per_ep.values()),
    }


# -- checks and duplicates -----------------------------------------------------------------------

def check_and_dedupe(store, episode: str | None, threshold: float = 0.85, scope: str = "all") -> int:
    """Lint and ground every live draft, then mark duplicates; returns how many are duplicates."""
    from cards.check import check_card
    from cards.dedupe import candidate, find_duplicates

    drafts = store.drafts(include_superseded=False)
    # Every live draft takes part in finding duplicates; only the selected ones change.
    selected = {d.id for d in drafts if episode is None or d.episode == episode}
    results = {}
    for d in drafts:
        if d.id in selected:
            d.warnings, d.grounding = results[d.id] = check_card(d.kind, d.front, d.back, d.quote,
                                                                 d.note_text, d.context_text)
    store.set_checks(results)
    live = [d for d in drafts if d.status != "rejected"]
    mapping = find_duplicates([candidate(d) for d in live], threshold=threshold, scope=scope)
    mapping = {dup: keep for dup, keep in mapping.items() if dup in selected}
    cleared = [d.id for d in live if d.status == "duplicate" and d.id not in mapping and d.id in selected]
    store.set_duplicates(mapping, cleared)
    return len(mapping)


# -- export --------------------------------------------------------------------------------------

def export(settings: Settings, *, episode: str | None = None, out: Path | None = None,
           include_drafts: bool = False, now: float | None = None) -> list[dict]:
    """Write one .apkg per episode with approved (and optionally draft) cards."""
    from cards.export import DeckInfo, export_deck
    from cards.store import Store

    out = out or settings.workspace
    written = []
    with Store(settings.workspace, create=False) as store:
        eps = store.episodes()
        if episode:
            eps = [e for e in eps if e["slug"] == episode]
            if not eps:
                raise InputError(f"no episode {episode!r} in the workspace")
        for ep in eps:
            wanted = {"approved", "draft"} if include_drafts else {"approved"}
            drafts = [d for d in store.drafts(episode=ep["slug"]) if d.status in wanted
                      and (not d.superseded or d.status == "approved")]
            if not drafts:
                continue
            for d in drafts:
                d.superseded = False  # an approved card outlives its note's regeneration
            when = now if now is not None else time.time()
            path = export_deck(drafts, DeckInfo(ep["slug"], ep["title"], ep["url"], ep["video_id"]), out,
                               prefix=settings.deck_prefix, now=when)
            store.mark_exported([d.id for d in drafts], when)
            written.append({"episode": ep["slug"], "title": ep["title"], "path": str(path), "cards": len(drafts),
                            "approved": sum(d.status == "approved" for d in drafts)})
    return written
