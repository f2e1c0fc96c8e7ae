"""The work digestd does: fetch, compose, deliver. Each a loop over units (a source, a user);
one failing unit is logged with its ids and retried with backoff, never stopping the others."""
from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from . import ids
from .config import DAY_NAMES, SourceSettings, UserSettings
from .errors import (PaperNotFound, PermanentDeliveryError, SourceError, StoredModelError, StoreError,
                     TemporaryDeliveryError, UserError)
from .logs import get_logger
from .models import Digest as DigestView
from .models import DigestPaper, FetchedPaper, ProfileInput, Vote
from .store import STALE_CLAIM, DigestItem, Paper, paper_text
from .tokens import hash_token, new_nonce, tokens_equal

if TYPE_CHECKING:
    from .app import App

log = get_logger("digestd.jobs")

# A first digest looks back this far, so a new user starts with the recent lists, not an empty mail.
FIRST_DIGEST_LOOKBACK = dt.timedelta(days=7)
# How many recent papers stand in for "everything else" when a profile is trained.
BACKGROUND_SIZE = 2000
SPACE_REFIT_SHARE = 0.2                     # refit the feature space once a fifth of the background is new
SPACE_MAX_AGE = dt.timedelta(days=7)        # ... or once a week
FETCH_BACKOFF_BASE = dt.timedelta(minutes=5)
FETCH_BACKOFF_MAX = dt.timedelta(hours=6)
SEND_BACKOFF_BASE = dt.timedelta(minutes=2)


def backoff(base: dt.timedelta, attempts: int, cap: dt.timedelta) -> dt.timedelta:
    return min(base * (2 ** max(attempts - 1, 0)), cap)


# ---------------------------------------------------------------------------------------------
# Fetch
# ---------------------------------------------------------------------------------------------
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
        from .sources.replay import list_days

        return [d for d in list_days(app.settings.resolve(src.path)) if d <= today]
    if src.type == "hf_daily" and last_success is not None:
        start = max(last_success.date(), today - dt.timedelta(days=HF_CATCH_UP_DAYS - 1))
        return [start + dt.timedelta(days=i) for i in range((today - start).days + 1)]
    return [today]


def fetch_source(app: "App", src: SourceSettings, day: dt.date | None = None, *, force: bool = False) -> list[FetchOutcome]:
    from .sources import fetch_source as fetch_one

    now = app.clock.now()
    state = app.store.source_state(src.name)
    if not force and state.next_retry_at and state.next_retry_at > now:
        log.info("fetch skipped: backing off until %s", state.next_retry_at.isoformat(), extra={"source": src.name})
        return [FetchOutcome(src.name, day, skipped=f"backing off until {state.next_retry_at.isoformat()}")]
    outcomes = []
    try:
        days = fetch_days(app, src, day, now.date(), state.last_success_at)
        total = 0
        last = None
        for d in days:
            res = fetch_one(src, d, app.http, etag=state.etag if day is None else None,
                            last_modified=state.last_modified if day is None else None, base_dir=app.settings.config_dir)
            out = FetchOutcome(src.name, d, papers=len(res.papers), not_modified=res.not_modified)
            if res.papers:
                out.new_papers, out.new_listings = app.store.upsert_papers(src.name, res.day or d, res.papers, now)
            total += len(res.papers)
            last = res
            outcomes.append(out)
            log.info("fetched %d papers (%d new listings)%s", out.papers, out.new_listings,
                     " (not modified)" if res.not_modified else "", extra={"source": src.name})
        app.store.record_fetch_success(src.name, now, total, etag=last.etag if last else None,
                                       last_modified=last.last_modified if last else None)
    except (SourceError, OSError) as e:
        attempts = (state.error_count or 0) + 1
        wait = backoff(FETCH_BACKOFF_BASE, attempts, FETCH_BACKOFF_MAX)
        retry_after = getattr(e, "retry_after", None)
        if retry_after:
            wait = max(wait, dt.timedelta(seconds=retry_after))
        msg = str(e)
        app.store.record_fetch_error(src.name, now, msg, now + wait)
        log.error("fetch failed (attempt %d, next try in %s): %s", attempts, wait, msg, extra={"source": src.name})
        outcomes.append(FetchOutcome(src.name, day, error=msg))
    return outcomes


