"""Pending Google sign-ins (OAuth `state`), so the callback works in any web process.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "oauth_state",
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("user_key", sa.String(128), nullable=False),
        sa.Column("code_verifier", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("login_hint", sa.String(320), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("state_hash", name="pk_oauth_state"),
    )
    op.create_index("ix_oauth_state_expires_at", "oauth_state", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_oauth_state_expires_at", table_name="oauth_state")
    op.drop_table("oauth_state")
