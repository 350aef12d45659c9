"""The change feed's numbering at commit takes the counter once per transaction and tenant, not
once per change (PostgreSQL; issue 16).

0018_feed_order numbers each provisional change in a deferred row trigger: a PERFORM, an
UPDATE of `tenant.change_seq` and an UPDATE of the change, three statements for each change,
all inside the commit. A chunk of a first import records 500 changes, and its COMMIT took
34 ms (`log_min_duration_statement`, 10,000 events: 0.68 s of a 3.5 s import). Now the first
of a transaction's triggers for a tenant numbers all of that transaction's provisional changes
of the tenant at once, in the order recorded (their provisional numbers ascend in it), with
one UPDATE of the counter; the triggers of the others then find their change numbered and do
nothing. The provisional changes visible there are the transaction's own: another's are not
visible before its commit, and its commit numbered them. Order in commit order, no gaps, and
a change deleted again in its own transaction taking no number are kept.

Revision ID: 0022_feed_numbered_together
Revises: 0021_service_account_key_version
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0022_feed_numbered_together"
down_revision: str | None = "0021_service_account_key_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOGETHER = """
CREATE OR REPLACE FUNCTION calsync_change_number() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    pending bigint;
    last bigint;
BEGIN
    -- numbered already (with the rest of the transaction's), or deleted again: nothing
    PERFORM 1 FROM change WHERE tenant_id = NEW.tenant_id AND seq = NEW.seq;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO pending FROM change WHERE tenant_id = NEW.tenant_id AND seq < 0;
    UPDATE tenant SET change_seq = change_seq + pending WHERE id = NEW.tenant_id
        RETURNING change_seq INTO last;
    UPDATE change SET seq = last - pending + provisional.rank
        FROM (
            SELECT seq AS old, row_number() OVER (ORDER BY seq) AS rank
            FROM change WHERE tenant_id = NEW.tenant_id AND seq < 0
        ) AS provisional
        WHERE change.tenant_id = NEW.tenant_id AND change.seq = provisional.old;
    RETURN NULL;
END
$$
"""

ONE_BY_ONE = """
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


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TOGETHER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ONE_BY_ONE)
