import datetime as dt
import threading

from digestd.config import UserSettings
from digestd.models import FetchedPaper
from digestd.store import Digest, DigestItem, open_store

T0 = dt.datetime(2025, 5, 20, 9, 0, tzinfo=dt.timezone.utc)


def paper(key, title="A title", **kw):
    return FetchedPaper(key=key, title=title, abstract=kw.pop("abstract", "An abstract."), arxiv_id=key, **kw)


def user(uid="alice", **kw):
    return UserSettings(id=uid, email=f"{uid}@example.org", **kw)


def test_one_paper_from_two_sources_is_one_paper_with_two_listings(any_database_url):
    s = open_store(any_database_url)
    assert s.upsert_papers("arxiv", dt.date(2025, 5, 20), [paper("2505.10575", version=1)], T0) == (1, 1)
    assert s.upsert_papers("hf", dt.date(2025, 5, 20), [paper("2505.10575", upvotes=12)], T0) == (0, 1)
    assert s.upsert_papers("hf", dt.date(2025, 5, 20), [paper("2505.10575")], T0) == (0, 0)
    assert s.counts()["papers"] == 1 and s.counts()["listings"] == 2
    p = s.get_paper("2505.10575")
    assert p.version == 1 and p.upvotes == 12
    assert sorted(s.sources_of(["2505.10575"])["2505.10575"]) == ["arxiv", "hf"]


def test_a_longer_abstract_from_another_source_is_kept_and_never_blanked(any_database_url):
    s = open_store(any_database_url)
    s.upsert_papers("a", dt.date(2025, 5, 20), [paper("2505.10575", abstract="Long abstract text here.")], T0)
    s.upsert_papers("b", dt.date(2025, 5, 20), [paper("2505.10575", abstract="")], T0)
    assert s.get_paper("2505.10575").abstract == "Long abstract text here."


def test_a_user_removed_from_the_config_is_deactivated_with_their_feedback_kept(any_database_url):
    s = open_store(any_database_url)
    s.sync_users([user("alice"), user("bob")], T0)
    s.upsert_papers("arxiv", dt.date(2025, 5, 20), [paper("2505.10575")], T0)
    s.set_vote("bob", "2505.10575", "up", "cli", T0)
    added, changed, removed = s.sync_users([user("alice")], T0)
    assert removed == ["bob"]
    assert [u.id for u in s.users()] == ["alice"]
    assert [v.paper.key for v in s.votes("bob")] == ["2505.10575"]
    s.sync_users([user("alice"), user("bob")], T0)
    assert [u.id for u in s.users()] == ["alice", "bob"]


def test_a_vote_is_an_upsert_with_history(any_database_url):
    s = open_store(any_database_url)
    s.sync_users([user()], T0)
    s.upsert_papers("arxiv", dt.date(2025, 5, 20), [paper("2505.10575")], T0)
    s.set_vote("alice", "2505.10575", "up", "email", T0)
    s.set_vote("alice", "2505.10575", "up", "email", T0)
    assert len(s.votes("alice")) == 1
    s.set_vote("alice", "2505.10575", "down", "web", T0)
    assert s.votes("alice")[0].vote == -1 and s.downvoted_keys("alice") == {"2505.10575"}
    s.set_vote("alice", "2505.10575", "clear", "cli", T0)
    assert s.votes("alice") == []
    assert [e.vote for e in s.feedback_events("alice")] == ["up", "up", "down", "clear"]


LEASE = dt.timedelta(seconds=30)
DAY = dt.date(2025, 5, 20)


def claim(s, user_id, day, now, owner, **kw):
    won = s.claim_digests([(user_id, day)], now, owner, LEASE, **kw)
    return won[0] if won else None


def test_a_day_is_claimed_once_even_when_two_workers_race(any_database_url):
    s = open_store(any_database_url)
    s.sync_users([user()], T0)
    first = claim(s, "alice", DAY, T0, "w1")
    second = claim(s, "alice", DAY, T0, "w2")
    assert first is not None and second is None
    s.finish_digest(first.id, "sent", T0, message_id="<m@x>")
    assert claim(s, "alice", DAY, T0 + dt.timedelta(hours=5), "w3") is None


