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
from cards.errors import ConfigError, GenerationError, InputError
from cards.models import (SPEC_TAG, Context, Draft, Episode, NoteItem, Source, Transcript, content_hash, format_span,
                          generation_spec, plural, stable_id)

NOTE_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".org"}
# What `-t` takes from a folder (a file named on its own is read whatever its name): notes and
# transcripts may share a folder, so notes.md beside ep1.txt stays a notes file.
TRANSCRIPT_SUFFIXES = {".txt", ".srt", ".vtt"}
SKIP_NAMES = {"readme.md", "readme.txt", "readme"}
OUTPUT_TOKENS_GUESS = 200  # per note, for estimates: the note's claims and one to three short cards as JSON
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


def no_notes_message(loaded: Loaded) -> str:
    """What a run that found no notes says: the files it read, and which of them as transcripts."""
    names = [Path(f).name for f in loaded.transcript_files]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"no notes found in {plural(len(loaded.note_files), 'notes file')}"
            + (f" ({plural(len(names), 'file')} read as transcripts: {shown})" if names else ""))


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
        # Said once, when the heading changes; the workspace then knows the episode by its new title.
        if normalise(ep.title) != normalise(old_title):
            notices.append(f"heading reworded: {ep.title!r} is the episode {best} (was {old_title!r}); "
                           f"it keeps its cards and its Anki deck {known[best].deck_title!r}")
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


def _spec(generator_name: str, model: str, version: str, text: str, ctx: Context | None,
          critic_version: str | None) -> tuple[str, dict]:
    """The generation spec; with the critic on, its prompt version is part of it (off leaves specs as they were)."""
    spec, parts = generation_spec(generator_name, model, version, text, ctx)
    if critic_version:
        parts = {**parts, "critic": critic_version}
        spec = content_hash(SPEC_TAG, parts)
    return spec, parts


def load_critic(settings: Settings, generator_name: str):
    """The critic's prompt template when the critic is on and an LLM makes the cards; else None."""
    if not settings.critic or generator_name == OFFLINE:
        return None
    from cards.prompts import CRITIC_NAME, load_prompt

    return load_prompt(settings.prompts, CRITIC_NAME)


@dataclass(frozen=True)
class Job:
    episode: Episode
    note: NoteItem
    context: Context | None
    spec: str  # content_hash of `parts`
    parts: dict
    request: object  # cards.generate.base.Request


def build_jobs(episodes: list[Episode], contexts: dict[str, list[Context | None]], template,
               generator_name: str, model: str, only: set[str] | None = None,
               critic_version: str | None = None) -> list[Job]:
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
            spec, parts = _spec(generator_name, model, template.version, item.text, ctx, critic_version)
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
    critic: str | None = None  # the critic prompt's version when the critic was on
    critic_counts: dict[str, int] = field(default_factory=dict)  # kept / rewritten / dropped / failed
    set_aside: dict[str, int] = field(default_factory=dict)  # cards stored rejected: no-claim / extra-card
    batches: list[str] = field(default_factory=list)  # batches this run sent (--batch)
    collected: dict = field(default_factory=dict)  # results of earlier batches imported first

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "generator": self.generator, "model": self.model,
                "prompt_version": self.prompt_version, "episodes": self.per_episode, "total": self.total,
                "failures": self.failures, "up_to_date": self.skipped, "cost_usd": round(self.cost, 6),
                "priced": self.priced, "duplicates": self.duplicates, "reasons": self.reasons,
                "notices": self.notices, "waiting": self.waiting, "critic": self.critic,
                "critic_counts": self.critic_counts, "set_aside": self.set_aside, "batches": self.batches,
                "collected": self.collected}


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


def _drafts_from(job: Job, tied, gen_id: str, generator: str, model: str, version: str, now: float) -> list[Draft]:
    """Drafts for the cards of one reply (cards.claims.Tied); a card set aside is stored rejected, with its reason."""
    out = []
    for n, t in enumerate(tied):
        c = t.card
        out.append(Draft(
            id=stable_id(gen_id, str(n)), note_id=job.note.id, episode=job.episode.slug, kind=c.kind,
            front=c.front.strip(), back=c.back.strip(), quote=c.quote.strip(), tags=list(c.tags),
            generator=generator, model=model, prompt_version=version, note_text=job.note.text,
            context_text=job.context.text if job.context else None,
            context_start=job.context.start if job.context else None,
            context_end=job.context.end if job.context else None, created=now, updated=now,
            claim=t.claim, reason=t.reason or t.remark, status="rejected" if t.reason else "draft",
        ))
    return out


def _tie(generator: str, reply) -> list:
    """A reply's cards with the claims they test (cards.claims); the offline generator states no claims."""
    from cards.claims import tie, untied

    return untied(reply.cards) if generator == OFFLINE else tie(reply)


def _reply_of(result):
    """The validated CardSet of a successful result: live (`reply`), or read back from its JSON (a batch line)."""
    from cards.schema import CardSet

    if isinstance(result.reply, CardSet):
        return result.reply
    if result.raw is not None:
        try:
            return CardSet.model_validate_json(result.raw)
        except ValueError:
            pass
    return CardSet(cards=result.cards)


