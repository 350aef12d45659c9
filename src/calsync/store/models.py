"""The whole data model (DESIGN.md "Data model"); Alembic migrations mirror these tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from calsync.domain import accounts
from calsync.domain.direction import Direction
from calsync.domain.merge import Policy

from .base import Base, new_id, utcnow
from .crypto import EncryptedBytes, EncryptedText
from .statuses import (
    ActivitySource,
    AuthMode,
    BindingRole,
    BindingStage,
    ChangeOrigin,
    ConnectionStatus,
    LinkState,
    PrivateEvents,
    RunOutcome,
    UserRole,
)

EMAIL = 320  # RFC 5321 path limit
NOT_DELETED = text("deleted_at IS NULL")
#: links owing a Google write (links.dirty): few at any time, found without reading the rest
#: (in parentheses: a text clause joins a query's other conditions as it is written)
OWED_WRITE = text(
    f"(state = '{LinkState.PENDING.value}' "
    f"OR (state = '{LinkState.LINKED.value}' AND crm_hash IS NULL))"
)
#: changes the push writes to Google (not the sync's own): the owner's feed (sync_rows.push_reads)
NOT_FROM_SYNC = text(f"(origin != '{ChangeOrigin.SYNC.value}')")


def _created() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


def _updated() -> Mapped[datetime]:
    return mapped_column(default=utcnow, onupdate=utcnow)


def _tenant_fk() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))


class Tenant(Base):
    """A company: its calendar settings, service account and the change-feed counter."""

    __tablename__ = "tenant"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    calendar_module_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    auth_mode: Mapped[str] = mapped_column(String(32), default=AuthMode.OAUTH)
    service_account_email: Mapped[str | None] = mapped_column(String(EMAIL))
    service_account_key: Mapped[bytes | None] = mapped_column(EncryptedBytes())
    service_account_key_format: Mapped[str | None] = mapped_column(String(8))
    service_account_key_password: Mapped[str | None] = mapped_column(EncryptedText())
    # new (random) whenever the key is stored: each process's token source built from the
    # key is rebuilt when it sees another (sync.tokens.GoogleAccess; migration 0021)
    service_account_key_version: Mapped[str | None] = mapped_column(String(32))
    exported_type_keys: Mapped[list[str]] = mapped_column(JSON)
    default_import_type_key: Mapped[str] = mapped_column(String(64), default="meeting")
    personal_import_type_key: Mapped[str] = mapped_column(String(64), default="personal")
    poll_interval_seconds: Mapped[int] = mapped_column(Integer, default=300)
    lookback_days: Mapped[int] = mapped_column(Integer, default=30)
    conflict_policy: Mapped[str] = mapped_column(String(16), default=Policy.LATEST_WINS)
    # which Google account a user may link (domain/accounts.py): company / own_email / any,
    # and the company's Google domains for `company` (migration 0010_oauth_account_policy)
    google_account_policy: Mapped[str] = mapped_column(String(16), default=accounts.DEFAULT_POLICY)
    google_domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Last change sequence handed out; bumped with UPDATE in every writing transaction, whose
    # row lock makes sequence order equal commit order (see store/changes.py).
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class User(Base):
    """A CRM user; e-mail is unique among the tenant's live users."""

    __tablename__ = "user"
    __table_args__ = (
        Index(
            "uq_user_tenant_id_email_live",
            "tenant_id",
            "email",
            unique=True,
            sqlite_where=NOT_DELETED,
            postgresql_where=NOT_DELETED,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    email: Mapped[str] = mapped_column(String(EMAIL))
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=UserRole.USER)
    # scrypt hash for logging in to the pages (migration 0004_user_password); None: no login
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # the zone the pages show times in (migration 0011_user_time_zone); None: the primary Google
    # calendar's zone once connected, else UTC (store/users.py: shown_zone)
    time_zone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    deleted_at: Mapped[datetime | None] = mapped_column()


class ApiKey(Base):
    """A bearer key, stored only as its SHA-256 (see store/apikeys.py for why that suffices)."""

    __tablename__ = "api_key"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class ActivityType(Base):
    """A tenant's activity type, addressed by its key (built in: meeting, call, task, ...)."""

    __tablename__ = "activity_type"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    built_in: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()


class Activity(Base):
    """A CRM calendar entry: a single entry, a recurring master, or one exception of a master.

    Times are kept as wall clock in `time_zone` (what the user meant, DST-proof) plus UTC
    copies for range queries; range_* cover a whole series (range_end_utc NULL = no end).
    """

    __tablename__ = "activity"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "type_key"],
            ["activity_type.tenant_id", "activity_type.key"],
            name="fk_activity_tenant_id_type_key_activity_type",
        ),
        Index("ix_activity_tenant_id_range_start_utc", "tenant_id", "range_start_utc"),
        Index(
            "ix_activity_tenant_id_owner_id_range_start_utc",
            "tenant_id",
            "owner_id",
            "range_start_utc",
        ),
        Index(
            "uq_activity_recurring_parent_id_original_start_local_live",
            "recurring_parent_id",
            "original_start_local",
            unique=True,
            sqlite_where=NOT_DELETED,
            postgresql_where=NOT_DELETED,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    type_key: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(1024), default="")
    description: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(String(1024))
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    time_zone: Mapped[str] = mapped_column(String(64))
    start_local: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    end_local: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    start_utc: Mapped[datetime] = mapped_column()
    end_utc: Mapped[datetime] = mapped_column()
    range_start_utc: Mapped[datetime] = mapped_column()
    range_end_utc: Mapped[datetime | None] = mapped_column()
    visibility: Mapped[str] = mapped_column(String(16), default="default")
    transparency: Mapped[str] = mapped_column(String(16), default="opaque")
    status: Mapped[str] = mapped_column(String(16), default="confirmed")
    recurrence: Mapped[list[str] | None] = mapped_column(JSON)
    recurring_parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("activity.id", ondelete="CASCADE"), index=True
    )
    original_start_local: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    organizer_email: Mapped[str | None] = mapped_column(String(EMAIL))
    #: where the entry came from, for good (links come and go): ActivitySource "crm" (made in
    #: the CRM) or "google" (imported from `source_calendar_id` of `source_account`); only
    #: CRM-made entries are ever written into Google as new events
    source: Mapped[str] = mapped_column(String(8), default=ActivitySource.CRM, server_default="crm")
    source_calendar_id: Mapped[str | None] = mapped_column(String(1024))
    source_account: Mapped[str | None] = mapped_column(String(EMAIL))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    deleted_at: Mapped[datetime | None] = mapped_column()

    attendees: Mapped[list[ActivityAttendee]] = relationship(
        order_by="ActivityAttendee.position",
        cascade="all, delete-orphan",
        lazy="selectin",
        passive_deletes=True,
    )


