"""The benchmark harness (benchmarks/): its workload, its SMTP sink and its report. Nothing is timed here."""
from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest

from benchmarks.report import judge
from benchmarks.smtp_sink import SmtpSink
from benchmarks.workload import COLD_AT, DATA, build_workload, real_papers, write_config, write_lists
from digestd.config import load_config
from digestd.sources.detect import parse_any

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data/arxiv-daily")


@pytest.fixture(scope="module")
def workload():
    return build_workload(users=60, papers=300, seed=3)


def test_the_same_seed_gives_the_same_readers_and_another_seed_others(workload):
    again = build_workload(users=60, papers=300, seed=3)
    other = build_workload(users=60, papers=300, seed=4)
    assert [(r.keywords, r.votes) for r in again.readers] == [(r.keywords, r.votes) for r in workload.readers]
    assert [r.votes for r in other.readers] != [r.votes for r in workload.readers]


def test_the_day_is_the_newest_real_papers_and_readers_voted_only_on_older_ones(workload):
    day = {p["id"] for p in workload.day}
    background = {p["id"] for p in workload.background_papers()}
    assert [p["id"] for p in workload.day] == [p["id"] for _, p in real_papers()[-300:]]
    assert len(day) == 300 and not day & background
    for r in workload.readers:
        voted = [pid for pid, _ in r.votes]
        assert set(voted) <= background
        assert len(set(voted)) == len(voted) and 10 <= len(voted) <= 30
        ups = sum(1 for _, v in r.votes if v == "up")
        assert ups > len(voted) - ups, r.id
        assert 1 <= len(r.keywords) <= 3


def test_the_lists_parse_back_into_the_day_and_the_config_is_valid(workload, tmp_path):
    lists = write_lists(workload, tmp_path / "lists")
    parsed = parse_any((lists["cold"] / f"{workload.cold_day}.atom").read_bytes())
    assert {p.key for p in parsed} == {p["id"] for p in workload.day}
    assert {p.key for p in parse_any((lists["warm"] / f"{workload.warm_day}.atom").read_bytes())} == \
        {p["id"] for p in workload.day}
    cfg = write_config(workload, tmp_path / "cold.toml", phase="cold", lists=lists, data_dir=tmp_path / "var",
                       smtp_port=2525)
    settings = load_config(str(cfg))
    assert [u.id for u in settings.users] == [r.id for r in workload.readers]
    assert [s.name for s in settings.sources if s.enabled] == ["cold"]
    assert settings.smtp.port == 2525 and settings.smtp.security == "none"
    # Every reader is due at the pass: send_at is before the pass's clock, every day of the week.
    assert all(u.send_hour_minute <= (COLD_AT.hour, COLD_AT.minute) and len(u.days) == 7 for u in settings.users)


def test_the_sink_counts_every_message_and_recipient_it_accepts():
    with SmtpSink() as sink:
        assert sink.stats() == {"messages": 0, "bytes": 0, "recipients": 0}
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as conn:
            for to in ("a@x.example", "b@x.example", "a@x.example"):
                msg = EmailMessage()
                msg["From"], msg["To"], msg["Subject"] = "d@x.example", to, "digest"
                msg.set_content("papers")
                conn.send_message(msg)
        stats = sink.stats()
    assert stats["messages"] == 3 and stats["recipients"] == 2 and stats["bytes"] > 0


def _result(**kw):
    base = {"users": 10_000, "papers": 2_000, "end_to_end_s": 80.0, "peak_rss_mb": 900.0, "warm_s": 50.0,
            "asl_ratio": None, "small": None}
    return {**base, **kw}


def test_a_target_missed_is_a_miss_and_one_that_does_not_apply_is_not_judged():
    rows = {r["target"]: r["status"] for r in judge(_result())}
    assert rows["cold pass 10,000 x 2,000, to SMTP hand-off"] == "pass"
    assert rows["cold pass peak RSS, with its render workers"] == "pass"
    assert rows["warm pass (a tenth voted)"] == "miss"
    assert rows["cold pass 1,000 readers"] == "n/a"
    assert rows["asl_ratio (arxiv-sanity-lite / digestd per reader)"] == "n/a"
    small = {r["target"]: r["status"] for r in judge(_result(users=1_000, end_to_end_s=16.0, asl_ratio=12.0))}
    assert small["cold pass 1,000 readers"] == "miss"
    assert small["cold pass 10,000 x 2,000, to SMTP hand-off"] == "n/a"
    assert small["asl_ratio (arxiv-sanity-lite / digestd per reader)"] == "pass"


@pytest.mark.slow
def test_a_small_run_delivers_every_digest_in_both_passes_and_reports_every_key(tmp_path):
    from benchmarks.delivery import run_delivery, summary

    result = summary(run_delivery(3, 300, 0, tmp_path, asl_sample=2, log=lambda *_: None,
                                   backend="tfidf"))
    for key in ("users", "papers", "end_to_end_s", "warm_s", "peak_rss_mb", "scores_per_s", "emails_per_s",
                "asl_ratio", *(f"{s}_s" for s in ("fetch", "store", "featurise", "train", "score", "select",
                                                  "explain", "render", "smtp"))):
        assert key in result, key
    assert result["verified"]
    assert result["cold"]["received"]["messages"] == 3 and result["warm"]["received"]["messages"] == 3
    assert result["cold"]["fetched_papers"] == 300 and result["warm"]["fetched_papers"] == 300
    assert result["end_to_end_s"] > 0 and result["peak_rss_mb"] > 0 and result["asl_ratio"] > 0