def complete_papers(app: "App", keys: list[str]) -> tuple[int, str | None]:
    """Look up arXiv papers we know only by id (seed papers, imported ids). Returns (found, error)."""
    from .sources.arxiv_api import lookup_arxiv

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


def fetch_all(app: "App", only: str | None = None, day: dt.date | None = None) -> list[FetchOutcome]:
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
        outcomes.extend(fetch_source(app, src, day, force=only is not None))
    # Seed papers count for cold start only once we have their text.
    complete_papers(app, [k for u in app.settings.users for k in u.seed_papers])
    return outcomes


# ---------------------------------------------------------------------------------------------
# Users and schedule
# ---------------------------------------------------------------------------------------------
def user_settings(app: "App", user_id: str) -> UserSettings:
    cfg = app.settings.user(user_id)
    if cfg is None:
        app.store.get_user(user_id)  # raises "unknown user" when the id was never configured
        raise UserError(f"user {user_id!r} is no longer in the config (deactivated; their data is kept)", user=user_id)
    return cfg


def local_now(user: UserSettings, now: dt.datetime) -> dt.datetime:
    return now.astimezone(ZoneInfo(user.timezone))


def due_day(user: UserSettings, now: dt.datetime) -> dt.date | None:
    """The user's local day whose digest is due by ``now``, or None (not a delivery day, or too early).
    Comparing wall-clock times makes a send_at skipped by a DST jump fire at the first moment after it."""
    ln = local_now(user, now)
    if DAY_NAMES[ln.weekday()] not in user.days:
        return None
    if (ln.hour, ln.minute) < user.send_hour_minute:
        return None
    return ln.date()


# ---------------------------------------------------------------------------------------------
# Links
# ---------------------------------------------------------------------------------------------
def feed_token(app: "App", user_id: str) -> str:
    user = app.store.get_user(user_id)
    nonce = user.feed_nonce
    if not nonce:
        nonce = new_nonce()
        token = app.signer.feed_token(user_id, nonce)
        app.store.set_feed_token(user_id, nonce, hash_token(token))
        return token
    return app.signer.feed_token(user_id, nonce)


def rotate_feed_token(app: "App", user_id: str) -> str:
    app.store.get_user(user_id)
    nonce = new_nonce()
    token = app.signer.feed_token(user_id, nonce)
    app.store.set_feed_token(user_id, nonce, hash_token(token))
    return feed_url(app, token)


def feed_url(app: "App", token: str) -> str:
    return f"{app.settings.digestd.base_url}/feeds/{token}.atom"


def feedback_url(app: "App", user_id: str, paper_key: str, vote: str) -> str:
    return f"{app.settings.digestd.base_url}/f/{app.signer.feedback_token(user_id, paper_key, vote)}"


def unsubscribe_url(app: "App", user_id: str) -> str:
    return f"{app.settings.digestd.base_url}/u/{app.signer.unsubscribe_token(user_id)}"


def paper_urls(p: Paper) -> tuple[str, str | None]:
    if p.arxiv_id:
        return p.url or ids.abs_url(p.arxiv_id), p.pdf_url or ids.pdf_url(p.arxiv_id)
    if p.url:
        return p.url, p.pdf_url
    return p.key if p.key.startswith("http") else "", p.pdf_url


# ---------------------------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------------------------
def profile_input(app: "App", user: UserSettings) -> ProfileInput:
    seeds = app.store.papers_by_keys(user.seed_papers)
    votes = [Vote(paper=paper_text(v.paper), value=v.vote, at=v.at) for v in app.store.votes(user.id)]
    return ProfileInput(user_id=user.id, keywords=list(user.keywords), authors=list(user.authors),
                        seed_papers=[paper_text(p) for p in seeds.values()], votes=votes)