async def _criticise(job: Job, tied: list, critic, store, generator, sem, force: bool,
                     counts: dict[str, int]) -> tuple[list, object | None]:
    """The cards after the critic's verdicts, and the critic's Result when a request was sent."""
    from cards import critic as crit
    from cards.generate.base import Request
    from cards.prompts import render_passage
    from cards.schema import CriticReply

    kept = [t for t in tied if t.reason is None]
    if not kept:
        return tied, None
    ep = job.episode
    claims = []
    for t in kept:  # the claims as the critic sees them, numbered as the cards name them
        if t.claim and t.claim not in claims:
            claims.append(t.claim)
    numbered = [t if t.claim is None else _renumber(t, claims.index(t.claim) + 1) for t in kept]
    msgs = crit.messages(critic, episode_title=ep.full_title or ep.title, show=ep.show or "",
                         people=", ".join(ep.people), date=ep.date or "", note=prompt_note(job.note.text),
                         passage=render_passage(job.context.parts if job.context else ()), claims=claims,
                         cards=numbered)
    request = Request(job.note, job.context, ep.title, tuple(msgs),
                      crit.cache_key(generator.model, critic.version, msgs), reply_model=CriticReply)
    key = generator.cache_key(request.key) if hasattr(generator, "cache_key") else request.key
    reply, result = None, None
    cached = None if force else store.cached_response(key)
    if cached is not None:
        try:
            reply = CriticReply.model_validate_json(cached)
        except ValueError:
            reply = None
    if reply is None:
        async with sem:
            result = await generator.generate(request)
        if not result.ok or result.reply is None:
            counts["failed"] = counts.get("failed", 0) + 1
            return tied, result  # the cards stay as drafted
        reply = result.reply
        store.cache_response(result.key, generator.model, critic.version, result.raw)
    judged = iter(crit.apply(kept, reply))
    out = []
    for t in tied:
        if t.reason is not None:
            out.append(t)
            continue
        j = next(judged)
        what = "dropped" if j.reason else "rewritten" if j.remark else "kept"
        counts[what] = counts.get(what, 0) + 1
        out.append(j)
    return out, result


def _renumber(t, n: int):
    from dataclasses import replace

    return replace(t, card=t.card.model_copy(update={"claim": n}))


def record_result(store, job: Job, result, generator: str, model: str, version: str, run_id: int,
                  gen_id: str | None = None) -> None:
    """Store one LLM reply (a line of a batch's output): cache, generation, cards into their lineages.

    Its cards are tied to their claims as a live reply's are; the critic does not run on batches.
    """
    gen_id = gen_id or stable_id(job.note.id, job.spec, str(run_id), str(time.time_ns()))
    store.record_generation(
        gen_id=gen_id, note=job.note, spec=job.spec, parts=job.parts, generator=generator,
        model=model, prompt_version=version, key=result.key, error=result.error,
        drafts=_drafts_from(job, _tie(generator, _reply_of(result)), gen_id, generator, model, version,
                            store.clock()) if result.ok else [],
        tokens_in=result.tokens_in, tokens_out=result.tokens_out, cached_tokens=result.cached_tokens,
        requests=result.requests, from_cache=False, raw=result.raw, run_id=run_id)


async def _all_or_none(coros, generator) -> None:
    """Run the requests together; when one raises (a stopped run, Ctrl-C), cancel the rest, then close
    the client. What finished before is already committed."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await generator.aclose()


async def _run(jobs: list[Job], store, generator, version: str, run_id: int, concurrency: int, force: bool,
               on_done: Callable[[Job, bool], None], critic=None,
               critic_counts: dict[str, int] | None = None, set_aside: dict[str, int] | None = None) -> None:
    from cards.schema import CardSet

    sem = asyncio.Semaphore(concurrency)
    counts = critic_counts if critic_counts is not None else {}
    aside = set_aside if set_aside is not None else {}

    async def one(job: Job) -> None:
        request = job.request
        # The reply format in use (a fallback from structured outputs) is part of the cache key.
        key = generator.cache_key(request.key) if hasattr(generator, "cache_key") else request.key
        cached = None if force else store.cached_response(key)
        gen_id = stable_id(job.note.id, job.spec, str(run_id), str(time.time_ns()))
        reply = None
        if cached is not None:
            try:
                reply = CardSet.model_validate_json(cached)
            except ValueError:
                reply = None  # cached before the schema's bounds, and over them: ask again
        result = None
        if reply is None:
            async with sem:
                result = await generator.generate(request)
            reply = _reply_of(result) if result.ok else None
        tied = _tie(generator.name, reply) if reply is not None else []
        for t in tied:  # cards naming no stated claim, or more cards than claims: counted for the summary
            if t.reason:
                what = t.reason.split(":", 1)[0]
                aside[what] = aside.get(what, 0) + 1
        review = None
        if critic is not None and reply is not None:
            if result is not None and result.raw is not None:
                # Kept before the critic is asked, so a run the critic's server stops has not paid for it twice.
                store.cache_response(result.key, generator.model, version, result.raw)
            tied, review = await _criticise(job, tied, critic, store, generator, sem, force, counts)
        usage = [r for r in (result, review) if r is not None]
        store.record_generation(
            gen_id=gen_id, note=job.note, spec=job.spec, parts=job.parts, generator=generator.name,
            model=generator.model, prompt_version=version, key=result.key if result else key,
            error=result.error if result else None,
            drafts=_drafts_from(job, tied, gen_id, generator.name, generator.model, version, store.clock()),
            tokens_in=sum(r.tokens_in for r in usage), tokens_out=sum(r.tokens_out for r in usage),
            cached_tokens=sum(r.cached_tokens for r in usage), requests=sum(r.requests for r in usage),
            from_cache=result is None, raw=result.raw if result else None, run_id=run_id)
        on_done(job, result is None or result.ok)

    await _all_or_none([one(j) for j in jobs], generator)


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
    for key, reason in (("model", "new model"), ("prompt", "new prompt"), ("critic", "critic changed"),
                        ("note", "edited note"), ("passage", "passage changed")):
        if parts.get(key) != before.get(key):
            return reason
    return "inputs unknown"


OFFLINE = "offline"


def _by_llm(state) -> bool:
    """Whether a note's last successful generation (a GenerationState, or None) came from an LLM."""
    generator = (state.parts or {}).get("generator") if state is not None and state.spec else None
    return generator not in (None, OFFLINE)


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


