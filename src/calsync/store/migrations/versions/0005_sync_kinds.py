"""Read-only links (events the CRM may not write: another organiser's, focus time, busy
blocks, unrepresentable series) and the private-events policy a binding's links follow.

Revision ID: 0005_sync_kinds
Revises: 0004_user_password
Create Date: 2025-01-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_sync_kinds"
down_revision: str | None = "0004_user_password"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("event_link") as batch:
        batch.add_column(sa.Column("read_only", sa.String(32), nullable=True))
    with op.batch_alter_table("calendar_binding") as batch:
        batch.add_column(sa.Column("private_events_applied", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calendar_binding") as batch:
        batch.drop_column("private_events_applied")
    with op.batch_alter_table("event_link") as batch:
        batch.drop_column("read_only")
