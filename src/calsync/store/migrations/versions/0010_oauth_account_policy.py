"""OAuth bound to the browser and the company's Google account policy (issue 13 item 3).

tenant: which Google account a user may link (`company`, the default: the user's own e-mail or
an address in the company's Google domains; `own_email`; `any`) and the domain list.
google_connection.linked_at: when the linked Google account last changed (existing rows: their
last connect). oauth_state.browser_hash: a flow started from the pages finishes only in the
browser that started it.

Revision ID: 0010_oauth_account_policy
Revises: 0007_activity_source
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_oauth_account_policy"
down_revision: str | None = "0009_web_sessions_throttle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenant") as batch:
        batch.add_column(
            sa.Column(
                "google_account_policy", sa.String(16), nullable=False, server_default="company"
            )
        )
        batch.add_column(
            sa.Column("google_domains", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table("google_connection") as batch:
        batch.add_column(sa.Column("linked_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE google_connection SET linked_at = COALESCE(connected_at, created_at)")
    with op.batch_alter_table("oauth_state") as batch:
        batch.add_column(sa.Column("browser_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oauth_state") as batch:
        batch.drop_column("browser_hash")
    with op.batch_alter_table("google_connection") as batch:
        batch.drop_column("linked_at")
    with op.batch_alter_table("tenant") as batch:
        batch.drop_column("google_domains")
        batch.drop_column("google_account_policy")