def _missing(store, episodes: list[Episode], read: set[str]) -> list[str]:
    """Workspace episodes whose notes files were all read and no longer have them."""
    present = {e.slug for e in episodes}
    return [slug for slug, files in store.note_sources().items() if slug not in present and files and files <= read]


def _moves(store, episodes: list[Episode], plans: list[EpisodePlan], stores: dict[str, dict], read: set[str],
           episode: str | None) -> dict[str, str]:
    """Bullets moved word for word to another heading (`cards.lineage.note_moves`), recorded in the plans."""
    from cards.lineage import note_moves

    if store is None:
        return {}
    gone = []
    if episode is None:
        for slug in _missing(store, episodes, read):
            gone.extend(n for n in store.notes(slug).values() if n.active)
    waiting = {i for p in plans for i in p.waiting}
    return note_moves({p.episode.slug: p.changes for p in plans}, {p.episode.slug: p.episode.items for p in plans},
                      stores, gone, waiting)


def make_plan(store, loaded: Loaded, settings: Settings, template, generator_name: str, model: str, *,
              episode: str | None = None, force: bool = False, realign: bool = False, counter=None,
              critic_version: str | None = None) -> Plan:
    """Decide each note's passage and whether it needs generating, without changing anything.

    Passages already in the workspace are kept: they are refreshed only when the
    episode's transcript changed or with `realign`. An episode aligned before and read
    without its transcript keeps its passages, and its new notes wait for it.
    """
    from cards.lineage import note_changes

    merged = with_extracted(loaded.episodes, store)
    episodes = [e for e in select(merged.episodes, episode) if e.items]
    read = set(loaded.note_files) | merged.read
    version = _align_version()
    plans: list[EpisodePlan] = []
    fresh_needed: dict[str, set[str] | None] = {}  # slug -> note ids needing a passage (None: all)
    notices: list[str] = list(merged.notices)
    preds: dict[str, str | None] = {}  # note id -> the bullet it was edited from
    records: list = []  # each plan's EpisodeRecord, or None
    stores: dict[str, dict] = {}  # slug -> its stored notes
    old_passages = 0
    for ep in episodes:
        stored = store.notes(ep.slug) if store else {}
        record = store.episode(ep.slug) if store else None
        changes = note_changes(stored, ep.items, read)
        for own, claim in merged.replaced.items():  # a listener's note carries on the claim it repeats
            if own in changes.new and claim in changes.retired and own not in changes.edited \
                    and claim not in changes.edited.values():
                changes.edited[own] = claim
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
    moved = _moves(store, merged.episodes, plans, stores, read, episode)
    for nid, old in moved.items():
        preds[nid] = old
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
    # Offline (no key, or --offline), notes with LLM cards keep them: trading them for offline cards
    # is a downgrade only `--offline --force` asks for.
    keep_llm = generator_name == OFFLINE and not (settings.offline and force)
    kept_llm = 0
    for p in plans:
        for item, ctx in zip(p.episode.items, p.contexts):
            if item.id in p.waiting:
                states[item.id] = "waiting"
                continue
            spec, parts = _spec(generator_name, model, template.version, item.text, ctx, critic_version)
            h = history.get(item.id)
            done = h.spec if h else None
            if done == spec and not force:
                states[item.id] = "up to date"
                continue
            pred = history.get(preds[item.id]) if preds[item.id] else None
            if keep_llm and _by_llm(h if done else pred):
                # A shell without the key is no reason to trade LLM cards for offline ones.
                states[item.id] = "up to date" if done else "changed"
                kept_llm += 1
                continue
            todo.add(item.id)
            if done is None and (pred is None or pred.spec is None):
                states[item.id], reasons[item.id] = ("failed", "failed before") if h else ("new", "new note")
            elif done is None:
                states[item.id], reasons[item.id] = "changed", "moved note" if item.id in moved else "edited note"
            elif done == spec:
                states[item.id], reasons[item.id] = "up to date", "forced"
            else:
                why = _why(parts, h.parts)
                states[item.id] = "changed" if why == "edited note" else "outdated"
                reasons[item.id] = why
            if h is not None and h.failed_since:
                states[item.id] = "failed"
    if kept_llm:
        why = "offline" if settings.offline else "no API key"
        notices.append(f"{why}: {plural(kept_llm, 'note')} keep their LLM cards (set OPENAI_API_KEY or "
                       "--base-url to regenerate them; --offline --force replaces them with offline cards)")
    contexts = {p.episode.slug: p.contexts for p in plans}
    jobs = build_jobs([p.episode for p in plans], contexts, template, generator_name, model, only=todo,
                      critic_version=critic_version)
    missing = _missing(store, merged.episodes, read) if store is not None and episode is None else []
    if store is not None and episode is None:
        for slug in missing:
            notices.append(f"{slug}: no longer in your notes; its cards end, and any already in Anki are "
                           "left there (see `cards status`)")
    if old_passages:
        notices.append(f"{plural(old_passages, 'passage')} chosen by an older aligner; "
                       "`cards generate --realign` refreshes them (notes whose passage changes are sent again)")
    return Plan(plans, jobs, states, reasons, notices, missing, old_passages)


