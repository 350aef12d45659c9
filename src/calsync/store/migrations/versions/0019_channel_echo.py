"""The echo of calsync's own writes as evidence a push channel works, and a binding's rate of
Google-side changes (issue 16):

- `calendar_binding.channel_echo_since`: calsync wrote to the calendar at this time and its
  channel has not announced it yet (Google notifies a channel of every change, calsync's own
  writes included); past a grace the channel is suspect (sync/channels/echo.py);
- `calendar_binding.channel_heard_at`: the last verified notification, written by the same
  UPDATE that records its message number (no write of its own);
- `calendar_binding.google_change_rate` / `google_rate_at`: Google-side changes a day,
  decayed over a week — a busy calendar's silence is suspicious sooner (jobs/polling.py).

Revision ID: 0019_channel_echo
Revises: 0018_feed_order
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_channel_echo"
down_revision: str | None = "0018_feed_order"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calendar_binding") as batch:
        batch.add_column(sa.Column("channel_echo_since", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("channel_heard_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("google_change_rate", sa.Float()))
        batch.add_column(sa.Column("google_rate_at", sa.DateTime(timezone=True)))
        batch.create_index("ix_calendar_binding_channel_echo_since", ["channel_echo_since"])


def downgrade() -> None:
    with op.batch_alter_table("calendar_binding") as batch:
        batch.drop_index("ix_calendar_binding_channel_echo_since")
        batch.drop_column("google_rate_at")
        batch.drop_column("google_change_rate")
        batch.drop_column("channel_heard_at")
        batch.drop_column("channel_echo_since")