@dataclass
class Composition:
    picks: list  # list[Pick]
    covers_from: dt.datetime | None
    covers_until: dt.datetime
    note: str | None = None
    candidates: int = 0


def compose(app: "App", user: UserSettings, day: dt.date, now: dt.datetime, *, exclude_digest: int | None = None) -> Composition:
    from .rank import featurize_known, rank_for_user

    prev = app.store.last_digest(user.id, before_day=day)
    since = prev.covers_until if prev and prev.covers_until else now - FIRST_DIGEST_LOOKBACK
    sources = app.settings.user_sources(user)
    candidates = app.store.candidate_papers(sources, since, now)
    exclude = app.store.sent_keys(user.id, excluding_digest=exclude_digest) | app.store.downvoted_keys(user.id)
    pool = [p for p in candidates if p.key not in exclude]
    if not pool:
        return Composition(picks=[], covers_from=since, covers_until=now,
                           note="Nothing new in your lists since the last digest.", candidates=0)
    corpus = current_corpus(app)
    profile = profile_input(app, user)
    model = user_model(app, profile, corpus, now)
    # Today's papers are mostly in the background already: reuse their vectors.
    candidates = featurize_known(corpus.space, [paper_text(p) for p in pool], corpus.featurized)
    selection = rank_for_user(profile, candidates, corpus.papers,
                              user.digest_size, exclude=exclude, explore=user.explore, min_score=user.min_score,
                              now=now, space=corpus.space, model=model)
    note = selection.note
    if not selection.picks and not note:
        note = "Nothing relevant to you today."
    return Composition(picks=list(selection.picks), covers_from=since, covers_until=now,
                       note=note, candidates=len(pool))


@dataclass
class Corpus:
    """The background corpus of one corpus version and the feature space fitted on it, plus what
    training needs from them, computed on first use and shared by every user of the version."""

    version: tuple
    papers: list                       # list[PaperText]
    space: object                      # rank.FeatureSpace
    fitted_at: dt.datetime = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    fitted_keys: frozenset = frozenset()   # the papers the space was fitted on
    _featurized: object = None
    _identity: str | None = None

    @property
    def featurized(self):
        """The background's vectors: featurised (and its neighbour graph built) once, not per user."""
        with _CORPUS_LOCK:
            if self._featurized is None:
                from .rank import featurize

                self._featurized = featurize(self.space, self.papers)
            return self._featurized

    @property
    def identity(self) -> str:
        """What a stored model's vectors live in (``rank.persist.space_identity``)."""
        if self._identity is None:
            from .rank.persist import space_identity

            self._identity = space_identity(self.space, self.papers)
        return self._identity


_CORPUS_LOCK = threading.RLock()


def current_corpus(app: "App") -> Corpus:
    """The background and its feature space, cached on the app; one thread builds it, the daemon's
    other jobs wait for it rather than fit (or encode) the same papers twice."""
    with _CORPUS_LOCK:
        return _current_corpus(app)


def warm_corpus(app: "App") -> None:
    """After a fetch brought new papers: build the background's vectors now (with the embeddings
    backend, encode the new papers) so the cost is paid at fetch time, not when a digest is due."""
    with _CORPUS_LOCK:
        _current_corpus(app).featurized


