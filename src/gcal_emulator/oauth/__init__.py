"""Google's OAuth 2.0 server: consent page, token endpoint, revoke, tokeninfo and userinfo.

The authorization page is plain HTML with one form, so a browser, Playwright or an httpx test
that posts the form back (fields `account` and `action=allow|deny`) all drive the same flow.
Error bodies and texts follow what accounts.google.com and oauth2.googleapis.com answer.

Modules: consent (authorization page), token (token endpoint), tokeninfo (revoke, tokeninfo,
userinfo), id_tokens and discovery (OpenID Connect), scopes, grants, common.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from .consent import authorize
from .discovery import certs, openid_configuration
from .token import token
from .tokeninfo import revoke, tokeninfo, userinfo

routes: list[BaseRoute] = [
    Route("/o/oauth2/v2/auth", authorize, methods=["GET", "POST"]),
    Route("/o/oauth2/auth", authorize, methods=["GET", "POST"]),
    Route("/token", token, methods=["POST"]),
    Route("/oauth2/v4/token", token, methods=["POST"]),
    Route("/o/oauth2/token", token, methods=["POST"]),
    Route("/revoke", revoke, methods=["GET", "POST"]),
    Route("/o/oauth2/revoke", revoke, methods=["GET", "POST"]),
    Route("/tokeninfo", tokeninfo, methods=["GET", "POST"]),
    Route("/oauth2/v3/tokeninfo", tokeninfo, methods=["GET", "POST"]),
    Route("/oauth2/v3/userinfo", userinfo, methods=["GET", "POST"]),
    Route("/oauth2/v2/userinfo", userinfo, methods=["GET", "POST"]),
    Route("/v1/userinfo", userinfo, methods=["GET", "POST"]),
    Route("/oauth2/v3/certs", certs, methods=["GET"]),
    Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
]
