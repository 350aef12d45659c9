"""GET /api/v1/changes: the ordered feed of activity changes, for polling CRMs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from calsync.store import changes
from calsync.store.statuses import ChangeKind

from ..deps import Caller, Session
from ..schemas import ChangeOut, ChangePage

router = APIRouter(tags=["changes"])


@router.get("/changes", response_model=ChangePage)
async def list_changes(
    caller: Caller,
    session: Session,
    after: Annotated[int, Query(ge=0, le=2**62, description="Last seq already seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ChangePage:
    """Changes with seq > after, oldest first. Sequence numbers never go back and are never
    reused; a change is visible only once committed, and no later-visible change can carry a
    smaller number, so polling with `after=next_after` never misses one."""
    viewer = caller.viewer
    rows = await changes.after(
        session,
        caller.tenant_id,
        after,
        limit + 1,
        user_id=viewer.user_id if viewer else None,
        user_email=viewer.email if viewer else None,
    )
    page = rows[:limit]
    return ChangePage(
        changes=[
            ChangeOut(
                seq=c.seq,
                activity_id=c.activity_id,
                kind=ChangeKind(c.kind),
                version=c.version,
                origin=c.origin,
                at=c.created_at,
            )
            for c in page
        ],
        next_after=page[-1].seq if page else after,
        has_more=len(rows) > limit,
    )