def _current_corpus(app: "App") -> Corpus:
    """The background and its feature space.

    The background is reread when new papers arrive, but the space is refitted only when a fifth
    of the background is new to it or it is a week old: papers are hashed into fixed columns and
    projected with the fitted basis, so a new paper needs no refit, and keeping the space keeps
    every stored user model valid (a refit retrains everyone once). A change of the configured
    backend (a config reload) refits at once."""
    from .rank import fit_space

    backend = app.settings.ranking.backend
    ident = (backend, app.store.corpus_version())
    cached = app.cache.get("corpus")
    if cached is not None and cached.version == ident:
        return cached
    now = app.clock.now()
    background = [paper_text(p) for p in app.store.recent_papers(BACKGROUND_SIZE)]
    if cached is not None and cached.space.backend == backend and now - cached.fitted_at < SPACE_MAX_AGE:
        new = sum(1 for p in background if p.key not in cached.fitted_keys)
        if new < SPACE_REFIT_SHARE * max(len(background), 1):
            fresh = Corpus(ident, background, cached.space, fitted_at=cached.fitted_at,
                           fitted_keys=cached.fitted_keys, _identity=cached.identity)
            app.cache["corpus"] = fresh
            return fresh
    encoder = paper_encoder(app) if backend == "embeddings" else None
    fresh = Corpus(ident, background, fit_space(background, backend, encoder=encoder), fitted_at=now,
                   fitted_keys=frozenset(p.key for p in background))
    app.cache["corpus"] = fresh
    return fresh


def paper_encoder(app: "App"):
    """The embeddings backend's encoder: a paper is encoded the first time it is featurised (after
    the fetch that brought it, or by a digest) and its vector kept in the database, so every later
    digest, user and restart reads it back."""
    enc = app.cache.get("encoder")
    if enc is None:
        from .rank.embeddings import PaperEncoder

        model = app.embedder()
        enc = app.cache["encoder"] = PaperEncoder(model, app.store.embedding_cache(model.name))
    return enc


def user_model(app: "App", profile: ProfileInput, corpus: Corpus, now: dt.datetime):
    """The user's trained model: the stored one while its fingerprint matches (same votes, seeds,
    keywords, authors, params and space) and it is younger than ``persist.MAX_AGE``, else trained and stored.

    Only users whose input changed pay for training; a model that cannot be read (written by
    another version) is retrained, never fatal."""
    from .rank import persist, train

    want = persist.fingerprint(profile, corpus.identity)
    row = app.store.get_profile(profile.user_id)
    if row is None:
        why = "no stored model"
    elif persist.reusable(row.fingerprint, row.trained_at, want, now):
        try:
            return persist.loads(row.model, profile.user_id)
        except StoredModelError as e:
            log.warning("%s; retraining", e.message, extra={"user": profile.user_id})
            why = "stored model unreadable"
    elif row.fingerprint == want:
        why = "stored model older than a week"
    else:
        why = "votes, settings, params or papers changed"
    t = time.perf_counter()
    model = train(profile, corpus.space, corpus.featurized, now)
    ms = (time.perf_counter() - t) * 1000
    try:
        app.store.save_profile(profile.user_id, want, persist.dumps(model), now)
    except StoreError as e:   # the model is still good for this digest; the next compose trains again
        log.warning("%s", e, extra={"user": profile.user_id})
    log.info("profile trained in %.0f ms (%s)", ms, why, extra={"user": profile.user_id})
    return model


def view(app: "App", user: UserSettings, day: dt.date, items: list[DigestItem], note: str | None,
         now: dt.datetime) -> DigestView:
    papers = app.store.papers_by_keys(i.paper_key for i in items)
    sources = app.store.sources_of(papers)
    listed = app.store.first_listed_day(papers)
    out = []
    for it in items:
        p = papers.get(it.paper_key)
        if p is None:
            continue
        url, pdf = paper_urls(p)
        out.append(DigestPaper(
            key=p.key, title=p.title, abstract=p.abstract, authors=json.loads(p.authors_json), url=url, pdf_url=pdf,
            score=it.score, reason=it.reason, highlight=it.highlight, explore=it.explore,
            sources=sources.get(p.key, []), up_url=feedback_url(app, user.id, p.key, "up"),
            down_url=feedback_url(app, user.id, p.key, "down"), published=p.published_at, listed_on=listed.get(p.key)))
    return DigestView(user_id=user.id, user_email=user.email, day=day, papers=out, base_url=app.settings.digestd.base_url,
                      unsubscribe_url=unsubscribe_url(app, user.id), feed_url=feed_url(app, feed_token(app, user.id)),
                      generated_at=now, note=None if out else note)