def generate(loaded: Loaded, settings: Settings, *, episode: str | None = None, force: bool = False,
             realign: bool = False, generator=None, progress=None,
             notify: Callable[[str], None] | None = None, batch: bool = False, batch_client=None) -> RunSummary:
    """Generate drafts for every note that needs them; each result is committed as it arrives.

    With `batch`, the requests go to the Batch API instead (see `cards.batch`); results of earlier
    batches that have finished are imported first either way.
    """
    from cards.prompts import load_prompt
    from cards.store import Store

    if batch and not settings.llm_configured:
        raise ConfigError("--batch needs an LLM server with the Batch API: set OPENAI_API_KEY (or --base-url), "
                          "or run without --batch")
    template = load_prompt(settings.prompts)
    generator = generator or make_generator(settings, notify)
    # The critic is a second live request per note; batched notes are not sent to it.
    critic = None if batch else load_critic(settings, generator.name)
    critic_counts: dict[str, int] = {}
    set_aside: dict[str, int] = {}
    with Store(settings.workspace) as store, store.exclusive("cards generate"):
        store.verify()
        collected = _collect_first(store, settings, batch_client)
        plan = make_plan(store, loaded, settings, template, generator.name, generator.model, episode=episode,
                         force=force, realign=realign, critic_version=critic.version if critic else None)
        if not plan.episodes and not any(ep.items for ep in loaded.episodes):  # claims found count as notes
            raise InputError(no_notes_message(loaded))
        plan.jobs, in_batch = _not_in_open_batches(store, plan.jobs)
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
        sent_batches: list[str] = []
        try:
            live = todo
            if batch:  # answers already in the response cache are stored now; the rest go in batches
                live = [j for j in todo if not force and store.cached_response(generator.cache_key(j.request.key))]
                cached = {id(j) for j in live}
                queued = [j for j in todo if id(j) not in cached]
            if progress:
                progress.start([p.episode for p in plan.episodes], live)
            try:
                asyncio.run(_run(live, store, generator, template.version, run_id, settings.concurrency, force,
                                 progress.advance if progress else (lambda job, ok: None), critic=critic,
                                 critic_counts=critic_counts, set_aside=set_aside))
                if batch:
                    sent_batches = _send_batches(store, settings, generator, queued, template.version, batch_client)
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
                             cost=cost or 0.0, priced=cost is not None,
                             critic=critic.version if critic else None, critic_counts=critic_counts,
                             set_aside=set_aside)
        summary.per_episode = [dict(r) for r in rows]
        summary.total = {k: run[k] for k in ("notes", "cards", "requests", "cached", "failed", "tokens_in",
                                             "tokens_out", "cached_tokens")}
        summary.failures = [{"episode": r["episode"], "note": r["note_text"], "error": r["error"]}
                            for r in store.failed_generations(run_id)]
        summary.reasons = _count(plan.reasons[j.note.id] for j in todo)
        summary.notices = loaded.notices + plan.notices
        if settings.critic and critic is None:
            summary.notices.append("the critic does not run with --batch" if batch else
                                   "the critic needs an LLM: the offline generator's cards are not criticised")
        if critic_counts.get("failed"):
            summary.notices.append(f"the critic failed on {plural(critic_counts['failed'], 'note')}; "
                                   "their cards are kept as drafted")
        summary.waiting = sum(1 for s in plan.states.values() if s == "waiting")
        summary.batches, summary.collected = sent_batches, collected
        if in_batch:
            summary.notices.append(f"{plural(in_batch, 'note')} wait for a batch sent earlier (`cards batch status`); "
                                   "not sent again")
        if sent_batches:
            summary.notices.append(f"sent {plural(len(todo) - len(live), 'request')} in "
                                   f"{plural(len(sent_batches), 'batch', 'batches')} ({', '.join(sent_batches)}); "
                                   "results come within 24 h: `cards batch status` shows them, `cards batch "
                                   "collect` (or the next `cards generate`) imports them")
        # Only episodes whose cards changed are checked again; a no-op rerun checks nothing.
        touched = {j.episode.slug for j in todo} | {p.episode.slug for p in plan.episodes
                                                    if p.changes.retired or p.changes.returning}
        if plan.missing:  # cards elsewhere may have been duplicates of the ones that just ended
            summary.duplicates = check_and_dedupe(store, None)
        else:
            summary.duplicates = check_and_dedupe(store, None, episodes=touched) if touched else 0
    return summary


