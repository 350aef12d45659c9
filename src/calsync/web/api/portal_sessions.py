"""/api/v1/users/{id}/portal-sessions: a CRM (admin key) asks for a one-time link that signs
one of its users into calsync's pages without a password (web/pages/portal.py opens it)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from calsync.settings import Settings
from calsync.store import portal_sessions

from ..deps import Admin, Session, visible_user
from ..errors import ApiError

router = APIRouter(tags=["portal"])

DEFAULT_PORTS = {"http": 80, "https": 443}


class PortalSessionIn(BaseModel):
    return_url: str | None = Field(
        default=None,
        max_length=2000,
        description='Where the pages\' "Back to" link leads (http or https)',
        examples=["https://crm.example.com/settings/calendar"],
    )
    return_label: str | None = Field(
        default=None,
        max_length=100,
        description='The name in "Back to <name>" (default: the host of return_url)',
        examples=["Acme CRM"],
    )


class PortalSessionOut(BaseModel):
    url: str = Field(description="Open it once, within a few minutes, in the user's browser")
    expires_at: datetime


def origin_of(url: str) -> str | None:
    """scheme://host[:port] in lower case (default ports left out); None unless http(s)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    shown = f":{port}" if port is not None and port != DEFAULT_PORTS[scheme] else ""
    return f"{scheme}://{parts.hostname.lower()}{shown}"


def checked_return_url(url: str | None, settings: Settings) -> str | None:
    """The return URL when it is an http(s) URL of an allowed origin (422 otherwise)."""
    if url is None or not url.strip():
        return None
    url = url.strip()
    origin = origin_of(url)
    unsafe = any(ord(ch) < 33 or ch in '\\"<>' for ch in url)
    if origin is None or unsafe or urlsplit(url).username is not None:
        raise ApiError(
            422,
            "invalid_return_url",
            "return_url must be an absolute http(s) URL",
            "send the CRM page to come back to, e.g. https://crm.example.com/settings",
        )
    allowed = settings.portal_origins
    if allowed is not None and origin not in {origin_of(o) or o for o in allowed}:
        raise ApiError(
            422,
            "return_url_not_allowed",
            f"return_url's origin {origin} is not one calsync's operator allows",
            "use a URL on an origin listed in CALSYNC_PORTAL_RETURN_ORIGINS, or ask the "
            "operator to add this one",
        )
    return url


@router.post("/users/{user_id}/portal-sessions", response_model=PortalSessionOut, status_code=201)
async def create_portal_session(
    user_id: uuid.UUID, body: PortalSessionIn, caller: Admin, s: Session, request: Request
) -> PortalSessionOut:
    """A one-time link (valid CALSYNC_PORTAL_LINK_TTL_SECONDS, default 5 minutes) that signs
    the user into calsync's pages with their own role and shows a "Back to" link to return_url.
    Open it in the user's browser (a new tab, or an iframe when CALSYNC_FRAME_ANCESTORS lists
    the CRM); hand it to nobody else."""
    settings: Settings = request.app.state.settings
    user = await visible_user(caller, s, user_id)
    return_url = checked_return_url(body.return_url, settings)
    label = (body.return_label or "").strip() or None
    token, row = await portal_sessions.create(
        s,
        caller.tenant_id,
        user.id,
        timedelta(seconds=settings.portal_link_ttl_seconds),
        return_url=return_url,
        return_label=label if return_url is not None else None,
    )
    expires_at = row.expires_at
    await s.commit()
    return PortalSessionOut(
        url=f"{settings.public_url.rstrip('/')}/portal/{token}", expires_at=expires_at
    )
