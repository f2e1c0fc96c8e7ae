"""Plain data passed between the edges (sources, store) and the pure core (rank, render).

Nothing here does I/O; these are the shapes every module agrees on.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass
class FetchedPaper:
    """One paper as one list showed it, already normalised by its source parser."""

    key: str                      # bare arXiv id ("2401.01234", "math/0611800"), else the link, else "title:<normalised>"
    title: str
    abstract: str = ""
    authors: list[str] = field(default_factory=list)
    arxiv_id: str | None = None   # bare id, same as key for arXiv papers
    version: int | None = None    # the version the list showed, kept apart from the key
    url: str | None = None        # abstract / landing page
    pdf_url: str | None = None
    categories: list[str] = field(default_factory=list)
    published: dt.datetime | None = None
    announce_type: str | None = None   # arXiv: new / cross / replace / replace-cross
    upvotes: int | None = None         # Hugging Face
    extra: dict = field(default_factory=dict)  # ai_summary, ai_keywords, githubRepo, comment ...


@dataclass
class FetchResult:
    """What one fetch of one source for one day returned."""

    source: str
    day: dt.date
    papers: list[FetchedPaper]
    not_modified: bool = False    # the server answered 304: nothing new
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class PaperText:
    """What the ranker sees of a paper."""

    key: str
    title: str
    abstract: str = ""
    authors: list[str] = field(default_factory=list)
    published: dt.datetime | None = None


@dataclass
class Vote:
    paper: PaperText
    value: int                    # +1 up, -1 down
    at: dt.datetime


@dataclass
class ProfileInput:
    """Everything the ranker may know about one user: nothing of other users."""

    user_id: str
    keywords: list[str] = field(default_factory=list)
    seed_papers: list[PaperText] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    votes: list[Vote] = field(default_factory=list)


@dataclass
class Pick:
    """One paper chosen for a digest, with why."""

    key: str
    score: float
    reason: str
    matched_terms: list[str] = field(default_factory=list)
    because_of: str | None = None       # key of the liked / seed paper it is closest to
    because_title: str | None = None
    highlight: str | None = None        # the sentence of the abstract that matches this reader best
    explore: bool = False
    pinned: bool = False                # matched one of the reader's pin_authors / pin_keywords


@dataclass
class DigestPaper:
    """A paper as the renderer shows it."""

    key: str
    title: str
    abstract: str
    authors: list[str]
    url: str
    pdf_url: str | None
    score: float
    reason: str
    highlight: str | None = None
    explore: bool = False
    pinned: bool = False                # in the digest by the reader's pin_authors / pin_keywords: show a badge
    sources: list[str] = field(default_factory=list)
    up_url: str = ""
    down_url: str = ""
    published: dt.datetime | None = None
    listed_on: dt.date | None = None
    categories: list[str] = field(default_factory=list)   # arXiv categories, primary first
    upvotes: int | None = None                             # Hugging Face
    ai_summary: str = ""                                   # Hugging Face's one-paragraph summary
    code_url: str = ""                                     # Hugging Face's githubRepo


@dataclass
class Digest:
    """One user's digest for one day, ready to render."""

    user_id: str
    user_email: str
    day: dt.date
    papers: list[DigestPaper]
    base_url: str
    unsubscribe_url: str = ""
    feed_url: str = ""
    generated_at: dt.datetime | None = None
    note: str | None = None     # e.g. "Nothing relevant today"
    user_name: str = ""
    profile_url: str = ""
    today_url: str = ""         # the day's full ranked list, beyond the digest
    new_papers: int | None = None   # papers new on the reader's lists in the window the digest covers
    lists: list[str] = field(default_factory=list)   # the names of those lists
    digest_size: int = 0        # the most papers the reader asked for; fewer means a thin day
