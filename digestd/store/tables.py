"""SQLModel tables. Times are stored as naive UTC and come back timezone-aware (UTC)."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator):
    """SQLite keeps no time zone; store naive UTC everywhere and hand back aware datetimes."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc)


def dialect_insert(engine: sa.Engine):
    """The INSERT of the engine's dialect, which knows ON CONFLICT (upserts; claims)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _utc(nullable: bool = True, index: bool = False):
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


class Paper(SQLModel, table=True):
    __tablename__ = "papers"
    key: str = Field(primary_key=True, max_length=512)
    arxiv_id: str | None = Field(default=None, index=True, max_length=64)
    version: int | None = None
    title: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    abstract: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    authors_json: str = Field(default="[]", sa_column=sa.Column(sa.Text, nullable=False, server_default="[]"))
    categories_json: str = Field(default="[]", sa_column=sa.Column(sa.Text, nullable=False, server_default="[]"))
    url: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    pdf_url: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    published_at: dt.datetime | None = _utc()
    upvotes: int | None = None
    extra_json: str = Field(default="{}", sa_column=sa.Column(sa.Text, nullable=False, server_default="{}"))
    first_seen_at: dt.datetime | None = _utc(index=True)
    updated_at: dt.datetime | None = _utc()


class Listing(SQLModel, table=True):
    """A paper appeared in one source's list for one day."""

    __tablename__ = "listings"
    __table_args__ = (sa.UniqueConstraint("paper_key", "source", "day", name="uq_listing"),)
    id: int | None = Field(default=None, primary_key=True)
    paper_key: str = Field(foreign_key="papers.key", index=True, max_length=512)
    source: str = Field(index=True, max_length=128)
    day: dt.date = Field(index=True)
    announce_type: str | None = Field(default=None, max_length=32)
    seen_at: dt.datetime | None = _utc(nullable=False, index=True)


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: str = Field(primary_key=True, max_length=128)
    email: str = Field(max_length=320)
    timezone: str = Field(default="UTC", max_length=64)
    active: bool = True              # false: removed from the config; kept with their feedback
    subscribed: bool = True          # false: unsubscribed (by link or config); no mail
    unsubscribed_via_link: bool = False
    settings_json: str = Field(default="{}", sa_column=sa.Column(sa.Text, nullable=False, server_default="{}"))
    feed_nonce: str | None = Field(default=None, max_length=128)
    feed_token_hash: str | None = Field(default=None, index=True, max_length=128)
    created_at: dt.datetime | None = _utc()
    updated_at: dt.datetime | None = _utc()
    unsubscribed_at: dt.datetime | None = _utc()
    paused_until: dt.date | None = None   # no mail for days before this one (a holiday); the feed goes on


class Feedback(SQLModel, table=True):
    """The one current vote of a user on a paper."""

    __tablename__ = "feedback"
    user_id: str = Field(foreign_key="users.id", primary_key=True, max_length=128)
    paper_key: str = Field(foreign_key="papers.key", primary_key=True, max_length=512)
    vote: int                        # +1 up, -1 down
    via: str = Field(default="cli", max_length=16)
    at: dt.datetime | None = _utc(nullable=False)


class FeedbackEvent(SQLModel, table=True):
    """Every vote ever given, including clears: the history behind ``Feedback``."""

    __tablename__ = "feedback_events"
    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(index=True, max_length=128)
    paper_key: str = Field(max_length=512)
    vote: str = Field(max_length=8)  # up / down / clear
    via: str = Field(default="cli", max_length=16)
    at: dt.datetime | None = _utc(nullable=False)


