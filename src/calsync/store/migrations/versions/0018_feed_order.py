"""The change feed numbered at commit on PostgreSQL (issue 16: the CRM API's load starved the
sync).

Before, every write took the tenant's `change_seq` row lock with its first statement and held
it until its commit, so one tenant's API writes and syncs ran one at a time — each for as long
as its process needed to finish the transaction. Now a write inserts its changes under
provisional negative numbers (store/changes.py) and `change_number`, a constraint trigger
deferred to COMMIT, bumps `tenant.change_seq` and renumbers each of them, in insertion order:
the row lock is taken and released inside the commit. Numbers stay monotonic in commit order
and without gaps. SQLite (one writer at a time) keeps numbering at the first write: nothing to
do there.

Revision ID: 0018_feed_order
Revises: 0017_channel_evidence
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018_feed_order"
down_revision: str | None = "0017_channel_evidence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = """
CREATE OR REPLACE FUNCTION calsync_change_number() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    number bigint;
BEGIN
    -- a change deleted again in its own transaction (its activity removed) takes no number
    PERFORM 1 FROM change WHERE tenant_id = NEW.tenant_id AND seq = NEW.seq;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE tenant SET change_seq = change_seq + 1 WHERE id = NEW.tenant_id
        RETURNING change_seq INTO number;
    UPDATE change SET seq = number WHERE tenant_id = NEW.tenant_id AND seq = NEW.seq;
    RETURN NULL;
END
$$
"""

TRIGGER = """
CREATE CONSTRAINT TRIGGER change_number AFTER INSERT ON change
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (NEW.seq < 0)
EXECUTE FUNCTION calsync_change_number()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)
    op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS change_number ON change")
    op.execute("DROP FUNCTION IF EXISTS calsync_change_number()")
