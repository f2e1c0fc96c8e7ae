"""`digestd run`: one process with the scheduler and the HTTP server.

Threads: APScheduler runs the jobs in two small pools (fetches apart, so a slow list never delays
a digest); uvicorn serves in its own thread; the main thread only waits for signals. Signals are
blocked everywhere and taken with sigtimedwait in the main thread, so no handler ever runs in the
middle of a lock and every thread sees one orderly shutdown.

What guarantees "exactly one digest per user per day" is not this module but the (user, day) claim
in the database (`store.claim_digest`): a double fire, an overlapping sweep, a restart or a second
process all find the row taken.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import threading
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from . import pipeline
from .app import App, build_app, default_mailer_factory
from .config import Settings, config_path, load_config
from .errors import ConfigError, DigestdError
from .http_server import HttpThread, bind
from .logs import get_logger, setup_logging
from .schedule import next_fire_times, source_trigger, user_trigger

log = get_logger("digestd.daemon")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
HANDLED = STOP_SIGNALS | {signal.SIGHUP}
# A process that is not the scheduler asks for the scheduler lock this often: when the scheduler
# dies, another process fetches within this many seconds (the database frees a dead session's lock
# at once). The holder uses the same beat to check that its lock's session is still alive.
SCHEDULER_LOCK_SECONDS = 15


class Daemon:
    """The scheduler side of `run`: jobs for sources, users and the periodic sweep, and reload."""

    def __init__(self, app: App, config_file: Path | None = None, *, own_mailer: bool = True) -> None:
        self.app = app
        self.config_file = config_file
        # A mailer injected by a test survives a reload; the one built from the config is rebuilt.
        self.own_mailer = own_mailer
        self.stopping = threading.Event()
        self.startup_done = threading.Event()
        self._catch_up: threading.Thread | None = None
        self.announce = False       # serve() turns on the lines for a person watching the terminal
        self._fetch_locks: dict[str, threading.Lock] = {}
        self._pass_lock = threading.Lock()
        self._pass_wanted = threading.Event()
        # Fetching happens once per site, not once per process: only the holder of this lock fetches
        # (on PostgreSQL; on SQLite the one process always holds it). Every process delivers.
        self.scheduler_lock = app.store.scheduler_lock(app.worker_id)
        self.scheduler = BackgroundScheduler(
            timezone=dt.timezone.utc,
            executors={"default": ThreadPoolExecutor(4), "fetch": ThreadPoolExecutor(2)},
            # coalesce: after a suspend, one run, not one per missed fire. No grace limit: a late
            # digest is still due (schedule.due_day decides), and the claim stops a repeat.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    # -- jobs --------------------------------------------------------------------------------------
    def _guard(self, what: str, fn, **ids) -> None:
        if self.stopping.is_set():
            return
        try:
            fn()
        except ConfigError as e:  # the operator's to fix, not a bug: one line, and /healthz says so
            self.app.config_problem = str(e).splitlines()[0]
            log.error("%s stopped, the config needs fixing (digests stay pending): %s", what, e, extra=ids)
        except Exception as e:  # one failing job must never take the scheduler down
            log.exception("%s failed: %s", what, e, extra=ids)

    @property
    def is_scheduler(self) -> bool:
        return self.scheduler_lock.held

    def hold_scheduler_lock(self) -> None:
        """Every ``SCHEDULER_LOCK_SECONDS``: take the scheduler lock when it is free (the scheduler
        died or stopped), or check that ours still holds. A process that takes it over fetches what
        the schedule says is owed, as a restarted process would."""
        was = self.is_scheduler
        now = self.scheduler_lock.acquire()
        if now and not was:
            log.info("this process is the scheduler now: it fetches the sources (%s)", self.app.worker_id)
            if self.announce:
                say("scheduler: this process fetches the sources")
            if self.startup_done.is_set():
                self._guard("catch-up fetches", self._catch_up_fetches)
        elif was and not now:
            log.warning("no longer the scheduler; another process fetches (%s)", self.app.worker_id)

    def _catch_up_fetches(self) -> None:
        for name in self.missed_fetches(self.app.clock.now()):
            if self.stopping.is_set():
                return
            self.fetch(name)

    def fetch(self, name: str) -> None:
        src = self.app.settings.source(name)
        if src is None or not src.enabled:
            return
        if not self.is_scheduler:
            # Free (the scheduler just died, or this daemon was never started): take it now.
            if not self.scheduler_lock.acquire():
                log.debug("fetch left to the scheduler process", extra={"source": name})
                return
            log.info("this process is the scheduler now: it fetches the sources (%s)", self.app.worker_id)
        # The cron job, the catch-up and the sweep may all reach for one source at once; one fetch
        # at a time per source is enough, the others have nothing to add.
        lock = self._fetch_locks.setdefault(name, threading.Lock())
        if not lock.acquire(blocking=False):
            log.info("fetch already running", extra={"source": name})
            return
        try:
            outcomes: list[pipeline.FetchOutcome] = []
            self._guard("fetch", lambda: outcomes.extend(pipeline.fetch_source(self.app, src)), source=name)
        finally:
            lock.release()
        if any(o.new_papers for o in outcomes):
            # Featurise (with the embeddings backend: encode) the new papers now, off the send path.
            listed = [k for o in outcomes for k in o.listed]
            self._guard("new vectors", lambda: pipeline.vectors_after_fetch(self.app, listed), source=name)

    def keyword_vectors(self) -> None:
        """Encode and keep the readers' keywords that have no vector yet, then let the encoder go:
        at start and after a reload, the times a daemon's readers' keywords change, so the next
        delivery pass reads them back rather than running the model."""
        def run():
            try:
                pipeline.encode_keywords(self.app)
            finally:
                pipeline.release_encoder(self.app)
        self._guard("keyword vectors", run)

    def missed_fetches(self, now: dt.datetime) -> list[str]:
        """Sources to fetch on start: never fetched, backoff over, or a scheduled fetch that fell
        into the downtime (the list published meanwhile should be in the next digest)."""
        names = [s.name for s in pipeline.sources_to_fetch(self.app, now, never_succeeded=True)]
        states = self.app.store.all_source_states()
        for src in self.app.settings.sources:
            st = states.get(src.name)
            if not src.enabled or src.name in names or st is None or st.last_success_at is None:
                continue
            due = source_trigger(src).get_next_fire_time(None, st.last_success_at + dt.timedelta(seconds=1))
            if due is not None and due <= now:
                names.append(src.name)
        return names

    def deliver(self, user_id: str | None = None) -> None:
        """A reader's send time came (or the sweep found work): run one pass over everyone owed now.
        Fires that land while a pass runs are folded into one more pass after it, so 10,000 readers
        due at 07:30 make two passes, not 10,000."""
        self._pass_wanted.set()
        if not self._pass_lock.acquire(blocking=False):
            return
        try:
            while self._pass_wanted.is_set() and not self.stopping.is_set():
                self._pass_wanted.clear()
                self._guard("delivery", self._deliver_all, **({"user": user_id} if user_id else {}))
        finally:
            self._pass_lock.release()

    def sweep(self) -> None:
        """Every few minutes: sources whose backoff ran out, digests due for a retry or still owed."""
        def run():
            for src in pipeline.sources_to_fetch(self.app, self.app.clock.now(), never_succeeded=False):
                if self.stopping.is_set():
                    return
                self.fetch(src.name)
            self.deliver()
        self._guard("sweep", run)

    def startup(self) -> None:
        """Catch up after downtime: lists never fetched, then the digests due earlier today.
        Older missed days need nothing here: the next digest covers everything since the last one."""
        outcomes: list[pipeline.DeliveryOutcome] = []

        def run():
            if self.is_scheduler:
                self._catch_up_fetches()
            self.keyword_vectors()
            with self._pass_lock:
                outcomes.extend(self._deliver_all())
        try:
            self._guard("catch-up", run)
        finally:
            log.info("catch-up done")
            self.startup_done.set()
        if outcomes and self.announce:
            say("caught up: " + ", ".join(f"{o.user} {o.status}" for o in outcomes))

    def _deliver_all(self) -> list[pipeline.DeliveryOutcome]:
        try:
            outcomes = pipeline.deliver_pending(self.app, should_stop=self.stopping.is_set)
        finally:
            pipeline.release_encoder(self.app)    # if a digest needed it (an unencoded paper): not all day
        self.app.config_problem = None
        for o in outcomes:
            _log_outcome(o)
        return outcomes

    def install_jobs(self) -> None:
        """Make the scheduler's jobs match the settings (on start and after every reload)."""
        settings = self.app.settings
        wanted: dict[str, dict] = {}
        for src in settings.sources:
            if src.enabled:
                wanted[f"fetch:{src.name}"] = dict(func=self.fetch, trigger=source_trigger(src), args=[src.name],
                                                   executor="fetch", name=f"fetch {src.name}")
        for user in settings.users:
            trig = user_trigger(user)
            if trig is not None:
                wanted[f"digest:{user.id}"] = dict(func=self.deliver, trigger=trig, args=[user.id],
                                                   name=f"digest {user.id}")
        wanted["sweep"] = dict(func=self.sweep, trigger=IntervalTrigger(seconds=settings.digestd.sweep_seconds),
                               name="sweep")
        if self.scheduler_lock.postgres:    # on SQLite the one process always holds it
            wanted["scheduler-lock"] = dict(func=self.hold_scheduler_lock, executor="fetch", name="scheduler lock",
                                            trigger=IntervalTrigger(seconds=SCHEDULER_LOCK_SECONDS))
        for job in self.scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
        for job_id, spec in wanted.items():
            self.scheduler.add_job(id=job_id, replace_existing=True, **spec)

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if self.scheduler_lock.acquire():
            log.info("this process is the scheduler: it fetches the sources (%s)", self.app.worker_id)
        else:
            log.info("another process is the scheduler; this one delivers and serves (%s)", self.app.worker_id)
        self.install_jobs()
        self.scheduler.start()
        # The catch-up runs once, beside the scheduler rather than as a one-shot job in it: APScheduler
        # removes a finished one-shot job itself, and that removal raced with our job sync and
        # killed the scheduler's thread (JobLookupError 'startup').
        self._catch_up = threading.Thread(target=self.startup, name="digestd-catch-up", daemon=True)
        self._catch_up.start()

    def stop(self) -> None:
        """Stop taking new work, and wait for the jobs running now: a message being handed over is
        finished (or put back to `retry` by the pass), never cut in half."""
        self.stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self._catch_up is not None:
            self._catch_up.join()
        # Free the lock now rather than when the connection goes: another process fetches sooner.
        self.scheduler_lock.release()

    def next_digest(self, user_id: str) -> dt.datetime | None:
        job = self.scheduler.get_job(f"digest:{user_id}")
        return getattr(job, "next_run_time", None) if job else None

    def reload(self) -> bool:
        """SIGHUP: read the same config file again. Invalid: log every problem, keep the old one."""
        if self.config_file is None:
            log.error("config reload: no config file to read")
            return False
        try:
            new = load_config(str(self.config_file))
        except ConfigError as e:
            for line in str(e).splitlines():
                log.error("config reload refused, still running on the previous config: %s", line)
            return False
        old = self.app.settings
        for what, before, after in (("database_url", old.database_url, new.database_url),
                                    ("listen", old.digestd.listen, new.digestd.listen),
                                    ("secret_key_file", old.secret_key_path, new.secret_key_path)):
            if before != after:
                log.warning("config reload: %s changed; that takes effect after a restart", what)
        added, changed, removed = self.app.store.sync_users(new.users, self.app.clock.now())
        self.app.settings = new
        if self.own_mailer:
            self.app.mailer_factory = default_mailer_factory(new)
        setup_logging(new.digestd.log_level)
        self.install_jobs()
        log.info("config reloaded: users added %s, changed %s, removed %s; %d sources",
                 added or "none", changed or "none", removed or "none", len(new.sources))
        for uid in added:
            say(f"{uid} added; their private feed URL: digestd feed-url {uid}")
        # A user added or moved to an earlier send_at may already be owed today's digest; new
        # keywords are encoded first, so that pass does not run the model.
        self.scheduler.add_job(self._after_reload, id="sweep-after-reload", replace_existing=True,
                               next_run_time=self.app.clock.now())
        return True

    def _after_reload(self) -> None:
        self.keyword_vectors()
        self.sweep()


