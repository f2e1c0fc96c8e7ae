"""What a reader does outside the pass: votes, importing liked papers, exporting their data, and the
operator's status view."""
from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

from . import ids, links
from .errors import ImportFileError, PaperNotFound, UserError
from .logs import get_logger
from .models import FetchedPaper
from .pipeline.fetch import complete_papers

if TYPE_CHECKING:
    from .app import App

log = get_logger("digestd.accounts")


def resolve_paper_key(app: "App", paper: str) -> str:
    parsed = ids.parse_arxiv_id(paper)
    key = parsed[0] if parsed else paper.strip()
    if app.store.get_paper(key) is None:
        raise PaperNotFound(f"paper {paper!r} is not in any list digestd has fetched", paper=paper)
    return key


def apply_feedback(app: "App", user_id: str, paper: str, vote: str, via: str = "cli") -> str:
    if vote not in ("up", "down", "clear"):
        raise UserError(f"vote must be up, down or clear, got {vote!r}", user=user_id)
    app.store.get_user(user_id)
    key = resolve_paper_key(app, paper)
    app.store.set_vote(user_id, key, vote, via, app.clock.now())
    log.info("vote %s", vote, extra={"user": user_id, "paper": key})
    return key


def import_liked(app: "App", user_id: str, path: str) -> dict:
    from pathlib import Path

    from .importers import parse_liked_file

    app.store.get_user(user_id)
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImportFileError(f"cannot read {path}: {e.strerror}", user=user_id) from e
    refs = parse_liked_file(data, p.name)
    now = app.clock.now()
    imported = 0
    for ref in refs:
        key = ref.arxiv_id or ids.paper_key(None, None, ref.title or "")
        if not key or key == "title:":
            continue
        app.store.ensure_paper(FetchedPaper(key=key, title=ref.title or key, abstract=ref.abstract or "",
                                            authors=list(ref.authors or []), arxiv_id=ref.arxiv_id,
                                            url=ids.abs_url(ref.arxiv_id) if ref.arxiv_id else None), now)
        app.store.set_vote(user_id, key, "up", "import", now)
        imported += 1
    looked_up, error = complete_papers(app, [r.arxiv_id for r in refs if r.arxiv_id])
    known = app.store.papers_by_keys(r.arxiv_id for r in refs if r.arxiv_id)
    without_text = sum(1 for p in known.values() if not p.abstract and p.title == p.key)
    return {"user": user_id, "imported": imported, "without_text": without_text, "looked_up": looked_up,
            "lookup_error": error, "file": path}


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


def export_user(app: "App", user_id: str) -> dict:
    urow = app.store.get_user(user_id)
    cfg = app.settings.user(user_id)
    token = links.feed_token(app, user_id)
    settings = json.loads(urow.settings_json or "{}")
    user = {"id": urow.id, "email": urow.email, "timezone": urow.timezone, "subscribed": urow.subscribed,
            "active": urow.active, "created_at": _iso(urow.created_at)}
    for k in ("name", "send_at", "days", "digest_size", "keywords", "seed_papers", "authors", "sources", "formats",
              "on_empty", "explore"):
        if k in settings:
            user[k] = settings[k]
    if cfg is not None and not cfg.sources:
        user["sources"] = app.settings.user_sources(cfg)
    feedback = [{"paper": v.paper.key, "vote": "up" if v.vote > 0 else "down", "at": _iso(v.at), "via": v.via}
                for v in app.store.votes(user_id)]
    history = [{"paper": e.paper_key, "vote": e.vote, "at": _iso(e.at), "via": e.via}
               for e in app.store.feedback_events(user_id)]
    digests = [{"date": d.day.isoformat(), "status": d.status, "sent_at": _iso(d.sent_at), "message_id": d.message_id,
                "papers": keys, "error": d.error}
               for d, keys in app.store.digests(user_id)]
    return {"user": user, "feed_url": links.feed_url(app, token), "profile_url": links.profile_url(app, token),
            "feedback": feedback, "feedback_history": history, "digests": digests}


def status(app: "App") -> dict:
    from .safety import shown

    states = app.store.all_source_states()
    sources = []
    for src in app.settings.sources:
        st = states.get(src.name)
        sources.append({"name": src.name, "type": src.type, "enabled": src.enabled,
                        "last_success": _iso(st.last_success_at) if st else None,
                        "last_count": st.last_count if st else None,
                        "last_error": shown(st.last_error) if st and st.error_count and st.last_error else None,
                        "last_error_at": _iso(st.last_error_at) if st and st.error_count else None,
                        "error_count": st.error_count if st else 0,
                        "next_retry": _iso(st.next_retry_at) if st else None})
    last = app.store.digest_status()
    trained = app.store.profile_trained_at()
    users = []
    for u in app.store.users(active_only=False):
        d = last.get(u.id)
        users.append({"id": u.id, "active": u.active, "subscribed": u.subscribed,
                      "last_digest": d.day.isoformat() if d else None, "last_status": d.status if d else None,
                      "last_sent_at": _iso(d.sent_at) if d else None, "last_error": d.error if d else None,
                      "profile_trained_at": _iso(trained.get(u.id))})
    return {"sources": sources, "users": users, "counts": app.store.counts(), "database": app.store.safe_url}



def set_subscription(app: "App", user_id: str, subscribed: bool, *, via_link: bool) -> None:
    app.store.set_subscribed(user_id, subscribed, app.clock.now(), via_link=via_link)
    log.info("%s%s", "subscribed again" if subscribed else "unsubscribed", " by link" if via_link else "",
             extra={"user": user_id})
