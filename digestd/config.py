"""TOML -> validated settings. Every key is declared once here, with its default and help text.

``load_config`` collects *every* problem with its key path (``users[1].timezone: ...``) and raises one
``ConfigError``; ``check-config`` prints them all.
"""
from __future__ import annotations

import functools
import os
import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .errors import ConfigError

DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _Strict(BaseModel):
    # Unknown keys are typos far more often than intent: reject them with their path.
    model_config = ConfigDict(extra="forbid")


class DigestdSettings(_Strict):
    data_dir: str = Field("var", description="Directory for the SQLite database, the Maildir outbox and the secret key; relative to the config file.")
    database_url: str = Field("", description="SQLAlchemy URL. Empty: sqlite:///<data_dir>/digestd.db. PostgreSQL: postgresql+psycopg://user@host/db.")
    base_url: str = Field("http://127.0.0.1:8080", description="Public URL of the HTTP server; absolute links in mail and feeds start with it.")
    listen: str = Field("127.0.0.1:8080", description="host:port the HTTP server of `run` listens on.")
    secret_key_file: str = Field("", description="File holding the key (at least 32 bytes) that signs feedback and unsubscribe links and feed tokens. Empty: <data_dir>/secret.key. Created (mode 0600) when missing; never replaced: too short or unreadable is an error. `digestd rotate-secret-key` writes a new one.")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    link_max_age_days: int = Field(60, ge=1, description="Feedback links in mail older than this are refused as expired.")
    sweep_seconds: int = Field(30, ge=1, le=3600, description="How often `run` looks for digests owed (retries, and claims a dead process left; those lapse 30 s after it died) and for sources whose backoff ran out.")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"must be an absolute http(s) URL, got {v!r}")
        return v.rstrip("/")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not (0 < int(port) < 65536):
            raise ValueError(f"must be host:port, got {v!r}")
        return v

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        if v.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {v!r}")
        return v.upper()


