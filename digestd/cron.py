"""Crontab expressions with crontab's meaning, for APScheduler 3.x. Pure; knows nothing of the config,
so the config can validate a schedule and the scheduler can build triggers without importing each other."""
from __future__ import annotations

import datetime as dt

from apscheduler.triggers.cron import CronTrigger

UTC = dt.timezone.utc


# Cron counts weekdays from Sunday (0 and 7 = sun); APScheduler 3.x counts them from Monday, and its
# from_crontab passes the numbers through unchanged, so "1-5" there would mean Tuesday to Saturday.
_CRON_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def _cron_day(token: str) -> int:
    t = token.strip().lower()
    if t[:3] in _CRON_DAYS:
        return _CRON_DAYS.index(t[:3])
    n = int(t)
    if not 0 <= n <= 7:
        raise ValueError(f"day of week out of range: {token!r}")
    return n % 7


def cron_day_of_week(field: str) -> str:
    """A crontab day-of-week field (numbers from Sunday, names, ranges, steps) as APScheduler day names."""
    days: set[int] = set()
    for part in field.split(","):
        base, _, step = part.partition("/")
        stride = int(step) if step else 1
        if base in ("*", "?"):
            lo, hi = 0, 6
        elif "-" in base:
            a, b = base.split("-", 1)
            lo, hi = _cron_day(a), _cron_day(b)
            if b.strip() == "7":
                hi = 7
        else:
            lo = hi = _cron_day(base)
            if step:
                hi = 6
        days.update(d % 7 for d in range(lo, hi + 1, stride))
    if days == set(range(7)):
        return "*"
    # APScheduler orders weekdays from Monday; keep that order for readable job listings.
    return ",".join(_CRON_DAYS[d] for d in sorted(days, key=lambda d: (d - 1) % 7))


def cron_trigger(expr: str, timezone=UTC) -> CronTrigger:
    """A 5-field crontab expression with crontab's meaning of day-of-week numbers."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields, got {len(fields)}: {expr!r}")
    minute, hour, day, month, dow = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=cron_day_of_week(dow),
                       timezone=timezone)
