"""The one HTTP client every source shares: timeouts, a User-Agent naming digestd, conditional GET,
and politeness towards hosts that ask for it (arXiv: one request every 3 seconds).

The clock and sleep are injected so that politeness is testable without waiting, and the transport
is injected so that tests use ``httpx.MockTransport`` and never touch the network.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import urlsplit

import httpx

from ..errors import FetchError
from ..httpdate import parse_http_date

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "digestd/0.1 (+https://github.com/digestd)"

# arXiv's terms of use: no more than one request every three seconds, across all of its hosts.
# A key matches the host itself and every subdomain (rss.arxiv.org, export.arxiv.org).
DEFAULT_MIN_INTERVAL: dict[str, float] = {"arxiv.org": 3.0}


@dataclass
class HttpResponse:
    status: int
    content: bytes
    etag: str | None
    last_modified: str | None
    url: str

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class HttpClient:
    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        user_agent: str = DEFAULT_USER_AGENT,
        timeout: float = 30,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        min_interval: Mapping[str, float] | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._min_interval = dict(DEFAULT_MIN_INTERVAL if min_interval is None else min_interval)
        self._last_request: dict[str, float] = {}
        self._client = httpx.Client(
            transport=transport,
            headers={"User-Agent": user_agent},
            timeout=timeout,
            follow_redirects=True,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        source: str | None = None,
    ) -> HttpResponse:
        """GET ``url``; a 304 is returned (``not_modified``), every other failure raises FetchError."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        self._wait_turn(url)
        try:
            r = self._client.get(url, params=params, headers=headers)
        except httpx.TimeoutException as e:
            raise FetchError(f"timed out fetching {url}: {_one_line(e)}", source=source, url=url) from e
        except httpx.HTTPError as e:
            raise FetchError(f"cannot fetch {url}: {type(e).__name__}: {_one_line(e)}", source=source, url=url) from e
        finally:
            # Counted from the end of the request: a slow answer must not shorten the pause.
            self._mark_done(url)
        final_url = str(r.url)
        log.debug("GET %s -> %s", final_url, r.status_code, extra={"source": source})
        if r.status_code == 304:
            return HttpResponse(304, b"", r.headers.get("ETag") or etag,
                                r.headers.get("Last-Modified") or last_modified, final_url)
        if r.status_code >= 400:
            raise _status_error(r, url=final_url, source=source)
        return HttpResponse(r.status_code, r.content, r.headers.get("ETag"), r.headers.get("Last-Modified"), final_url)

    # -- politeness ------------------------------------------------------------------------------
    def _bucket(self, url: str) -> str | None:
        host = (urlsplit(url).hostname or "").lower()
        for key in self._min_interval:
            if host == key or host.endswith("." + key):
                return key
        return None

    def _wait_turn(self, url: str) -> None:
        bucket = self._bucket(url)
        if bucket is None or bucket not in self._last_request:
            return
        wait = self._last_request[bucket] + self._min_interval[bucket] - self._clock()
        if wait > 0:
            log.debug("waiting %.1fs before the next request to %s", wait, bucket)
            self._sleep(wait)

    def _mark_done(self, url: str) -> None:
        bucket = self._bucket(url)
        if bucket is not None:
            self._last_request[bucket] = self._clock()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _status_error(r: httpx.Response, *, url: str, source: str | None) -> FetchError:
    retry_after = None
    if r.status_code in (429, 503):
        retry_after = parse_retry_after(r.headers.get("Retry-After"))
    reason = r.reason_phrase or "error"
    msg = f"HTTP {r.status_code} {reason} from {url}"
    if retry_after is not None:
        msg += f"; retry after {retry_after:g}s"
    return FetchError(msg, source=source, url=url, status=r.status_code, retry_after=retry_after)


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = parse_http_date(value)
    if when is None:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())