def items_from(comp: Composition) -> list[DigestItem]:
    return [DigestItem(digest_id=0, user_id="", paper_key=p.key, position=i, score=float(p.score), reason=p.reason,
                       highlight=p.highlight, explore=bool(p.explore)) for i, p in enumerate(comp.picks)]


def preview(app: "App", user_id: str, day: dt.date | None = None) -> DigestView:
    """The digest as it was sent that day, or as it would be sent now; nothing is stored or sent."""
    user = user_settings(app, user_id)
    now = app.clock.now()
    day = day or local_now(user, now).date()
    existing = app.store.get_digest(user.id, day)
    if existing is not None and existing.status == "sent":
        return view(app, user, day, app.store.digest_items(existing.id), existing.note, now)
    comp = compose(app, user, day, now)
    return view(app, user, day, items_from(comp), comp.note, now)


# ---------------------------------------------------------------------------------------------
# Deliver
# ---------------------------------------------------------------------------------------------
@dataclass
class DeliveryOutcome:
    user: str
    day: dt.date
    status: str            # sent / empty / skipped / retry / failed / already / feed-only / unsubscribed
    papers: int = 0
    message_id: str | None = None
    error: str | None = None


def message_id_for(app: "App", digest_id: int, day: dt.date, resend: bool) -> str:
    host = urlsplit(app.settings.digestd.base_url).hostname or "digestd.local"
    suffix = f".{secrets.token_hex(4)}" if resend else ""
    return f"<digest.{digest_id}.{day.isoformat()}{suffix}@{host}>"


def deliver_user(app: "App", user: UserSettings, day: dt.date, mailer, *, force: bool = False) -> DeliveryOutcome:
    now = app.clock.now()
    store = app.store
    digest = store.claim_digest(user.id, day, now, app.worker_id, force=force)
    if digest is None:
        existing = store.get_digest(user.id, day)
        return DeliveryOutcome(user.id, day, "already", message_id=existing.message_id if existing else None)
    resend = force and digest.sent_at is not None
    try:
        items = store.digest_items(digest.id)
        note = digest.note
        # A retry sends exactly what was composed before; only a first attempt composes.
        if not items and not (digest.attempts and note):
            comp = compose(app, user, day, now, exclude_digest=digest.id)
            items = items_from(comp)
            note = comp.note
            store.save_digest_items(digest, items, comp.covers_from, comp.covers_until, note)
            items = store.digest_items(digest.id)
        digest_view = view(app, user, day, items, note, now)
        urow = store.get_user(user.id)
        wants_mail = "email" in user.formats and urow.subscribed
        if not items and user.on_empty == "skip":
            store.finish_digest(digest.id, "empty", now)
            return DeliveryOutcome(user.id, day, "empty")
        if not wants_mail:
            # Feed-only (or unsubscribed): the digest is delivered by appearing in the feed.
            store.finish_digest(digest.id, "sent" if items else "empty", now)
            return DeliveryOutcome(user.id, day, "feed-only" if urow.subscribed else "unsubscribed", papers=len(items))
        from .render import build_message

        mid = message_id_for(app, digest.id, day, resend)
        msg = build_message(digest_view, from_addr=app.from_addr, message_id=mid, date=now, list_id=app.list_id)
        mailer.send(msg, user.email)
        store.finish_digest(digest.id, "sent", app.clock.now(), message_id=mid)
        log.info("digest sent: %d papers", len(items), extra={"user": user.id})
        return DeliveryOutcome(user.id, day, "sent", papers=len(items), message_id=mid)
    except TemporaryDeliveryError as e:
        attempts = (digest.attempts or 0) + 1
        if attempts >= app.max_send_attempts:
            store.finish_digest(digest.id, "failed", now, error=str(e))
            log.error("digest failed after %d attempts: %s", attempts, e, extra={"user": user.id})
            return DeliveryOutcome(user.id, day, "failed", error=str(e))
        wait = backoff(SEND_BACKOFF_BASE, attempts, dt.timedelta(hours=1))
        store.finish_digest(digest.id, "retry", now, error=str(e), next_attempt_at=now + wait)
        log.warning("digest delivery will be retried in %s: %s", wait, e, extra={"user": user.id})
        return DeliveryOutcome(user.id, day, "retry", error=str(e))
    except PermanentDeliveryError as e:
        store.finish_digest(digest.id, "failed", now, error=str(e))
        log.error("digest refused by the mail server: %s", e, extra={"user": user.id})
        return DeliveryOutcome(user.id, day, "failed", error=str(e))
    except Exception as e:  # one user's bug must not stop the others; the claim is handed back for a retry
        wait = backoff(SEND_BACKOFF_BASE, (digest.attempts or 0) + 1, dt.timedelta(hours=1))
        store.finish_digest(digest.id, "retry", now, error=f"{e.__class__.__name__}: {e}", next_attempt_at=now + wait)
        log.exception("digest failed: %s", e, extra={"user": user.id})
        return DeliveryOutcome(user.id, day, "retry", error=str(e))


