"""A second push channel per calendar, its "twin" (issue 16): Google does not promise that a
channel delivers, so every import binding has two `events.watch` channels on its calendar, and
each one's notification is evidence for (or against) the other:

- `calendar_binding.twin_channel_*`: the twin's id, resource id, token, expiry, last message
  number and watch retry time — the same meaning as the `channel_*` columns of the first;
- `calendar_binding.twin_channel_heard_at` / `twin_channel_echo_since` /
  `twin_channel_suspect_since`: the twin's evidence, as `channel_heard_at` /
  `channel_echo_since` / `channel_suspect_since` are the first's. A notification of either
  twin, when the other has not been heard from lately, makes the other owe an echo.

Revision ID: 0020_twin_channels
Revises: 0019_channel_echo
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_twin_channels"
down_revision: str | None = "0019_channel_echo"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calendar_binding") as batch:
        batch.add_column(sa.Column("twin_channel_id", sa.String(128)))
        batch.add_column(sa.Column("twin_channel_resource_id", sa.String(255)))
        batch.add_column(sa.Column("twin_channel_token", sa.Text()))
        batch.add_column(sa.Column("twin_channel_expires_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("twin_channel_message_seq", sa.BigInteger()))
        batch.add_column(sa.Column("twin_channel_retry_after", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("twin_channel_suspect_since", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("twin_channel_echo_since", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("twin_channel_heard_at", sa.DateTime(timezone=True)))
        batch.create_index("ix_calendar_binding_twin_channel_id", ["twin_channel_id"])
        batch.create_index(
            "ix_calendar_binding_twin_channel_echo_since", ["twin_channel_echo_since"]
        )


def downgrade() -> None:
    with op.batch_alter_table("calendar_binding") as batch:
        batch.drop_index("ix_calendar_binding_twin_channel_echo_since")
        batch.drop_index("ix_calendar_binding_twin_channel_id")
        batch.drop_column("twin_channel_heard_at")
        batch.drop_column("twin_channel_echo_since")
        batch.drop_column("twin_channel_suspect_since")
        batch.drop_column("twin_channel_retry_after")
        batch.drop_column("twin_channel_message_seq")
        batch.drop_column("twin_channel_expires_at")
        batch.drop_column("twin_channel_token")
        batch.drop_column("twin_channel_resource_id")
        batch.drop_column("twin_channel_id")
