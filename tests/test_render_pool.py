"""A large pass renders its messages in worker processes (real spawned processes, a real SMTP
conversation on loopback): the mail is the same as rendered in the pass, one digest that fails to
render is retried alone, and a small pass or a one-core machine renders in the pass itself."""
from __future__ import annotations

import dataclasses
import re
from collections import Counter

import pytest
from test_pass import N_READERS, received, world  # noqa: F401  (world is a fixture)

from digestd import pipeline
from digestd.pipeline import render_pool
from digestd.pipeline.render_pool import POOL_MIN_MESSAGES, RenderPool, workers_wanted
from digestd.render_job import RenderJob, readable_view, render_one
from digestd.pipeline.view import ViewRequest, build_views
from digestd.store import Item


def _same_mail(raw: bytes) -> bytes:
    """The bytes, but for the MIME boundary (random for every rendering) and line ends."""
    return re.sub(rb"=_digestd_[0-9a-f]+", b"=_digestd_B", raw).replace(b"\r\n", b"\n")


def _record_jobs(monkeypatch, change=None) -> list:
    """Every job handed to the workers (after ``change``, if given) is kept in the returned list."""
    jobs: list = []
    real = RenderPool.submit

    def submit(self, batch):
        batch = [change(j) if change else j for j in batch]
        jobs.extend(batch)
        return real(self, batch)
    monkeypatch.setattr(RenderPool, "submit", submit)
    return jobs


def test_a_pass_rendered_by_worker_processes_sends_exactly_the_bytes_the_pass_would_render(world, monkeypatch):
    app, rec, _clock = world
    monkeypatch.setenv("DIGESTD_RENDER_WORKERS", "2")
    jobs = _record_jobs(monkeypatch)
    outcomes = pipeline.deliver_due(app)
    assert Counter(o.status for o in outcomes) == {"sent": N_READERS}
    assert len(jobs) == N_READERS, "every message went through the workers"
    sent = {rcpts[0]: raw for _, rcpts, raw in rec.messages}
    for job in jobs:
        inline = render_one(job)            # what the pass itself renders for the same digest
        got = sent[job.view.user_email]
        assert _same_mail(got) == _same_mail(inline)
    assert app.timings.get("render", 0) > 0, "the workers' time is counted in the render stage"


def test_a_digest_that_fails_to_render_in_a_worker_is_retried_while_the_others_go_out(world, monkeypatch):
    app, rec, _clock = world
    monkeypatch.setenv("DIGESTD_RENDER_WORKERS", "1")

    def break_r05(job):
        # A header that cannot be one line: render_message refuses it, inside the worker.
        if job.view.user_id == "r05":
            return dataclasses.replace(job, view=dataclasses.replace(job.view, user_email="r05@example.org\nBcc: x"))
        return job
    _record_jobs(monkeypatch, break_r05)
    outcomes = {o.user: o for o in pipeline.deliver_due(app)}
    assert outcomes["r05"].status == "retry"
    assert "rendering the digest failed" in outcomes["r05"].error and "one line" in outcomes["r05"].error
    assert sum(o.status == "sent" for o in outcomes.values()) == N_READERS - 1
    assert "r05@example.org" not in received(rec)
    row = app.store.get_digest("r05", outcomes["r05"].day)
    assert row.status == "retry" and row.next_attempt_at is not None