class Digest(SQLModel, table=True):
    """One user's digest for one local day. The unique (user, day) row is the claim that prevents double sends."""

    __tablename__ = "digests"
    __table_args__ = (sa.UniqueConstraint("user_id", "day", name="uq_digest_user_day"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="users.id", index=True, max_length=128)
    day: dt.date
    # claimed -> sent | empty | skipped | retry | failed  (retry -> claimed again)
    status: str = Field(default="claimed", max_length=16)
    claimed_at: dt.datetime | None = _utc()
    claimed_by: str | None = Field(default=None, max_length=128)
    # A claim is a lease: the pass that holds it renews it while it works; once it lapses (the
    # process died) the next pass takes the digest over and delivers it, whatever its day.
    lease_until: dt.datetime | None = _utc()
    covers_from: dt.datetime | None = _utc()
    covers_until: dt.datetime | None = _utc()
    sent_at: dt.datetime | None = _utc()
    message_id: str | None = Field(default=None, max_length=255)
    attempts: int = 0
    next_attempt_at: dt.datetime | None = _utc()
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    note: str | None = Field(default=None, sa_column=sa.Column(sa.Text))


class DigestItem(SQLModel, table=True):
    __tablename__ = "digest_items"
    __table_args__ = (sa.UniqueConstraint("digest_id", "paper_key", name="uq_digest_item"),)
    id: int | None = Field(default=None, primary_key=True)
    digest_id: int = Field(foreign_key="digests.id", index=True)
    user_id: str = Field(index=True, max_length=128)
    paper_key: str = Field(foreign_key="papers.key", max_length=512)
    position: int
    score: float
    reason: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    highlight: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    explore: bool = False
    pinned: bool = False               # put there by the reader's pin_authors / pin_keywords


class SourceState(SQLModel, table=True):
    __tablename__ = "source_state"
    name: str = Field(primary_key=True, max_length=128)
    etag: str | None = Field(default=None, max_length=512)
    last_modified: str | None = Field(default=None, max_length=128)
    last_attempt_at: dt.datetime | None = _utc()
    last_success_at: dt.datetime | None = _utc()
    last_count: int | None = None
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    last_error_at: dt.datetime | None = _utc()
    error_count: int = 0
    next_retry_at: dt.datetime | None = _utc()


class Profile(SQLModel, table=True):
    """A trained user model, kept so that only users with new votes are retrained."""

    __tablename__ = "profiles"
    user_id: str = Field(foreign_key="users.id", primary_key=True, max_length=128)
    fingerprint: str = Field(max_length=128)
    trained_at: dt.datetime | None = _utc()
    model: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


class PaperEmbedding(SQLModel, table=True):
    """A paper's sentence embedding (the ``embeddings`` ranking backend), computed once per model.
    A cache: no foreign key, so a vector never blocks anything, and ``text_hash`` (of the text the
    model read) makes an abstract filled in later count as new."""

    __tablename__ = "paper_embeddings"
    paper_key: str = Field(primary_key=True, max_length=512)
    model: str = Field(primary_key=True, max_length=128)
    text_hash: str = Field(max_length=64)
    dim: int
    vector: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))   # float32, little-endian


class FittedSpace(SQLModel, table=True):
    """The fitted feature space of one ranking backend, so a restart (or a one-off `digest USER`)
    reuses it, and with it every stored profile, instead of fitting it again."""

    __tablename__ = "feature_spaces"
    backend: str = Field(primary_key=True, max_length=32)
    fitted_at: dt.datetime | None = _utc()
    identity: str = Field(max_length=128)         # rank.persist.space_identity at fitting time
    keys_json: str = Field(sa_column=sa.Column(sa.Text, nullable=False))   # the papers it was fitted on
    space: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


class TextEmbedding(SQLModel, table=True):
    """The sentence embedding of a free text (a reader's keywords), computed once per model and
    text. Keyed by the hash of the exact text the model read, so readers with the same keywords
    share one row and a changed text is simply another key; a cache like ``paper_embeddings``."""

    __tablename__ = "text_embeddings"
    model: str = Field(primary_key=True, max_length=128)
    text_hash: str = Field(primary_key=True, max_length=64)
    dim: int
    vector: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))   # float32, little-endian
