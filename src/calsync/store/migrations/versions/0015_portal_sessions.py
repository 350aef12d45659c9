"""Portal sessions: one-time sign-in links a CRM asks for on behalf of one of its users
(POST /api/v1/users/{id}/portal-sessions); only the token's SHA-256 is stored.

Revision ID: 0015_portal_sessions
Revises: 0014_webhook_outbox
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_portal_sessions"
down_revision: str | None = "0014_webhook_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "portal_session",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("return_url", sa.Text(), nullable=True),
        sa.Column("return_label", sa.String(100), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name="fk_portal_session_tenant_id_tenant",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name="fk_portal_session_user_id_user", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_portal_session"),
        sa.UniqueConstraint("token_hash", name="uq_portal_session_token_hash"),
    )
    op.create_index("ix_portal_session_user_id", "portal_session", ["user_id"])
    op.create_index("ix_portal_session_expires_at", "portal_session", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_portal_session_expires_at", table_name="portal_session")
    op.drop_index("ix_portal_session_user_id", table_name="portal_session")
    op.drop_table("portal_session")
