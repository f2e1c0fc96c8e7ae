from __future__ import annotations

import pytest

from digestd.safety import clean_text, redact_text, redact_url, safe_url, shown


@pytest.mark.parametrize("link", ["javascript:alert(1)", " JavaScript:alert(1)", "vbscript:msgbox", "data:text/html,x",
                                  "file:///etc/passwd", "//evil.example/x", "/relative", "https://", "http://a b/",
                                  "https://ex.org/\x00", "https://ex.org:99999999/", "https://e.org/" + "a" * 3000, 42, None])
def test_only_absolute_http_links_are_safe(link):
    assert safe_url(link) is None


def test_http_and_https_links_pass_unchanged():
    assert safe_url(" https://arxiv.org/abs/2401.01234 ") == "https://arxiv.org/abs/2401.01234"
    assert safe_url("HTTP://Example.org/a?b=1#c") == "HTTP://Example.org/a?b=1#c"


def test_clean_text_removes_escape_sequences_controls_and_lone_surrogates():
    assert clean_text("\x1b[31mred\x1b[0m \x1b]0;title\x07ok\x00\ud800\ufffe") == "red ok"
    assert clean_text("para one\r\n\r\npara two") == "para one\n\npara two"
    assert clean_text("a\nb\tc", one_line=True) == "a b c"
    assert clean_text("x" * 50, 10) == "x" * 10 + "…"
    assert clean_text(42) == "" and clean_text(None) == ""


@pytest.mark.parametrize("url,secret", [
    ("https://alice:hunter2@feeds.example.org/rss", "hunter2"),
    ("https://feeds.example.org/rss?key=S1", "S1"), ("https://e.org/?token=S2&x=1", "S2"),
    ("https://e.org/?api_key=S3", "S3"), ("https://e.org/?apikey=S4", "S4"), ("https://e.org/?secret=S5", "S5"),
    ("https://e.org/?password=S6", "S6"), ("https://e.org/?sig=S7", "S7"), ("https://e.org/?access_token=S8", "S8"),
    ("https://e.org/?X-Api-Key=S9", "S9"),
])
def test_credentials_and_secret_parameters_are_redacted(url, secret):
    out = redact_url(url)
    assert secret not in out and "REDACTED" in out
    assert "e.org" in out or "feeds.example.org" in out


def test_urls_without_secrets_and_free_text_keep_what_is_not_secret():
    assert redact_url("https://rss.arxiv.org/atom/cs.LG?p=1") == "https://rss.arxiv.org/atom/cs.LG?p=1"
    assert redact_text("HTTP 500 from https://e.org/f?token=abc&page=2 (source=x)") == \
        "HTTP 500 from https://e.org/f?token=REDACTED&page=2 (source=x)"
    assert shown("boom \x1b[2J at https://u:p@e.org/") == "boom at https://REDACTED@e.org/"
