"""A reader can pause delivery until a date (a holiday): ``users.paused_until``.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database adopted from before migrations may have been made by code that already had it.
    if "paused_until" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("users")}:
        return
    with op.batch_alter_table("users") as batch:      # batch: SQLite alters a table by copying it
        batch.add_column(sa.Column("paused_until", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("paused_until")
