"""The HTTP side of digestd: private feeds, feedback links, one-click unsubscribe, health.

Handlers are thin: read the token, call accounts/feeds/store, render a template. Rules that shape them:
- A GET never changes anything. Mail security scanners and link previewers open every link in a
  message; only a POST (a button a person presses) records a vote or unsubscribes.
- Tokens are capabilities: never logged, never sent on as a Referer, pages are not indexed.
- No external resources: every page is one self-contained document that works on a phone.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from typing import TYPE_CHECKING

import jinja2
from itsdangerous.encoding import base64_decode, bytes_to_int
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import accounts, feeds, links
from .errors import DigestdError, PaperNotFound, TokenError, UserError
from .feedcache import FeedCache, FeedVersion
from .httpdate import format_http_date, parse_http_date
from .logs import get_logger
from .templates_dir import templates_dir

if TYPE_CHECKING:
    from .app import App

log = get_logger("digestd.web")

# A feedback link opened this long after it was signed was most likely opened by a person reading
# the mail, not by a scanner on delivery: the page may then submit the offered vote by itself.
AUTO_SUBMIT_AFTER = dt.timedelta(minutes=5)
ATOM_TYPE = "application/atom+xml; charset=utf-8"
VOTE_LABELS = {"up": "👍", "down": "👎", "clear": "no vote"}
_TOKEN_PATH = re.compile(r"^/(feeds|f|u|profile)/[^/]+")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(templates_dir() / "web"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def redact(path: str) -> str:
    """A request path fit for a log line: the token segment is replaced."""
    return _TOKEN_PATH.sub(lambda m: f"/{m.group(1)}/…", path)


def _page(template: str, status: int = 200, **ctx) -> HTMLResponse:
    # The nonce lets the page's own inline style and script run while the CSP blocks anything else.
    nonce = secrets.token_urlsafe(16)
    html = _env.get_template(template).render(nonce=nonce, **ctx)
    return HTMLResponse(html, status_code=status, headers={
        "Cache-Control": "no-store",
        "Content-Security-Policy": (f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
                                    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
        "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex, nofollow",
        "X-Content-Type-Options": "nosniff",
    })


def _bad_link(message: str) -> HTMLResponse:
    return _page("error.html", 400, title="This link does not work", message=message)


def _not_found() -> Response:
    # Byte for byte what an unknown path gets: an unknown feed token must not hint at anything.
    return PlainTextResponse("Not Found", status_code=404)


def _not_modified(request: Request, etag: str, last_modified: dt.datetime) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        # Weak comparison (RFC 9110 13.1.2): the feed's ETag is weak by nature.
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag.removeprefix("W/") in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        since = parse_http_date(ims)
        return since is not None and last_modified <= since
    return False


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding value allows gzip (RFC 9110 12.5.3): named, or covered by "*", with q > 0."""
    allowed: dict[str, bool] = {}
    for part in accept_encoding.lower().split(","):
        name, _, params = part.partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        allowed[name.strip()] = q > 0
    for name in ("gzip", "x-gzip", "*"):
        if name in allowed:
            return allowed[name]
    return False


def link_issued_at(token: str) -> dt.datetime | None:
    """When an itsdangerous timed token was signed: the middle of ``payload.timestamp.signature``.
    Only called on a token whose signature has already been checked."""
    try:
        stamp = token.rsplit(".", 2)[1]
        return dt.datetime.fromtimestamp(bytes_to_int(base64_decode(stamp)), dt.timezone.utc)
    except (IndexError, ValueError, OverflowError):
        return None


def _paper_context(app: "App", key: str) -> dict:
    p = app.store.get_paper(key)
    if p is None:
        raise PaperNotFound(f"paper {key!r} is no longer known to this digest", paper=key)
    url, pdf = links.paper_urls(p)
    return {"key": p.key, "title": p.title, "authors": json.loads(p.authors_json or "[]"),
            "abstract": p.abstract or "", "url": url, "pdf_url": pdf}


def _vote_name(value: int | None) -> str:
    return "up" if value and value > 0 else "down" if value and value < 0 else "clear"


def health(app: "App", scheduler) -> tuple[bool, dict]:
    """Liveness for monitoring: the scheduler thread, the database, and the last fetch per source."""
    db_ok = app.store.ping()
    sched = None
    sched_ok = True
    if scheduler is not None:
        thread = getattr(scheduler, "_thread", None)
        alive = bool(scheduler.running) and (thread is None or thread.is_alive())
        sched = {"running": alive, "jobs": len(scheduler.get_jobs()) if alive else 0}
        sched_ok = alive
    sources = []
    if db_ok:
        states = app.store.all_source_states()
        for src in app.settings.sources:
            st = states.get(src.name)
            sources.append({
                "name": src.name, "enabled": src.enabled,
                "last_success": st.last_success_at.isoformat() if st and st.last_success_at else None,
                "last_attempt": st.last_attempt_at.isoformat() if st and st.last_attempt_at else None,
                "error_count": st.error_count if st else 0,
                "last_error": st.last_error if st and st.error_count else None,
            })
    config_problem = getattr(app, "config_problem", None)
    ok = db_ok and sched_ok and not config_problem
    return ok, {"ok": ok, "scheduler": sched, "database": db_ok, "sources": sources,
                "config": config_problem, "now": app.clock.now().isoformat()}


