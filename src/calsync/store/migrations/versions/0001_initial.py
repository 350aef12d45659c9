"""Initial schema: tenancy, activities, change feed and the sync tables.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
LOCAL = sa.DateTime(timezone=False)
NOT_DELETED = sa.text("deleted_at IS NULL")


def _id() -> sa.Column[object]:
    return sa.Column("id", sa.Uuid(), nullable=False)


def _tenant_id() -> sa.Column[object]:
    return sa.Column("tenant_id", sa.Uuid(), nullable=False)


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenant.id"], name=f"fk_{table}_tenant_id_tenant", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "tenant",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("calendar_module_enabled", sa.Boolean(), nullable=False),
        sa.Column("auth_mode", sa.String(32), nullable=False),
        sa.Column("service_account_email", sa.String(320), nullable=True),
        sa.Column("service_account_key", sa.Text(), nullable=True),
        sa.Column("service_account_key_format", sa.String(8), nullable=True),
        sa.Column("service_account_key_password", sa.Text(), nullable=True),
        sa.Column("exported_type_keys", sa.JSON(), nullable=False),
        sa.Column("default_import_type_key", sa.String(64), nullable=False),
        sa.Column("personal_import_type_key", sa.String(64), nullable=False),
        sa.Column("poll_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("lookback_days", sa.Integer(), nullable=False),
        sa.Column("conflict_policy", sa.String(16), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenant"),
        sa.UniqueConstraint("name", name="uq_tenant_name"),
    )

    op.create_table(
        "user",
        _id(),
        _tenant_id(),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_user"),
        _tenant_fk("user"),
    )
    op.create_index(
        "uq_user_tenant_id_email_live",
        "user",
        ["tenant_id", "email"],
        unique=True,
        sqlite_where=NOT_DELETED,
        postgresql_where=NOT_DELETED,
    )

    op.create_table(
        "api_key",
        _id(),
        _tenant_id(),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_key"),
        sa.UniqueConstraint("key_hash", name="uq_api_key_key_hash"),
        _tenant_fk("api_key"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name="fk_api_key_user_id_user", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_api_key_user_id", "api_key", ["user_id"])

    op.create_table(
        "activity_type",
        _id(),
        _tenant_id(),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("built_in", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_activity_type"),
        sa.UniqueConstraint("tenant_id", "key", name="uq_activity_type_tenant_id_key"),
        _tenant_fk("activity_type"),
    )

    op.create_table(
        "activity",
        _id(),
        _tenant_id(),
        sa.Column("type_key", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("location", sa.String(1024), nullable=True),
        sa.Column("all_day", sa.Boolean(), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("start_local", LOCAL, nullable=False),
        sa.Column("end_local", LOCAL, nullable=False),
        sa.Column("start_utc", TS, nullable=False),
        sa.Column("end_utc", TS, nullable=False),
        sa.Column("range_start_utc", TS, nullable=False),
        sa.Column("range_end_utc", TS, nullable=True),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("transparency", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("recurrence", sa.JSON(), nullable=True),
        sa.Column("recurring_parent_id", sa.Uuid(), nullable=True),
        sa.Column("original_start_local", LOCAL, nullable=True),
        sa.Column("organizer_email", sa.String(320), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_activity"),
        _tenant_fk("activity"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "type_key"],
            ["activity_type.tenant_id", "activity_type.key"],
            name="fk_activity_tenant_id_type_key_activity_type",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["user.id"], name="fk_activity_owner_id_user", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["recurring_parent_id"],
            ["activity.id"],
            name="fk_activity_recurring_parent_id_activity",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_activity_tenant_id_range_start_utc", "activity", ["tenant_id", "range_start_utc"]
    )
    op.create_index(
        "ix_activity_tenant_id_owner_id_range_start_utc",
        "activity",
        ["tenant_id", "owner_id", "range_start_utc"],
    )
    op.create_index("ix_activity_recurring_parent_id", "activity", ["recurring_parent_id"])
    op.create_index(
        "uq_activity_recurring_parent_id_original_start_local_live",
        "activity",
        ["recurring_parent_id", "original_start_local"],
        unique=True,
        sqlite_where=NOT_DELETED,
        postgresql_where=NOT_DELETED,
    )

    op.create_table(
        "activity_attendee",
        sa.Column("activity_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        _tenant_id(),
        sa.Column("display_name", sa.String(200), nullable=True),
        sa.Column("response_status", sa.String(16), nullable=False),
        sa.Column("optional", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("activity_id", "email", name="pk_activity_attendee"),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activity.id"],
            name="fk_activity_attendee_activity_id_activity",
            ondelete="CASCADE",
        ),
        _tenant_fk("activity_attendee"),
    )
    op.create_index(
        "ix_activity_attendee_tenant_id_email", "activity_attendee", ["tenant_id", "email"]
    )

    op.create_table(
        "change",
        _tenant_id(),
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("activity_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "seq", name="pk_change"),
        _tenant_fk("change"),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activity.id"],
            name="fk_change_activity_id_activity",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_change_activity_id", "change", ["activity_id"])

    op.create_table(
        "google_connection",
        _id(),
        _tenant_id(),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("google_email", sa.String(320), nullable=True),
        sa.Column("google_subject", sa.String(255), nullable=True),
        sa.Column("auth_mode", sa.String(32), nullable=False),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("access_token_expires_at", TS, nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sync_enabled", sa.Boolean(), nullable=False),
        sa.Column("private_events", sa.String(16), nullable=False),
        sa.Column("last_error_code", sa.String(64), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column("last_error_at", TS, nullable=True),
        sa.Column("connected_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_google_connection"),
        sa.UniqueConstraint("user_id", name="uq_google_connection_user_id"),
        _tenant_fk("google_connection"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name="fk_google_connection_user_id_user", ondelete="CASCADE"
        ),
    )

    op.create_table(
        "calendar_binding",
        _id(),
        _tenant_id(),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("google_calendar_id", sa.String(1024), nullable=False),
        sa.Column("summary", sa.String(1024), nullable=True),
        sa.Column("time_zone", sa.String(64), nullable=True),
        sa.Column("access_role", sa.String(16), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("sync_token", sa.Text(), nullable=True),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("channel_id", sa.String(128), nullable=True),
        sa.Column("channel_resource_id", sa.String(255), nullable=True),
        sa.Column("channel_token", sa.Text(), nullable=True),
        sa.Column("channel_expires_at", TS, nullable=True),
        sa.Column("last_sync_at", TS, nullable=True),
        sa.Column("last_success_at", TS, nullable=True),
        sa.Column("next_sync_at", TS, nullable=True),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("locked_by", sa.String(128), nullable=True),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_calendar_binding"),
        sa.UniqueConstraint(
            "connection_id",
            "google_calendar_id",
            name="uq_calendar_binding_connection_id_google_calendar_id",
        ),
        _tenant_fk("calendar_binding"),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["google_connection.id"],
            name="fk_calendar_binding_connection_id_google_connection",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_calendar_binding_channel_id", "calendar_binding", ["channel_id"])
    op.create_index("ix_calendar_binding_next_sync_at", "calendar_binding", ["next_sync_at"])

    op.create_table(
        "event_link",
        _id(),
        _tenant_id(),
        sa.Column("binding_id", sa.Uuid(), nullable=False),
        sa.Column("activity_id", sa.Uuid(), nullable=True),
        sa.Column("google_event_id", sa.String(1024), nullable=False),
        sa.Column("google_recurring_event_id", sa.String(1024), nullable=True),
        sa.Column("ical_uid", sa.String(1024), nullable=True),
        sa.Column("google_etag", sa.String(255), nullable=True),
        sa.Column("google_updated", TS, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=True),
        sa.Column("crm_hash", sa.String(64), nullable=True),
        sa.Column("google_hash", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event_link"),
        sa.UniqueConstraint(
            "binding_id", "google_event_id", name="uq_event_link_binding_id_google_event_id"
        ),
        _tenant_fk("event_link"),
        sa.ForeignKeyConstraint(
            ["binding_id"],
            ["calendar_binding.id"],
            name="fk_event_link_binding_id_calendar_binding",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activity.id"],
            name="fk_event_link_activity_id_activity",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_event_link_binding_id_state", "event_link", ["binding_id", "state"])
    op.create_index("ix_event_link_activity_id", "event_link", ["activity_id"])
    op.create_index("ix_event_link_ical_uid", "event_link", ["ical_uid"])

    op.create_table(
        "sync_run",
        _id(),
        _tenant_id(),
        sa.Column("binding_id", sa.Uuid(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("full_sync", sa.Boolean(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("pulled", sa.Integer(), nullable=False),
        sa.Column("pushed", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("conflicts", sa.Integer(), nullable=False),
        sa.Column("issues", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sync_run"),
        _tenant_fk("sync_run"),
        sa.ForeignKeyConstraint(
            ["binding_id"],
            ["calendar_binding.id"],
            name="fk_sync_run_binding_id_calendar_binding",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_sync_run_binding_id_started_at", "sync_run", ["binding_id", "started_at"])

    op.create_table(
        "sync_issue",
        _id(),
        _tenant_id(),
        sa.Column("binding_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("activity_id", sa.Uuid(), nullable=True),
        sa.Column("google_event_id", sa.String(1024), nullable=True),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("remedy", sa.Text(), nullable=True),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sync_issue"),
        _tenant_fk("sync_issue"),
        sa.ForeignKeyConstraint(
            ["binding_id"],
            ["calendar_binding.id"],
            name="fk_sync_issue_binding_id_calendar_binding",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_run.id"], name="fk_sync_issue_run_id_sync_run", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activity.id"],
            name="fk_sync_issue_activity_id_activity",
            ondelete="SET NULL",
        ),
    )
    op.create_index(
        "ix_sync_issue_binding_id_resolved_at", "sync_issue", ["binding_id", "resolved_at"]
    )

    op.create_table(
        "conflict",
        _id(),
        _tenant_id(),
        sa.Column("binding_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("activity_id", sa.Uuid(), nullable=True),
        sa.Column("event_link_id", sa.Uuid(), nullable=True),
        sa.Column("google_event_id", sa.String(1024), nullable=True),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("base_value", sa.JSON(), nullable=True),
        sa.Column("crm_value", sa.JSON(), nullable=True),
        sa.Column("google_value", sa.JSON(), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("decided_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conflict"),
        _tenant_fk("conflict"),
        sa.ForeignKeyConstraint(
            ["binding_id"],
            ["calendar_binding.id"],
            name="fk_conflict_binding_id_calendar_binding",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_run.id"], name="fk_conflict_run_id_sync_run", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activity.id"],
            name="fk_conflict_activity_id_activity",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_link_id"],
            ["event_link.id"],
            name="fk_conflict_event_link_id_event_link",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_conflict_binding_id_decided_at", "conflict", ["binding_id", "decided_at"])
    op.create_index("ix_conflict_activity_id", "conflict", ["activity_id"])


def downgrade() -> None:
    for table in (
        "conflict",
        "sync_issue",
        "sync_run",
        "event_link",
        "calendar_binding",
        "google_connection",
        "change",
        "activity_attendee",
        "activity",
        "activity_type",
        "api_key",
        "user",
        "tenant",
    ):
        op.drop_table(table)
