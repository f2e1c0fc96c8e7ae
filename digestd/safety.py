"""Text and links from servers digestd does not control, made safe to show: pure functions, no I/O.

Sources clean what they parse with these; the views and feeds apply them again, so a row stored by
an older version (or any other way) still cannot put a ``javascript:`` link into an ``href`` or an
escape sequence onto a terminal.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Longest link kept: longer ones are junk or an attack, and no column has to hold them.
MAX_URL_CHARS = 2048

# Terminal escape sequences (CSI ... final byte, OSC ... BEL/ST, and two-byte ESC x) go whole, so
# no stray "[31m" is left behind when the ESC itself is removed.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# What XML 1.0 cannot hold, lone surrogates, and C0/C1 controls other than tab and newline.
_BAD_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_ONE_LINE_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

# Query parameters whose values are secrets; matched case-insensitively, also as a suffix
# (``access_token``, ``x-api-key``).
_SECRET_PARAMS = ("key", "token", "api_key", "apikey", "api-key", "secret", "password", "passwd", "pass",
                  "sig", "signature", "auth", "credential", "credentials", "session")
REDACTED = "REDACTED"
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def clean_text(value: object, max_chars: int | None = None, *, one_line: bool = False) -> str:
    """``value`` as text fit for XML, HTML, a terminal and a log: escape sequences, control
    characters and lone surrogates removed; ``\\r\\n`` made ``\\n``; at most ``max_chars`` long.
    Anything that is not a string becomes ``""``."""
    if not isinstance(value, str):
        return ""
    s = value.replace("\r\n", "\n").replace("\r", "\n")
    if "\x1b" in s:
        s = _ANSI.sub("", s)
    s = (_ONE_LINE_BAD if one_line else _BAD_CHARS).sub(" " if one_line else "", s)
    if one_line:
        s = " ".join(s.split())
    if max_chars is not None and len(s) > max_chars:
        s = s[:max_chars].rstrip() + "…"
    return s


def safe_url(value: object) -> str | None:
    """``value`` when it is an absolute http(s) link with a host that is safe in an ``href``;
    else ``None`` (``javascript:``, ``vbscript:``, ``data:``, relative, over-long or broken)."""
    if not isinstance(value, str):
        return None
    s = value.strip()
    if not s or len(s) > MAX_URL_CHARS or _ONE_LINE_BAD.search(s) or any(c.isspace() for c in s):
        return None
    try:
        parts = urlsplit(s)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return s


def redact_url(url: str) -> str:
    """``url`` with its user:password and the values of secret-looking query parameters replaced
    by ``REDACTED``: what may be shown in ``status``, ``/healthz`` and the log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_is_secret(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if _is_secret(k) else v) for k, v in pairs], safe="")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _is_secret(name: str) -> bool:
    n = name.lower()
    return any(n == p or n.endswith(("_" + p, "-" + p)) for p in _SECRET_PARAMS)


def redact_text(text: str) -> str:
    """Free text (an error message, a log line) with every URL in it redacted."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def shown(text: object, max_chars: int | None = 2000) -> str:
    """A message about a source, as ``status``, ``/healthz`` and the log may show it: one line,
    no escape codes, no secrets."""
    return redact_text(clean_text(text if isinstance(text, str) else str(text), max_chars, one_line=True))