# -- claims from transcripts (episodes without notes) ------------------------------------------------

@dataclass
class Extracted:
    """Episodes with the claims found in their transcripts merged in (see `with_extracted`)."""

    episodes: list[Episode]
    read: set[str] = field(default_factory=set)  # the sources those claims count as read from
    replaced: dict[str, str] = field(default_factory=dict)  # listener's note id -> the extracted note it replaces
    notices: list[str] = field(default_factory=list)


def with_extracted(episodes: list[Episode], store) -> Extracted:
    """The episodes with the claims found in their transcripts merged into their notes (cards.extract).

    Claims are kept by transcript, so a notes file written later for a transcript-only episode
    finds them: that episode keeps the slug (cards, deck) the claims were made under, the
    listener's notes win over near-duplicate claims, and each such claim's cards carry on as the
    cards of the listener's note (its lineage).
    """
    from dataclasses import replace

    from cards import extract

    if store is None or not extract.any_stored(store):
        return Extracted(episodes)
    out = Extracted([])
    slugs = {e.slug for e in episodes}
    for ep in episodes:
        rec = None if ep.transcript is not None else store.episode(ep.slug)
        th = transcript_hash(ep.transcript) if ep.transcript is not None else rec.transcript_hash if rec else None
        slug, claims = extract.stored_claims(store, th) if th else (None, [])
        path = ep.transcript.path if ep.transcript is not None else rec.transcript if rec else None
        if not claims or not path:
            out.episodes.append(ep)
            continue
        if slug and slug != ep.slug and slug not in slugs and store.episode(ep.slug) is None:
            out.notices.append(f"{ep.title!r} is the transcript-only episode {slug}: it keeps its cards and deck, "
                               "and your notes take the place of claims they repeat")
            ep = replace(ep, slug=slug, items=[replace(i, episode=slug, id=NoteItem.make_id(slug, i.text))
                                               for i in ep.items])
        items, replaced = extract.merge(ep.slug, ep.items, claims, path)
        out.read.add(path + extract.SOURCE_SUFFIX)
        out.replaced.update(replaced)
        out.episodes.append(replace(ep, items=items))
    return out


@dataclass
class Extraction:
    """What finding claims in transcripts would send (see `extraction_plan`)."""

    episodes: list[Episode]
    requests: list[tuple]  # (episode, chunk, request, transcript hash), not yet done
    done: int  # stretches already asked about (kept in the workspace)
    prompt_version: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = None

    def as_dict(self) -> dict:
        return {"episodes": [e.slug for e in self.episodes], "requests": len(self.requests), "done": self.done,
                "max_claims": sum(c.max_claims for _, c, _, _ in self.requests), "prompt_version": self.prompt_version,
                "tokens_in": self.tokens_in, "tokens_out_estimate": self.tokens_out,
                "cost_usd": None if self.cost is None else round(self.cost, 4)}


def check_extraction(settings: Settings) -> None:
    """Finding claims needs an LLM: say so in one line (exit status 2) when there is none."""
    if not settings.llm_configured:
        why = "--offline was given" if settings.offline else "no OPENAI_API_KEY or --base-url is set"
        raise ConfigError(f"--from-transcript needs an LLM to find an episode's claims ({why})")


