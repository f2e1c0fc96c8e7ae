"""A reader's private Atom feed: what their digests delivered, and the version that names it."""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING

from . import links

if TYPE_CHECKING:
    from .app import App


def feed_xml(app: "App", user_id: str) -> str:
    from .pipeline.view import ViewRequest, build_views
    from .render import FeedEntry, render_atom

    user = app.reader(user_id)
    now = app.clock.now()
    rows = app.store.feed_items(user.id)
    by_digest: dict[int, list] = {}
    digests = {}
    for item, _paper, digest in rows:
        by_digest.setdefault(digest.id, []).append(item)
        digests[digest.id] = digest
    order = list(by_digest)
    views = build_views(app, [ViewRequest(user, digests[i].day, by_digest[i], digests[i].note) for i in order], now,
                        via="feed")
    entries = []
    for did, v in zip(order, views):
        d = digests[did]
        for rank, p in enumerate(v.papers, 1):     # the store hands items over in digest order
            entries.append(FeedEntry(paper=p, delivered_at=d.sent_at or d.claimed_at or now, day=d.day, rank=rank))
    # Newest digest first; the sort is stable, so each digest keeps its rank order.
    entries.sort(key=lambda e: e.delivered_at, reverse=True)
    updated = entries[0].delivered_at if entries else (app.store.get_user(user.id).created_at or now)
    token = links.feed_token(app, user.id)
    return render_atom(user.id, links.feed_url(app, token), entries, updated,
                       title=f"digestd: papers for {user.name or user.id}", page_url=links.profile_url(app, token))


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
