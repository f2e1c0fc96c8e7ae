from __future__ import annotations

import datetime as dt

import httpx
import pytest

from digestd.errors import FetchError
from digestd.sources.http import HttpClient, parse_retry_after


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client_for(handler, clock: FakeClock | None = None, **kw) -> HttpClient:
    clock = clock or FakeClock()
    return HttpClient(httpx.MockTransport(handler), clock=clock, sleep=clock.sleep, **kw)


def test_it_sends_conditional_headers_and_returns_304_without_raising():
    seen = {}

    def handler(request):
        seen.update(request.headers)
        return httpx.Response(304, headers={"ETag": '"v2"'})

    r = client_for(handler).get("https://example.org/f", etag='"v1"', last_modified="Wed, 20 Aug 2025 04:00:00 GMT")
    assert seen["if-none-match"] == '"v1"'
    assert seen["if-modified-since"] == "Wed, 20 Aug 2025 04:00:00 GMT"
    assert seen["user-agent"].startswith("digestd/")
    assert r.status == 304 and r.not_modified and r.content == b""
    assert r.etag == '"v2"' and r.last_modified == "Wed, 20 Aug 2025 04:00:00 GMT"


def test_it_sends_no_conditional_headers_on_a_first_fetch_and_returns_validators():
    def handler(request):
        assert "if-none-match" not in request.headers and "if-modified-since" not in request.headers
        return httpx.Response(200, content=b"<feed/>", headers={"ETag": '"abc"', "Last-Modified": "Mon, 19 May 2025 04:00:00 GMT"})

    r = client_for(handler).get("https://example.org/f", params={"p": 1})
    assert (r.status, r.content, r.etag, r.last_modified) == (200, b"<feed/>", '"abc"', "Mon, 19 May 2025 04:00:00 GMT")
    assert r.url == "https://example.org/f?p=1"


def test_it_turns_429_with_retry_after_into_a_fetch_error_carrying_the_wait():
    client = client_for(lambda req: httpx.Response(429, headers={"Retry-After": "120"}))
    with pytest.raises(FetchError) as e:
        client.get("https://huggingface.co/api/daily_papers", source="hf")
    assert e.value.status == 429 and e.value.retry_after == 120
    assert e.value.source == "hf"
    assert "\n" not in str(e.value) and "huggingface.co" in str(e.value) and "source=hf" in str(e.value)


def test_it_reads_retry_after_given_as_an_http_date():
    now = dt.datetime(2025, 8, 20, 4, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after("Wed, 20 Aug 2025 04:01:30 GMT", now=now) == 90
    assert parse_retry_after("soon", now=now) is None


def test_it_turns_other_http_errors_into_fetch_errors_with_the_status():
    client = client_for(lambda req: httpx.Response(404))
    with pytest.raises(FetchError) as e:
        client.get("https://example.org/missing", source="blog")
    assert e.value.status == 404 and e.value.retry_after is None
    assert "404" in str(e.value) and "https://example.org/missing" in str(e.value)


def test_it_wraps_network_errors_in_fetch_errors_keeping_the_cause():
    def handler(request):
        raise httpx.ConnectTimeout("timed out", request=request)

    with pytest.raises(FetchError) as e:
        client_for(handler).get("https://example.org/slow", source="blog")
    assert isinstance(e.value.__cause__, httpx.ConnectTimeout)
    assert e.value.status is None and "example.org/slow" in str(e.value)


def test_it_waits_three_seconds_between_requests_to_any_arxiv_host():
    clock = FakeClock()
    client = client_for(lambda req: httpx.Response(200, content=b"ok"), clock)
    client.get("https://rss.arxiv.org/atom/cs.LG")
    clock.now += 1.0
    client.get("https://export.arxiv.org/api/query")
    assert clock.sleeps == [pytest.approx(2.0)]
    client.get("https://huggingface.co/api/daily_papers")   # other hosts never wait
    assert len(clock.sleeps) == 1
    clock.now += 10
    client.get("https://arxiv.org/abs/2401.01234")          # long enough ago: no wait
    assert len(clock.sleeps) == 1


def test_it_takes_custom_politeness_intervals():
    clock = FakeClock()
    client = client_for(lambda req: httpx.Response(200), clock, min_interval={"example.org": 5})
    client.get("https://example.org/a")
    client.get("https://example.org/b")
    client.get("https://rss.arxiv.org/atom/cs.LG")
    client.get("https://rss.arxiv.org/atom/cs.LG")
    assert clock.sleeps == [5]
