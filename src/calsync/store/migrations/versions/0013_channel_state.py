"""Push-channel state every process must see: when a failed watch may be tried again (per
binding and per connection's calendarList channel), and the connection's calendarList check —
running since when, and whether another one is owed. Until now each process kept these in
memory, so a second web process or worker retried at once or ran a second check.

Revision ID: 0013_channel_state
Revises: 0012_guard_pause
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_channel_state"
down_revision: str | None = "0012_guard_pause"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calendar_binding") as batch:
        batch.add_column(
            sa.Column("channel_retry_after", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("google_connection") as batch:
        batch.add_column(
            sa.Column("list_channel_retry_after", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column("list_check_started_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column("list_check_owed", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("google_connection") as batch:
        batch.drop_column("list_check_owed")
        batch.drop_column("list_check_started_at")
        batch.drop_column("list_channel_retry_after")
    with op.batch_alter_table("calendar_binding") as batch:
        batch.drop_column("channel_retry_after")