def extraction_plan(loaded: Loaded, settings: Settings, *, episode: str | None = None) -> Extraction:
    """The requests that would find the key claims of an episode's transcript (the given one, or every
    episode with a transcript and no notes), with their estimated cost; sends nothing."""
    from cards import extract
    from cards.generate.base import Request
    from cards.prompts import EXTRACT_NAME, load_prompt
    from cards.tokens import counter_for

    check_extraction(settings)
    if episode is not None:
        eps = select(loaded.episodes, episode)
        if eps[0].transcript is None:
            raise InputError(f"episode {episode!r} has no transcript to find claims in (give it with -t)")
    else:
        eps = [e for e in loaded.episodes if e.transcript is not None and not e.items]
    template = load_prompt(settings.prompts, EXTRACT_NAME)
    schema = json.dumps(extract.ClaimSet.model_json_schema(), sort_keys=True)
    counter = counter_for(settings.model)
    todo = []
    for ep in eps:
        th = transcript_hash(ep.transcript)
        parts = extract.chunks(ep.transcript)
        for ch in parts:
            messages = template.render(episode_title=ep.full_title or ep.title, show=ep.show or "",
                                       people=", ".join(ep.people), span=ch.span, part=str(ch.index + 1),
                                       parts=str(len(parts)), max_claims=str(ch.max_claims), transcript=ch.render())
            key = stable_id(settings.model, template.version, json.dumps(messages, sort_keys=True), schema, length=32)
            note = NoteItem(key[:16], ep.slug, "", extract.KIND, None, (Source(ep.transcript.path, 0, 0),), ch.index)
            todo.append((ep, ch, Request(note, None, ep.title, tuple(messages), key), th))
    with _workspace_if_any(settings) as store:
        done = extract.done_keys(store, [r.key for _, _, r, _ in todo]) if store is not None else set()
    plan = Extraction(eps, [t for t in todo if t[2].key not in done], len(done), template.version)
    schema_tokens = counter.count(schema)
    plan.tokens_in = sum(schema_tokens + sum(counter.count(m["content"]) + 4 for m in r.messages)
                         for _, _, r, _ in plan.requests)
    plan.tokens_out = sum(extract.OUTPUT_TOKENS_PER_CLAIM * c.max_claims for _, c, _, _ in plan.requests)
    plan.cost = cost_of(settings, settings.model, plan.tokens_in, 0, plan.tokens_out)
    return plan


def extract_claims(plan: Extraction, settings: Settings, *, generator=None,
                   notify: Callable[[str], None] | None = None,
                   on_done: Callable[[], None] | None = None) -> dict:
    """Ask for each stretch's claims; each answer is kept in the workspace as it arrives (`on_done` hears it)."""
    from cards import extract
    from cards.store import Store

    if generator is None:
        from cards.generate.openai import OpenAIGenerator

        generator = OpenAIGenerator(settings.model, base_url=settings.base_url, api_key=settings.api_key,
                                    timeout=settings.timeout, max_tokens=settings.max_tokens,
                                    structured=settings.structured, notify=notify, reply_model=extract.ClaimSet)
    out = {"requests": len(plan.requests), "claims": 0, "dropped": 0, "failed": [], "tokens_in": 0, "tokens_out": 0}

    async def run_all(store) -> None:
        sem = asyncio.Semaphore(settings.concurrency)

        async def one(ep, ch, request, th) -> None:
            async with sem:
                result = await generator.generate(request)
            out["tokens_in"] += result.tokens_in
            out["tokens_out"] += result.tokens_out
            if on_done:
                on_done()
            if not result.ok:
                out["failed"].append({"episode": ep.slug, "span": ch.span, "error": result.error})
                return
            found, dropped = extract.found_claims(extract.ClaimSet.model_validate_json(result.raw), ch)
            extract.save(store, key=request.key, transcript_hash=th, episode=ep.slug, chunk=ch.index,
                         model=generator.model, prompt_version=plan.prompt_version, found=found, dropped=dropped,
                         tokens_in=result.tokens_in, tokens_out=result.tokens_out)
            out["claims"] += len(found)
            out["dropped"] += dropped

        await _all_or_none([one(*r) for r in plan.requests], generator)

    with Store(settings.workspace) as store, store.exclusive("cards generate"):
        asyncio.run(run_all(store))
    cost = cost_of(settings, settings.model, out["tokens_in"], 0, out["tokens_out"])
    out["cost_usd"] = None if cost is None else round(cost, 6)
    return out


# -- batches ---------------------------------------------------------------------------------------

def batch_client(settings: Settings):
    """A client for the Batch API of the configured server."""
    from cards.generate.openai_batch import BatchClient

    return BatchClient(base_url=settings.base_url, api_key=settings.api_key)


def _not_in_open_batches(store, jobs: list[Job]) -> tuple[list[Job], int]:
    """The jobs minus those an open batch is already working on (the same note, the same spec)."""
    from cards import batch

    pending = batch.waiting(store)
    if not pending:
        return jobs, 0
    kept = [j for j in jobs if pending.get(j.note.id) != j.spec]
    return kept, len(jobs) - len(kept)


def _send_batches(store, settings: Settings, generator, jobs: list[Job], version: str, client=None) -> list[str]:
    from cards import batch

    if not jobs:
        return []
    own = client is None
    client = client or batch_client(settings)
    try:
        return batch.submit(store, client, generator, jobs, version)
    finally:
        if own:
            client.close()


