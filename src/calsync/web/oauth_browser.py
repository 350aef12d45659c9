"""Binding a Google sign-in started from calsync's pages to the browser that started it.

Connect on the settings page sets a random cookie (HttpOnly, SameSite=Lax, ten minutes) and the
pending sign-in keeps only its SHA-256; the callback accepts that sign-in only from a browser
that sends the same cookie back. A connect link that is forwarded, or opened in another browser,
is refused (issue 13 item 3). Flows started through the REST API have no cookie to bind to: the
CRM sends its user's browser to the link, which is single-use and expires in ten minutes.
"""

from __future__ import annotations

import hashlib
import secrets

from starlette.requests import Request
from starlette.responses import Response

from calsync.google.oauth import STATE_TTL_SECONDS
from calsync.settings import Settings

COOKIE = "calsync_oauth"


def _hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest()


def _valid(nonce: str | None) -> bool:
    return bool(nonce) and nonce is not None and 32 <= len(nonce) <= 128 and nonce.isascii()


def nonce_for(request: Request) -> str:
    """This browser's nonce: the one it already carries (two tabs connecting at once both
    work), or a new one."""
    current = request.cookies.get(COOKIE)
    return current if current is not None and _valid(current) else secrets.token_urlsafe(32)


def binding(nonce: str) -> str:
    """What the pending sign-in stores: never the cookie itself."""
    return _hash(nonce)


def remember(response: Response, nonce: str, settings: Settings) -> None:
    response.set_cookie(
        COOKIE,
        nonce,
        max_age=int(STATE_TTL_SECONDS),
        path="/",
        httponly=True,
        samesite="lax",  # sent on Google's top-level redirect back to the callback
        secure=settings.public_url.lower().startswith("https://"),
    )


def of(request: Request) -> str | None:
    """The binding this browser proves at the callback, if it carries the cookie."""
    nonce = request.cookies.get(COOKIE)
    return _hash(nonce) if nonce is not None and _valid(nonce) else None