class ActivityAttendee(Base):
    """One guest of an activity; a table so "activities I attend" is an indexed lookup."""

    __tablename__ = "activity_attendee"
    __table_args__ = (Index("ix_activity_attendee_tenant_id_email", "tenant_id", "email"),)

    activity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("activity.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[str] = mapped_column(String(EMAIL), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    display_name: Mapped[str | None] = mapped_column(String(200))
    response_status: Mapped[str] = mapped_column(String(16), default="needsAction")
    optional: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Change(Base):
    """One create/update/delete of an activity: the change feed and the sync engine's push queue."""

    __tablename__ = "change"
    __table_args__ = (
        Index(
            "ix_change_tenant_id_owner_id_seq_pushable",
            "tenant_id",
            "owner_id",
            "seq",
            sqlite_where=NOT_FROM_SYNC,
            postgresql_where=NOT_FROM_SYNC,
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    activity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("activity.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[uuid.UUID] = mapped_column()
    kind: Mapped[str] = mapped_column(String(16))  # ChangeKind
    version: Mapped[int] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(16), default=ChangeOrigin.API)
    created_at: Mapped[datetime] = _created()


class GoogleConnection(Base):
    """One user's link to a Google account, with encrypted tokens and a health status."""

    __tablename__ = "google_connection"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), unique=True
    )
    google_email: Mapped[str | None] = mapped_column(String(EMAIL))
    google_subject: Mapped[str | None] = mapped_column(String(255))
    auth_mode: Mapped[str] = mapped_column(String(32), default=AuthMode.OAUTH)
    refresh_token: Mapped[str | None] = mapped_column(EncryptedText())
    access_token: Mapped[str | None] = mapped_column(EncryptedText())
    access_token_expires_at: Mapped[datetime | None] = mapped_column()
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=ConnectionStatus.CONNECTED)
    sync_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    private_events: Mapped[str] = mapped_column(String(16), default=PrivateEvents.IMPORT)
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column()
    connected_at: Mapped[datetime | None] = mapped_column()
    # when the linked Google account last changed (first connect, or another account)
    linked_at: Mapped[datetime | None] = mapped_column()
    # calendarList push channel: notices calendars added, removed or no longer accessible
    list_channel_id: Mapped[str | None] = mapped_column(String(128), index=True)
    list_channel_resource_id: Mapped[str | None] = mapped_column(String(255))
    list_channel_token: Mapped[str | None] = mapped_column(EncryptedText())
    list_channel_expires_at: Mapped[datetime | None] = mapped_column()
    list_channel_message_seq: Mapped[int | None] = mapped_column(BigInteger)
    #: migration 0013 — state every process must see (sync/channels): when a failed watch of
    #: the list channel may be tried again, and the calendarList check running since when /
    #: another one owed (set with the notification's message number, in one write)
    list_channel_retry_after: Mapped[datetime | None] = mapped_column()
    list_check_started_at: Mapped[datetime | None] = mapped_column()
    list_check_owed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class CalendarBinding(Base):
    """One Google calendar of one connection: role, direction, sync token and push channel."""

    __tablename__ = "calendar_binding"
    __table_args__ = (UniqueConstraint("connection_id", "google_calendar_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("google_connection.id", ondelete="CASCADE")
    )
    google_calendar_id: Mapped[str] = mapped_column(String(1024))
    summary: Mapped[str | None] = mapped_column(String(1024))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    access_role: Mapped[str | None] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16), default=BindingRole.IMPORT)
    direction: Mapped[str] = mapped_column(String(16), default=Direction.TWO_WAY)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_token: Mapped[str | None] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(16), default=BindingStage.INITIAL)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    #: the mass-delete guard's pause (migration 0012): when, how many deletions it held back,
    #: and whether the user confirmed them (the next run then applies them)
    paused_at: Mapped[datetime | None] = mapped_column()
    guarded_deletions: Mapped[int | None] = mapped_column(Integer)
    deletions_confirmed: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    channel_id: Mapped[str | None] = mapped_column(String(128), index=True)
    channel_resource_id: Mapped[str | None] = mapped_column(String(255))
    channel_token: Mapped[str | None] = mapped_column(EncryptedText())
    channel_expires_at: Mapped[datetime | None] = mapped_column()
    last_sync_at: Mapped[datetime | None] = mapped_column()
    last_success_at: Mapped[datetime | None] = mapped_column()
    next_sync_at: Mapped[datetime | None] = mapped_column(index=True)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    # last change-feed seq whose changes the engine has pushed (migration 0002)
    push_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: the connection's private-events policy the stored links were made under; a change
    #: makes the next sync list the window again and re-apply it
    private_events_applied: Mapped[str | None] = mapped_column(String(16))
    #: migration 0016: the settings (a digest, sync.scans) the push last scanned the whole
    #: window under; another digest (a setting changed) makes the next push scan again
    scanned_key: Mapped[str | None] = mapped_column(String(64))
    locked_by: Mapped[str | None] = mapped_column(String(128))
    locked_until: Mapped[datetime | None] = mapped_column()
    # a webhook was acknowledged: a sync is owed until one that started after it succeeds
    sync_owed_at: Mapped[datetime | None] = mapped_column()
    # the highest X-Goog-Message-Number seen on the current channel (replays are ignored)
    channel_message_seq: Mapped[int | None] = mapped_column(BigInteger)
    #: migration 0013: a failed watch is tried again by the renewal tick of any process after
    channel_retry_after: Mapped[datetime | None] = mapped_column()
    #: migration 0017: a poll found changes no notification announced; the channel is not
    #: trusted (polls at the tenant's interval) until a notification arrives again
    channel_suspect_since: Mapped[datetime | None] = mapped_column()
    #: migration 0019: calsync wrote to the calendar then and the channel has not announced it
    #: yet (its echo); past a grace the channel is suspect (sync/channels/echo.py); the
    #: notification that answers it sets it back to NULL
    channel_echo_since: Mapped[datetime | None] = mapped_column(index=True)
    #: migration 0019: the last verified notification (written with its message number)
    channel_heard_at: Mapped[datetime | None] = mapped_column()
    #: migration 0019: Google-side changes a day, decayed over a week, as of `google_rate_at`
    google_change_rate: Mapped[float | None] = mapped_column(Float)
    google_rate_at: Mapped[datetime | None] = mapped_column()
    #: migration 0020: the calendar's second events channel, its "twin" — the same meaning as
    #: the `channel_*` columns above; each twin's notification is evidence about the other
    twin_channel_id: Mapped[str | None] = mapped_column(String(128), index=True)
    twin_channel_resource_id: Mapped[str | None] = mapped_column(String(255))
    twin_channel_token: Mapped[str | None] = mapped_column(EncryptedText())
    twin_channel_expires_at: Mapped[datetime | None] = mapped_column()
    twin_channel_message_seq: Mapped[int | None] = mapped_column(BigInteger)
    twin_channel_retry_after: Mapped[datetime | None] = mapped_column()
    twin_channel_suspect_since: Mapped[datetime | None] = mapped_column()
    twin_channel_echo_since: Mapped[datetime | None] = mapped_column(index=True)
    twin_channel_heard_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class EventLink(Base):
    """Activity <-> Google event in one binding, with the last-synced snapshot and hashes."""

    __tablename__ = "event_link"
    __table_args__ = (
        UniqueConstraint("binding_id", "google_event_id"),
        Index("ix_event_link_binding_id_state", "binding_id", "state"),
        Index(
            "ix_event_link_binding_id_owed",
            "binding_id",
            sqlite_where=OWED_WRITE,
            postgresql_where=OWED_WRITE,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    binding_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("calendar_binding.id", ondelete="CASCADE")
    )
    activity_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("activity.id", ondelete="CASCADE"), index=True
    )
    google_event_id: Mapped[str] = mapped_column(String(1024))
    google_recurring_event_id: Mapped[str | None] = mapped_column(String(1024))
    ical_uid: Mapped[str | None] = mapped_column(String(1024), index=True)
    #: why the CRM side may not write this event (not_organizer / event_type / busy /
    #: recurrence); None = two-way
    read_only: Mapped[str | None] = mapped_column(String(32))
    google_etag: Mapped[str | None] = mapped_column(String(255))
    google_updated: Mapped[datetime | None] = mapped_column()
    state: Mapped[str] = mapped_column(String(16), default=LinkState.PENDING)
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    crm_hash: Mapped[str | None] = mapped_column(String(64))
    google_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class SyncRun(Base):
    """One sync of one binding: why it ran, how long, what it did, how it ended."""

    __tablename__ = "sync_run"
    __table_args__ = (Index("ix_sync_run_binding_id_started_at", "binding_id", "started_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    binding_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("calendar_binding.id", ondelete="CASCADE")
    )
    # jobs.port.Reason: webhook/echo/poll/manual/change/initial/retry
    trigger: Mapped[str] = mapped_column(String(16))
    full_sync: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    # RunOutcome while running or abandoned, else the engine's Outcome (sync/errors.py)
    outcome: Mapped[str] = mapped_column(String(16), default=RunOutcome.RUNNING)
    pulled: Mapped[int] = mapped_column(Integer, default=0)
    pushed: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    conflicts: Mapped[int] = mapped_column(Integer, default=0)
    issues: Mapped[int] = mapped_column(Integer, default=0)
    google_requests: Mapped[int] = mapped_column(Integer, default=0)  # HTTP requests to Google
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)