def test_a_lapsed_lease_from_a_crashed_worker_is_taken_over_within_a_minute(any_database_url):
    s = open_store(any_database_url)
    s.sync_users([user()], T0)
    assert claim(s, "alice", DAY, T0, "crashed") is not None
    assert claim(s, "alice", DAY, T0 + dt.timedelta(seconds=20), "w2") is None
    again = claim(s, "alice", DAY, T0 + dt.timedelta(seconds=31), "w2")
    assert again is not None and again.claimed_by.startswith("w2#")


def test_a_renewed_lease_is_not_taken_over(any_database_url):
    s = open_store(any_database_url)
    s.sync_users([user()], T0)
    mine = claim(s, "alice", DAY, T0, "w1")
    assert s.renew_leases([mine.id], T0 + dt.timedelta(seconds=20), LEASE) == 1
    assert claim(s, "alice", DAY, T0 + dt.timedelta(seconds=45), "w2") is None
    assert claim(s, "alice", DAY, T0 + dt.timedelta(seconds=51), "w2") is not None


def test_a_claim_written_before_leases_existed_counts_by_its_age(any_database_url):
    s = open_store(any_database_url)
    s.sync_users([user()], T0)
    old = claim(s, "alice", DAY, T0, "old")
    with s.session() as ses:                      # what the previous release left: no lease column value
        row = ses.get(Digest, old.id)
        row.lease_until = None
        ses.commit()
    assert claim(s, "alice", DAY, T0 + dt.timedelta(minutes=5), "w2") is None
    assert claim(s, "alice", DAY, T0 + dt.timedelta(minutes=16), "w2") is not None


def test_a_retry_is_claimable_only_after_its_backoff(any_database_url):
    s = open_store(any_database_url)
    s.sync_users([user()], T0)
    d = claim(s, "alice", DAY, T0, "w1")
    s.finish_digest(d.id, "retry", T0, error="421", next_attempt_at=T0 + dt.timedelta(minutes=2))
    assert claim(s, "alice", DAY, T0 + dt.timedelta(minutes=1), "w1") is None
    assert claim(s, "alice", DAY, T0 + dt.timedelta(minutes=3), "w1") is not None


def test_a_batch_claim_wins_exactly_the_free_rows(any_database_url):
    s = open_store(any_database_url)
    s.sync_users([user(), user("bob"), user("cy")], T0)
    sent = claim(s, "bob", DAY, T0, "w0")
    s.finish_digest(sent.id, "sent", T0, message_id="<m@x>")
    won = s.claim_digests([("alice", DAY), ("bob", DAY), ("cy", DAY)], T0, "w1", LEASE)
    assert sorted(d.user_id for d in won) == ["alice", "cy"]
    assert all(d.status == "claimed" and d.lease_until == T0 + LEASE for d in won)


def test_two_passes_racing_for_one_batch_split_it_without_overlap(any_database_url):
    s = open_store(any_database_url)
    users = [user(f"u{i}") for i in range(60)]
    s.sync_users(users, T0)
    pairs = [(u.id, DAY) for u in users]
    results: dict[str, list] = {}

    def run(owner):
        results[owner] = s.claim_digests(pairs, T0, owner, LEASE)
    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [d.user_id for ds in results.values() for d in ds]
    assert sorted(won) == sorted(u.id for u in users)      # every row won once, by exactly one pass


def test_a_lapsed_claim_of_an_earlier_day_is_owed_not_lost(any_database_url):
    s = open_store(any_database_url)
    s.sync_users([user()], T0)
    claim(s, "alice", DAY - dt.timedelta(days=1), T0 - dt.timedelta(days=1), "died")
    owed = s.owed_digests(T0)
    assert [(d.user_id, d.day) for d in owed] == [("alice", DAY - dt.timedelta(days=1))]
    assert claim(s, "alice", DAY - dt.timedelta(days=1), T0, "w2") is not None
    assert s.owed_digests(T0) == []


