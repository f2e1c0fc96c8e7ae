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
import urllib.parse
from typing import TYPE_CHECKING

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from . import accounts, feeds, links, pages
from .errors import DigestdError, PaperNotFound, StoreError, TokenError, UserError
from .feedcache import FeedCache, FeedVersion, accepts_gzip  # noqa: F401  (accepts_gzip: re-exported)
from .health import health  # noqa: F401  (re-exported: /healthz and its tests)
from .httpdate import format_http_date, parse_http_date
from .logs import get_logger
from .mathtext import readable
from .templates_dir import templates_dir

if TYPE_CHECKING:
    from .app import App

log = get_logger("digestd.web")

# Seconds a client is asked to wait before trying again after a 503 (the store was busy or away).
RETRY_AFTER_SECONDS = 5
ATOM_TYPE = "application/atom+xml; charset=utf-8"
VOTE_LABELS = {"up": "👍", "down": "👎", "clear": "no vote"}
_TOKEN_PATH = re.compile(r"^/(feeds|f|u|profile)/[^/?]+")

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


def _unavailable(message: str, retry_method: str, retry_fields: list[tuple[str, str]],
                 retry_action: str | None = None) -> HTMLResponse:
    page = _page("unavailable.html", 503, title="Please try again", message=message, retry_method=retry_method,
                 retry_fields=retry_fields, retry_action=retry_action)
    page.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return page


def _log_store_error(request: Request, exc: Exception, **ids) -> None:
    # The path goes through redact (it carries a token); a driver's message is cut to its first
    # line, since SQLAlchemy appends the statement and its parameters.
    cause = exc.message if isinstance(exc, DigestdError) else str(getattr(exc, "orig", None) or exc).splitlines()[0]
    log.error("store unavailable for %s %s: %s: %s", request.method, redact(request.url.path),
              exc.__class__.__name__, cause, extra=ids)


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


def _paper_context(app: "App", key: str) -> dict:
    p = app.store.get_paper(key)
    if p is None:
        raise PaperNotFound(f"paper {key!r} is no longer known to this digest", paper=key)

    url, pdf = links.paper_urls(p)
    return {"key": p.key, "title": readable(p.title, one_line=True),
            "authors": [readable(a, one_line=True) for a in json.loads(p.authors_json or "[]")],
            "abstract": readable(p.abstract), "url": url, "pdf_url": pdf}


def _cross_site(request: Request) -> bool:
    # Browsers say where a form came from; another site's page must never change a reader's profile.
    return request.headers.get("sec-fetch-site") == "cross-site"


def _from_another_site() -> HTMLResponse:
    return _page("error.html", 403, title="This vote came from another site",
                 message="Only the buttons on this page record a vote. Open the link from your digest again.")