def test_a_small_pass_or_a_one_core_machine_renders_in_the_pass_itself(monkeypatch):
    monkeypatch.delenv("DIGESTD_RENDER_WORKERS", raising=False)
    monkeypatch.setattr(render_pool.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert workers_wanted(1) == 0
    assert workers_wanted(POOL_MIN_MESSAGES - 1) == 0
    assert workers_wanted(POOL_MIN_MESSAGES) == 3          # one core stays with the pass
    monkeypatch.setattr(render_pool.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert workers_wanted(10_000) == 0


def test_the_render_workers_setting_overrides_the_choice_and_a_bad_value_is_ignored(monkeypatch):
    monkeypatch.setattr(render_pool.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("DIGESTD_RENDER_WORKERS", "0")
    assert workers_wanted(10_000) == 0
    monkeypatch.setenv("DIGESTD_RENDER_WORKERS", "3")
    assert workers_wanted(1) == 3
    monkeypatch.setenv("DIGESTD_RENDER_WORKERS", "many")
    assert workers_wanted(10_000) == 1


def test_a_pass_without_workers_starts_no_process(world, monkeypatch):
    app, _rec, _clock = world
    monkeypatch.setenv("DIGESTD_RENDER_WORKERS", "0")

    def no_pool(*a, **k):
        raise AssertionError("a pool was started")
    monkeypatch.setattr(render_pool.RenderPool, "__enter__", no_pool)
    assert Counter(o.status for o in pipeline.deliver_due(app)) == {"sent": N_READERS}


def _without_links(view):
    papers = [dataclasses.replace(p, up_url="", down_url="") for p in view.papers]
    return dataclasses.replace(view, papers=papers, unsubscribe_url="")


def test_a_view_left_as_stored_and_made_readable_in_the_worker_is_the_view_the_pass_would_show(world):
    """The workers convert TeX: what they render must be exactly what the pass converts itself."""
    app, _rec, clock = world
    papers = app.store.recent_papers(400)
    tex = [p for p in papers if "$" in (p.title + (p.abstract or "")) or "\\" in (p.abstract or "")]
    assert len(tex) >= 5, "the demo days carry TeX titles and abstracts"
    chosen = tex[:8] + [p for p in papers if p not in tex][:4]
    items = [Item(p.key, i, 1.0 - i / 100, reason="Because you liked it", highlight=(p.abstract or "")[:120] or None)
             for i, p in enumerate(chosen)]
    user = app.settings.users[0]
    request = [ViewRequest(user, clock.now().date(), items, None)]
    as_stored = build_views(app, request, clock.now(), readable_text=False)[0]
    shown = build_views(app, request, clock.now())[0]
    assert [p.title for p in as_stored.papers] != [p.title for p in shown.papers] or \
        [p.abstract for p in as_stored.papers] != [p.abstract for p in shown.papers], "some TeX was converted"
    assert _without_links(readable_view(as_stored)) == _without_links(shown)


@pytest.mark.parametrize("n", [120])   # three chunks: order kept across them
def test_the_pool_returns_each_job_s_bytes_in_order(world, n):
    app, _rec, clock = world
    from digestd.pipeline.view import preview

    view = preview(app, "r01")
    jobs = [RenderJob(dataclasses.replace(view, user_email=f"reader{i}@example.org"), app.from_addr, f"<m{i}@x>",
                      clock.now(), app.list_id) for i in range(n)]
    with RenderPool(1) as pool:
        got = [r.result() for r in pool.submit(jobs)]
    assert [_same_mail(g) for g in got] == [_same_mail(render_one(j)) for j in jobs]
    assert [j.view.user_email.encode() in g for j, g in zip(jobs, got)] == [True] * n


def test_when_a_render_worker_is_killed_the_pass_renders_the_messages_itself(world, caplog):
    import os
    import signal
    import time

    from digestd.pipeline.view import preview

    app, _rec, clock = world
    view = preview(app, "r02")
    jobs = [RenderJob(dataclasses.replace(view, user_email=f"reader{i}@example.org"), app.from_addr, f"<k{i}@x>",
                      clock.now(), app.list_id) for i in range(60)]
    with RenderPool(1) as pool:
        first = [r.result() for r in pool.submit(jobs[:10])]
        for pid in list(pool._pool._processes):
            os.kill(pid, signal.SIGKILL)            # what the kernel's OOM killer does
        time.sleep(1)                               # the pool has noticed: submitting to it now fails
        rest = [r.result() for r in pool.submit(jobs[10:])]
    assert [_same_mail(m) for m in first + rest] == [_same_mail(render_one(j)) for j in jobs]
    assert "render workers failed" in caplog.text
