"""Trigger times: each user's digest at their wall-clock send_at, in their zone, across DST."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from digestd.config import DAY_NAMES, SourceSettings, UserSettings
from digestd.schedule import due_day
from digestd.schedule import DEFAULT_SCHEDULES, next_fire_times, source_trigger, user_trigger

UTC = dt.timezone.utc
EVERY_DAY = list(DAY_NAMES)


def user(tz: str, send_at: str, days=None) -> UserSettings:
    return UserSettings(id="u", email="u@example.org", timezone=tz, send_at=send_at,
                        days=EVERY_DAY if days is None else days)


def utc(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=UTC)


def fires_utc(u: UserSettings, now: str, n: int) -> list[str]:
    return [t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for t in next_fire_times(user_trigger(u), utc(now), n)]


def test_berlin_0730_moves_one_hour_earlier_in_utc_after_the_last_sunday_of_march():
    # 2025-03-30 is the last Sunday of March: CET (+1) becomes CEST (+2) at 02:00 local.
    assert fires_utc(user("Europe/Berlin", "07:30"), "2025-03-28 12:00", 4) == [
        "2025-03-29 06:30", "2025-03-30 05:30", "2025-03-31 05:30", "2025-04-01 05:30"]


def test_berlin_0730_moves_one_hour_later_in_utc_after_the_last_sunday_of_october():
    assert fires_utc(user("Europe/Berlin", "07:30"), "2025-10-24 12:00", 3) == [
        "2025-10-25 05:30", "2025-10-26 06:30", "2025-10-27 06:30"]


def test_new_york_follows_its_own_dst_dates_not_europes():
    # US DST starts on the second Sunday of March (2025-03-09) and ends on the first of November (11-02).
    assert fires_utc(user("America/New_York", "07:30"), "2025-03-07 13:00", 3) == [
        "2025-03-08 12:30", "2025-03-09 11:30", "2025-03-10 11:30"]
    assert fires_utc(user("America/New_York", "07:30"), "2025-10-31 13:00", 3) == [
        "2025-11-01 11:30", "2025-11-02 12:30", "2025-11-03 12:30"]


def test_a_send_at_inside_the_spring_gap_fires_once_that_day_and_counts_for_that_day():
    u = user("Europe/Berlin", "02:30")
    fires = next_fire_times(user_trigger(u), utc("2025-03-29 12:00"), 2)
    berlin = ZoneInfo("Europe/Berlin")
    assert [f.astimezone(berlin).date() for f in fires] == [dt.date(2025, 3, 30), dt.date(2025, 3, 31)]
    # 02:30 does not exist on 2025-03-30; the fire lands after the gap and is due for that day.
    assert due_day(u, fires[0]) == dt.date(2025, 3, 30)


def test_a_send_at_that_happens_twice_in_autumn_fires_only_once():
    for tz, at, start, day in [("Europe/Berlin", "02:30", "2025-10-25 12:00", dt.date(2025, 10, 26)),
                               ("America/New_York", "01:30", "2025-11-01 12:00", dt.date(2025, 11, 2))]:
        fires = next_fire_times(user_trigger(user(tz, at)), utc(start), 3)
        local_days = [f.astimezone(ZoneInfo(tz)).date() for f in fires]
        assert local_days == [day, day + dt.timedelta(days=1), day + dt.timedelta(days=2)], tz


def test_weekday_users_get_no_trigger_on_the_weekend_of_their_zone():
    # Friday 23:30 in Tokyo is still Friday in UTC; Saturday in Tokyo must be skipped.
    u = user("Asia/Tokyo", "08:00", days=["mon", "tue", "wed", "thu", "fri"])
    fires = next_fire_times(user_trigger(u), utc("2025-05-22 23:30"), 3)  # Friday 08:30 Tokyo
    tokyo = ZoneInfo("Asia/Tokyo")
    assert [f.astimezone(tokyo).strftime("%a %H:%M") for f in fires] == ["Mon 08:00", "Tue 08:00", "Wed 08:00"]


def test_a_user_with_no_days_has_no_trigger():
    assert user_trigger(user("UTC", "07:00", days=[])) is None


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata",
                                "Pacific/Chatham", "UTC"])
def test_every_fire_is_the_first_minute_due_day_considers_the_digest_due(tz):
    u = user(tz, "07:30")
    # A year of fires, through both DST changes of every zone listed.
    for fire in next_fire_times(user_trigger(u), utc("2025-01-01 00:00"), 365):
        local = fire.astimezone(ZoneInfo(tz))
        assert due_day(u, fire) == local.date(), fire
        assert due_day(u, fire - dt.timedelta(minutes=1)) is None, fire


def test_sources_default_to_a_schedule_per_type_in_utc():
    arxiv = SourceSettings(name="a", type="arxiv", categories=["cs.LG"])
    fires = next_fire_times(source_trigger(arxiv), utc("2025-05-23 06:00"), 3)  # Friday
    # After the 05:00 UTC rebuild, Monday to Friday only: the feed is empty at weekends.
    assert [f.strftime("%a %H:%M") for f in fires] == ["Fri 07:30", "Mon 05:30", "Mon 07:30"]
    hf = SourceSettings(name="h", type="hf_daily")
    assert [f.strftime("%H:%M") for f in next_fire_times(source_trigger(hf), utc("2025-05-23 06:00"), 3)] == [
        "07:00", "13:00", "19:00"]
    assert set(DEFAULT_SCHEDULES) == {"arxiv", "hf_daily", "feed", "replay"}


def test_a_configured_source_schedule_wins_over_the_default():
    src = SourceSettings(name="r", type="replay", path="x", schedule="*/10 * * * *")
    fires = next_fire_times(source_trigger(src), utc("2025-05-23 06:01"), 2)
    assert [f.strftime("%H:%M") for f in fires] == ["06:10", "06:20"]


@pytest.mark.parametrize("field,days", [
    ("1-5", "mon,tue,wed,thu,fri"), ("0", "sun"), ("7", "sun"), ("6,0", "sat,sun"), ("*", "*"),
    ("mon-fri", "mon,tue,wed,thu,fri"), ("*/2", "tue,thu,sat,sun"), ("5-7", "fri,sat,sun"), ("0-6", "*"),
])
def test_cron_day_of_week_numbers_count_from_sunday_as_in_crontab(field, days):
    from digestd.schedule import cron_day_of_week

    assert cron_day_of_week(field) == days
