"""Compose: due readers -> picks, a batch at a time.

For a batch of readers the pass reads everything in a few queries (what each digest covers, the
listings since, what was already sent, the votes, the stored models), featurises the pool of
candidate papers once, and ranks every reader of the batch against it together. A reader's own
candidates are a mask over that shared pool: their sources, first seen since their last digest,
never a paper already sent, promised to another digest, or voted 👎.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..config import UserSettings
from ..models import Pick, ProfileInput, Vote
from ..store import Item, paper_text
from .corpus import current_corpus, reader_models
from .timing import stage

if TYPE_CHECKING:
    from ..app import App

# A first digest looks back this far, so a new user starts with the recent lists, not an empty mail.
FIRST_DIGEST_LOOKBACK = dt.timedelta(days=7)
NOTHING_NEW = "Nothing new in your lists since the last digest."
NOTHING_RELEVANT = "Nothing relevant to you today."


@dataclass
class Composition:
    picks: list[Pick]
    covers_from: dt.datetime | None
    covers_until: dt.datetime
    note: str | None = None
    candidates: int = 0


@dataclass
class Request:
    """One digest to compose: the reader, their local day, and the digest row being filled (its own
    items do not count as already sent)."""

    user: UserSettings
    day: dt.date
    digest_id: int | None = None


@dataclass
class _Reader:
    req: Request
    since: dt.datetime
    sources: frozenset[str]
    votes: list = field(default_factory=list)
    excluded: set[str] = field(default_factory=set)


def compose_batch(app: "App", requests: Sequence[Request], now: dt.datetime) -> list[Composition]:
    """Picks for every request, in order. Readers whose windows start on the same day share one pool,
    built once per pass (usually all of them: they were all served yesterday); a new reader's
    window reaches back a week, into a pool of its own."""
    store = app.store
    readers = _readers(app, requests, now)
    out: dict[int, Composition] = {}
    groups: dict[dt.datetime, list[int]] = {}
    for i, r in enumerate(readers):
        start = dt.datetime.combine(r.since.astimezone(dt.timezone.utc).date(), dt.time(), dt.timezone.utc)
        groups.setdefault(start, []).append(i)
    for start, members in groups.items():
        pool = _pool(app, start, now)
        # eligible[i, j]: pool paper j was listed in one of reader i's sources after their last
        # digest, and is neither promised to them already nor voted 👎.
        eligible = np.vstack([pool.window(readers[i].sources, readers[i].since) for i in members]) \
            if pool.keys else np.zeros((len(members), 0), dtype=bool)
        with stage(app, "store"):
            reserved = store.reserved_keys([readers[i].req.user.id for i in members],
                                           [k for k, ok in zip(pool.keys, eligible.any(axis=0)) if ok],
                                           excluding=[readers[i].req.digest_id for i in members
                                                      if readers[i].req.digest_id is not None])
        for row, i in enumerate(members):
            r = readers[i]
            r.excluded |= reserved.get(r.req.user.id, set())
            cols = [pool.col[k] for k in r.excluded if k in pool.col]
            eligible[row, cols] = False
        has_pool = eligible.any(axis=1)
        for row, i in enumerate(members):
            if not has_pool[row]:
                out[i] = Composition(picks=[], covers_from=readers[i].since, covers_until=now, note=NOTHING_NEW)
        rows = np.flatnonzero(has_pool)
        if len(rows):
            ranked = [members[row] for row in rows]
            for i, comp in zip(ranked, _rank(app, [readers[i] for i in ranked], pool, eligible[rows], now)):
                out[i] = comp
    return [out[i] for i in range(len(readers))]


class _Pool:
    """The papers listed in (start, now] across every source, with what ranking needs of them:
    featurised once per pass in the current space and shared by every batch and reader."""

    def __init__(self, app: "App", start: dt.datetime, now: dt.datetime) -> None:
        with stage(app, "store"):
            self.listings = app.store.listings_between(start, now)
        self.keys = sorted({k for k, _src, _seen in self.listings})
        self.col = {k: j for j, k in enumerate(self.keys)}
        self._windows: dict[tuple, np.ndarray] = {}
        self._features: tuple | None = None      # (space, Featurized)

    def window(self, sources: frozenset[str], since: dt.datetime) -> np.ndarray:
        rule = (sources, since)
        if rule not in self._windows:
            mask = np.zeros(len(self.keys), dtype=bool)
            mask[[self.col[k] for k, src, seen in self.listings if src in sources and seen > since]] = True
            self._windows[rule] = mask
        return self._windows[rule].copy()

    def features(self, app: "App", corpus):
        from ..rank import featurize_known

        if self._features is None or self._features[0] is not corpus.space:
            with stage(app, "store"):
                papers = app.store.papers_by_keys(self.keys)
            with stage(app, "featurise"):
                self._features = (corpus.space, featurize_known(corpus.space, [paper_text(papers[k]) for k in self.keys],
                                                                corpus.featurized))
        return self._features[1]


POOLS_KEPT = 4


def _pool(app: "App", start: dt.datetime, now: dt.datetime) -> _Pool:
    pools = app.cache.setdefault("pools", {})
    ident = (start, now, app.store.listings_version())
    pool = pools.get(ident)
    if pool is None:
        while len(pools) >= POOLS_KEPT:          # bounded: a pass needs one or two
            pools.pop(next(iter(pools)))
        pool = pools[ident] = _Pool(app, start, now)
    return pool


def _readers(app: "App", requests: Sequence[Request], now: dt.datetime) -> list[_Reader]:
    """What the batch's readers bring: their window start and votes, in two queries."""
    store = app.store
    ids = [r.user.id for r in requests]
    covered: dict[str, dt.datetime] = {}
    with stage(app, "store"):
        for day in sorted({r.day for r in requests}):
            covered.update(store.covered_until([r.user.id for r in requests if r.day == day], day))
        votes = store.votes_of(ids)
    out = []
    for req in requests:
        since = covered.get(req.user.id) or now - FIRST_DIGEST_LOOKBACK
        vs = votes.get(req.user.id, [])
        out.append(_Reader(req, since, frozenset(app.settings.user_sources(req.user)), vs,
                           {v.paper.key for v in vs if v.vote < 0}))
    return out


