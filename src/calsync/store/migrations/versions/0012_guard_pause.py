"""A calendar paused by the mass-delete guard says why and can be resumed by its user: when it
was paused, how many deletions were held back, and whether the user confirmed them (the next
run then applies Google's deletions to the CRM).

Revision ID: 0012_guard_pause
Revises: 0007_activity_source
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_guard_pause"
down_revision: str | None = "0011_user_time_zone"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calendar_binding") as batch:
        batch.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("guarded_deletions", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column(
                "deletions_confirmed", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("calendar_binding") as batch:
        batch.drop_column("deletions_confirmed")
        batch.drop_column("guarded_deletions")
        batch.drop_column("paused_at")