class SyncIssue(Base):
    """An event that could not be synced, with the reason and what to do about it."""

    __tablename__ = "sync_issue"
    __table_args__ = (Index("ix_sync_issue_binding_id_resolved_at", "binding_id", "resolved_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    binding_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("calendar_binding.id", ondelete="CASCADE")
    )
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sync_run.id", ondelete="SET NULL"))
    activity_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("activity.id", ondelete="SET NULL")
    )
    google_event_id: Mapped[str | None] = mapped_column(String(1024))
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    remedy: Mapped[str | None] = mapped_column(Text)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column()


class Conflict(Base):
    """A field changed on both sides: the base and both values, and which one won."""

    __tablename__ = "conflict"
    __table_args__ = (Index("ix_conflict_binding_id_decided_at", "binding_id", "decided_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    binding_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("calendar_binding.id", ondelete="CASCADE")
    )
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sync_run.id", ondelete="SET NULL"))
    activity_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("activity.id", ondelete="CASCADE"), index=True
    )
    event_link_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("event_link.id", ondelete="SET NULL")
    )
    google_event_id: Mapped[str | None] = mapped_column(String(1024))
    field: Mapped[str] = mapped_column(String(64))
    base_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    crm_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    google_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    decision: Mapped[str] = mapped_column(String(16))  # crm / google
    policy: Mapped[str] = mapped_column(String(16))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class OAuthState(Base):
    """A pending Google sign-in: its `state` (kept only as a hash), who started it, the PKCE
    verifier (encrypted); single-use and short-lived, so any web process can finish the flow."""

    __tablename__ = "oauth_state"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_key: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(EncryptedText())
    redirect_uri: Mapped[str] = mapped_column(Text)
    login_hint: Mapped[str | None] = mapped_column(String(EMAIL))
    # SHA-256 of the browser cookie of a flow started from the pages (None: REST API flow)
    browser_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)


class RetiredChannel(Base):
    """A push channel replaced or forgotten before Google confirmed its stop: the only unknown
    channels calsync ever stops at Google (a forged channel id is never stopped)."""

    __tablename__ = "retired_channel"

    channel_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(255))
    connection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("google_connection.id", ondelete="CASCADE"), index=True
    )
    retired_at: Mapped[datetime] = mapped_column(default=utcnow)


# outbound webhooks' and page sessions' tables live in their own modules; imported here so
# `models` is the whole data model (Base.metadata, Alembic, secrets rotation)
from .budget import GoogleRequestMinute  # noqa: E402, F401
from .session_models import LoginFailure as LoginFailure  # noqa: E402
from .session_models import PortalSession as PortalSession  # noqa: E402
from .session_models import WebSession as WebSession  # noqa: E402
from .webhook_models import WebhookDelivery, WebhookEndpoint, WebhookMessage  # noqa: E402, F401
