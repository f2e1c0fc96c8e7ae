"""A digest's pick can be pinned by the reader's ``pin_authors`` / ``pin_keywords``:
``digest_items.pinned``.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database adopted from before migrations may have been made by code that already had it.
    if "pinned" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("digest_items")}:
        return
    with op.batch_alter_table("digest_items") as batch:      # batch: SQLite alters a table by copying it
        batch.add_column(sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("digest_items") as batch:
        batch.drop_column("pinned")
