"""HTTP dates (RFC 9110), read by the fetcher (Retry-After) and the server (If-Modified-Since)."""
from __future__ import annotations

import datetime as dt
import email.utils


def parse_http_date(value: str | None) -> dt.datetime | None:
    """An aware UTC datetime, or None for anything that is not an HTTP date."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when


def format_http_date(t: dt.datetime) -> str:
    return email.utils.format_datetime(t.astimezone(dt.timezone.utc), usegmt=True)
