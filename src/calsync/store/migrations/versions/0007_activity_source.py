"""Where each activity came from, kept for good and independent of its links: made in the CRM,
or imported from which Google calendar of which account. Only CRM-made entries are exported;
the private-events policy applies only to entries from Google (issue: settings transitions).

Existing rows are filled from what is known: an activity the sync created (change origin
`sync`, activity origin column) is from Google, and its calendar and account come from its
first link; an exception follows its series.

Revision ID: 0007_activity_source
Revises: 0006_list_channel_run_requests
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_activity_source"
down_revision: str | None = "0006_list_channel_run_requests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activity") as batch:
        batch.add_column(sa.Column("source", sa.String(8), nullable=False, server_default="crm"))
        batch.add_column(sa.Column("source_calendar_id", sa.String(1024), nullable=True))
        batch.add_column(sa.Column("source_account", sa.String(320), nullable=True))
    # an activity is from Google when the sync created it (its first change says so)
    op.execute(
        """
        UPDATE activity SET source = 'google'
        WHERE recurring_parent_id IS NULL AND EXISTS (
            SELECT 1 FROM change c
            WHERE c.activity_id = activity.id AND c.kind = 'created' AND c.origin = 'sync'
        )
        """
    )
    # its calendar and account: those of its oldest link
    op.execute(
        """
        UPDATE activity SET
            source_calendar_id = (
                SELECT b.google_calendar_id FROM event_link l
                JOIN calendar_binding b ON b.id = l.binding_id
                WHERE l.activity_id = activity.id ORDER BY l.created_at LIMIT 1
            ),
            source_account = (
                SELECT g.google_email FROM event_link l
                JOIN calendar_binding b ON b.id = l.binding_id
                JOIN google_connection g ON g.id = b.connection_id
                WHERE l.activity_id = activity.id ORDER BY l.created_at LIMIT 1
            )
        WHERE source = 'google'
        """
    )
    # an exception belongs where its series belongs
    op.execute(
        """
        UPDATE activity SET
            source = (SELECT p.source FROM activity p WHERE p.id = activity.recurring_parent_id),
            source_calendar_id = (
                SELECT p.source_calendar_id FROM activity p
                WHERE p.id = activity.recurring_parent_id
            ),
            source_account = (
                SELECT p.source_account FROM activity p WHERE p.id = activity.recurring_parent_id
            )
        WHERE recurring_parent_id IS NOT NULL
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("activity") as batch:
        batch.drop_column("source_account")
        batch.drop_column("source_calendar_id")
        batch.drop_column("source")