def create_app(app: "App", *, scheduler=None) -> Starlette:
    """The ASGI app. ``scheduler`` (the daemon's) is only read by /healthz."""
    cache = FeedCache()

    async def index(request: Request) -> Response:
        return _page("index.html", title="digestd")

    async def robots(request: Request) -> Response:
        return PlainTextResponse("User-agent: *\nDisallow: /\n")

    async def healthz(request: Request) -> Response:
        ok, body = await run_in_threadpool(health, app, scheduler)
        return JSONResponse(body, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})

    async def feed(request: Request) -> Response:
        token = request.path_params["token"]

        def load():
            user_id = links.user_for_feed_token(app, token)
            if user_id is None:
                return None
            # The stamp is read before the version, so a cached version is never newer than its stamp.
            settings, stamp = app.settings, app.store.feed_stamp(user_id)
            version = cache.version(user_id, settings, stamp)
            if version is None:
                version = FeedVersion(*feeds.feed_version(app, user_id))
                cache.remember_version(user_id, settings, stamp, version)
            return user_id, version

        found = await run_in_threadpool(load)
        if found is None:
            return _not_found()
        user_id, version = found
        headers = {"ETag": version.etag, "Last-Modified": format_http_date(version.last_modified),
                   "Cache-Control": "private, no-cache", "Vary": "Accept-Encoding",
                   "X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer"}
        if _not_modified(request, version.etag, version.last_modified):
            return Response(status_code=304, headers=headers)
        now = app.clock.now()
        rendered = cache.feed(user_id, version.etag, now)
        if rendered is None:
            rendered = await run_in_threadpool(
                lambda: cache.remember_feed(user_id, version.etag, feeds.feed_xml(app, user_id), now))
        if accepts_gzip(request.headers.get("accept-encoding", "")):
            headers["Content-Encoding"] = "gzip"
            return Response(rendered.gzip, media_type=ATOM_TYPE, headers=headers)
        return Response(rendered.body, media_type=ATOM_TYPE, headers=headers)

    async def feedback(request: Request) -> Response:
        token = request.path_params["token"]
        max_age = app.settings.digestd.link_max_age_days * 86400
        try:
            user_id, key, offered = app.signer.read_feedback(token, max_age_seconds=max_age)
        except TokenError as e:
            return _bad_link(f"{e}. Use the buttons in a more recent digest instead.")
        if request.method == "POST":
            form = await request.form()
            vote = str(form.get("vote") or offered)
            if vote not in ("up", "down", "clear"):
                return _bad_link("The vote must be up, down or clear.")

            def record():
                app.store.get_user(user_id)
                before = _vote_name(app.store.current_vote(user_id, key))
                accounts.apply_feedback(app, user_id, key, vote, via="email")
                return before, _paper_context(app, key)
        else:
            def record():
                app.store.get_user(user_id)
                return _vote_name(app.store.current_vote(user_id, key)), _paper_context(app, key)
        try:
            before, paper = await run_in_threadpool(record)
        except (UserError, PaperNotFound) as e:
            return _bad_link(e.message)
        except DigestdError as e:
            log.error("feedback failed: %s", e, extra={"user": user_id, "paper": key})
            return _page("error.html", 500, title="Something went wrong", message="Your vote could not be saved; please try again later.")
        if request.method == "POST":
            # Undo restores what was there before; after a repeated click that is "no vote".
            undo = before if before != vote else ("clear" if vote != "clear" else None)
            return _page("feedback_done.html", title="Thanks", paper=paper, vote=vote, undo=undo, labels=VOTE_LABELS)
        issued = link_issued_at(token)
        auto = bool(issued and before != offered and app.clock.now() - issued > AUTO_SUBMIT_AFTER)
        return _page("feedback.html", title="Your vote", paper=paper, offered=offered, current=before,
                     auto_submit=auto, labels=VOTE_LABELS)

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            user_id = app.signer.read_unsubscribe(token)
            urow = await run_in_threadpool(app.store.get_user, user_id)
        except (TokenError, UserError) as e:
            return _bad_link(e.message if isinstance(e, TokenError) else "This unsubscribe link names no subscriber here.")
        if request.method == "GET":
            return _page("unsubscribe.html", title="Unsubscribe", email=urow.email, subscribed=urow.subscribed,
                         changed=False)
        form = await request.form()
        if form.get("List-Unsubscribe") == "One-Click":
            subscribed = False        # RFC 8058: at once, no confirmation, no cookie
        elif form.get("action") == "subscribe":
            subscribed = True
        else:
            return _bad_link("To unsubscribe, send List-Unsubscribe=One-Click (the button on this page does).")
        await run_in_threadpool(lambda: accounts.set_subscription(app, user_id, subscribed, via_link=not subscribed))
        return _page("unsubscribe.html", title="Unsubscribed" if not subscribed else "Subscribed", email=urow.email,
                     subscribed=subscribed, changed=True)

    async def profile(request: Request) -> Response:
        """What digestd holds about the reader and learns from (the `profile_url` of the export).
        Opened with the private feed token, so whoever may read the feed may read this."""
        token = request.path_params["token"]

        def load():
            user_id = links.user_for_feed_token(app, token)
            if user_id is None:
                return None
            data = accounts.export_user(app, user_id)
            papers = app.store.papers_by_keys(f["paper"] for f in data["feedback"])
            votes = [{**f, "title": papers[f["paper"]].title if f["paper"] in papers else f["paper"]}
                     for f in reversed(data["feedback"])]
            return data, votes

        found = await run_in_threadpool(load)
        if found is None:
            return _not_found()
        data, votes = found
        return _page("profile.html", title="Your profile", user=data["user"], votes=votes,
                     digests=list(reversed(data["digests"]))[:14], feed_url=data["feed_url"], labels=VOTE_LABELS)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/robots.txt", robots, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/feeds/{token}.atom", feed, methods=["GET"]),
        Route("/profile/{token}", profile, methods=["GET"]),
        Route("/f/{token}", feedback, methods=["GET", "POST"]),
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
    ]
    web = Starlette(routes=routes)
    web.state.app = app
    return web
