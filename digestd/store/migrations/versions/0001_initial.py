"""The schema of digestd 0.1.0, the first migration.

Databases made before migrations existed (by SQLModel ``create_all``) already hold some or all of
these tables: this revision creates only the tables that are missing and adds ``digests.lease_until``
where an older release left it out, so such a database is adopted in place, rows and all.
Types are written out here, not taken from ``tables.py``, so the revision stays what it was when the
models move on (``UTCDateTime`` is a plain DATETIME in the database).

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _s(n: int) -> sa.String:
    return sa.String(length=n)


def _t() -> sa.DateTime:
    return sa.DateTime()


def _tables() -> list[tuple[str, list, list[tuple[str, list[str]]]]]:
    """(table, columns and constraints, indexes) in an order that satisfies the foreign keys."""
    C = sa.Column
    return [
        ("feature_spaces", [
            C("backend", _s(32), nullable=False), C("fitted_at", _t()), C("identity", _s(128), nullable=False),
            C("keys_json", sa.Text(), nullable=False), C("space", sa.LargeBinary(), nullable=False),
            sa.PrimaryKeyConstraint("backend")], []),
        ("feedback_events", [
            C("id", sa.Integer(), nullable=False), C("user_id", _s(128), nullable=False),
            C("paper_key", _s(512), nullable=False), C("vote", _s(8), nullable=False),
            C("via", _s(16), nullable=False), C("at", _t(), nullable=False), sa.PrimaryKeyConstraint("id")],
         [("ix_feedback_events_user_id", ["user_id"])]),
        ("paper_embeddings", [
            C("paper_key", _s(512), nullable=False), C("model", _s(128), nullable=False),
            C("text_hash", _s(64), nullable=False), C("dim", sa.Integer(), nullable=False),
            C("vector", sa.LargeBinary(), nullable=False), sa.PrimaryKeyConstraint("paper_key", "model")], []),
        ("papers", [
            C("key", _s(512), nullable=False), C("arxiv_id", _s(64)), C("version", sa.Integer()),
            C("title", sa.Text(), nullable=False), C("abstract", sa.Text(), server_default="", nullable=False),
            C("authors_json", sa.Text(), server_default="[]", nullable=False),
            C("categories_json", sa.Text(), server_default="[]", nullable=False),
            C("url", sa.Text()), C("pdf_url", sa.Text()), C("published_at", _t()), C("upvotes", sa.Integer()),
            C("extra_json", sa.Text(), server_default="{}", nullable=False), C("first_seen_at", _t()),
            C("updated_at", _t()), sa.PrimaryKeyConstraint("key")],
         [("ix_papers_arxiv_id", ["arxiv_id"]), ("ix_papers_first_seen_at", ["first_seen_at"])]),
        ("source_state", [
            C("name", _s(128), nullable=False), C("etag", _s(512)), C("last_modified", _s(128)),
            C("last_attempt_at", _t()), C("last_success_at", _t()), C("last_count", sa.Integer()),
            C("last_error", sa.Text()), C("last_error_at", _t()), C("error_count", sa.Integer(), nullable=False),
            C("next_retry_at", _t()), sa.PrimaryKeyConstraint("name")], []),
        ("users", [
            C("id", _s(128), nullable=False), C("email", _s(320), nullable=False),
            C("timezone", _s(64), nullable=False), C("active", sa.Boolean(), nullable=False),
            C("subscribed", sa.Boolean(), nullable=False), C("unsubscribed_via_link", sa.Boolean(), nullable=False),
            C("settings_json", sa.Text(), server_default="{}", nullable=False), C("feed_nonce", _s(128)),
            C("feed_token_hash", _s(128)), C("created_at", _t()), C("updated_at", _t()), C("unsubscribed_at", _t()),
            sa.PrimaryKeyConstraint("id")],
         [("ix_users_feed_token_hash", ["feed_token_hash"])]),
        ("digests", [
            C("id", sa.Integer(), nullable=False), C("user_id", _s(128), nullable=False),
            C("day", sa.Date(), nullable=False), C("status", _s(16), nullable=False), C("claimed_at", _t()),
            C("claimed_by", _s(128)), C("lease_until", _t()), C("covers_from", _t()), C("covers_until", _t()),
            C("sent_at", _t()), C("message_id", _s(255)), C("attempts", sa.Integer(), nullable=False),
            C("next_attempt_at", _t()), C("error", sa.Text()), C("note", sa.Text()),
            sa.ForeignKeyConstraint(["user_id"], ["users.id"]), sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("user_id", "day", name="uq_digest_user_day")],
         [("ix_digests_user_id", ["user_id"])]),
        ("feedback", [
            C("user_id", _s(128), nullable=False), C("paper_key", _s(512), nullable=False),
            C("vote", sa.Integer(), nullable=False), C("via", _s(16), nullable=False), C("at", _t(), nullable=False),
            sa.ForeignKeyConstraint(["paper_key"], ["papers.key"]), sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
            sa.PrimaryKeyConstraint("user_id", "paper_key")], []),
        ("listings", [
            C("id", sa.Integer(), nullable=False), C("paper_key", _s(512), nullable=False),
            C("source", _s(128), nullable=False), C("day", sa.Date(), nullable=False), C("announce_type", _s(32)),
            C("seen_at", _t(), nullable=False), sa.ForeignKeyConstraint(["paper_key"], ["papers.key"]),
            sa.PrimaryKeyConstraint("id"), sa.UniqueConstraint("paper_key", "source", "day", name="uq_listing")],
         [("ix_listings_day", ["day"]), ("ix_listings_paper_key", ["paper_key"]), ("ix_listings_seen_at", ["seen_at"]),
          ("ix_listings_source", ["source"])]),
        ("profiles", [
            C("user_id", _s(128), nullable=False), C("fingerprint", _s(128), nullable=False), C("trained_at", _t()),
            C("model", sa.LargeBinary(), nullable=False), sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
            sa.PrimaryKeyConstraint("user_id")], []),
        ("digest_items", [
            C("id", sa.Integer(), nullable=False), C("digest_id", sa.Integer(), nullable=False),
            C("user_id", _s(128), nullable=False), C("paper_key", _s(512), nullable=False),
            C("position", sa.Integer(), nullable=False), C("score", sa.Float(), nullable=False),
            C("reason", sa.Text(), server_default="", nullable=False), C("highlight", sa.Text()),
            C("explore", sa.Boolean(), nullable=False), sa.ForeignKeyConstraint(["digest_id"], ["digests.id"]),
            sa.ForeignKeyConstraint(["paper_key"], ["papers.key"]), sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("digest_id", "paper_key", name="uq_digest_item")],
         [("ix_digest_items_digest_id", ["digest_id"]), ("ix_digest_items_user_id", ["user_id"])]),
    ]


def upgrade() -> None:
    insp = sa.inspect(op.get_bind())
    have = set(insp.get_table_names())
    for name, parts, indexes in _tables():
        if name in have:
            continue
        op.create_table(name, *parts)
        for ix, cols in indexes:
            op.create_index(ix, name, cols, unique=False)
    if "digests" in have and "lease_until" not in {c["name"] for c in insp.get_columns("digests")}:
        # Claims of the release before leases: their rows count by age (store.digests.LEGACY_STALE_CLAIM).
        op.add_column("digests", sa.Column("lease_until", _t(), nullable=True))


def downgrade() -> None:
    for name, _parts, _ix in reversed(_tables()):
        op.drop_table(name)
