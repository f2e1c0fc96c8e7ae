"""What the reader's own pages show: the profile (votes with undo, what it leans on, the last
digests), today's full ranked list, and the delivery state. Data in, dicts out; web.py renders."""
from __future__ import annotations

import collections
import datetime as dt
import json
from typing import TYPE_CHECKING

from . import accounts, links
from .mathtext import readable

if TYPE_CHECKING:
    from .app import App

DIGESTS_SHOWN = 7
AUTHORS_SHOWN = 8
TODAY_MAX = 100          # the most a digest may hold (config.digest_size's bound)


def _title(p) -> str:
    return readable(p.title or p.key, one_line=True)


def _paper(app: "App", p) -> dict:
    url, pdf = links.paper_urls(p)
    return {"key": p.key, "title": _title(p), "url": url, "pdf_url": pdf}


def profile(app: "App", user_id: str) -> dict:
    data = accounts.export_user(app, user_id)
    urow = app.store.get_user(user_id)
    cfg = app.settings.user(user_id)
    recent = list(reversed(data["digests"]))[:DIGESTS_SHOWN]
    keys = {f["paper"] for f in data["feedback"]} | {k for d in recent for k in d["papers"]}
    papers = app.store.papers_by_keys(keys)

    def shown(key: str) -> dict:
        p = papers.get(key)
        return _paper(app, p) if p else {"key": key, "title": key, "url": "", "pdf_url": None}

    votes = [{**shown(f["paper"]), "vote": f["vote"], "at": f["at"], "via": f["via"]}
             for f in sorted(data["feedback"], key=lambda f: f["at"] or "", reverse=True)]
    # The authors the profile leans on: the ones named in the config, then the most liked ones.
    liked_authors = collections.Counter(
        a for f in data["feedback"] if f["vote"] == "up" and f["paper"] in papers
        for a in json.loads(papers[f["paper"]].authors_json or "[]"))
    configured = list(cfg.authors) if cfg else []
    authors = configured + [a for a, n in liked_authors.most_common(AUTHORS_SHOWN) if n > 1 and a not in configured]
    return {
        "user": data["user"], "name": (cfg.name if cfg else "") or user_id,
        "feed_url": data["feed_url"], "profile_url": data["profile_url"],
        "unsubscribe_url": links.unsubscribe_url(app, user_id),
        "liked": [v for v in votes if v["vote"] == "up"], "disliked": [v for v in votes if v["vote"] == "down"],
        "keywords": list(cfg.keywords) if cfg else [], "authors": authors[:AUTHORS_SHOWN + len(configured)],
        "pinned": list(getattr(cfg, "pin", None) or getattr(cfg, "pinned", None) or []) if cfg else [],
        "excluded": list(getattr(cfg, "exclude", None) or getattr(cfg, "excluded", None) or []) if cfg else [],
        "digests": [{"date": d["date"], "status": d["status"], "papers": [shown(k) for k in d["papers"]]}
                    for d in recent],
        "paused_until": urow.paused_until, "subscribed": urow.subscribed,
    }


def today(app: "App", user_id: str) -> dict:
    """Every candidate of the reader's day, ranked, beyond the digest's cut: voting on the papers
    that missed it teaches the profile fastest. Composed as the pass would, nothing stored."""
    from .pipeline.compose import compose_one
    from .schedule import local_now

    user = app.reader(user_id)
    now = app.clock.now()
    day = local_now(user, now).date()
    sent = app.store.get_digest(user.id, day)
    wide = user.model_copy(update={"digest_size": TODAY_MAX, "min_score": -1e9, "explore": False})
    comp = compose_one(app, wide, day, now, exclude_digest=sent.id if sent is not None else None)
    in_digest = {i.paper_key for i in app.store.digest_items(sent.id)} if sent is not None else set()
    papers = app.store.papers_by_keys(p.key for p in comp.picks)
    votes = {f["paper"]: f["vote"] for f in accounts.export_user(app, user_id)["feedback"]}
    ranked = [{**_paper(app, papers[p.key]), "rank": i, "reason": p.reason, "in_digest": p.key in in_digest,
               "vote": votes.get(p.key, "clear")}
              for i, p in enumerate(comp.picks, 1) if p.key in papers]
    return {"day": day, "papers": ranked, "note": comp.note if not ranked else ""}


def parse_pause(value: str, today: dt.date) -> dt.date:
    """The date a pause lasts until, from the form; a clear error for anything else."""
    try:
        until = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from None
    if until <= today:
        raise ValueError(f"the pause must end after today ({today.isoformat()})")
    return until

