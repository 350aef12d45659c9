"""Budget-aware scheduling: a push channel judged by evidence, and Google requests counted per
minute for every process.

- `calendar_binding.channel_suspect_since`: a poll found changes no notification announced, so
  the channel is not trusted (re-created at once; the binding polls at its tenant's interval)
  until a notification arrives on it again;
- `google_request_minute`: Google requests per UTC minute (sync runs, channel watches and
  stops), the shared count the project-wide request budget is checked against.

Revision ID: 0017_channel_evidence
Revises: 0016_incremental_sync
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_channel_evidence"
down_revision: str | None = "0016_incremental_sync"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calendar_binding") as batch:
        batch.add_column(
            sa.Column("channel_suspect_since", sa.DateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "google_request_minute",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("minute", name=op.f("pk_google_request_minute")),
    )


def downgrade() -> None:
    op.drop_table("google_request_minute")
    with op.batch_alter_table("calendar_binding") as batch:
        batch.drop_column("channel_suspect_since")
