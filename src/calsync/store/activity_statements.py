"""The statements of store/activities.py: who may see what (`Viewer`, `visible`), the listing's
filters, and the statements every read and write runs, built once (a reused statement keeps
its cache key, so SQLAlchemy compiles it once: ~0.15-0.2 ms of CPU less per use on this
machine). Apart so that store/activities.py stays about what the writes mean."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, exists, or_, select, update
from sqlalchemy.orm import joinedload
from sqlalchemy.sql.dml import ReturningUpdate

from . import webhooks
from .base import table_of
from .models import Activity, ActivityAttendee, ActivityType, Tenant, User


@dataclass(frozen=True)
class Viewer:
    """Restricts reads to what one user may see: its own activities and those it attends."""

    user_id: uuid.UUID
    email: str


@functools.cache
def activity_with_attendees() -> Select[Activity]:
    """An activity with its attendees in one statement (a LEFT JOIN), not selectin's second
    SELECT: every sync of a changed event reads its activity."""
    return (
        select(Activity)
        .where(
            Activity.id == bindparam("activity_id"), Activity.tenant_id == bindparam("tenant_id")
        )
        .options(joinedload(Activity.attendees))
    )


@functools.cache
def locked_version() -> Select[int, bool]:
    """The locked row's version and whether its tenant has an enabled outbound-webhook
    endpoint: every edit runs it (PostgreSQL). Built once, on the table: a Core statement,
    not the ORM's compile and result path for two columns."""
    table = table_of(Activity)
    return (
        select(table.c.version, webhooks.endpoints_enabled(table.c.tenant_id))
        .where(table.c.id == bindparam("activity_id", type_=table.c.id.type))
        .with_for_update(of=table)
    )


@functools.cache
def numbered_version() -> ReturningUpdate[int, bool, int | None]:
    """SQLite's edit of an activity, in one round trip: the feed's next number (this UPDATE
    takes the database's write lock, store/changes.py), then under that lock whether the
    tenant has an enabled outbound-webhook endpoint and the activity's version (None: no such
    row). The subqueries name the tenant and the activity by parameter, not by correlation:
    SQLite's RETURNING renders columns unqualified. On the tables: a Core UPDATE, not the
    ORM's bulk-update path (the same SQL; the caller flushes first, as the ORM's autoflush
    did)."""
    tenant, activity = table_of(Tenant), table_of(Activity)
    tenant_id = bindparam("tenant_id", type_=tenant.c.id.type)
    version = (
        select(activity.c.version)
        .where(activity.c.id == bindparam("activity_id", type_=activity.c.id.type))
        .scalar_subquery()
    )
    return (
        update(tenant)
        .where(tenant.c.id == tenant_id)
        .values(change_seq=tenant.c.change_seq + 1, updated_at=tenant.c.updated_at)
        .returning(tenant.c.change_seq, webhooks.endpoints_enabled(tenant_id), version)
    )


@functools.cache
def references() -> Select[bool, bool, bool]:
    """Whether the tenant has the activity type `type_key`, the live user `owner_id` (false for
    a NULL id), and an enabled outbound-webhook endpoint: what a create checks, at once."""
    tenant_id = bindparam("tenant_id", type_=Activity.tenant_id.type)
    known_type = exists().where(
        ActivityType.tenant_id == tenant_id, ActivityType.key == bindparam("type_key")
    )
    known_owner = exists().where(
        User.id == bindparam("owner_id", type_=User.id.type),
        User.tenant_id == tenant_id,
        User.deleted_at.is_(None),
    )
    return select(known_type, known_owner, webhooks.endpoints_enabled(tenant_id))


def visible(
    query: Select[Activity], tenant_id: uuid.UUID, viewer: Viewer | None
) -> Select[Activity]:
    if viewer is None:
        return query
    return _visible_to(query, tenant_id, viewer.user_id, viewer.email)


def _visible_to(query: Select[Any], tenant_id: Any, user_id: Any, email: Any) -> Select[Any]:
    attends = select(ActivityAttendee.activity_id).where(
        ActivityAttendee.tenant_id == tenant_id, ActivityAttendee.email == email
    )
    return query.where(or_(Activity.owner_id == user_id, Activity.id.in_(attends)))


def filtered(
    tenant_id: uuid.UUID,
    viewer: Viewer | None,
    owner_id: uuid.UUID | None,
    type_key: str | None,
    start: datetime | None,
    end: datetime | None,
    include_deleted: bool,
) -> Select[Activity]:
    # the attendees in the same statement (a LEFT JOIN; SQLAlchemy pages the activities in a
    # subquery first), not selectin's second round trip
    return listing_filters(
        select(Activity).options(joinedload(Activity.attendees)),
        tenant_id,
        None if viewer is None else (viewer.user_id, viewer.email),
        owner_id,
        type_key,
        start,
        end,
        include_deleted,
    )


def listing_filters(
    query: Select[Any],
    tenant_id: Any,
    viewer: tuple[Any, Any] | None,
    owner_id: Any,
    type_key: Any,
    start: Any,
    end: Any,
    include_deleted: bool,
) -> Select[Any]:
    """The listing's filters on a select of activities, in one place for both listings: given
    values (`filtered`, the ORM's), or bind parameters standing for them in a statement built
    once per shape (store/activity_reads, the API's plain rows). None: no such filter;
    `viewer` is (user id, e-mail)."""
    query = query.where(Activity.tenant_id == tenant_id)
    if viewer is not None:
        query = _visible_to(query, tenant_id, *viewer)
    if owner_id is not None:
        query = query.where(Activity.owner_id == owner_id)
    if type_key is not None:
        query = query.where(Activity.type_key == type_key)
    if end is not None:
        query = query.where(Activity.range_start_utc < end)
    if start is not None:
        query = query.where(or_(Activity.range_end_utc.is_(None), Activity.range_end_utc > start))
    if not include_deleted:
        query = query.where(Activity.deleted_at.is_(None))
    return query
