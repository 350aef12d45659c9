"""Durable hand-offs and webhook replay (issue 13): a binding remembers that a sync is owed
(a webhook was acknowledged) until a sync covering it succeeds; every push channel remembers
the last message number Google sent on it, so a replayed notification is ignored; channels
replaced before Google confirmed their stop are remembered, so only channels this database
knows are ever stopped at Google.

Revision ID: 0008_durable_handoffs
Revises: 0007_activity_source
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_durable_handoffs"
down_revision: str | None = "0007_activity_source"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("calendar_binding") as batch:
        batch.add_column(sa.Column("sync_owed_at", TS, nullable=True))
        batch.add_column(sa.Column("channel_message_seq", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("google_connection") as batch:
        batch.add_column(sa.Column("list_channel_message_seq", sa.BigInteger(), nullable=True))
    op.create_table(
        "retired_channel",
        sa.Column("channel_id", sa.String(128), primary_key=True),
        sa.Column("resource_id", sa.String(255), nullable=False),
        sa.Column(
            "connection_id",
            sa.Uuid(),
            sa.ForeignKey("google_connection.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("retired_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retired_channel")
    with op.batch_alter_table("google_connection") as batch:
        batch.drop_column("list_channel_message_seq")
    with op.batch_alter_table("calendar_binding") as batch:
        batch.drop_column("channel_message_seq")
        batch.drop_column("sync_owed_at")
