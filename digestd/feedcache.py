"""Rendered private feeds, kept between requests: pure data, no I/O, safe across threads.

Feed readers poll every few minutes and almost always find nothing new, so the web side keeps:
- per user, the feed's (ETag, Last-Modified) beside the cheap stamp they were computed for
  (``Store.feed_stamp``) and the settings object in force: while both are unchanged the 304 path
  needs no other query;
- per user, the one rendered body of the current ETag, plain and gzip-compressed, in an LRU
  bounded by bytes. A body is re-rendered after ``body_max_age`` even with an unchanged ETag,
  because its feedback links carry their signing time and expire.
"""
from __future__ import annotations

import datetime as dt
import gzip
import threading
from collections import OrderedDict
from dataclasses import dataclass

# Above level 6 gzip gains little on XML and costs much more time per render.
GZIP_LEVEL = 6


@dataclass(frozen=True)
class FeedVersion:
    etag: str
    last_modified: dt.datetime


@dataclass(frozen=True)
class RenderedFeed:
    etag: str
    body: bytes
    gzip: bytes
    rendered_at: dt.datetime

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzip)


@dataclass(frozen=True)
class _Stamped:
    settings: object
    stamp: tuple
    version: FeedVersion


class FeedCache:
    def __init__(self, *, max_bytes: int = 64 * 2**20, max_versions: int = 100_000,
                 body_max_age: dt.timedelta = dt.timedelta(hours=1)) -> None:
        self.max_bytes = max_bytes
        self.max_versions = max_versions
        self.body_max_age = body_max_age
        self._lock = threading.Lock()
        self._versions: OrderedDict[str, _Stamped] = OrderedDict()
        self._feeds: OrderedDict[str, RenderedFeed] = OrderedDict()
        self._bytes = 0

    # -- versions ------------------------------------------------------------------------------
    def version(self, user_id: str, settings: object, stamp: tuple) -> FeedVersion | None:
        """The version remembered for exactly this stamp under exactly this settings object."""
        with self._lock:
            hit = self._versions.get(user_id)
            if hit is None or hit.settings is not settings or hit.stamp != stamp:
                return None
            self._versions.move_to_end(user_id)
            return hit.version

    def remember_version(self, user_id: str, settings: object, stamp: tuple, version: FeedVersion) -> None:
        with self._lock:
            self._versions[user_id] = _Stamped(settings, stamp, version)
            self._versions.move_to_end(user_id)
            while len(self._versions) > self.max_versions:
                self._versions.popitem(last=False)

    # -- bodies --------------------------------------------------------------------------------
    def feed(self, user_id: str, etag: str, now: dt.datetime) -> RenderedFeed | None:
        with self._lock:
            hit = self._feeds.get(user_id)
            if hit is None or hit.etag != etag or now - hit.rendered_at >= self.body_max_age or now < hit.rendered_at:
                return None
            self._feeds.move_to_end(user_id)
            return hit

    def remember_feed(self, user_id: str, etag: str, xml: str, now: dt.datetime) -> RenderedFeed:
        body = xml.encode("utf-8")
        # mtime=0: the same body always compresses to the same bytes.
        rendered = RenderedFeed(etag, body, gzip.compress(body, GZIP_LEVEL, mtime=0), now)
        with self._lock:
            old = self._feeds.pop(user_id, None)
            if old is not None:
                self._bytes -= old.size
            if rendered.size <= self.max_bytes:
                self._feeds[user_id] = rendered
                self._bytes += rendered.size
            while self._bytes > self.max_bytes:
                _, evicted = self._feeds.popitem(last=False)
                self._bytes -= evicted.size
        return rendered

    @property
    def cached_bytes(self) -> int:
        return self._bytes


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding value allows gzip (RFC 9110 12.5.3): named, or covered by "*", with q > 0."""
    allowed: dict[str, bool] = {}
    for part in accept_encoding.lower().split(","):
        name, _, params = part.partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        allowed[name.strip()] = q > 0
    for name in ("gzip", "x-gzip", "*"):
        if name in allowed:
            return allowed[name]
    return False