def _stored_job(store, notes: dict, note_id: str, episode: str, spec: str, parts: dict) -> Job | None:
    """A job rebuilt from the workspace, for a batch result: None if the note is no longer current."""
    if episode not in notes:
        notes[episode] = store.notes(episode)
    n = notes[episode].get(note_id)
    if n is None or not n.active:
        return None
    item = NoteItem(n.id, episode, n.text, "bullet", n.section,
                    tuple(Source(p, a, b) for p, a, b in n.spans) or (Source("", 0, 0),), n.position)
    return Job(Episode(episode, episode), item, n.context, spec, parts, None)


def collect_batches(store, settings: Settings, client=None) -> dict:
    """Import the results of every finished batch through the same path as live replies."""
    from cards import batch
    from cards.generate.openai import OpenAIGenerator

    if not batch.batches(store, open_only=True):
        return {}
    own = client is None
    client = client or batch_client(settings)
    notes: dict[str, dict] = {}
    models = {b.model for b in batch.batches(store, open_only=True)}
    first = batch.batches(store, open_only=True)[0]
    run_id = store.start_run("openai", first.model, first.prompt_version)

    def reader(b):
        return OpenAIGenerator(b.model, base_url=settings.base_url, api_key=settings.api_key,
                               max_tokens=settings.max_tokens)

    def record(note_id, episode, spec, parts, result, b) -> bool:
        job = _stored_job(store, notes, note_id, episode, spec, parts)
        if job is None:
            return False
        if batch.done_since(store, note_id, spec, b.created):
            return False  # done another way meanwhile (a live run)
        record_result(store, job, result, "openai", b.model, b.prompt_version, run_id)
        return True

    status = "interrupted"
    try:
        got = asyncio.run(batch.collect(store, client, reader, record))
        status = "ok"
    finally:
        if own:
            client.close()
        rows = store.run_usage_by_episode(run_id)
        tin, tout, tcached = (sum(r[k] or 0 for r in rows) for k in ("tokens_in", "tokens_out", "cached_tokens"))
        cost = cost_of(settings, first.model, tin, tcached, tout) if len(models) == 1 else None
        store.finish_run(run_id, status, (cost or 0.0) * batch.PRICE_FACTOR)
    touched = {r["episode"] for r in rows}
    duplicates = check_and_dedupe(store, None, episodes=touched) if touched else 0
    return {"run_id": run_id, "batches": got.batches, "imported": got.imported, "failed": got.failed,
            "skipped": got.skipped, "sent_again_next_run": got.unfinished, "still_open": got.still_open,
            "tokens_in": tin, "tokens_out": tout, "duplicates": duplicates,
            "cost_usd": None if cost is None else round(cost * batch.PRICE_FACTOR, 6)}


def _collect_first(store, settings: Settings, client=None) -> dict:
    """Before a run: results of finished batches are imported, so nothing they answered is bought again."""
    from cards import batch

    if not settings.llm_configured or not batch.batches(store, open_only=True):
        return {}
    return collect_batches(store, settings, client)


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
        return Store(settings.workspace, readonly=True)
    return nullcontext(None)


def _plan_readonly(store, loaded: Loaded, settings: Settings, *, episode: str | None, force: bool = False,
                   realign: bool = False, counter=None, llm: bool = False) -> Plan:
    """The plan a generate run would make now (from the workspace, if `store`); changes nothing.

    With `llm`, the plan of a run with the LLM settings.model even without a key (what an
    estimate prices), unless --offline was given.
    """
    from cards.prompts import load_prompt

    template = load_prompt(settings.prompts)
    name = "openai" if settings.llm_configured or (llm and not settings.offline) else OFFLINE
    model = settings.model if name == "openai" else _offline_model()
    critic = load_critic(settings, name)
    plan = make_plan(store, loaded, settings, template, name, model, episode=episode, force=force,
                     realign=realign, counter=counter, critic_version=critic.version if critic else None)
    if store is not None:  # what an open batch is working on is not sent again
        plan.jobs, in_batch = _not_in_open_batches(store, plan.jobs)
        if in_batch:
            plan.notices.append(f"{plural(in_batch, 'note')} wait for a batch sent earlier (`cards batch status`)")
    return plan


def estimate(loaded: Loaded, settings: Settings, *, episode: str | None = None, force: bool = False,
             realign: bool = False, batch: bool = False) -> dict:
    """What a run would send, without sending anything; with `batch`, at Batch API prices.

    Without a key it prices a run with the LLM (notes whose LLM cards are current are
    not counted); with --offline nothing would be sent, and it costs nothing.
    """
    from cards.tokens import counter_for

    counter = counter_for(settings.model)
    with _workspace_if_any(settings) as store:
        plan = _plan_readonly(store, loaded, settings, episode=episode, force=force, realign=realign,
                              counter=counter, llm=True)
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
    cost = 0.0 if settings.offline else cost_of(settings, settings.model, tin, 0, tout)
    critic = _critic_estimate(settings, todo, counter)
    if settings.critic and settings.llm_configured and cost is not None and critic["cost_usd"] is not None:
        cost += critic["cost_usd"]
    live_cost = cost
    if batch and cost is not None:
        from cards.batch import PRICE_FACTOR

        cost *= PRICE_FACTOR
    return {
        "batch": batch, "cost_live_usd": None if live_cost is None else round(live_cost, 4),
        "model": settings.model, "llm_configured": settings.llm_configured, "notes": len(plan.states),
        "requests": len(todo), "tokens_in": tin, "tokens_out_estimate": tout,
        "tokens_per_request": round(tin / len(todo)) if todo else 0,
        "cost_usd": None if cost is None else round(cost, 4),
        "prices_date": PRICES_DATE, "reasons": _count(plan.reasons[j.note.id] for j in todo),
        "notices": loaded.notices + plan.notices,
        "token_counter": counter.label, "episodes": list(per_ep.values()),
        "notes_cut": [{"episode": ep.slug, "path": note.source.path, "line": note.source.line_start,
                       "chars": len(note.text)} for note, ep in long_notes(todo)],
        "critic": critic,
    }


