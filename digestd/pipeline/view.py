"""Picks -> what the renderer shows: papers, their links and the reader's footer, for a whole batch
in a few queries (the papers, their sources and first days, the feed tokens)."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..config import UserSettings
from ..models import Digest as DigestView
from ..models import DigestPaper
from ..store import Item
from .. import links
from ..mathtext import readable
from .timing import stage

if TYPE_CHECKING:
    from ..app import App


@dataclass
class ViewRequest:
    user: UserSettings
    day: dt.date
    items: list[Item]
    note: str | None
    # The window of listings the digest covered, for the header's "3 of 120 new papers on hf, arxiv".
    since: dt.datetime | None = None
    until: dt.datetime | None = None


class _NewCounts:
    """How many papers were new on a set of lists in a window: one listings query per window,
    one count per (window, lists), shared by every reader of the batch with the same ones."""

    def __init__(self, app: "App") -> None:
        self.app = app
        self._listings: dict[tuple, dict[str, set[str]]] = {}
        self._counts: dict[tuple, int] = {}

    def count(self, sources: list[str], since: dt.datetime | None, until: dt.datetime | None) -> int | None:
        if until is None:
            return None
        window = (since, until)
        if window not in self._listings:
            by_source: dict[str, set[str]] = {}
            for key, src, _seen in self.app.store.listings_between(since, until):
                by_source.setdefault(src, set()).add(key)
            self._listings[window] = by_source
        rule = (window, tuple(sorted(sources)))
        if rule not in self._counts:
            by_source = self._listings[window]
            self._counts[rule] = len(set().union(*(by_source.get(s, set()) for s in sources)))
        return self._counts[rule]


def _as_stored(text: str | None, *, one_line: bool = False) -> str:
    return text or ""


def _extras(p, text=readable) -> tuple[list[str], str, str]:
    """(categories, ai_summary, code link) of a stored paper; bad JSON in a row shows nothing, not an error."""
    try:
        cats = [c for c in json.loads(p.categories_json or "[]") if isinstance(c, str)]
    except ValueError:
        cats = []
    try:
        extra = json.loads(p.extra_json or "{}")
    except ValueError:
        extra = {}
    extra = extra if isinstance(extra, dict) else {}
    summary = extra.get("ai_summary") if isinstance(extra.get("ai_summary"), str) else ""
    repo = extra.get("githubRepo") if isinstance(extra.get("githubRepo"), str) else ""
    # Only a web link is a link: anything else (javascript:, a bare name) is not shown.
    return cats, text(summary.strip()), repo if repo.startswith(("https://", "http://")) else ""


def build_views(app: "App", requests: Sequence[ViewRequest], now: dt.datetime, *, via: str = "email",
                readable_text: bool = True) -> list[DigestView]:
    """``via``: where the views are shown ("email" or "feed"), signed into their feedback links.
    ``readable_text`` False leaves titles, authors, abstracts, summaries and highlights as stored (TeX
    and all), for the render worker that makes them readable (``render_job.readable_view``)."""
    text = readable if readable_text else _as_stored
    store = app.store
    with stage(app, "store"):
        keys = list(dict.fromkeys(i.paper_key for r in requests for i in r.items))
        papers = store.papers_by_keys(keys)
        sources = store.sources_of(keys)
        listed = store.first_listed_day(keys)
        tokens = links.feed_tokens(app, [r.user.id for r in requests])
        counts = _NewCounts(app)
        new_papers = [counts.count(app.settings.user_sources(r.user), r.since, r.until) for r in requests]
    with stage(app, "render"):
        base = app.settings.digestd.base_url
        shown: dict[str, tuple] = {}
        out = []
        for r in requests:
            uid = r.user.id
            ps = []
            for it in r.items:
                p = papers.get(it.paper_key)
                if p is None:
                    continue
                if p.key not in shown:    # a paper many readers get is unpacked (TeX converted, made safe) once
                    url, pdf = links.paper_urls(p)
                    shown[p.key] = (url, pdf, [text(a, one_line=True) for a in json.loads(p.authors_json)],
                                    text(p.title, one_line=True), text(p.abstract), _extras(p, text))
                url, pdf, authors, title, abstract, (cats, summary, code) = shown[p.key]
                ps.append(DigestPaper(
                    key=p.key, title=title, abstract=abstract, authors=authors, url=url, pdf_url=pdf,
                    score=it.score, reason=it.reason, highlight=text(it.highlight) or None,
                    explore=it.explore, sources=sources.get(p.key, []),
                    up_url=links.feedback_url(app, uid, p.key, "up", via),
                    down_url=links.feedback_url(app, uid, p.key, "down", via), published=p.published_at,
                    listed_on=listed.get(p.key), categories=cats, upvotes=p.upvotes, ai_summary=summary,
                    code_url=code, pinned=it.pinned))
            token = tokens[uid]
            out.append(DigestView(user_id=uid, user_email=r.user.email, day=r.day, papers=ps, base_url=base,
                                  unsubscribe_url=links.unsubscribe_url(app, uid),
                                  feed_url=links.feed_url(app, token), generated_at=now,
                                  note=None if ps else r.note, user_name=r.user.name,
                                  profile_url=links.profile_url(app, token), today_url=links.today_url(app, token),
                                  new_papers=new_papers[len(out)], lists=app.settings.user_sources(r.user),
                                  digest_size=r.user.digest_size))
    return out


def view(app: "App", user: UserSettings, day: dt.date, items: list[Item], note: str | None,
         now: dt.datetime) -> DigestView:
    return build_views(app, [ViewRequest(user, day, items, note)], now)[0]


def preview(app: "App", user_id: str, day: dt.date | None = None) -> DigestView:
    """The digest as it was sent that day, or as it would be sent now; nothing is stored or sent."""
    from ..schedule import local_now
    from .compose import compose_one, items_from

    user = app.reader(user_id)
    now = app.clock.now()
    day = day or local_now(user, now).date()
    existing = app.store.get_digest(user.id, day)
    if existing is not None and existing.status == "sent":
        return build_views(app, [ViewRequest(user, day, app.store.digest_items(existing.id), existing.note,
                                             existing.covers_from, existing.covers_until)], now)[0]
    comp = compose_one(app, user, day, now)
    return build_views(app, [ViewRequest(user, day, items_from(comp), comp.note, comp.covers_from,
                                         comp.covers_until)], now)[0]
