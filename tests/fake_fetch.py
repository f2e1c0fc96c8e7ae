"""A stand-in for ``pipeline.fetch.fetch_source``, for tests about what happens after a fetch."""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from digestd import pipeline


def fetch_bringing(store, papers: Sequence, day: dt.date, seen_at: dt.datetime, *, listed_on: dt.date | None = None,
                   listed: bool = True):
    """A ``fetch_source`` whose every source stores ``papers`` (listed on ``listed_on``, else ``day``,
    first seen at ``seen_at``) and reports them all as new on ``day``; with ``listed``, by key too."""
    papers = list(papers)

    def fetch_source(app, src, *a, **kw):
        store.upsert_papers(src.name, listed_on or day, papers, seen_at)
        return [pipeline.FetchOutcome(source=src.name, day=day, papers=len(papers), new_papers=len(papers),
                                      new_listings=len(papers), listed=[p.key for p in papers] if listed else [])]

    return fetch_source