def _critic_estimate(settings: Settings, todo: list[Job], counter) -> dict:
    """What the critic would add to these requests, whether it is on or not: at most one request per note."""
    from cards import critic as crit
    from cards.prompts import CRITIC_NAME, load_prompt, render_passage

    template = load_prompt(settings.prompts, CRITIC_NAME)
    schema_tokens = counter.count(crit.schema_json())
    tin = 0
    for j in todo:
        ep = j.episode
        msgs = crit.messages(template, episode_title=ep.full_title or ep.title, show=ep.show or "",
                             people=", ".join(ep.people), date=ep.date or "", note=prompt_note(j.note.text),
                             passage=render_passage(j.context.parts if j.context else ()), claims=[], cards=[])
        # The drafted claims and cards it is sent are about what the generation writes.
        tin += schema_tokens + OUTPUT_TOKENS_GUESS + sum(counter.count(m["content"]) + 4 for m in msgs)
    tout = crit.CRITIC_OUTPUT_GUESS * len(todo)
    cost = cost_of(settings, settings.model, tin, 0, tout)
    return {"enabled": bool(settings.critic and settings.llm_configured), "version": template.version,
            "requests": len(todo), "tokens_in": tin, "tokens_out_estimate": tout,
            "cost_usd": None if cost is None else round(cost, 4),
            "per_note_usd": None if cost is None or not todo else round(cost / len(todo), 6)}


# -- status ----------------------------------------------------------------------------------------

_NOTE_STATES = ("new", "changed", "outdated", "failed", "waiting", "up to date")


def status(settings: Settings, loaded: Loaded | None = None, *, episode: str | None = None) -> dict:
    """Per episode: notes by state, what the next generate would send and why, drafts, and what export does.

    Without notes (`loaded` None) only what the workspace knows is shown.
    """
    from cards import batch, lineage
    from cards.store import Store

    with Store(settings.workspace, readonly=True) as store:
        plan = _plan_readonly(store, loaded, settings, episode=episode) if loaded is not None else None
        out: dict = {"episodes": [], "notices": (loaded.notices + plan.notices) if plan else []}
        out["batches"] = [b.as_dict() for b in batch.batches(store, open_only=True)]
        if out["batches"]:
            waiting = sum(b["requests"] - b["imported"] for b in out["batches"])
            out["notices"].append(f"{plural(len(out['batches']), 'batch', 'batches')} open with "
                                  f"{plural(waiting, 'request')} (`cards batch status`; `cards batch collect` or the "
                                  "next generate imports them)")
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
    from cards.check import check_drafts
    from cards.dedupe import candidate, find_duplicates

    drafts = store.drafts(include_superseded=False)
    wanted = None if episode is None and episodes is None else {episode} if episode else set(episodes or ())
    # Every live draft takes part in finding duplicates; only the selected ones change.
    selected = {d.id for d in drafts if wanted is None or d.episode in wanted}
    results = check_drafts(drafts, selected)
    for d in drafts:
        if d.id in results:
            d.warnings, d.grounding = results[d.id]
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
    if out.exists() and not out.is_dir():
        raise InputError("--out names a file; give a folder for the decks", path=str(out))
    written = []
    with Store(settings.workspace, create=False) as store:
        store.verify()  # before a deck is written from it
        known_episode(store, episode)
        eps = [e for e in store.episodes() if episode is None or e.slug == episode]
        for ep in eps:
            when = now if now is not None else time.time()
            plan = store.export_plan(ep.slug, include_drafts)
            row = {"episode": ep.slug, "title": ep.title, "deck": ep.deck_title, "path": None,
                   "cards": len(plan.cards),
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
                # One episode is one deck in Anki, which finds decks by name: a reworded heading
                # keeps the name (and Episode line) the deck was first exported with.
                path = export_deck(plan.cards, DeckInfo(ep.slug, ep.deck_title, ep.url, ep.video_id), out,
                                   prefix=settings.deck_prefix, now=when, clips=sounds)
                store.record_export(plan.cards, when, episode=ep.slug, deck=ep.deck_title)
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
