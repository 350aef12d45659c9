"""The version of a company's service-account key: `tenant.service_account_key_version`, a new
random value each time the key is stored (store.tenants.store_service_account_key).

Every process keeps one token source per company built from the stored key
(sync.tokens.GoogleAccess); it compares this column, which a sync's start reads with the tenant
anyway, with the version it built from, and rebuilds when they differ. So a key replaced in one
process takes effect at every process's next sync, without decrypting the key on every sync.
Keys stored before have none (NULL): the first key stored afterwards gets one.

Revision ID: 0021_service_account_key_version
Revises: 0020_twin_channels
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_service_account_key_version"
down_revision: str | None = "0020_twin_channels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenant") as batch:
        batch.add_column(sa.Column("service_account_key_version", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("tenant") as batch:
        batch.drop_column("service_account_key_version")