class SmtpSettings(_Strict):
    host: str = Field(..., description="SMTP server host name.")
    port: int = Field(587, ge=1, le=65535, description="SMTP port: 587 for starttls, 465 for ssl, 25 for none.")
    security: Literal["starttls", "ssl", "none"] = Field("starttls", description="starttls, ssl (implicit TLS) or none.")
    username: str = Field("", description="Login name; empty: no authentication.")
    password_env: str = Field("", description="Name of the environment variable holding the password; every command checks that it is set and not empty.")
    password_file: str = Field("", description="File holding the password (first line); relative to the config file. Every command checks that it is readable and not empty.")
    from_: str = Field(..., alias="from", description='Sender, e.g. "Paper digest <digest@example.org>".')
    timeout_seconds: float = Field(30.0, gt=0, description="Socket timeout for the SMTP conversation.")
    max_attempts: int = Field(5, ge=1, description="Attempts for a temporary failure before the digest is marked failed.")
    dkim_selector: str = Field("", description="DKIM: the selector; the public key is published at <selector>._domainkey.<dkim_domain>. Empty: mail is not signed.")
    dkim_domain: str = Field("", description="DKIM: the signing domain (d=), usually the domain of from.")
    dkim_key_file: str = Field("", description="DKIM: PEM file with the RSA private key; relative to the config file. check-config reads it.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _no_plain_password(cls, data):
        if isinstance(data, dict) and "password" in data:
            raise ValueError("never put the password in the config; use password_env or password_file")
        return data

    @model_validator(mode="after")
    def _dkim_all_or_none(self):
        given = [k for k in ("dkim_selector", "dkim_domain", "dkim_key_file") if getattr(self, k)]
        if given and len(given) < 3:
            missing = [k for k in ("dkim_selector", "dkim_domain", "dkim_key_file") if k not in given]
            raise ValueError(f"DKIM signing needs dkim_selector, dkim_domain and dkim_key_file; missing {', '.join(missing)}")
        return self

    def password(self) -> str | None:
        """The password as configured; a ``ConfigError`` naming the key when it is configured but
        unavailable (an unset variable, a missing or empty file)."""
        from .config_check import read_password

        return read_password(self)


class RankingSettings(_Strict):
    backend: Literal["auto", "tfidf", "embeddings"] = Field(
        "auto", description="auto (the default: embeddings where onnxruntime can run, else tfidf), embeddings "
        "(all-MiniLM-L6-v2 sentence embeddings joined to the corpus topics, run by onnxruntime, offline, in the "
        "default install; each paper is encoded once and its vector kept in the database) or tfidf (words and "
        "topics only; for machines where onnxruntime cannot run). See \"Which backend to use\".")

    @field_validator("backend")
    @classmethod
    def _encoder_installed(cls, v: str) -> str:
        if v == "embeddings":
            from .rank import embeddings  # finds the packages without importing them

            if not embeddings.installed():
                raise ValueError(f"'embeddings' needs {embeddings.INSTALL_HINT}")
        return v


class FetchSettings(_Strict):
    """Bounds on what any one server may make digestd wait for, read or store."""

    timeout_seconds: float = Field(30.0, gt=0, description="Connect and per-read timeout of one HTTP request.")
    deadline_seconds: float = Field(120.0, gt=0, description="Total time one HTTP request may take, however slowly the server drips its answer; then it is cut off as an error.")
    max_body_bytes: int = Field(20_000_000, ge=1024, description="Largest answer read, counted while it streams in and after decompression (a gzip bomb stops here).")
    max_redirects: int = Field(5, ge=0, le=20, description="Redirects followed; only to http(s), and never from a public host to a loopback or private address.")
    max_retry_after_seconds: int = Field(21600, ge=0, description="Longest wait a server's Retry-After may impose on a source.")
    max_entries: int = Field(2000, ge=1, description="Most papers kept from one list; the rest are logged and dropped.")
    max_title_chars: int = Field(1000, ge=10, description="Titles are cut to this many characters.")
    max_abstract_chars: int = Field(20000, ge=100, description="Abstracts are cut to this many characters (a 60 MB abstract never reaches a mail).")
    max_field_chars: int = Field(500, ge=10, description="One author name, category or other short field is cut to this many characters.")
    max_authors: int = Field(500, ge=1, description="Most authors kept for one paper.")


SourceType = Literal["hf_daily", "arxiv", "feed", "replay"]


class SourceSettings(_Strict):
    name: str = Field(..., description="Unique name; users refer to sources by it.")
    type: SourceType = Field(..., description="hf_daily, arxiv, feed or replay.")
    enabled: bool = Field(True, description="false: never fetched.")
    schedule: str = Field("", description="Cron expression (5 fields, UTC) for fetching. Empty: a default per type.")
    categories: list[str] = Field(default_factory=list, description="arxiv: categories, e.g. [\"cs.LG\", \"cs.CL\"].")
    announce_types: list[Literal["new", "cross", "replace", "replace-cross"]] = Field(
        default_factory=lambda: ["new", "cross"], description="arxiv (and replayed arXiv lists): which announce types to keep.")
    url: str = Field("", description="feed: the RSS/Atom URL. hf_daily/arxiv: override the API base URL.")
    path: str = Field("", description="replay: directory of saved lists named YYYY-MM-DD.<json|xml|atom|rss>; relative to the config file.")
    limit: int = Field(100, ge=1, le=100, description="hf_daily: page size of the API.")
    max_pages: int = Field(10, ge=1, description="hf_daily: stop paging after this many pages.")
    format: Literal["auto", "rss", "atom"] = Field("auto", description="arxiv: which rss.arxiv.org flavour to fetch (auto = atom).")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", v):
            raise ValueError(f"must be letters, digits, '-', '_' or '.', got {v!r}")
        return v

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        if v:
            # The daemon's own parser: crontab's day-of-week numbers (0 or 7 = Sunday), not APScheduler's.
            from .cron import cron_trigger

            try:
                cron_trigger(v)
            except ValueError as e:
                raise ValueError(f"not a valid cron expression {v!r}: {e}") from None
        return v

    @model_validator(mode="after")
    def _per_type(self):
        if self.type == "arxiv" and not self.categories:
            raise ValueError("type arxiv needs categories, e.g. [\"cs.LG\"]")
        if self.type == "feed" and not self.url:
            raise ValueError("type feed needs url")
        if self.type == "replay" and not self.path:
            raise ValueError("type replay needs path")
        return self


class UserSettings(_Strict):
    id: str = Field(..., description="Unique user id, used on the command line.")
    email: str = Field(..., description="Where the digest is mailed.")
    name: str = Field("", description="Display name used in the greeting.")
    timezone: str = Field("UTC", description="IANA time zone, e.g. Europe/Berlin; send_at is local time there.")
    send_at: str = Field("07:30", description="Local time HH:MM at which the digest is sent.")
    days: list[str] = Field(default_factory=lambda: DAY_NAMES[:5], description="Days the digest is sent: mon..sun.")
    digest_size: int = Field(10, ge=1, le=100, description="Most papers in one digest; a thin day gives fewer.")
    keywords: list[str] = Field(default_factory=list, description="Cold start: topics, one phrase each.")
    seed_papers: list[str] = Field(default_factory=list, description="Cold start: arXiv ids of papers the user likes.")
    authors: list[str] = Field(default_factory=list, description="Cold start: authors whose papers the user wants.")
    sources: list[str] = Field(default_factory=list, description="Names of the sources this user reads; empty: all.")
    formats: list[Literal["email", "rss"]] = Field(default_factory=lambda: ["email", "rss"], description="email, rss, or both.")
    subscribed: bool = Field(True, description="false: no mail (the feed still works). One-click unsubscribe also sets this.")
    on_empty: Literal["skip", "note"] = Field("note", description="A day with nothing relevant: skip the mail, or send a short note.")
    explore: bool = Field(True, description="Add one clearly marked exploration pick per digest.")
    min_score: float | None = Field(None, description="Papers scoring below this are left out. Empty: learned per user.")
    pin_authors: list[str] = Field(default_factory=list, description="A paper by one of these authors is always in the "
                                   "digest (first, marked pinned), whatever it scores. Matched by surname and first initial.")
    pin_keywords: list[str] = Field(default_factory=list, description="A paper whose title or abstract has one of these "
                                    "phrases is always in the digest (first, marked pinned). Case, accents and plurals are ignored.")
    exclude_keywords: list[str] = Field(default_factory=list, description="A paper whose title or abstract has one of "
                                        "these phrases is never in the digest, even when pinned.")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.@\-]+", v):
            raise ValueError(f"must be letters, digits, '-', '_', '.', '@', got {v!r}")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", v):
            raise ValueError(f"not an email address: {v!r}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like Europe/Berlin)") from None
        return v

    @field_validator("send_at")
    @classmethod
    def _send_at(cls, v: str) -> str:
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", v)
        if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
            raise ValueError(f"must be HH:MM, got {v!r}")
        return f"{int(m.group(1)):02d}:{m.group(2)}"

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        out = []
        for d in v:
            d3 = d.strip().lower()[:3]
            if d3 not in DAY_NAMES:
                raise ValueError(f"unknown day {d!r} (use mon, tue, wed, thu, fri, sat, sun)")
            out.append(d3)
        return out

    @field_validator("seed_papers")
    @classmethod
    def _seeds(cls, v: list[str]) -> list[str]:
        from .ids import bare_arxiv_id

        out = []
        for s in v:
            bare = bare_arxiv_id(s)
            if not bare:
                raise ValueError(f"not an arXiv id: {s!r}")
            out.append(bare)
        return out

    @field_validator("pin_keywords", "exclude_keywords")
    @classmethod
    def _phrases(cls, v: list[str]) -> list[str]:
        from .rank.controls import phrase_form

        for kw in v:
            if not phrase_form(kw).strip():
                raise ValueError(f"{kw!r} has no letters or digits to match")
        return [kw.strip() for kw in v]

    @field_validator("pin_authors")
    @classmethod
    def _pin_authors(cls, v: list[str]) -> list[str]:
        from .rank.controls import author_form

        for name in v:
            if not author_form(name):
                raise ValueError(f"{name!r} is not an author name")
        return [name.strip() for name in v]

    @model_validator(mode="after")
    def _pin_and_exclude(self):
        if not (self.pin_keywords and self.exclude_keywords):
            return self      # nothing to compare: every command loads the config, none should load the ranker for it
        from .rank.controls import phrase_form

        excluded = {phrase_form(kw) for kw in self.exclude_keywords}
        both = [kw for kw in self.pin_keywords if phrase_form(kw) in excluded]
        if both:
            raise ValueError(f"pin_keywords: {both[0]!r} is also in exclude_keywords (an exclusion would always win)")
        return self

    @property
    def send_hour_minute(self) -> tuple[int, int]:
        h, m = self.send_at.split(":")
        return int(h), int(m)


