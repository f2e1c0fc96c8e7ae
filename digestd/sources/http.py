"""The one HTTP client every source shares: timeouts, a User-Agent naming digestd, conditional GET,
and politeness towards hosts that ask for it (arXiv: one request every 3 seconds).

The clock and sleep are injected so that politeness is testable without waiting, and the transport
is injected so that tests use ``httpx.MockTransport`` and never touch the network.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from http import HTTPStatus
from typing import Callable, Mapping
from urllib.parse import urlsplit

import httpx

from ..errors import FetchError
from ..httpdate import parse_http_date
from ..safety import clean_text, redact_url
from ..safety import shown as shown_text

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


@dataclass(frozen=True)
class HttpLimits:
    """What one request may cost (the ``[fetch]`` settings)."""

    deadline: float = 120.0               # seconds for the whole request, headers to last byte
    max_body_bytes: int = 20_000_000      # after decompression; the compressed stream counts too
    max_redirects: int = 5
    max_retry_after: float = 21600.0      # seconds


# Column lengths of source_state (store/tables.py): longer validators are not kept, not cut.
MAX_ETAG_CHARS = 512
MAX_LAST_MODIFIED_CHARS = 128
_CHUNK = 64 * 1024


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
        limits: HttpLimits | None = None,
        resolve: Callable[[str], list[str]] | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._min_interval = dict(DEFAULT_MIN_INTERVAL if min_interval is None else min_interval)
        self._last_request: dict[str, float] = {}
        self.limits = limits or HttpLimits()
        self._resolve = resolve or _resolve
        self._client = httpx.Client(
            transport=transport,
            # Only encodings decoded here under the size cap (never br/zstd, decoded whole by httpx).
            headers={"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate"},
            timeout=timeout,
            # Followed by hand, so that every hop is checked (scheme, public -> private).
            follow_redirects=False,
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
        """GET ``url``; a 304 is returned (``not_modified``), every other failure raises FetchError.

        The whole request, however slowly it is answered, takes at most ``limits.deadline``
        seconds, and reads at most ``limits.max_body_bytes`` (after decompression)."""
        shown = redact_url(url)
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise FetchError(f"cannot fetch {shown}: only http and https URLs are fetched", source=source, url=shown)
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        self._wait_turn(url)
        try:
            status, resp_headers, final_url, content = _within_deadline(
                lambda cancel: self._fetch(url, params, headers, source, cancel),
                self.limits.deadline, shown, source)
        finally:
            # Counted from the end of the request: a slow answer must not shorten the pause.
            self._mark_done(url)
        shown_final = redact_url(final_url)
        log.debug("GET %s -> %s", shown_final, status, extra={"source": source})
        new_etag = _validator(resp_headers.get("ETag"), MAX_ETAG_CHARS)
        new_modified = _validator(resp_headers.get("Last-Modified"), MAX_LAST_MODIFIED_CHARS)
        if status == 304:
            return HttpResponse(304, b"", new_etag or etag, new_modified or last_modified, final_url)
        if status >= 400:
            raise _status_error(status, resp_headers, url=shown_final, source=source, cap=self.limits.max_retry_after)
        return HttpResponse(status, content, new_etag, new_modified, final_url)

    # -- one request, run under the deadline ----------------------------------------------------
    def _fetch(self, url: str, params, headers: dict, source: str | None,
               cancel: threading.Event) -> tuple[int, httpx.Headers, str, bytes]:
        current: str | httpx.URL = url
        for hop in range(self.limits.max_redirects + 1):
            shown = redact_url(str(current))
            try:
                request = self._client.build_request("GET", current, params=params if hop == 0 else None,
                                                     headers=headers)
                r = self._client.send(request, stream=True)
            except httpx.TimeoutException as e:
                raise FetchError(f"timed out fetching {shown}: {_one_line(e)}", source=source, url=shown) from e
            except httpx.InvalidURL as e:
                # httpx parses a redirect's Location on arrival: "javascript:alert(1)" fails here.
                raise FetchError(f"bad redirect or URL fetching {shown}: {_one_line(e)}", source=source, url=shown) from e
            except httpx.HTTPError as e:
                raise FetchError(f"cannot fetch {shown}: {type(e).__name__}: {_one_line(e)}",
                                 source=source, url=shown) from e
            try:
                if r.status_code in (301, 302, 303, 307, 308) and r.headers.get("Location"):
                    current = self._next_hop(url, r, source)
                    continue
                body = b"" if r.status_code == 304 or r.status_code >= 400 else \
                    self._read_body(r, cancel, shown, source)
                return r.status_code, r.headers, str(r.url), body
            except httpx.TimeoutException as e:
                raise FetchError(f"timed out reading {shown}: {_one_line(e)}", source=source, url=shown) from e
            except httpx.HTTPError as e:
                raise FetchError(f"cannot read {shown}: {type(e).__name__}: {_one_line(e)}",
                                 source=source, url=shown) from e
            finally:
                r.close()
        raise FetchError(f"more than {self.limits.max_redirects} redirects fetching {redact_url(url)}",
                         source=source, url=redact_url(url))

    def _next_hop(self, origin: str, r: httpx.Response, source: str | None) -> httpx.URL:
        try:
            target = r.url.join(r.headers["Location"])
        except (httpx.InvalidURL, ValueError) as e:
            raise FetchError(f"bad redirect from {redact_url(str(r.url))}", source=source,
                             url=redact_url(str(r.url))) from e
        shown = redact_url(str(target))
        if target.scheme not in ("http", "https"):
            raise FetchError(f"refused redirect to {shown[:200]}: only http and https are followed",
                             source=source, url=redact_url(str(r.url)))
        origin_host = (urlsplit(origin).hostname or "").lower()
        target_host = (target.host or "").lower()
        if target_host != origin_host and not self._is_local(origin_host) and self._is_local(target_host):
            raise FetchError(f"refused redirect from {origin_host} to the loopback or private address {target_host}",
                             source=source, url=redact_url(str(r.url)))
        return target

    def _is_local(self, host: str) -> bool:
        if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
            return True
        try:
            return _local_ip(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            pass
        return any(_local_ip(ipaddress.ip_address(a)) for a in self._resolve(host))

    def _read_body(self, r: httpx.Response, cancel: threading.Event, shown: str, source: str | None) -> bytes:
        cap = self.limits.max_body_bytes
        too_big = FetchError(f"answer from {shown} is larger than max_body_bytes={cap}", source=source, url=shown)
        declared = r.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > cap:
            raise too_big
        if r.is_stream_consumed:
            # An in-memory answer (httpx.MockTransport in tests) arrives already decoded.
            decoder, chunks = _Decoder("", shown, source), iter([r.content])
        else:
            decoder, chunks = _Decoder(r.headers.get("Content-Encoding", ""), shown, source), r.iter_raw(_CHUNK)
        raw = 0
        body = bytearray()
        for chunk in chunks:
            if cancel.is_set():
                raise FetchError("cancelled at the deadline", source=source, url=shown)
            raw += len(chunk)
            if raw > cap:
                raise too_big
            piece = decoder.feed(chunk, cap - len(body))
            if piece is None:
                raise too_big
            body += piece
        rest = decoder.flush(cap - len(body))
        if rest is None:
            raise too_big
        body += rest
        return bytes(body)

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
    return shown_text(str(e), 300) or type(e).__name__


def _validator(value: str | None, max_chars: int) -> str | None:
    """An ETag / Last-Modified worth sending back: printable and short enough to store."""
    if not value or len(value) > max_chars or clean_text(value, one_line=True) != value:
        return None
    return value


def _local_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_unspecified \
        or ip.is_multicast


def _resolve(host: str) -> list[str]:
    """The addresses ``host`` resolves to; none when it does not resolve (the request then fails)."""
    try:
        return list({info[4][0] for info in socket.getaddrinfo(host, None)})
    except (OSError, UnicodeError):
        return []


def _within_deadline(work: Callable[[threading.Event], object], deadline: float, shown: str,
                     source: str | None):
    """Run ``work`` in a thread and give up after ``deadline`` seconds.

    httpx's timeouts bound each read, not the request: a server sending one byte every few
    seconds would hold a fetch for hours. The abandoned thread stops at its next chunk."""
    done = threading.Event()
    cancel = threading.Event()
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = work(cancel)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread below
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, name="digestd-http", daemon=True).start()
    if not done.wait(deadline):
        cancel.set()
        raise FetchError(f"gave up on {shown} after the {deadline:g}s deadline (deadline_seconds)",
                         source=source, url=shown)
    if "error" in box:
        raise box["error"]
    return box["value"]


class _Decoder:
    """Content-Encoding undone piece by piece, never producing more than the room left."""

    def __init__(self, encoding: str, shown: str, source: str | None) -> None:
        enc = encoding.strip().lower()
        self._shown, self._source = shown, source
        self._first = True
        if enc in ("", "identity"):
            self._z = None
        elif enc in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._z = zlib.decompressobj()
            self._deflate = True
        else:
            raise FetchError(f"unsupported Content-Encoding {clean_text(encoding, 40, one_line=True)!r} from {shown}",
                             source=source, url=shown)
        self._deflate = enc == "deflate"

    def feed(self, data: bytes, room: int) -> bytes | None:
        """The decoded bytes of ``data``; None when they would not fit into ``room``."""
        if self._z is None:
            return data if len(data) <= room else None
        try:
            out = self._z.decompress(data, room + 1)
        except zlib.error as e:
            if not (self._deflate and self._first):
                raise self._corrupt(e) from e
            # "deflate" is raw deflate more often than the zlib stream the RFC names.
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)
            self._first = False
            return self.feed(data, room)
        self._first = False
        if len(out) > room or self._z.unconsumed_tail:
            return None
        return out

    def flush(self, room: int) -> bytes | None:
        if self._z is None:
            return b""
        try:
            out = self._z.flush(room + 1) if room + 1 > 0 else b""
        except zlib.error as e:
            raise self._corrupt(e) from e
        return out if len(out) <= room else None

    def _corrupt(self, e: Exception) -> FetchError:
        return FetchError(f"corrupt compressed answer from {self._shown}: {e}", source=self._source, url=self._shown)


def _status_error(status: int, headers: httpx.Headers, *, url: str, source: str | None,
                  cap: float | None = None) -> FetchError:
    retry_after = None
    if status in (429, 503):
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if retry_after is not None and cap is not None:
            retry_after = min(retry_after, cap)
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "error"
    msg = f"HTTP {status} {reason} from {url}"
    if retry_after is not None:
        msg += f"; retry after {retry_after:g}s"
    return FetchError(msg, source=source, url=url, status=status, retry_after=retry_after)


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,12}", value):
        return float(value)
    if value.isdigit():   # absurdly long, or digits of another script
        return None
    when = parse_http_date(value)
    if when is None:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())
