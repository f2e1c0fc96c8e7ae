"""Fetch: sources -> store. Each source is fetched, parsed and stored on its own; a failing one is
recorded with its error count and backs off, never stopping the others."""
from __future__ import annotations

from typing import Callable

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import ids
from ..config import SourceSettings
from ..errors import FetchError, SourceError
from ..logs import get_logger
from .timing import stage

if TYPE_CHECKING:
    from ..app import App

log = get_logger("digestd.fetch")

FETCH_BACKOFF_BASE = dt.timedelta(minutes=5)
FETCH_BACKOFF_MAX = dt.timedelta(hours=6)


def backoff(base: dt.timedelta, attempts: int, cap: dt.timedelta) -> dt.timedelta:
    return min(base * (2 ** max(attempts - 1, 0)), cap)


@dataclass
class FetchOutcome:
    source: str
    day: dt.date | None
    papers: int = 0
    new_papers: int = 0
    new_listings: int = 0
    not_modified: bool = False
    error: str | None = None
    skipped: str | None = None
    listed: list[str] = field(default_factory=list, repr=False)    # the keys of the papers it listed


# After downtime, the Hugging Face API is asked for at most this many missed days.
HF_CATCH_UP_DAYS = 7


def fetch_days(app: "App", src: SourceSettings, day: dt.date | None, today: dt.date,
               last_success: dt.datetime | None = None) -> list[dt.date]:
    """Which days one fetch of a source covers.

    A replay source without a date catches up on every saved list up to today. The Hugging Face API
    serves any date, so after downtime it catches up on the days since its last success. arXiv and
    plain feeds only ever serve their current list."""
    if day is not None:
        return [day]
    if src.type == "replay":
        from ..sources.replay import list_days

        path = app.settings.resolve(src.path)
        if not path.is_dir():
            raise FetchError(f"replay directory not found: {path}", source=src.name, url=str(path))
        return [d for d in list_days(path) if d <= today]
    if src.type == "hf_daily" and last_success is not None:
        start = max(last_success.date(), today - dt.timedelta(days=HF_CATCH_UP_DAYS - 1))
        return [start + dt.timedelta(days=i) for i in range((today - start).days + 1)]
    return [today]


def parse_limits(app: "App"):
    from ..sources.clean import ParseLimits

    f = app.settings.fetch
    return ParseLimits(max_entries=f.max_entries, max_title_chars=f.max_title_chars,
                       max_abstract_chars=f.max_abstract_chars, max_field_chars=f.max_field_chars,
                       max_authors=f.max_authors)


def fetch_source(app: "App", src: SourceSettings, day: dt.date | None = None, *, force: bool = False) -> list[FetchOutcome]:
    """Fetch, parse and store one source. Whatever goes wrong, for whatever reason, ends here as
    that source's error: logged once, recorded for ``status`` and ``/healthz``, backed off; the
    other sources and every reader go on. Every day is fetched and parsed before any is stored, so
    a failure leaves nothing of this fetch half stored."""
    from ..sources import fetch_source as fetch_one

    now = app.clock.now()
    state = app.store.source_state(src.name)
    if not force and state.next_retry_at and state.next_retry_at > now:
        log.info("fetch skipped: backing off until %s", state.next_retry_at.isoformat(), extra={"source": src.name})
        return [FetchOutcome(src.name, day, skipped=f"backing off until {state.next_retry_at.isoformat()}")]
    outcomes = []
    try:
        days = fetch_days(app, src, day, now.date(), state.last_success_at)
        limits = parse_limits(app)
        results = []
        for d in days:
            with stage(app, "fetch"):
                results.append((d, fetch_one(src, d, app.http, etag=state.etag if day is None else None,
                                             last_modified=state.last_modified if day is None else None,
                                             base_dir=app.settings.config_dir, limits=limits)))
        total = 0
        last = None
        for d, res in results:
            out = FetchOutcome(src.name, d, papers=len(res.papers), not_modified=res.not_modified,
                               listed=[fp.key for fp in res.papers])
            if res.papers:
                with stage(app, "store"):
                    out.new_papers, out.new_listings = app.store.upsert_papers(src.name, res.day or d, res.papers, now)
            total += len(res.papers)
            last = res
            outcomes.append(out)
            log.info("fetched %d papers (%d new listings)%s", out.papers, out.new_listings,
                     " (not modified)" if res.not_modified else "", extra={"source": src.name})
        app.store.record_fetch_success(src.name, now, total, etag=last.etag if last else None,
                                       last_modified=last.last_modified if last else None)
    except Exception as e:  # noqa: BLE001 - one source never stops a run; see the docstring
        outcomes = [o for o in outcomes if o.error]
        outcomes.append(_record_failure(app, src, day, state, now, e))
    return outcomes