class Settings(_Strict):
    digestd: DigestdSettings = Field(default_factory=DigestdSettings, description="Global settings.")
    smtp: SmtpSettings | None = Field(None, description="Absent: mail goes to the Maildir <data_dir>/outbox.")
    ranking: RankingSettings = Field(default_factory=RankingSettings, description="How papers are ranked.")
    fetch: FetchSettings = Field(default_factory=FetchSettings, description="Limits on what sources may send.")
    sources: list[SourceSettings] = Field(default_factory=list, description="The lists to pull.")
    users: list[UserSettings] = Field(default_factory=list, description="The subscribers.")

    # Where the config file lives; relative paths resolve against it.
    config_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    # Line of each key in the file it was read from, for errors found after parsing.
    _lines: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_checks(self):
        problems = []
        names = [s.name for s in self.sources]
        for i, n in enumerate(names):
            if names.index(n) != i:
                problems.append(f"sources[{i}].name: duplicate source name {n!r}")
        first: dict[str, int] = {}          # id -> its first index: one pass, even for 100,000 readers
        for i, u in enumerate(self.users):
            if first.setdefault(u.id, i) != i:
                problems.append(f"users[{i}].id: duplicate user id {u.id!r}")
            for j, s in enumerate(u.sources):
                if s not in names:
                    problems.append(f"users[{i}].sources[{j}]: no source named {s!r}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # -- derived paths -------------------------------------------------------------------------
    def resolve(self, p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else (self.config_dir / path)

    @property
    def data_dir(self) -> Path:
        return self.resolve(self.digestd.data_dir)

    @property
    def database_url(self) -> str:
        return self.digestd.database_url or f"sqlite:///{self.data_dir / 'digestd.db'}"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def secret_key_path(self) -> Path:
        return self.resolve(self.digestd.secret_key_file) if self.digestd.secret_key_file else self.data_dir / "secret.key"

    def source(self, name: str) -> SourceSettings | None:
        return next((s for s in self.sources if s.name == name), None)

    def user(self, user_id: str) -> UserSettings | None:
        return self._users_by_id.get(user_id)

    @functools.cached_property
    def _users_by_id(self) -> dict[str, UserSettings]:
        # Asked once per reader by a pass over 10,000 of them, and on every feed request.
        return {u.id: u for u in self.users}

    def user_sources(self, user: UserSettings) -> list[str]:
        return user.sources or [s.name for s in self.sources]


def _key_tables() -> dict:
    """Each table's model, by the key path of the table, for "did you mean" on an unknown key."""
    return {"": Settings, "digestd": DigestdSettings, "smtp": SmtpSettings, "ranking": RankingSettings,
            "sources": SourceSettings, "users": UserSettings}


def parse_config(text: str, *, config_dir: Path | None = None, path: str | None = None) -> Settings:
    from .config_check import cross_checks, key_lines, problems_from

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("invalid TOML", [("", f"invalid TOML: {e}")], path=path) from e
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        # The schema's cross-checks wait for every field to be valid; these do not.
        crossed = cross_checks(data)
        problems = [p for p in problems_from(e, _key_tables())
                    if not p[1].startswith(("duplicate ", "no source named "))]
        problems = list(dict.fromkeys(problems + crossed))
        raise ConfigError("invalid config", problems, path=path, lines=key_lines(text)) from e
    settings.config_dir = (config_dir or Path.cwd()).resolve()
    if settings.smtp is not None:
        # Like every path in the file, relative to the config file (not to where digestd was started).
        for key in ("password_file", "dkim_key_file"):
            if getattr(settings.smtp, key):
                setattr(settings.smtp, key, str(settings.resolve(getattr(settings.smtp, key))))
    settings._lines = key_lines(text)
    return settings


def config_path(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get("DIGESTD_CONFIG") or "digestd.toml")


def load_config(explicit: str | None = None, *, ignore: tuple[str, ...] = ()) -> Settings:
    """``ignore``: key paths whose run-time problems the command itself repairs
    (`rotate-secret-key` replaces a key file that is too short)."""
    path = config_path(explicit)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}", [("", "file not found (pass --config FILE or set DIGESTD_CONFIG)")], path=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}", [("", f"cannot read: {e}")], path=str(path)) from e
    from .config_check import runtime_problems

    # What `run` needs from outside the file is checked for every command, and listed beside the
    # schema's problems: check-config names every problem at once.
    try:
        settings = parse_config(text, config_dir=path.parent, path=str(path))
    except ConfigError as e:
        if e.lines:   # the TOML parsed; only the schema found problems
            e.problems += runtime_problems(tomllib.loads(text), path.parent.resolve())
        raise
    problems = [p for p in runtime_problems(tomllib.loads(text), settings.config_dir) if p[0] not in ignore]
    if problems:
        raise ConfigError("config cannot run", problems, path=str(path), lines=settings._lines)
    return settings


def documented_keys() -> dict[str, dict[str, str]]:
    """Every settable key with its help text, per table; README completeness is tested against it."""
    out: dict[str, dict[str, str]] = {}
    for table, model in (("digestd", DigestdSettings), ("smtp", SmtpSettings), ("ranking", RankingSettings),
                         ("fetch", FetchSettings), ("sources", SourceSettings), ("users", UserSettings)):
        out[table] = {(f.alias or name): (f.description or "") for name, f in model.model_fields.items()}
    return out