def deliver_due(app: "App", *, only_user: str | None = None, day: dt.date | None = None,
                force: bool = False) -> list[DeliveryOutcome]:
    """Send every digest due by now (or the one asked for). One SMTP connection serves the batch."""
    now = app.clock.now()
    work: list[tuple[UserSettings, dt.date]] = []
    users = [user_settings(app, only_user)] if only_user else list(app.settings.users)
    for user in users:
        d = day if (day is not None or only_user) else due_day(user, now)
        if only_user and d is None:
            d = local_now(user, now).date()
        if d is None:
            continue
        work.append((user, d))
    outcomes = []
    if not work:
        return outcomes
    with app.mailer() as mailer:
        for user, d in work:
            outcomes.append(deliver_user(app, user, d, mailer, force=force))
    return outcomes


def run_once(app: "App") -> tuple[list[FetchOutcome], list[DeliveryOutcome]]:
    fetched = fetch_all(app)
    delivered = deliver_due(app)
    return fetched, delivered


# ---------------------------------------------------------------------------------------------
# Feedback, feed, import, export, status
# ---------------------------------------------------------------------------------------------
def resolve_paper_key(app: "App", paper: str) -> str:
    parsed = ids.parse_arxiv_id(paper)
    key = parsed[0] if parsed else paper.strip()
    if app.store.get_paper(key) is None:
        raise PaperNotFound(f"paper {paper!r} is not in any list digestd has fetched", paper=paper)
    return key


def apply_feedback(app: "App", user_id: str, paper: str, vote: str, via: str = "cli") -> str:
    if vote not in ("up", "down", "clear"):
        raise UserError(f"vote must be up, down or clear, got {vote!r}", user=user_id)
    app.store.get_user(user_id)
    key = resolve_paper_key(app, paper)
    app.store.set_vote(user_id, key, vote, via, app.clock.now())
    log.info("vote %s", vote, extra={"user": user_id, "paper": key})
    return key


def feed_xml(app: "App", user_id: str) -> str:
    from .render import FeedEntry, render_atom

    user = user_settings(app, user_id)
    now = app.clock.now()
    rows = app.store.feed_items(user.id)
    by_digest: dict[int, list] = {}
    for item, _paper, digest in rows:
        by_digest.setdefault(digest.id, []).append(item)
    entries = []
    digests = {d.id: d for _i, _p, d in rows}
    for did, items in by_digest.items():
        d = digests[did]
        v = view(app, user, d.day, items, d.note, now)
        for p in v.papers:
            entries.append(FeedEntry(paper=p, delivered_at=d.sent_at or d.claimed_at or now, day=d.day))
    entries.sort(key=lambda e: (e.delivered_at, -e.paper.score), reverse=True)
    updated = entries[0].delivered_at if entries else (app.store.get_user(user.id).created_at or now)
    return render_atom(user.id, feed_url(app, feed_token(app, user.id)), entries, updated,
                       title=f"digestd: papers for {user.name or user.id}")


