"""The one place that wires settings, clock, HTTP transport, database and mailer together."""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .clock import Clock, SystemClock
from .config import Settings
from .errors import ConfigError
from .store import Store, open_store
from .tokens import Signer, load_or_create_secret

if TYPE_CHECKING:
    import httpx


@dataclass
class App:
    settings: Settings
    store: Store
    clock: Clock
    # Builds the sources.http.HttpClient on first use of ``http``: httpx and the source parsers
    # cost a third of a second to import, and most commands (`digest`, `feed`, `status`) never fetch.
    http_factory: Callable[[], object]
    signer: Signer
    mailer_factory: Callable[[], AbstractContextManager]
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    # Derived data shared by the users of a pass (the fitted feature space); never persisted.
    cache: dict = field(default_factory=dict)
    # Seconds spent per stage of the pass (pipeline.timing.STAGES), added up for benchmarks and logs.
    timings: dict = field(default_factory=dict)
    # The embeddings backend's model (rank.embeddings.TextEncoder, onnxruntime); tests inject a fake.
    embedder_factory: Callable[[], object] | None = None
    # A configuration problem a daemon pass ran into (say, the SMTP password file went away):
    # /healthz is not ok until a delivery pass gets past it.
    config_problem: str | None = None
    _http: object | None = field(default=None, repr=False)

    @property
    def http(self):
        if self._http is None:
            self._http = self.http_factory()
        return self._http

    def embedder(self):
        if self.embedder_factory is None:
            from .rank.embeddings import load_embedder  # lazy: onnxruntime only for this backend

            return load_embedder()
        return self.embedder_factory()

    @property
    def host(self) -> str:
        return urlsplit(self.settings.digestd.base_url).hostname or "localhost"

    @property
    def from_addr(self) -> str:
        if self.settings.smtp is not None:
            return self.settings.smtp.from_
        return f"digestd <digestd@{self.host}>"

    @property
    def list_id(self) -> str:
        return f"digestd daily digest <digest.{self.host}>"

    @property
    def max_send_attempts(self) -> int:
        return self.settings.smtp.max_attempts if self.settings.smtp else 3

    def reader(self, user_id: str):
        """The configured reader ``user_id`` (config.UserSettings); a clear error when unknown or
        removed from the config."""
        from .errors import UserError

        cfg = self.settings.user(user_id)
        if cfg is None:
            self.store.get_user(user_id)  # raises "unknown user" when the id was never configured
            raise UserError(f"user {user_id!r} is no longer in the config (deactivated; their data is kept)", user=user_id)
        return cfg

    def mailer(self) -> AbstractContextManager:
        return self.mailer_factory()

    def close(self) -> None:
        self.store.dispose()
        close = getattr(self._http, "close", None)
        if close:
            close()


def default_mailer_factory(settings: Settings) -> Callable[[], AbstractContextManager]:
    def make() -> AbstractContextManager:
        from .mail import MaildirMailer, SmtpMailer

        if settings.smtp is None:
            return MaildirMailer(settings.outbox_dir)
        return SmtpMailer(settings.smtp, settings.smtp.password())
    return make


def build_app(settings: Settings, *, clock: Clock | None = None, transport: httpx.BaseTransport | None = None,
              mailer_factory: Callable[[], AbstractContextManager] | None = None, store: Store | None = None,
              sync_users: bool = True, embedder_factory: Callable[[], object] | None = None,
              migrate: bool = True) -> App:
    try:
        # Owner only, when digestd creates it: it holds the database, the signing key and the outbox.
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        why = f"cannot create {settings.data_dir}: {e.strerror or e}"
        raise ConfigError(why, [("digestd.data_dir", why)]) from e
    clock = clock or SystemClock()
    store = store or open_store(settings.database_url, migrate=migrate)
    signer = Signer(load_or_create_secret(settings.secret_key_path))

    def http():
        from .sources.http import HttpClient, HttpLimits

        f = settings.fetch
        return HttpClient(transport, user_agent=f"digestd/0.1 (+{settings.digestd.base_url})", timeout=f.timeout_seconds,
                          limits=HttpLimits(deadline=f.deadline_seconds, max_body_bytes=f.max_body_bytes,
                                            max_redirects=f.max_redirects, max_retry_after=f.max_retry_after_seconds))
    app = App(settings=settings, store=store, clock=clock, http_factory=http, signer=signer,
              mailer_factory=mailer_factory or default_mailer_factory(settings), embedder_factory=embedder_factory)
    if sync_users:
        store.sync_users(settings.users, clock.now())
    return app