def test_a_released_claim_can_be_taken_at_once(any_database_url):
    s = open_store(any_database_url)
    s.sync_users([user()], T0)
    d = claim(s, "alice", DAY, T0, "stopping")
    s.release_digests([d.id])
    assert claim(s, "alice", DAY, T0, "next") is not None


def test_sent_papers_are_remembered_per_user(any_database_url):
    s = open_store(any_database_url)
    s.sync_users([user(), user("bob")], T0)
    s.upsert_papers("arxiv", dt.date(2025, 5, 20), [paper("2505.10575"), paper("2505.10576")], T0)
    d = claim(s, "alice", DAY, T0, "w")
    s.save_digest_items(d, [DigestItem(digest_id=0, user_id="", paper_key="2505.10575", position=0, score=1.0)], T0, T0, None)
    s.finish_digest(d.id, "sent", T0, message_id="<m@x>")
    assert s.sent_keys("alice") == {"2505.10575"} and s.sent_keys("bob") == set()
    assert s.reserved_keys(["alice", "bob"], ["2505.10575", "2505.10576"]) == {"alice": {"2505.10575"}}
    assert [(dd.day, keys) for dd, keys in s.digests("alice")] == [(dt.date(2025, 5, 20), ["2505.10575"])]


def test_candidates_are_the_papers_first_seen_in_the_window(any_database_url):
    s = open_store(any_database_url)
    s.upsert_papers("arxiv", dt.date(2025, 5, 19), [paper("2505.10575")], T0 - dt.timedelta(days=1))
    s.upsert_papers("arxiv", dt.date(2025, 5, 20), [paper("2505.10576")], T0)
    s.upsert_papers("blog", dt.date(2025, 5, 20), [paper("2505.10577")], T0)
    keys = {p.key for p in s.candidate_papers(["arxiv"], T0 - dt.timedelta(hours=1), T0)}
    assert keys == {"2505.10576"}


def test_source_errors_count_up_and_a_success_resets_them(any_database_url):
    s = open_store(any_database_url)
    assert s.record_fetch_error("hf", T0, "boom", T0 + dt.timedelta(minutes=5)) == 1
    assert s.record_fetch_error("hf", T0, "boom", T0 + dt.timedelta(minutes=10)) == 2
    s.record_fetch_success("hf", T0, 3, etag='"abc"')
    st = s.source_state("hf")
    assert st.error_count == 0 and st.next_retry_at is None and st.etag == '"abc"'
    assert st.last_success_at == T0


def test_imported_papers_never_crowd_listed_ones_out_of_the_background_corpus(any_database_url):
    s = open_store(any_database_url)
    s.ensure_paper(paper("2401.01234"), T0)  # known from an import, never listed
    s.upsert_papers("arxiv", dt.date(2025, 5, 20), [paper("2505.10575")], T0)
    assert [p.key for p in s.recent_papers(1)] == ["2505.10575"]
    before = s.corpus_version()
    s.upsert_papers("arxiv", dt.date(2025, 5, 20), [paper("2505.10575")], T0 + dt.timedelta(hours=1))
    assert s.corpus_version() == before
    s.upsert_papers("arxiv", dt.date(2025, 5, 21), [paper("2505.10576")], T0 + dt.timedelta(hours=2))
    assert s.corpus_version() != before


def test_a_database_from_before_leases_gains_the_lease_column_and_keeps_its_claims(tmp_path):
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    s = open_store(url)
    s.sync_users([user()], T0)
    old = claim(s, "alice", DAY, T0, "old-release")
    s.dispose()
    con = sqlite3.connect(tmp_path / "old.db")       # the schema the previous release created
    con.execute("ALTER TABLE digests DROP COLUMN lease_until")
    con.execute("DROP TABLE alembic_version")         # which knew no migrations
    con.commit()
    con.close()
    s = open_store(url)
    assert s.get_digest("alice", DAY).id == old.id and s.get_digest("alice", DAY).lease_until is None
    assert claim(s, "alice", DAY, T0 + dt.timedelta(minutes=16), "new") is not None