def import_liked(app: "App", user_id: str, path: str) -> dict:
    from pathlib import Path

    from .errors import ImportFileError
    from .importers import parse_liked_file

    app.store.get_user(user_id)
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImportFileError(f"cannot read {path}: {e.strerror}", user=user_id) from e
    refs = parse_liked_file(data, p.name)
    now = app.clock.now()
    imported = 0
    for ref in refs:
        key = ref.arxiv_id or ids.paper_key(None, None, ref.title or "")
        if not key or key == "title:":
            continue
        app.store.ensure_paper(FetchedPaper(key=key, title=ref.title or key, abstract=ref.abstract or "",
                                            authors=list(ref.authors or []), arxiv_id=ref.arxiv_id,
                                            url=ids.abs_url(ref.arxiv_id) if ref.arxiv_id else None), now)
        app.store.set_vote(user_id, key, "up", "import", now)
        imported += 1
    looked_up, error = complete_papers(app, [r.arxiv_id for r in refs if r.arxiv_id])
    known = app.store.papers_by_keys(r.arxiv_id for r in refs if r.arxiv_id)
    without_text = sum(1 for p in known.values() if not p.abstract and p.title == p.key)
    return {"user": user_id, "imported": imported, "without_text": without_text, "looked_up": looked_up,
            "lookup_error": error, "file": path}


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


def export_user(app: "App", user_id: str) -> dict:
    urow = app.store.get_user(user_id)
    cfg = app.settings.user(user_id)
    token = feed_token(app, user_id)
    settings = json.loads(urow.settings_json or "{}")
    user = {"id": urow.id, "email": urow.email, "timezone": urow.timezone, "subscribed": urow.subscribed,
            "active": urow.active, "created_at": _iso(urow.created_at)}
    for k in ("name", "send_at", "days", "digest_size", "keywords", "seed_papers", "authors", "sources", "formats",
              "on_empty", "explore"):
        if k in settings:
            user[k] = settings[k]
    if cfg is not None and not cfg.sources:
        user["sources"] = app.settings.user_sources(cfg)
    feedback = [{"paper": v.paper.key, "vote": "up" if v.vote > 0 else "down", "at": _iso(v.at), "via": v.via}
                for v in app.store.votes(user_id)]
    history = [{"paper": e.paper_key, "vote": e.vote, "at": _iso(e.at), "via": e.via}
               for e in app.store.feedback_events(user_id)]
    digests = [{"date": d.day.isoformat(), "status": d.status, "sent_at": _iso(d.sent_at), "message_id": d.message_id,
                "papers": keys, "error": d.error}
               for d, keys in app.store.digests(user_id)]
    base = app.settings.digestd.base_url
    return {"user": user, "feed_url": feed_url(app, token), "profile_url": f"{base}/profile/{token}",
            "feedback": feedback, "feedback_history": history, "digests": digests}


def status(app: "App") -> dict:
    states = app.store.all_source_states()
    sources = []
    for src in app.settings.sources:
        st = states.get(src.name)
        sources.append({"name": src.name, "type": src.type, "enabled": src.enabled,
                        "last_success": _iso(st.last_success_at) if st else None,
                        "last_count": st.last_count if st else None,
                        "last_error": st.last_error if st and st.error_count else None,
                        "last_error_at": _iso(st.last_error_at) if st and st.error_count else None,
                        "error_count": st.error_count if st else 0,
                        "next_retry": _iso(st.next_retry_at) if st else None})
    last = app.store.digest_status()
    trained = app.store.profile_trained_at()
    users = []
    for u in app.store.users(active_only=False):
        d = last.get(u.id)
        users.append({"id": u.id, "active": u.active, "subscribed": u.subscribed,
                      "last_digest": d.day.isoformat() if d else None, "last_status": d.status if d else None,
                      "last_sent_at": _iso(d.sent_at) if d else None, "last_error": d.error if d else None,
                      "profile_trained_at": _iso(trained.get(u.id))})
    return {"sources": sources, "users": users, "counts": app.store.counts(), "database": app.store.safe_url}


