"""Command line: parse, load config, build the app, call one function, map errors to exit codes.

Exit codes: 0 ok, 1 a runtime error (one line on stderr) or, for `run --once`, `fetch`, `send` and
`status`, something that did not work (a source failed, a digest was not delivered), 2 invalid config
or usage (every command checks the config as `check-config` does).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

from .errors import ConfigError, DigestdError

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def _date(s: str) -> dt.date:
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {s!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="digestd", description="A personal daily digest of new research papers.")
    p.add_argument("--config", metavar="FILE", help="config file (default: $DIGESTD_CONFIG, then ./digestd.toml)")
    p.add_argument("--version", action="version", version=f"digestd {_version()}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log at the config's log_level (-vv: DEBUG); without it a command logs warnings only")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    it = sub.add_parser("init", help="write a commented starter config (asks in a terminal)")
    it.add_argument("--force", action="store_true", help="replace an existing file")
    it.add_argument("--email", default="", help="where your digest goes")
    it.add_argument("--name", default="", help="your name, for the greeting")
    it.add_argument("--interests", default="", help="comma-separated topics, e.g. \"dense retrieval, RLHF\"")
    it.add_argument("--categories", default="", help="comma-separated arXiv categories (default cs.LG,cs.CL)")
    it.add_argument("--out", metavar="FILE", help="where to write it (default: --config, $DIGESTD_CONFIG, ./digestd.toml)")

    sub.add_parser("check-config", help="report every problem in the config with its key path; exit 2 when invalid")

    f = sub.add_parser("fetch", help="pull lists now")
    f.add_argument("--source", metavar="NAME", help="only this source (fetched even while it backs off)")
    f.add_argument("--date", type=_date, metavar="D", help="the list of day D (YYYY-MM-DD)")

    r = sub.add_parser("run", help="the daemon: scheduler and HTTP server")
    r.add_argument("--once", action="store_true", help="fetch, deliver every digest due by now today, exit")

    d = sub.add_parser("digest", help="render a user's digest without sending it")
    d.add_argument("user")
    d.add_argument("--date", type=_date, metavar="D")
    d.add_argument("--format", choices=["text", "html", "eml"], default="text")
    d.add_argument("--out", metavar="FILE", help="write here instead of stdout")

    s = sub.add_parser("send", help="deliver digests now")
    s.add_argument("--user", metavar="USER", help="only this user (due or not)")
    s.add_argument("--date", type=_date, metavar="D", help="the digest of day D")
    s.add_argument("--force", action="store_true", help="send again even if already sent")

    fe = sub.add_parser("feed", help="print the user's Atom feed")
    fe.add_argument("user")

    fb = sub.add_parser("feedback", help="record a vote")
    fb.add_argument("user")
    fb.add_argument("paper", help="arXiv id (any spelling) or the paper's key")
    fb.add_argument("vote", choices=["up", "down", "clear"])

    im = sub.add_parser("import", help="liked papers: arXiv ids (one a line), BibTeX, or Zotero CSV")
    im.add_argument("user")
    im.add_argument("file")

    ex = sub.add_parser("export", help="the user's data as JSON")
    ex.add_argument("user")

    st = sub.add_parser("status", help="sources, users, counts")
    st.add_argument("--json", action="store_true", help="machine-readable")

    ev = sub.add_parser("eval", help="replay evaluation of ranking methods")
    ev.add_argument("--papers", required=True, metavar="P", help="JSON lines: id, title, abstract")
    ev.add_argument("--ratings", required=True, metavar="R", help="CSV: user_id,paper_id,rating,time")
    ev.add_argument("-K", type=int, default=5, help="training positives per user (default 5)")
    ev.add_argument("-N", type=int, default=20, help="cut-off for recall and nDCG (default 20)")
    ev.add_argument("--json", metavar="F", help="write the results as JSON")
    ev.add_argument("--plot", metavar="F", help="write a PNG of recall@N for N = 1..50")
    ev.add_argument("--backend", metavar="NAME", help="ranking backend for the digestd method: auto (default: embeddings where "
                    "onnxruntime runs, else tfidf), embeddings or tfidf")
    ev.add_argument("--methods", metavar="LIST", help="comma-separated methods (default: all available)")
    ev.add_argument("--users", choices=["A", "B"], help="only one fixed half of the users (tune on A, confirm on B)")
    ev.add_argument("--cache-dir", metavar="DIR", help="where paper embeddings are kept between runs "
                    "(default: $XDG_CACHE_HOME/digestd, else ~/.cache/digestd; '' keeps none)")

    rt = sub.add_parser("rotate-feed-token", help="replace the user's private feed URL")
    rt.add_argument("user")

    fu = sub.add_parser("feed-url", help="print one user's private feed URL (a secret: whoever has it reads the feed)")
    fu.add_argument("user")

    sub.add_parser("rotate-secret-key", help="write a new link-signing key: every link sent so far and every "
                   "feed URL stop working")

    sub.add_parser("migrate", help="apply schema migrations (`run` applies them itself at start)")
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("digestd")
    except PackageNotFoundError:
        return "dev"


def _init(args) -> int:
    from pathlib import Path

    from .config import config_path, parse_config
    from .onboarding import Answers, ask, check, split_list, starter_config, write

    out = Path(args.out) if args.out else config_path(args.config)
    answers = Answers(email=args.email, name=args.name, interests=split_list(args.interests),
                      categories=split_list(args.categories))
    if out.exists() and not args.force:
        write(out, "", force=False)               # the one clear error, before any question
    if sys.stdin.isatty() and sys.stdout.isatty():
        answers = ask(answers, input)
    text = starter_config(check(answers))
    parse_config(text, config_dir=out.parent.resolve())   # never write a config check-config would refuse
    write(out, text, force=args.force)
    print(f"wrote {out}; next: digestd --config {out} check-config, then digestd --config {out} run")
    return EXIT_OK


def _write(text: str | bytes, out: str | None) -> None:
    if out:
        mode = "wb" if isinstance(text, bytes) else "w"
        with open(out, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
            fh.write(text)
    elif isinstance(text, bytes):
        sys.stdout.buffer.write(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _print_status(st: dict) -> None:
    from .safety import shown

    print(f"database: {st['database']}")
    print("sources:")
    for s in st["sources"]:
        state = ("disabled" if not s["enabled"] else f"ERROR x{s['error_count']}" if s["last_error"]
                 else "ok" if s["last_success"] else "never")
        print(f"  {s['name']:<14} {s['type']:<8} {state:<10} last success: {s['last_success'] or 'never'}"
              f" ({s['last_count'] if s['last_count'] is not None else '-'} papers)")
        if s["last_error"]:
            # Server text: escape codes stripped, credentials in URLs redacted.
            print(f"  {'':<14} last error at {s['last_error_at']}: {shown(s['last_error'])}; next try {s['next_retry']}")
    print("users:")
    for u in st["users"]:
        flags = [] if u["active"] else ["removed from config"]
        if not u["subscribed"]:
            flags.append("unsubscribed")
        last = f"{u['last_digest']} {u['last_status']}" if u["last_digest"] else "no digest yet"
        print(f"  {u['id']:<14} last digest: {last}; profile trained: {u['profile_trained_at'] or 'never'}"
              + (f" [{', '.join(flags)}]" if flags else ""))
        if u["last_error"] and u["last_status"] in ("failed", "retry"):
            print(f"  {'':<14} error: {shown(u['last_error'])}")
    print("counts: " + ", ".join(f"{k} {v}" for k, v in st["counts"].items()))


# Digest outcomes that leave a reader without today's digest (for now): a non-zero exit.
NOT_DELIVERED = ("retry", "failed", "in-progress")
_STATE_WORDS = {"retry": "pending retry", "failed": "FAILED", "already": "already sent",
                "in-progress": "pending (another process is delivering it)"}


def _digest_state(d) -> str:
    word = _STATE_WORDS.get(d.status, d.status)
    if d.status == "already" and d.message_id:
        word += f" as {d.message_id}"
    return word


def run_summary(fetched, delivered) -> tuple[str, bool]:
    """The one-line summary of `run --once`, and whether everything worked: every source fetched
    (one still backing off from an earlier failure counts as failed) and every due digest delivered."""
    failed = [o.source for o in fetched if o.error or o.skipped]
    ok_sources = len({o.source for o in fetched if not (o.error or o.skipped)})
    sent = sum(d.status == "sent" for d in delivered)
    pending = sum(d.status in ("retry", "in-progress") for d in delivered)
    bad = sum(d.status == "failed" for d in delivered)
    other: dict[str, int] = {}
    for d in delivered:
        if d.status not in ("sent", "retry", "in-progress", "failed"):
            word = _STATE_WORDS.get(d.status, d.status)
            other[word] = other.get(word, 0) + 1
    line = (f"summary: sources {ok_sources} ok, {len(set(failed))} failed"
            + (f" ({', '.join(dict.fromkeys(failed))})" if failed else "")
            + f"; digests {sent} sent, {pending} pending, {bad} failed"
            + "".join(f", {n} {word}" for word, n in other.items()))
    return line, not failed and not pending and not bad


def status_problems(st: dict) -> list[str]:
    """What `status` calls not ok: an enabled source whose last fetch failed, a digest that failed."""
    out = [f"source {s['name']} failing" for s in st["sources"] if s["enabled"] and s["last_error"]]
    out += [f"digest of {u['id']} ({u['last_digest']}) {u['last_status']}" for u in st["users"]
            if u.get("active", True) and u["last_status"] == "failed"]
    return out


def _limit_blas_threads() -> None:
    # On small machines OpenBLAS's thread pool fights the daemon's own threads: a QR step of the
    # topic model measured 7x slower with the default pool than with one thread. Must run before
    # numpy is imported; an explicit setting in the environment wins.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def main(argv: list[str] | None = None) -> int:
    _limit_blas_threads()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        if args.command == "check-config" and e.problems:
            n = len(e.problems)
            print(f"digestd: {n} problem{'s' if n > 1 else ''} in {e.path or 'the config'}", file=sys.stderr)
        return EXIT_USAGE
    except DigestdError as e:
        print(f"digestd: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:   # a file named on the command line, say: what and where, in one line
        print(f"digestd: error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:
        # A bug: still one line for the operator; DIGESTD_TRACEBACK=1 shows where.
        if os.environ.get("DIGESTD_TRACEBACK"):
            raise
        print(f"digestd: internal error: {type(e).__name__}: {e} (set DIGESTD_TRACEBACK=1 for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR


def _dispatch(args) -> int:
    if args.command == "init":
        return _init(args)
    if args.command == "eval":
        from .evaluate import run as run_eval

        methods = args.methods.split(",") if args.methods else None
        return run_eval(args.papers, args.ratings, k=args.K, n=args.N, json_path=args.json, plot_path=args.plot,
                        backend=args.backend, methods=methods, users=args.users, cache_dir=args.cache_dir)

    from .config import load_config
    from .logs import setup_logging

    settings = load_config(args.config, ignore=("digestd.secret_key_file",) if args.command == "rotate-secret-key" else ())
    if args.command == "check-config":
        from .config import config_path

        print(f"{config_path(args.config)}: ok ({len(settings.sources)} sources, {len(settings.users)} users)")
        return EXIT_OK
    daemon = args.command == "run" and not args.once
    # A command's own output says what happened; its log lines are for when something goes wrong.
    if daemon or args.verbose == 1:
        level = settings.digestd.log_level
    elif args.verbose:
        level = "DEBUG"
    else:
        level = max("WARNING", settings.digestd.log_level, key=_LEVELS.index)
    setup_logging(level)

    from .app import build_app

    if args.command == "rotate-secret-key":
        return _rotate_secret_key(settings)
    if args.command == "migrate":
        from .store import migrate_store

        before, after = migrate_store(settings.database_url)
        print(f"database {after.url}: " + (f"schema revision {after.head}, nothing to do" if before.up_to_date
                                            else f"{before.describe()}; migrated to revision {after.current}"))
        return EXIT_OK
    if args.command == "run" and not args.once:
        from .daemon import serve

        return serve(settings, config_file=args.config)  # the path SIGHUP reads again

    # `run` brings the schema up to date itself; the other commands only set up an empty database
    # and otherwise say to run `digestd migrate`.
    app = build_app(settings, migrate=args.command == "run")
    try:
        return _command(app, args)
    finally:
        app.close()


def _rotate_secret_key(settings) -> int:
    """Before the app is built: a key that is too short or unreadable is what this command replaces."""
    from . import links
    from .app import build_app
    from .tokens import rotate_secret

    path = settings.secret_key_path
    rotate_secret(path)
    app = build_app(settings)
    try:
        links.rehash_feed_tokens(app)
    finally:
        app.close()
    print(f"wrote a new secret key to {path}. This invalidates:\n"
          "  - every 👍/👎 feedback link and every unsubscribe link in mail sent so far (they get a 'not valid' page;\n"
          "    readers unsubscribe from the next digest's link)\n"
          "  - every reader's private feed URL and profile URL (print the new one with `digestd feed-url USER`)\n"
          "Restart a running `digestd run`: until then it signs with the old key.")
    return EXIT_OK


def _command(app, args) -> int:
    from . import accounts, feeds, links, pipeline

    cmd = args.command
    if cmd == "fetch":
        from .progress import steps

        def report(done) -> None:
            for o in done:
                if o.error:
                    print(f"{o.source}: ERROR {o.error}", file=sys.stderr)
                elif o.skipped:
                    progress.say(f"{o.source}: skipped ({o.skipped})")
                else:
                    progress.say(f"{o.source} {o.day}: {o.papers} papers, {o.new_papers} new"
                                 + (" (not modified)" if o.not_modified else ""))
            progress.advance()

        total = 1 if args.source else sum(s.enabled for s in app.settings.sources)
        with steps(total, "fetching lists") as progress:
            outcomes = pipeline.fetch_all(app, only=args.source, day=args.date, on_source=report)
        # Any failed source fails the command: a cron job must notice a list that stopped coming.
        return EXIT_ERROR if any(o.error for o in outcomes) else EXIT_OK
    if cmd == "run":
        fetched, delivered = pipeline.run_once(app)
        for o in fetched:
            if o.error:
                print(f"fetch {o.source}: ERROR {o.error}", file=sys.stderr)
            elif o.skipped:
                print(f"fetch {o.source}: skipped ({o.skipped})", file=sys.stderr)
            else:
                print(f"fetch {o.source} {o.day}: {o.papers} papers ({o.new_papers} new)")
        for d in delivered:
            print(f"digest {d.user} {d.day}: {_digest_state(d)}" + (f", {d.papers} papers" if d.papers else "")
                  + (f" ({d.error})" if d.error else ""))
        if app.settings.smtp is None:
            print(f"mail: Maildir {app.settings.outbox_dir}")
        line, ok = run_summary(fetched, delivered)
        print(line, file=sys.stdout if ok else sys.stderr)
        return EXIT_OK if ok else EXIT_ERROR
    if cmd == "digest":
        from .render import build_message, render_html, render_text

        v = pipeline.preview(app, args.user, args.date)
        if args.format == "text":
            _write(render_text(v), args.out)
        elif args.format == "html":
            _write(render_html(v), args.out)
        else:
            msg = build_message(v, from_addr=app.from_addr, message_id=f"<preview.{v.user_id}.{v.day}@{app.host}>",
                                date=app.clock.now(), list_id=app.list_id)
            _write(msg.as_bytes(), args.out)
        return EXIT_OK
    if cmd == "send":
        outcomes = pipeline.deliver_due(app, only_user=args.user, day=args.date, force=args.force)
        if not outcomes:
            print("no digest is due now")
        bad = 0
        for d in outcomes:
            hint = {"already": " (use --force to send again)", "failed": " (use --force to try again)"}.get(d.status, "")
            print(f"{d.user} {d.day}: {_digest_state(d)}" + (f", {d.papers} papers" if d.papers else "")
                  + (f" ({d.error})" if d.error else "") + hint)
            bad += d.status in NOT_DELIVERED
        return EXIT_ERROR if bad else EXIT_OK
    if cmd == "feed":
        _write(feeds.feed_xml(app, args.user), None)
        return EXIT_OK
    if cmd == "feedback":
        key = accounts.apply_feedback(app, args.user, args.paper, args.vote, via="cli")
        print(f"{args.user}: {args.vote} {key}")
        return EXIT_OK
    if cmd == "import":
        from .progress import steps

        with steps(0, f"importing {args.file}") as progress:
            res = accounts.import_liked(app, args.user, args.file, on_start=progress.set_total,
                                        on_paper=progress.advance)
        print(f"{args.user}: imported {res['imported']} liked papers from {args.file}")
        if res["without_text"]:
            print(f"{res['without_text']} of them have no title or abstract yet"
                  + (f" (arXiv lookup failed: {res['lookup_error']})" if res["lookup_error"] else "")
                  + "; they count once digestd sees them in a list or a later lookup succeeds")
        return EXIT_OK
    if cmd == "export":
        print(json.dumps(accounts.export_user(app, args.user), indent=2, ensure_ascii=False))
        return EXIT_OK
    if cmd == "status":
        st = accounts.status(app)
        problems = status_problems(st)
        if args.json:
            print(json.dumps({**st, "ok": not problems, "problems": problems}, indent=2))
        else:
            print("digestd: " + ("ok" if not problems else "NOT OK: " + "; ".join(problems)))
            _print_status(st)
        return EXIT_ERROR if problems else EXIT_OK
    if cmd == "feed-url":
        print(links.feed_url(app, links.feed_token(app, app.reader(args.user).id)))
        return EXIT_OK
    if cmd == "rotate-feed-token":
        print(links.rotate_feed_token(app, args.user))
        return EXIT_OK
    raise AssertionError(cmd)


if __name__ == "__main__":
    sys.exit(main())
