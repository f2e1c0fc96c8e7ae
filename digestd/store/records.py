"""Plain records the store hands out besides table rows."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from ..models import PaperText
from .tables import Paper


@dataclass
class VoteRecord:
    paper: Paper
    vote: int
    at: dt.datetime
    via: str


def paper_text(p: Paper) -> PaperText:
    return PaperText(key=p.key, title=p.title, abstract=p.abstract, authors=json.loads(p.authors_json),
                     published=p.published_at)


@dataclass
class Item:
    """One paper of one digest, as a pass composes it and a view shows it. A plain record: a pass
    makes ten per reader, and table rows cost a validation each."""

    paper_key: str
    position: int
    score: float
    reason: str = ""
    highlight: str | None = None
    explore: bool = False
    pinned: bool = False
