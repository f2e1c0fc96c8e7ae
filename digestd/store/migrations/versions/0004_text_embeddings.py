"""Sentence embeddings of free text (readers' keywords), kept like papers' so that no process
encodes a text twice: ``text_embeddings``.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database adopted from before migrations may have been made by code that already had it.
    if "text_embeddings" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "text_embeddings",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("model", "text_hash"))


def downgrade() -> None:
    op.drop_table("text_embeddings")
