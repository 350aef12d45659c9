"""calendarList push channel per connection (to notice removed calendars and lost access) and
the Google requests each sync run made (requests per binding per day across all processes).

Revision ID: 0006_list_channel_run_requests
Revises: 0005_sync_kinds
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_list_channel_run_requests"
down_revision: str | None = "0005_sync_kinds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("google_connection") as batch:
        batch.add_column(sa.Column("list_channel_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("list_channel_resource_id", sa.String(255), nullable=True))
        batch.add_column(sa.Column("list_channel_token", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("list_channel_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_google_connection_list_channel_id", ["list_channel_id"])
    with op.batch_alter_table("sync_run") as batch:
        batch.add_column(
            sa.Column("google_requests", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_run") as batch:
        batch.drop_column("google_requests")
    with op.batch_alter_table("google_connection") as batch:
        batch.drop_index("ix_google_connection_list_channel_id")
        batch.drop_column("list_channel_expires_at")
        batch.drop_column("list_channel_token")
        batch.drop_column("list_channel_resource_id")
        batch.drop_column("list_channel_id")