def _record_failure(app: "App", src: SourceSettings, day: dt.date | None, state, now: dt.datetime,
                    e: Exception) -> FetchOutcome:
    from ..safety import shown

    attempts = (state.error_count or 0) + 1
    wait = backoff(FETCH_BACKOFF_BASE, attempts, FETCH_BACKOFF_MAX)
    retry_after = getattr(e, "retry_after", None)
    if isinstance(retry_after, (int, float)) and retry_after > 0:
        cap = app.settings.fetch.max_retry_after_seconds
        wait = max(wait, dt.timedelta(seconds=min(float(retry_after), cap)))
    if isinstance(e, SourceError):
        msg = shown(str(e))
    elif isinstance(e, OSError):
        msg = shown(f"{e.strerror or type(e).__name__}{': ' + str(e.filename) if e.filename else ''}")
    else:
        # A bug or a store refusal, not a network failure: say what it was; the traceback at DEBUG.
        msg = shown(f"{type(e).__name__}: {e}", 500)
        log.debug("fetch failed unexpectedly", exc_info=True, extra={"source": src.name})
    try:
        app.store.record_fetch_error(src.name, now, msg, now + wait)
    except Exception as store_error:  # noqa: BLE001 - the database may be what failed
        log.error("could not record the fetch error: %s", shown(f"{type(store_error).__name__}: {store_error}", 300),
                  extra={"source": src.name})
    log.error("fetch failed (attempt %d, next try in %s): %s", attempts, wait, msg, extra={"source": src.name})
    return FetchOutcome(src.name, day, error=msg)


def complete_papers(app: "App", keys: list[str]) -> tuple[int, str | None]:
    """Look up arXiv papers we know only by id (seed papers, imported ids). Returns (found, error)."""
    from ..sources.arxiv_api import lookup_arxiv

    known = app.store.papers_by_keys(keys)
    missing = [k for k in dict.fromkeys(keys) if ids.is_arxiv_key(k) and (k not in known or not known[k].abstract)]
    if not missing:
        return 0, None
    try:
        found = lookup_arxiv(app.http, missing)
    except SourceError as e:
        log.warning("could not look up %d papers in the arXiv API: %s", len(missing), e, extra={"source": "arxiv-api"})
        return 0, str(e)
    now = app.clock.now()
    for fp in found:
        app.store.ensure_paper(fp, now)
    return len(found), None


def fetch_all(app: "App", only: str | None = None, day: dt.date | None = None,
              on_source: Callable[[list[FetchOutcome]], None] | None = None) -> list[FetchOutcome]:
    """Fetch every enabled source (or only one); ``on_source`` hears each source's outcomes as it ends."""
    sources = app.settings.sources
    if only is not None:
        src = app.settings.source(only)
        if src is None:
            raise SourceError(f"no source named {only!r} in the config", source=only)
        sources = [src]
    outcomes: list[FetchOutcome] = []
    for src in sources:
        if not src.enabled and only is None:
            continue
        # A source named on the command line is fetched now, backoff or not: the user asked.
        done = fetch_source(app, src, day, force=only is not None)
        outcomes.extend(done)
        if on_source is not None:
            on_source(done)
    # Seed papers count for cold start only once we have their text.
    try:
        complete_papers(app, [k for u in app.settings.users for k in u.seed_papers])
    except Exception as e:  # noqa: BLE001 - a lookup of seed papers never stops the run either
        from ..safety import shown

        log.error("could not complete seed papers: %s", shown(f"{type(e).__name__}: {e}", 300),
                  extra={"source": "arxiv-api"})
    # Even with nothing new: this process has just read the config, which may name new keywords.
    vectors_after_fetch(app, [k for o in outcomes for k in o.listed], new_papers=any(o.new_papers for o in outcomes))
    return outcomes


def vectors_after_fetch(app: "App", listed: list[str], *, new_papers: bool = True) -> None:
    """Right after the fetch that brought them (`fetch`, `run --once`, and the daemon per source),
    the new papers' vectors are made, and with the sentence encoder kept in the database, as are
    the vectors of readers' keywords that have none yet: the encoding is paid here, not by the
    first digest that is due. Then the encoder is let go, so the delivery pass runs without it."""
    from .corpus import encode_keywords, encode_listed, release_encoder, warm_corpus

    try:
        if new_papers:
            warm_corpus(app)
            encode_listed(app, listed)
        encode_keywords(app)
    except Exception as e:  # noqa: BLE001 - the next pass builds them; a fetch has still succeeded
        from ..safety import shown

        log.error("could not build the vectors of the new papers and keywords: %s",
                  shown(f"{type(e).__name__}: {e}", 300))
    finally:
        release_encoder(app)


def sources_to_fetch(app: "App", now: dt.datetime, *, never_succeeded: bool) -> list[SourceSettings]:
    """Enabled sources whose backoff has run out, and (at start) those never fetched successfully."""
    states = app.store.all_source_states()
    out = []
    for src in app.settings.sources:
        if not src.enabled:
            continue
        st = states.get(src.name)
        if st is None or st.last_success_at is None:
            if never_succeeded or (st is not None and st.next_retry_at and st.next_retry_at <= now):
                out.append(src)
        elif st.error_count and st.next_retry_at and st.next_retry_at <= now:
            out.append(src)
    return out
