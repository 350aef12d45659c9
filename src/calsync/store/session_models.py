"""The pages' sign-in tables: page sessions, one-time portal sign-in links, and failed logins
(the throttle). Kept beside models.py (which imports this module) so the data model stays one
import and each module stays short."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, new_id, utcnow

EMAIL = 320  # RFC 5321 path limit (as models.EMAIL)


class WebSession(Base):
    """A login to the pages: the cookie carries only this row's random id (signed); logout
    deletes the row, a password change deletes all of the user's rows, and it expires."""

    __tablename__ = "web_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class PortalSession(Base):
    """A one-time sign-in link a CRM asked for (POST /api/v1/users/{id}/portal-sessions): only
    the token's SHA-256 is stored; opening the link sets used_at (once) and starts a page
    session for the user, with a "Back to" link to return_url."""

    __tablename__ = "portal_session"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    return_url: Mapped[str | None] = mapped_column(Text)
    return_label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None] = mapped_column()


class LoginFailure(Base):
    """A failed (or in-flight) page login, by account (the e-mail) and by client address:
    counted over a window to throttle password guessing across every web process."""

    __tablename__ = "login_failure"
    __table_args__ = (Index("ix_login_failure_kind_key_at", "kind", "key", "at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))  # account / address
    key: Mapped[str] = mapped_column(String(EMAIL))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