def _rank(app: "App", readers: list[_Reader], pool: _Pool, eligible: np.ndarray,
          now: dt.datetime) -> list[Composition]:
    from ..rank import Controls, rank_readers

    corpus = current_corpus(app)
    feats = pool.features(app, corpus)
    profiles = _profiles(app, [r.req.user for r in readers], [r.votes for r in readers])
    models = reader_models(app, profiles, corpus, now)
    users = [r.req.user for r in readers]
    selections = rank_readers([models[u.id] for u in users], corpus.space, feats, eligible,
                              sizes=[u.digest_size for u in users], explore=[u.explore for u in users],
                              min_scores=[u.min_score for u in users], now=now, timings=app.timings,
                              controls=[Controls(tuple(u.pin_authors), tuple(u.pin_keywords), tuple(u.exclude_keywords))
                                        for u in users])
    out = []
    for r, sel, row in zip(readers, selections, eligible):
        note = sel.note
        if not sel.picks and not note:
            note = NOTHING_RELEVANT
        out.append(Composition(picks=list(sel.picks), covers_from=r.since, covers_until=now, note=note,
                               candidates=int(row.sum())))
    return out


def reader_profiles(app: "App", users: Sequence[UserSettings]) -> list[ProfileInput]:
    """What the ranker may know of each reader: votes (one query for all), seeds, keywords, authors."""
    votes = app.store.votes_of(u.id for u in users)
    return _profiles(app, users, [votes.get(u.id, []) for u in users])


def _profiles(app: "App", users: Sequence[UserSettings], votes: Sequence[list]) -> list[ProfileInput]:
    with stage(app, "store"):
        seeds = app.store.papers_by_keys(k for u in users for k in u.seed_papers)
    # Readers vote on the same recent papers: each is turned into ranker text once for the batch.
    texts: dict[str, object] = {}

    def text(p):
        if p.key not in texts:
            texts[p.key] = paper_text(p)
        return texts[p.key]
    return [ProfileInput(user_id=u.id, keywords=list(u.keywords), authors=list(u.authors),
                         seed_papers=[text(seeds[k]) for k in u.seed_papers if k in seeds],
                         votes=[Vote(paper=text(v.paper), value=v.vote, at=v.at) for v in vs])
            for u, vs in zip(users, votes)]


def compose_one(app: "App", user: UserSettings, day: dt.date, now: dt.datetime, *,
            exclude_digest: int | None = None) -> Composition:
    """One reader's digest: a batch of one, through exactly the code of the pass."""
    return compose_batch(app, [Request(user, day, exclude_digest)], now)[0]


def items_from(comp: Composition) -> list[Item]:
    return [Item(p.key, i, float(p.score), p.reason, p.highlight, bool(p.explore), bool(p.pinned))
            for i, p in enumerate(comp.picks)]
