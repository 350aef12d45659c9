"""Incremental syncs: a sync reads only what changed since the last one (sync/scans.py).

- `calendar_binding.scanned_key`: the settings the push last scanned the whole window under;
- `ix_event_link_binding_id_owed`: the few links owing a Google write (links.dirty), partial,
  so finding them does not read every link of the calendar;
- `ix_change_tenant_id_owner_id_seq_pushable`: one owner's changes after the push cursor that
  the push writes (not the sync's own), partial, so a sync reads its owner's changes only.

Revision ID: 0016_incremental_sync
Revises: 0015_portal_sessions
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_incremental_sync"
down_revision: str | None = "0015_portal_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWED_WRITE = sa.text("(state = 'pending' OR (state = 'linked' AND crm_hash IS NULL))")
NOT_FROM_SYNC = sa.text("(origin != 'sync')")


def upgrade() -> None:
    with op.batch_alter_table("calendar_binding") as batch:
        batch.add_column(sa.Column("scanned_key", sa.String(64), nullable=True))
    op.create_index(
        "ix_event_link_binding_id_owed",
        "event_link",
        ["binding_id"],
        sqlite_where=OWED_WRITE,
        postgresql_where=OWED_WRITE,
    )
    op.create_index(
        "ix_change_tenant_id_owner_id_seq_pushable",
        "change",
        ["tenant_id", "owner_id", "seq"],
        sqlite_where=NOT_FROM_SYNC,
        postgresql_where=NOT_FROM_SYNC,
    )


def downgrade() -> None:
    op.drop_index("ix_change_tenant_id_owner_id_seq_pushable", table_name="change")
    op.drop_index("ix_event_link_binding_id_owed", table_name="event_link")
    with op.batch_alter_table("calendar_binding") as batch:
        batch.drop_column("scanned_key")