def _vote_name(value: int | None) -> str:
    return "up" if value and value > 0 else "down" if value and value < 0 else "clear"


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

    def read_link(token: str):
        max_age = app.settings.digestd.link_max_age_days * 86400
        return app.signer.read_feedback_link(token, max_age_seconds=max_age), max_age

    async def feedback(request: Request) -> Response:
        """GET (and HEAD) only shows the paper and the button: scanners and previewers open every
        link of a mail, some run its scripts, so nothing here submits anything by itself."""
        token = request.path_params["token"]
        try:
            link, _ = read_link(token)
        except TokenError as e:
            return _bad_link(f"{e}. Use the buttons in a more recent digest instead.")
        if request.method == "POST":
            return await press(request, token, link)

        def load():
            app.store.get_user(link.user)
            return _vote_name(app.store.current_vote(link.user, link.paper)), _paper_context(app, link.paper)
        try:
            current, paper = await run_in_threadpool(load)
        except (UserError, PaperNotFound) as e:
            return _bad_link(e.message)
        return _page("feedback.html", title="Your vote", paper=paper, offered=link.vote, current=current,
                     press=app.signer.press_token(token), labels=VOTE_LABELS)

    async def press(request: Request, token: str, link) -> Response:
        """A person pressed a button of a feedback page: record the vote, then 303 to the confirmation."""
        if _cross_site(request):
            return _from_another_site()
        form = await request.form()
        vote, press_field = str(form.get("vote") or ""), str(form.get("press") or "")
        if vote not in ("up", "down", "clear"):
            return _bad_link("The vote must be up, down or clear.")
        try:
            app.signer.check_press(press_field, token, max_age_seconds=read_link(token)[1])
        except TokenError as e:
            return _bad_link(f"{e}.")

        def record():
            before = _vote_name(app.store.current_vote(link.user, link.paper))
            accounts.apply_feedback(app, link.user, link.paper, vote, via=link.via)
            return before
        try:
            before = await run_in_threadpool(record)
        except (UserError, PaperNotFound) as e:
            return _bad_link(e.message)
        except (StoreError, SQLAlchemyError) as e:
            _log_store_error(request, e, user=link.user, paper=link.paper)
            return _unavailable("Your vote could not be saved just now. Nothing is lost: press the button to send it again.",
                                "post", [("vote", vote), ("press", press_field)])
        # Undo restores what was there before; after a repeated click that is "no vote".
        undo = before if before != vote else ("clear" if vote != "clear" else None)
        done = f"{request.scope.get('root_path', '')}/f/{token}/done?vote={vote}" + (f"&undo={undo}" if undo else "")
        return RedirectResponse(done, status_code=303, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def feedback_done(request: Request) -> Response:
        """The confirmation after a press (a GET: shows, records nothing), with Undo on the first screen.
        Its buttons post here, which records exactly as a post to the link does."""
        token = request.path_params["token"]
        try:
            link, _ = read_link(token)
        except TokenError as e:
            return _bad_link(f"{e}. Use the buttons in a more recent digest instead.")
        if request.method == "POST":
            return await press(request, token, link)
        vote, undo = request.query_params.get("vote", link.vote), request.query_params.get("undo")
        if vote not in VOTE_LABELS or (undo is not None and undo not in VOTE_LABELS):
            return _bad_link("This confirmation address is not one digestd gives.")

        def load():
            return _vote_name(app.store.current_vote(link.user, link.paper)), _paper_context(app, link.paper)
        try:
            current, paper = await run_in_threadpool(load)
        except PaperNotFound as e:
            return _bad_link(e.message)
        return _page("feedback_done.html", title="Thanks" if current == vote else "Your vote", paper=paper, vote=vote,
                     current=current, undo=undo, press=app.signer.press_token(token), labels=VOTE_LABELS)

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

    def _reader(token: str) -> str | None:
        return links.user_for_feed_token(app, token)

    async def profile(request: Request) -> Response:
        """What digestd holds about the reader and learns from (the `profile_url` of the export).
        Opened with the private feed token, so whoever may read the feed may read this."""
        token = request.path_params["token"]

        def load():
            user_id = _reader(token)
            if user_id is None:
                return None
            data = pages.profile(app, user_id)
            changed = request.query_params.get("changed")
            if changed:
                p = app.store.get_paper(changed)
                data["changed"] = {"key": changed, "title": readable(p.title, one_line=True) if p else changed,
                                   "vote": _vote_name(app.store.current_vote(user_id, changed)),
                                   "was": request.query_params.get("was", "clear")}
            return data

        data = await run_in_threadpool(load)
        if data is None:
            return _not_found()
        return _page("profile.html", title="Your profile", p=data, changed=data.get("changed"),
                     labels=VOTE_LABELS, token=token, today=app.clock.now().date().isoformat(),
                     error=request.query_params.get("error", ""))

    async def today_list(request: Request) -> Response:
        token = request.path_params["token"]

        def load():
            user_id = _reader(token)
            return None if user_id is None else pages.today(app, user_id)

        data = await run_in_threadpool(load)
        if data is None:
            return _not_found()
        return _page("today.html", title="Today's full list", t=data, token=token, labels=VOTE_LABELS,
                     voted=request.query_params.get("changed", ""))

    async def profile_vote(request: Request) -> Response:
        """A vote or an undo from the reader's own pages; then back where it was pressed (303)."""
        token = request.path_params["token"]
        if _cross_site(request):
            return _from_another_site()
        form = await request.form()
        paper, vote = str(form.get("paper") or ""), str(form.get("vote") or "")
        back = "today" if form.get("back") == "today" else ""
        if vote not in ("up", "down", "clear") or not paper:
            return _bad_link("The vote must be up, down or clear, for one paper.")

        def record():
            user_id = _reader(token)
            if user_id is None:
                return None
            before = _vote_name(app.store.current_vote(user_id, paper))
            accounts.apply_feedback(app, user_id, paper, vote, via="web")
            return before

        try:
            before = await run_in_threadpool(record)
        except (UserError, PaperNotFound) as e:
            return _bad_link(e.message)
        if before is None:
            return _not_found()
        query = urllib.parse.urlencode({"changed": paper, "was": before})
        return RedirectResponse(f"{links.profile_url(app, token)}{'/today' if back else ''}?{query}", status_code=303)

    async def profile_pause(request: Request) -> Response:
        token = request.path_params["token"]
        if _cross_site(request):
            return _from_another_site()
        form = await request.form()

        def change():
            user_id = _reader(token)
            if user_id is None:
                return None
            if form.get("action") == "resume":
                app.store.set_paused(user_id, None, app.clock.now())
                return ""
            try:
                until = pages.parse_pause(str(form.get("until") or ""), app.clock.now().date())
            except ValueError as e:
                return str(e)
            app.store.set_paused(user_id, until, app.clock.now())
            return ""

        error = await run_in_threadpool(change)
        if error is None:
            return _not_found()
        suffix = f"?{urllib.parse.urlencode({'error': error})}" if error else ""
        return RedirectResponse(f"{links.profile_url(app, token)}{suffix}#pause", status_code=303)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/robots.txt", robots, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/feeds/{token}.atom", feed, methods=["GET"]),
        Route("/profile/{token}", profile, methods=["GET"]),
        Route("/profile/{token}/today", today_list, methods=["GET"]),
        Route("/profile/{token}/vote", profile_vote, methods=["POST"]),
        Route("/profile/{token}/pause", profile_pause, methods=["POST"]),
        Route("/f/{token}", feedback, methods=["GET", "POST"]),
        Route("/f/{token}/done", feedback_done, methods=["GET", "POST"]),
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
    ]
    # Any store failure a route did not handle itself (a lock held too long, PostgreSQL restarting)
    # is a 503 with Retry-After and a button that tries again, never a 500 with a traceback.
    async def store_unavailable(request: Request, exc: Exception) -> Response:
        _log_store_error(request, exc)
        if request.method != "POST":
            return _unavailable("digestd cannot reach its database just now. Nothing is lost; try again in a moment.",
                                "get", list(request.query_params.multi_items()))
        # The form is gone with the request: the retry goes back to the page it was sent from
        # (a POST-only action's page is its parent: /profile/T/vote -> /profile/T).
        path = request.url.path
        page = path.rsplit("/", 1)[0] if path.startswith("/profile/") and path.count("/") > 2 else path
        return _unavailable("Your change could not be saved just now. Go back to the page and press the button "
                            "again in a moment.", "get", [], request.scope.get("root_path", "") + page)

    web = Starlette(routes=routes, exception_handlers={StoreError: store_unavailable,
                                                       SQLAlchemyError: store_unavailable})
    web.state.app = app
    return web