def _log_outcome(o: pipeline.DeliveryOutcome) -> None:
    # The pass already logs sends and failures; the quiet outcomes are worth a line too.
    if o.status not in ("sent", "retry", "failed"):
        log.info("digest %s: %s", o.day, o.status, extra={"user": o.user})


def say(line: str) -> None:
    """What a person starting `digestd run` needs to see, on stdout (logs go to stderr)."""
    print(f"digestd: {line}", flush=True)


def _describe_mail(settings: Settings) -> str:
    if settings.smtp is None:
        return f"mail goes to the Maildir {settings.outbox_dir.resolve()}/new"
    s = settings.smtp
    return f"mail goes to SMTP {s.host}:{s.port} ({s.security}) from {s.from_}"


def _announce(daemon: Daemon, listen: str) -> None:
    app = daemon.app
    settings = app.settings
    say(f"listening on http://{listen} (links use {settings.digestd.base_url})")
    say(_describe_mail(settings))
    # Never the feed URLs themselves: stdout is the journal under systemd, and a feed URL is a
    # reader's secret. `digestd feed-url USER` prints one when asked.
    for user in settings.users:
        trig = user_trigger(user)
        nxt = next(iter(next_fire_times(trig, app.clock.now())), None) if trig else None
        when = nxt.strftime("%a %Y-%m-%d %H:%M %Z") if nxt else "never (no days set)"
        mail = "" if "email" in user.formats else " (feed only)"
        say(f"{user.id}: next digest {when}{mail}")
    if settings.users:
        say("a reader's private feed URL: digestd feed-url USER")


