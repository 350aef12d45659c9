"""Link queries about recurring series: the links of a series' exceptions, live or deleted."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Activity, EventLink


async def exception_links(
    session: AsyncSession, binding_id: uuid.UUID, master_id: uuid.UUID
) -> Sequence[tuple[EventLink, Activity]]:
    """Every link of the binding to an exception of the series, with the exception (tombstones
    included: a series that moved may just have deleted some)."""
    rows = await session.execute(
        select(EventLink, Activity)
        .join(Activity, Activity.id == EventLink.activity_id)
        .where(EventLink.binding_id == binding_id, Activity.recurring_parent_id == master_id)
    )
    return [(link, activity) for link, activity in rows.all()]
