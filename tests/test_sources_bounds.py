"""The shared HTTP client against a real, hostile server on loopback: every request is bounded in
time and in bytes, and redirects go only where they may."""
from __future__ import annotations

import time
import tracemalloc

import httpx
import pytest

from hostile_server import serve

from digestd.errors import FetchError
from digestd.sources.http import HttpClient, HttpLimits, parse_retry_after


@pytest.fixture
def hostile():
    with serve() as h:
        yield h


def client(**limits) -> HttpClient:
    return HttpClient(timeout=5, limits=HttpLimits(**limits))


def test_a_server_dripping_one_byte_at_a_time_is_cut_off_at_the_deadline(hostile):
    url = hostile.drip("/slow.rss", every=0.3)
    started = time.monotonic()
    with pytest.raises(FetchError) as e:
        client(deadline=1.5).get(url, source="slow")
    took = time.monotonic() - started
    # Every read came well within the 5 s read timeout; only the total deadline can stop it.
    assert 1.4 < took < 3, took
    assert "deadline" in str(e.value) and e.value.source == "slow"


def test_a_server_dripping_its_headers_is_cut_off_at_the_deadline_too(hostile):
    url = hostile.drip("/slow-headers", every=0.3, in_headers=True)
    started = time.monotonic()
    with pytest.raises(FetchError, match="deadline"):
        client(deadline=1.0).get(url)
    assert time.monotonic() - started < 2.5


def test_a_body_over_the_cap_is_refused_while_it_streams_in_not_after(hostile):
    url = hostile.flood("/big", megabytes=50)
    with pytest.raises(FetchError, match="max_body_bytes"):
        client(max_body_bytes=1_000_000).get(url, source="big")
    time.sleep(0.2)
    # The client hung up after about a megabyte; the server never got the 50 it meant to send out.
    assert hostile.sent["/big"] < 20 * 1024 * 1024


def test_a_declared_length_over_the_cap_is_refused_before_reading(hostile):
    url = hostile.flood("/declared", megabytes=30, declare_length=True)
    with pytest.raises(FetchError, match="max_body_bytes"):
        client(max_body_bytes=1_000_000).get(url)


def test_a_gzip_bomb_is_never_decompressed_whole(hostile):
    url = hostile.gzip_bomb("/bomb.json", megabytes=200)   # ~200 KB on the wire
    tracemalloc.start()
    try:
        with pytest.raises(FetchError, match="max_body_bytes"):
            client(max_body_bytes=5_000_000).get(url, source="bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


def test_a_compressed_answer_within_the_cap_is_decoded(hostile):
    import gzip

    hostile.body("/ok.json", gzip.compress(b"[]" * 1000), headers={"Content-Encoding": "gzip"})
    assert client().get(hostile.url("/ok.json")).content == b"[]" * 1000


@pytest.mark.parametrize("target", ["javascript:alert(1)", "file:///etc/passwd", "ftp://example.org/x"])
def test_a_redirect_to_anything_but_http_is_refused(hostile, target):
    url = hostile.redirect("/r", target)
    with pytest.raises(FetchError, match="only http and https|bad redirect"):
        client().get(url)
    assert hostile.requests == ["/r"]


def test_a_redirect_from_a_public_host_to_loopback_or_a_private_address_is_refused():
    seen = []

    def public_host(request):
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://127.0.0.1:9/admin"})

    c = HttpClient(httpx.MockTransport(public_host), resolve=lambda host: ["93.184.215.14"])
    with pytest.raises(FetchError, match="loopback or private"):
        c.get("https://feeds.example.org/rss", source="blog")
    for target in ("http://10.0.0.8/", "http://[::1]/", "http://169.254.169.254/latest/meta-data", "http://localhost/"):
        c = HttpClient(httpx.MockTransport(lambda r, t=target: httpx.Response(302, headers={"Location": t})),
                       resolve=lambda host: ["93.184.215.14"])
        with pytest.raises(FetchError, match="loopback or private"):
            c.get("https://feeds.example.org/rss")
    # A public name that resolves to a private address counts as private.
    c = HttpClient(httpx.MockTransport(lambda r: httpx.Response(302, headers={"Location": "http://intranet.example/"})
                                       if r.url.host == "feeds.example.org" else httpx.Response(200)),
                   resolve=lambda host: ["192.168.1.5"] if host == "intranet.example" else ["93.184.215.14"])
    with pytest.raises(FetchError, match="loopback or private"):
        c.get("https://feeds.example.org/rss")
    assert seen == ["https://feeds.example.org/rss"]


def test_a_loopback_url_may_redirect_on_loopback(hostile):
    hostile.body("/final.rss", b"<rss/>")
    url = hostile.redirect("/moved", hostile.url("/final.rss"), status=301)
    r = client().get(url)
    assert r.content == b"<rss/>" and r.url.endswith("/final.rss")


def test_redirect_loops_stop_after_max_redirects(hostile):
    url = hostile.redirect("/loop", "/loop")
    with pytest.raises(FetchError, match="more than 3 redirects"):
        client(max_redirects=3).get(url)
    assert len(hostile.requests) == 4


def test_a_huge_retry_after_is_capped(hostile):
    url = hostile.body("/busy", b"", status=429, headers={"Retry-After": "999999999999"})
    with pytest.raises(FetchError) as e:
        client(max_retry_after=3600).get(url)
    assert e.value.retry_after == 3600
    assert parse_retry_after("9" * 5000) is None and parse_retry_after("²") is None


def test_an_over_long_or_unprintable_etag_is_not_kept(hostile):
    hostile.body("/long-etag", b"<rss/>", headers={"ETag": '"' + "e" * 998 + '"', "Last-Modified": "x" * 300})
    r = client().get(hostile.url("/long-etag"))
    assert r.etag is None and r.last_modified is None
    hostile.body("/etag", b"<rss/>", headers={"ETag": '"v1"'})
    assert client().get(hostile.url("/etag")).etag == '"v1"'


def test_credentials_in_a_failing_url_never_appear_in_the_error(hostile):
    hostile.body("/private.rss", b"", status=500)
    url = hostile.url("/private.rss").replace("http://", "http://alice:hunter2@") + "?api_key=SEKRIT&page=2"
    with pytest.raises(FetchError) as e:
        client().get(url)
    assert "hunter2" not in str(e.value) and "SEKRIT" not in str(e.value)
    assert "page=2" in str(e.value) and "REDACTED" in str(e.value)


def test_only_http_urls_are_fetched():
    with pytest.raises(FetchError, match="only http and https"):
        client().get("file:///etc/passwd")
