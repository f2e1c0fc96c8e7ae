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
from .timing import stage

if TYPE_CHECKING:
    from ..app import App


@dataclass
class ViewRequest:
    user: UserSettings
    day: dt.date
    items: list[Item]
    note: str | None


def build_views(app: "App", requests: Sequence[ViewRequest], now: dt.datetime) -> list[DigestView]:
    store = app.store
    with stage(app, "store"):
        keys = list(dict.fromkeys(i.paper_key for r in requests for i in r.items))
        papers = store.papers_by_keys(keys)
        sources = store.sources_of(keys)
        listed = store.first_listed_day(keys)
        tokens = links.feed_tokens(app, [r.user.id for r in requests])
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
                if p.key not in shown:    # a paper many readers get is unpacked once
                    url, pdf = links.paper_urls(p)
                    shown[p.key] = (url, pdf, json.loads(p.authors_json))
                url, pdf, authors = shown[p.key]
                ps.append(DigestPaper(
                    key=p.key, title=p.title, abstract=p.abstract, authors=authors, url=url, pdf_url=pdf,
                    score=it.score, reason=it.reason, highlight=it.highlight, explore=it.explore, pinned=it.pinned,
                    sources=sources.get(p.key, []), up_url=links.feedback_url(app, uid, p.key, "up"),
                    down_url=links.feedback_url(app, uid, p.key, "down"), published=p.published_at,
                    listed_on=listed.get(p.key)))
            out.append(DigestView(user_id=uid, user_email=r.user.email, day=r.day, papers=ps, base_url=base,
                                  unsubscribe_url=links.unsubscribe_url(app, uid),
                                  feed_url=links.feed_url(app, tokens[uid]), generated_at=now,
                                  note=None if ps else r.note))
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
        return view(app, user, day, app.store.digest_items(existing.id), existing.note, now)
    comp = compose_one(app, user, day, now)
    return view(app, user, day, items_from(comp), comp.note, now)