def serve(settings: Settings, config_file: str | os.PathLike | None = None) -> int:
    """Run until SIGTERM or SIGINT; SIGHUP reloads the config. Returns the exit code."""
    path = Path(config_file) if config_file else config_path(None)
    path = path.resolve()
    try:
        sock = bind(settings.digestd.listen)
    except (OSError, ValueError) as e:
        print(f"digestd: error: cannot listen on {settings.digestd.listen}: {e}", file=sys.stderr)
        return 1
    try:
        app = build_app(settings)
    except DigestdError as e:
        sock.close()
        print(f"digestd: error: {e}", file=sys.stderr)
        return 1

    # Block the signals before any thread starts: threads inherit the mask, so only the main thread
    # ever takes them (below, with sigtimedwait).
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    daemon = Daemon(app, path)
    daemon.announce = True
    from .web import create_app

    http = HttpThread(create_app(app, scheduler=daemon.scheduler), sock)
    code = 0
    try:
        # The socket is bound already, so the URLs printed here answer as soon as the thread runs.
        _announce(daemon, settings.digestd.listen)
        http.start()
        daemon.start()
        while True:
            info = signal.sigtimedwait(HANDLED, 1.0)
            if info is None:
                if not http.is_alive():
                    log.error("the HTTP server stopped: %s", http.error or "unknown reason")
                    code = 1
                    break
                continue
            if info.si_signo == signal.SIGHUP:
                log.info("SIGHUP: reloading %s", path)
                daemon.reload()
                continue
            log.info("%s: shutting down", signal.Signals(info.si_signo).name)
            break
    finally:
        def shut_down():
            daemon.stop()
            if http.is_alive():
                http.stop()

        # The orderly stop runs beside the main thread, which keeps listening: a second Ctrl-C or
        # SIGTERM means "now". A claim left behind that way goes stale and is taken over later.
        stopper = threading.Thread(target=shut_down, name="digestd-stop")
        stopper.start()
        while stopper.is_alive():
            info = signal.sigtimedwait(STOP_SIGNALS, 0.5)
            if info is not None:
                log.warning("%s again: exiting without waiting for running jobs", signal.Signals(info.si_signo).name)
                os._exit(1)
        sock.close()
        app.close()
        # Signals that arrived during the stop would otherwise be delivered once unblocked.
        while signal.sigtimedwait(HANDLED, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    log.info("stopped")
    return code