# ---------------------------------------------------------------------------------------------
# The daemon's units (issue 3): what is owed now, private feeds, subscriptions
# ---------------------------------------------------------------------------------------------
def pending_deliveries(app: "App", now: dt.datetime, only_user: str | None = None) -> list[tuple[UserSettings, dt.date]]:
    """Digests owed by ``now``: today's (local) when due and not yet taken, plus any digest of an
    earlier day waiting in ``retry``: its papers are already reserved for it and nowhere else."""
    work: list[tuple[UserSettings, dt.date]] = []
    users = [u for u in app.settings.users if only_user is None or u.id == only_user]
    for user in users:
        days = {d.day for d in app.store.digests_to_retry(user.id, now)}
        today = due_day(user, now)
        if today is not None:
            row = app.store.get_digest(user.id, today)
            if row is None or (row.status == "claimed" and row.claimed_at and row.claimed_at < now - STALE_CLAIM):
                days.add(today)
        work.extend((user, d) for d in sorted(days))
    return work


def deliver_pending(app: "App", *, only_user: str | None = None, should_stop=lambda: False) -> list[DeliveryOutcome]:
    """Send what is owed now through one mail connection; ``should_stop`` is asked between users so
    a shutdown finishes the message in flight and leaves the rest to the next start."""
    work = pending_deliveries(app, app.clock.now(), only_user)
    outcomes: list[DeliveryOutcome] = []
    if not work:
        return outcomes
    with app.mailer() as mailer:
        for user, d in work:
            if should_stop():
                break
            outcomes.append(deliver_user(app, user, d, mailer))
    return outcomes


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


def user_for_feed_token(app: "App", token: str) -> str | None:
    """The configured user whose private feed ``token`` opens, else None (no hint why)."""
    digest = hash_token(token)
    row = app.store.user_by_feed_token_hash(digest)
    if row is None or not row.feed_token_hash or not tokens_equal(row.feed_token_hash, digest):
        return None
    if app.settings.user(row.id) is None:
        return None
    return row.id


def _software_version() -> str:
    # A new release may render the same items differently; readers should fetch it again.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("digestd")
    except PackageNotFoundError:
        return "dev"


def feed_version(app: "App", user_id: str) -> tuple[str, dt.datetime]:
    """(ETag, Last-Modified) of the user's feed, from what it lists rather than from its bytes: the
    bytes change on every render (feedback links carry their signing time) while the content does not."""
    import hashlib

    urow = app.store.get_user(user_id)
    cfg = app.settings.user(user_id)
    rows = app.store.feed_items(user_id)
    h = hashlib.sha256()
    h.update(f"{_software_version()}\0{user_id}\0{cfg.name if cfg else ''}\0{urow.feed_nonce}\0{app.settings.digestd.base_url}\0".encode())
    newest = urow.created_at or dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    for item, _paper, digest in rows:
        at = digest.sent_at or digest.claimed_at
        h.update(f"{digest.id}:{at.isoformat() if at else ''}:{item.paper_key}:{item.position}\n".encode())
        if at and at > newest:
            newest = at
    return f'W/"{h.hexdigest()[:32]}"', newest.replace(microsecond=0)


def set_subscription(app: "App", user_id: str, subscribed: bool, *, via_link: bool) -> None:
    app.store.set_subscribed(user_id, subscribed, app.clock.now(), via_link=via_link)
    log.info("%s%s", "subscribed again" if subscribed else "unsubscribed", " by link" if via_link else "",
             extra={"user": user_id})
