"""Every store is an upsert: two processes writing the same rows at once both succeed (issue 11)."""
from __future__ import annotations

import datetime as dt
import threading

from digestd.config import UserSettings
from digestd.models import FetchedPaper
from digestd.store import open_store

T0 = dt.datetime(2025, 5, 20, 9, 0, tzinfo=dt.timezone.utc)
DAY = dt.date(2025, 5, 20)


def papers(n: int, abstract: str = "An abstract.") -> list[FetchedPaper]:
    return [FetchedPaper(key=f"2505.{i:05d}", title=f"Paper {i}", abstract=abstract, arxiv_id=f"2505.{i:05d}")
            for i in range(n)]


def together(n: int, fn) -> list[BaseException]:
    """Run ``fn(i)`` in ``n`` threads released at one instant; every exception they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i):
        try:
            start.wait()
            fn(i)
        except BaseException as e:  # noqa: BLE001  (the test reports every one)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_two_writers_storing_the_same_list_at_once_both_succeed_and_store_it_once(any_database_url):
    s = open_store(any_database_url)
    stores = [s, open_store(any_database_url)]
    results: list[tuple[int, int]] = []
    errors = together(2, lambda i: results.append(stores[i].upsert_papers("hf", DAY, papers(1200), T0)))
    assert errors == []
    assert sum(r[1] for r in results) == 1200              # every listing was new to exactly one writer
    assert s.counts()["papers"] == 1200 and s.counts()["listings"] == 1200
    stores[1].dispose()


def test_a_second_sighting_updates_a_paper_without_blanking_what_the_first_gave(any_database_url):
    s = open_store(any_database_url)
    first = FetchedPaper(key="2505.00001", title="T", abstract="A long abstract from arXiv.", arxiv_id="2505.00001",
                         version=2, authors=["A. Author"], categories=["cs.LG"], extra={"comment": "10 pages"})
    again = FetchedPaper(key="2505.00001", title="T2", abstract="Short.", arxiv_id="2505.00001", version=1,
                         upvotes=7, extra={"githubRepo": "https://github.com/x/y"})
    assert s.upsert_papers("arxiv", DAY, [first], T0) == (1, 1)
    assert s.upsert_papers("hf", DAY, [again], T0 + dt.timedelta(hours=1)) == (0, 1)
    p = s.get_paper("2505.00001")
    assert (p.title, p.abstract, p.version, p.upvotes) == ("T2", "A long abstract from arXiv.", 2, 7)
    assert p.authors_json == '["A. Author"]' and p.categories_json == '["cs.LG"]'
    import json
    assert json.loads(p.extra_json) == {"comment": "10 pages", "githubRepo": "https://github.com/x/y"}
    assert p.first_seen_at == T0 and p.updated_at == T0 + dt.timedelta(hours=1)


def test_two_processes_syncing_the_same_new_readers_both_succeed(any_database_url):
    s = open_store(any_database_url)
    other = open_store(any_database_url)
    users = [UserSettings(id=f"u{i:03d}", email=f"u{i}@example.org") for i in range(200)]
    errors = together(2, lambda i: (s, other)[i].sync_users(users, T0))
    assert errors == []
    assert len(s.users()) == 200
    other.dispose()


def test_fetch_errors_recorded_by_two_processes_count_twice_and_a_success_clears_them(any_database_url):
    s = open_store(any_database_url)
    other = open_store(any_database_url)
    errors = together(2, lambda i: (s, other)[i].record_fetch_error("hf", T0, "HTTP 503", T0 + dt.timedelta(minutes=5)))
    assert errors == []
    st = s.source_state("hf")
    assert st.error_count == 2 and st.last_error == "HTTP 503"
    s.record_fetch_success("hf", T0, 10, etag='"abc"')
    s.record_fetch_success("hf", T0, 10)                  # a 200 without an ETag keeps the one we have
    st = s.source_state("hf")
    assert (st.error_count, st.next_retry_at, st.etag, st.last_count) == (0, None, '"abc"', 10)
    other.dispose()


def test_two_processes_minting_a_readers_first_feed_token_agree_on_one(any_database_url):
    s = open_store(any_database_url)
    s.sync_users([UserSettings(id="alice", email="alice@example.org")], T0)
    first = s.mint_feed_tokens([("alice", "nonce-a", "hash-a")])
    second = s.mint_feed_tokens([("alice", "nonce-b", "hash-b")])
    assert first == second == {"alice": "nonce-a"}
    assert s.feed_token_owner("hash-a") == ("alice", "hash-a") and s.feed_token_owner("hash-b") is None
