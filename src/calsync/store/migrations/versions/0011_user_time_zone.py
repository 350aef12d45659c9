"""The time zone a CRM user sees calsync's pages in (an IANA name; None: the primary Google
calendar's zone when connected, else UTC).

Revision ID: 0011_user_time_zone
Revises: 0007_activity_source
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_user_time_zone"
down_revision: str | None = "0010_oauth_account_policy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.drop_column("time_zone")
