"""When things happen: the cron triggers of sources and users. Pure; no scheduler is started here.

Source schedules are cron expressions in UTC because the lists are published on UTC-ish clocks.
User digests are cron triggers in the user's own time zone, so "07:30 Europe/Berlin" stays 07:30
on the wall clock across daylight-saving changes.
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from .config import DAY_NAMES, SourceSettings, UserSettings
from .cron import UTC, cron_day_of_week, cron_trigger  # noqa: F401  (re-exported)

# Defaults per source type (cron, UTC).
# - arxiv: rss.arxiv.org rebuilds its feeds once a day at midnight US Eastern *Standard* Time
#   (lastBuildDate 05:00 UTC), Monday to Friday; weekends and holidays are empty, which is normal.
#   A second pass two hours later picks up a late rebuild; conditional GET makes it nearly free.
# - hf_daily: papers are added to a day's list all day long, so look in the morning and twice later.
# - feed / replay: hourly, off the top of the hour so many daemons do not hit one server at :00.
DEFAULT_SCHEDULES = {
    "arxiv": "30 5,7 * * 1-5",
    "hf_daily": "0 7,13,19 * * *",
    "feed": "17 * * * *",
    "replay": "7 * * * *",
}

# Digests that could not be handed over, sources that are backing off, and the leases of a pass that
# died are looked at this often: a dead process's digests go out within a minute.
SWEEP_SECONDS = 30


def source_cron(src: SourceSettings) -> str:
    return src.schedule or DEFAULT_SCHEDULES[src.type]


def source_trigger(src: SourceSettings) -> CronTrigger:
    return cron_trigger(source_cron(src))


class WallClockCronTrigger(CronTrigger):
    """A cron trigger that fires once per wall-clock time: on the autumn day when 02:30 happens
    twice, only the first 02:30 fires. (The (user, day) claim would stop a second send anyway;
    this keeps the second fire from even trying.)"""

    def get_next_fire_time(self, previous_fire_time, now):
        nxt = super().get_next_fire_time(previous_fire_time, now)
        if nxt is not None and previous_fire_time is not None:
            prev_wall = previous_fire_time.astimezone(self.timezone).replace(tzinfo=None, fold=0)
            if nxt.astimezone(self.timezone).replace(tzinfo=None, fold=0) == prev_wall:
                return super().get_next_fire_time(nxt, nxt)
        return nxt


def user_trigger(user: UserSettings) -> CronTrigger | None:
    """The user's digest time on their days, in their zone. None when they chose no day at all.

    A send_at that does not exist on a spring-forward day (02:30 in Berlin) fires at the first
    moment after the gap; `due_day` compares wall-clock times, so that send still counts for
    the right day, and the periodic sweep catches it should a trigger ever skip it.
    """
    if not user.days:
        return None
    hour, minute = user.send_hour_minute
    return WallClockCronTrigger(day_of_week=",".join(user.days), hour=hour, minute=minute, second=0,
                                timezone=ZoneInfo(user.timezone))


def next_fire_times(trigger: CronTrigger, now: dt.datetime, n: int = 1) -> list[dt.datetime]:
    """The next ``n`` fire times after ``now``, as the scheduler would compute them (injectable clock)."""
    out: list[dt.datetime] = []
    prev = None
    for _ in range(n):
        nxt = trigger.get_next_fire_time(prev, now if prev is None else prev)
        if nxt is None:
            break
        out.append(nxt)
        prev = nxt
    return out


def local_now(user: UserSettings, now: dt.datetime) -> dt.datetime:
    return now.astimezone(ZoneInfo(user.timezone))


def due_day(user: UserSettings, now: dt.datetime) -> dt.date | None:
    """The user's local day whose digest is due by ``now``, or None (not a delivery day, or too early).
    Comparing wall-clock times makes a send_at skipped by a DST jump fire at the first moment after it."""
    ln = local_now(user, now)
    if DAY_NAMES[ln.weekday()] not in user.days:
        return None
    if (ln.hour, ln.minute) < user.send_hour_minute:
        return None
    return ln.date()
