"""Google's OAuth 2.0 server: consent page, token endpoint, revoke, tokeninfo and userinfo.

The authorization page is plain HTML with one form, so a browser, Playwright or an httpx test
that posts the form back (fields `account` and `action=allow|deny`) all drive the same flow.
Error bodies and texts follow what accounts.google.com and oauth2.googleapis.com answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import re
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus, urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from . import errors
from .auth import bearer, world_of
from .errors import OAuthError
from .state import (
    SCOPE_EMAIL,
    SCOPE_PROFILE,
    AccessToken,
    Account,
    AuthCode,
    Grant,
    OAuthClient,
    RefreshToken,
    ServiceAccount,
    World,
)

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
# audiences Google accepts in a service-account assertion besides the emulator's own /token
GOOGLE_TOKEN_AUDIENCES = frozenset(
    {
        GOOGLE_TOKEN_URI,
        "https://www.googleapis.com/oauth2/v4/token",
        "https://accounts.google.com/o/oauth2/token",
    }
)
CODE_TTL = 600  # authorization codes live ten minutes
ASSERTION_MAX_LIFETIME = 3600
CLOCK_SKEW = 300
SCOPE_ALIASES = {"email": SCOPE_EMAIL, "profile": SCOPE_PROFILE}
IDENTITY_SCOPES = frozenset({SCOPE_EMAIL, SCOPE_PROFILE, "openid"})
SCOPE_TEXT = {
    "https://www.googleapis.com/auth/calendar": (
        "See, edit, share, and permanently delete all the calendars you can access using "
        "Google Calendar"
    ),
    "https://www.googleapis.com/auth/calendar.readonly": (
        "See and download any calendar you can access using your Google Calendar"
    ),
    "https://www.googleapis.com/auth/calendar.events": "View and edit events on all your calendars",
    "https://www.googleapis.com/auth/calendar.events.readonly": (
        "View events on all your calendars"
    ),
    SCOPE_EMAIL: "See your primary Google Account email address",
    SCOPE_PROFILE: (
        "See your personal info, including any personal info you've made publicly available"
    ),
    "openid": "Associate you with your personal info on Google",
}
PKCE_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
BAD_ASSERTION_TIME = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)
NO_STORE = {"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate", "Pragma": "no-cache"}


# -- small helpers ---------------------------------------------------------------------------


def subject_id(email: str) -> str:
    """Google's stable numeric account id (`sub`), derived from the e-mail so it survives resets."""
    digest = int(hashlib.sha256(email.lower().encode()).hexdigest(), 16)
    return str(10**20 + digest % (9 * 10**20))


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def parse_scopes(raw: str) -> list[str]:
    """Space-separated scopes in request order, short aliases (`email`, `profile`) expanded."""
    out: list[str] = []
    for item in raw.split():
        scope = SCOPE_ALIASES.get(item, item)
        if scope not in out:
            out.append(scope)
    return out


def _known_scope(scope: str) -> bool:
    return scope == "openid" or scope.startswith("https://www.googleapis.com/auth/")


def _json(data: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=NO_STORE)


@lru_cache(maxsize=1)
def _id_token_key() -> tuple[rsa.RSAPrivateKey, str]:
    """The key the emulator signs ID tokens with (one per process, published at /oauth2/v3/certs)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, hashlib.sha1(der, usedforsecurity=False).hexdigest()


def _b64url_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _id_token(
    world: World, email: str, aud: str, azp: str, scopes: frozenset[str], nonce: str | None = None
) -> str:
    key, kid = _id_token_key()
    # clients check iat/exp against their own clock, so ID tokens ignore the emulator's offset
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": world.config.issuer,
        "azp": azp,
        "aud": aud,
        "sub": subject_id(email),
        "iat": now,
        "exp": now + world.config.access_token_ttl,
    }
    if SCOPE_EMAIL in scopes or aud != azp:
        claims["email"] = email
        claims["email_verified"] = True
    account = world.accounts.get(email)
    if SCOPE_PROFILE in scopes and account is not None:
        claims["name"] = account.name
    if nonce:
        claims["nonce"] = nonce
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def _revoke_grant(world: World, grant_id: str) -> None:
    grant = world.grants.get(grant_id)
    if grant is not None:
        grant.revoked = True
    for rt in world.refresh_tokens.values():
        if rt.grant_id == grant_id:
            rt.revoked = True
    for at in world.access_tokens.values():
        if at.grant_id == grant_id:
            at.revoked = True


def _has_refresh_token(world: World, grant_id: str) -> bool:
    return any(rt.grant_id == grant_id and not rt.revoked for rt in world.refresh_tokens.values())


def _active_grant(world: World, email: str, client_id: str) -> Grant | None:
    for grant in world.grants.values():
        if grant.email == email and grant.client_id == client_id and not grant.revoked:
            return grant
    return None


# -- the authorization page ------------------------------------------------------------------

AUTH_PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "access_type",
    "prompt",
    "include_granted_scopes",
    "login_hint",
    "nonce",
    "hd",
)


@dataclass
class AuthRequest:
    client: OAuthClient
    redirect_uri: str
    scopes: list[str]
    state: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    offline: bool
    prompts: set[str]
    include_granted_scopes: bool
    login_hint: str | None
    nonce: str | None
    params: dict[str, str]


class AuthPageError(Exception):
    """An error Google shows on its own page instead of redirecting (so nothing leaks)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#202124}}
.box{{border:1px solid #dadce0;border-radius:8px;padding:1.5rem 2rem}}
h1{{font-size:1.4rem;font-weight:400}} .err{{color:#d93025}} ul{{padding-left:1.2rem}}
label{{display:block;padding:.4rem 0}} .actions{{margin-top:1.2rem;display:flex;gap:1rem}}
button{{padding:.5rem 1.4rem;border-radius:4px;border:1px solid #dadce0;background:#fff}}
button[value=allow]{{background:#1a73e8;color:#fff;border-color:#1a73e8}}
</style></head><body><div class="box">
<p>Google (gcal_emulator)</p>
{body}
</div></body></html>"""


def _error_page(exc: AuthPageError) -> HTMLResponse:
    body = (
        f'<h1 class="err">Access blocked: this request is invalid</h1>'
        f'<p id="error"><b>Error {exc.status}: {html.escape(exc.error)}</b></p>'
        f'<p id="error-detail">{html.escape(exc.detail)}</p>'
    )
    return HTMLResponse(
        _PAGE.format(title=f"Error {exc.status}: {html.escape(exc.error)}", body=body),
        status_code=exc.status,
    )


def _consent_page(
    world: World, req: AuthRequest, action: str, notice: str | None = None
) -> HTMLResponse:
    people = [a for a in world.accounts.values() if not a.is_service_account]
    hint = (req.login_hint or "").lower()
    rows = []
    for account in sorted(people, key=lambda a: a.email):
        checked = " checked" if account.email == hint else ""
        rows.append(
            f'<label><input type="radio" name="account" value="{html.escape(account.email)}"'
            f"{checked}> {html.escape(account.name)} &lt;{html.escape(account.email)}&gt;</label>"
        )
    if not rows:
        rows.append("<p>No accounts exist yet: create one with POST /emulator/v1/accounts.</p>")
    scopes = "".join(
        f'<li data-scope="{html.escape(s)}">{html.escape(SCOPE_TEXT.get(s, s))}</li>'
        for s in req.scopes
    )
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in req.params.items()
    )
    warn = f'<p class="err" id="notice">{html.escape(notice)}</p>' if notice else ""
    body = (
        f"<h1>Choose an account</h1><p>to continue to <b id=client>{html.escape(req.client.client_id)}</b></p>"
        f'{warn}<form method="post" action="{html.escape(action)}">{hidden}'
        f'<fieldset id="accounts"><legend>Accounts</legend>{"".join(rows)}</fieldset>'
        f"<p>{html.escape(req.client.client_id)} wants to access your Google Account:</p>"
        f'<ul id="scopes">{scopes}</ul>'
        '<div class="actions"><button type="submit" name="action" value="deny">Cancel</button>'
        '<button type="submit" name="action" value="allow">Allow</button></div></form>'
    )
    return HTMLResponse(
        _PAGE.format(title="Sign in - Google Accounts", body=body),
        status_code=200 if notice is None else 400,
        headers={"Cache-Control": "no-store"},
    )


def _parse_auth_request(world: World, params: dict[str, str]) -> AuthRequest:
    """Validate an authorization request in the order Google does; page errors never redirect."""
    client_id = params.get("client_id", "")
    if not client_id:
        raise AuthPageError(400, "invalid_request", "Missing required parameter: client_id")
    client = world.oauth_clients.get(client_id)
    if client is None:
        raise AuthPageError(401, "invalid_client", "The OAuth client was not found.")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        raise AuthPageError(400, "invalid_request", "Missing required parameter: redirect_uri")
    if redirect_uri not in client.redirect_uris:
        raise AuthPageError(
            400,
            "redirect_uri_mismatch",
            "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 "
            "policy. If you're the app developer, register the redirect URI in the Google Cloud "
            f"Console. Request details: redirect_uri={redirect_uri}",
        )
    response_type = params.get("response_type", "")
    if not response_type:
        raise AuthPageError(400, "invalid_request", "Missing required parameter: response_type")
    if response_type != "code":
        raise AuthPageError(
            400, "unsupported_response_type", f"Invalid response_type: {response_type}"
        )
    raw_scope = params.get("scope", "")
    if not raw_scope.strip():
        raise AuthPageError(400, "invalid_request", "Missing required parameter: scope")
    scopes = parse_scopes(raw_scope)
    bad = [s for s in scopes if not _known_scope(s)]
    if bad:
        raise AuthPageError(
            400, "invalid_scope", f"Some requested scopes were invalid. {{invalid={bad}}}"
        )
    challenge = params.get("code_challenge") or None
    method = params.get("code_challenge_method") or None
    if method is not None and challenge is None:
        raise AuthPageError(400, "invalid_request", "Missing required parameter: code_challenge")
    if challenge is not None:
        method = method or "plain"
        if method not in ("S256", "plain"):
            raise AuthPageError(400, "invalid_request", "Invalid code_challenge_method value.")
        if not PKCE_RE.match(challenge):
            raise AuthPageError(400, "invalid_request", "Invalid code_challenge value.")
    access_type = params.get("access_type", "online") or "online"
    if access_type not in ("online", "offline"):
        raise AuthPageError(400, "invalid_request", f"Invalid access_type: {access_type}")
    prompts = set(params.get("prompt", "").split())
    if prompts - {"none", "consent", "select_account"}:
        raise AuthPageError(400, "invalid_request", f"Invalid prompt: {params.get('prompt')}")
    if "none" in prompts and len(prompts) > 1:
        raise AuthPageError(
            400, "invalid_request", "Prompt none cannot be combined with other prompt values."
        )
    return AuthRequest(
        client=client,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=params.get("state"),
        code_challenge=challenge,
        code_challenge_method=method,
        offline=access_type == "offline",
        prompts=prompts,
        include_granted_scopes=params.get("include_granted_scopes", "").lower() == "true",
        login_hint=params.get("login_hint") or None,
        nonce=params.get("nonce") or None,
        params={k: params[k] for k in AUTH_PARAMS if params.get(k)},
    )


def _redirect(req: AuthRequest, values: dict[str, str]) -> RedirectResponse:
    query: dict[str, str] = {}
    if req.state is not None:
        query["state"] = req.state
    query.update(values)
    sep = "&" if "?" in req.redirect_uri else "?"
    return RedirectResponse(req.redirect_uri + sep + urlencode(query), status_code=302)


def _issue_code(world: World, req: AuthRequest, account: Account, shown_consent: bool) -> Response:
    grant = _active_grant(world, account.email, req.client.client_id)
    if grant is None:
        grant = Grant(
            id=secrets.token_hex(12),
            email=account.email,
            client_id=req.client.client_id,
            scopes=set(),
        )
        world.grants[grant.id] = grant
    granted_before = set(grant.scopes)
    grant.scopes |= set(req.scopes)
    scopes = set(req.scopes) | (granted_before if req.include_granted_scopes else set())
    code = AuthCode(
        code="4/0" + secrets.token_urlsafe(40),
        client_id=req.client.client_id,
        redirect_uri=req.redirect_uri,
        email=account.email,
        scopes=frozenset(scopes),
        code_challenge=req.code_challenge,
        code_challenge_method=req.code_challenge_method,
        offline=req.offline,
        # Google sends a refresh token the first time a person grants offline access to the
        # client, and again whenever the client asks with prompt=consent
        prompt_consent="consent" in req.prompts or not _has_refresh_token(world, grant.id),
        grant_id=grant.id,
        expires_at=world.clock.now() + CODE_TTL,
    )
    code.nonce = req.nonce or None  # the ID token of the exchange must carry it
    world.auth_codes[code.code] = code
    values = {"code": code.code, "scope": " ".join(_ordered(scopes)), "authuser": "0"}
    if shown_consent:
        values["prompt"] = "consent"
    return _redirect(req, values)


def _ordered(scopes: set[str] | frozenset[str]) -> list[str]:
    return sorted(scopes, key=lambda s: (s != SCOPE_EMAIL, s != SCOPE_PROFILE, s))


async def authorize(request: Request) -> Response:
    world = world_of(request)
    if request.method == "POST":
        form = await request.form()
        params = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    else:
        params = dict(request.query_params)
    with world.lock:
        try:
            req = _parse_auth_request(world, params)
        except AuthPageError as exc:
            return _error_page(exc)
        if request.method == "GET":
            if "none" in req.prompts:
                return _silent(world, req)
            return _consent_page(world, req, request.url.path)
        action = params.get("action", "")
        if action == "deny":
            return _redirect(req, {"error": "access_denied"})
        if action != "allow":
            return _consent_page(world, req, request.url.path, "Choose Allow or Cancel.")
        email = params.get("account", "").lower()
        account = world.accounts.get(email)
        if account is None or account.is_service_account:
            return _consent_page(world, req, request.url.path, "Choose an account to continue.")
        return _issue_code(world, req, account, shown_consent=True)


def _silent(world: World, req: AuthRequest) -> Response:
    """prompt=none: only a signed-in person (the login_hint) who already consented gets a code."""
    account = world.accounts.get((req.login_hint or "").lower())
    if account is None or account.is_service_account:
        return _redirect(req, {"error": "login_required"})
    grant = _active_grant(world, account.email, req.client.client_id)
    if grant is None or not set(req.scopes) <= grant.scopes:
        return _redirect(req, {"error": "consent_required"})
    return _issue_code(world, req, account, shown_consent=False)


# -- the token endpoint ----------------------------------------------------------------------


async def _params(request: Request) -> dict[str, str]:
    """Form body (what every client sends), JSON body (Google accepts it) or the query string."""
    out = {k: v for k, v in request.query_params.items()}
    ctype = request.headers.get("content-type", "")
    if "application/json" in ctype:
        raw = await request.body()
        try:
            data = json.loads(raw or b"{}")
        except ValueError as exc:
            raise errors.invalid_request("Invalid JSON payload received.") from exc
        if isinstance(data, dict):
            out.update({str(k): str(v) for k, v in data.items() if v is not None})
    elif request.method == "POST":
        form: FormData = await request.form()
        out.update({k: v for k, v in form.items() if isinstance(v, str)})
    return out


def _client_auth(request: Request, world: World, params: dict[str, str]) -> OAuthClient:
    """client_secret_basic or client_secret_post, with Google's error texts."""
    client_id = params.get("client_id", "")
    secret: str | None = params.get("client_secret")
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            user, _, password = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise errors.invalid_request("Could not determine client ID from request.") from exc
        client_id, secret = unquote_plus(user), unquote_plus(password)
    if not client_id:
        raise errors.invalid_request("Could not determine client ID from request.")
    client = world.oauth_clients.get(client_id)
    if client is None:
        raise errors.invalid_client()
    if not secret:
        raise errors.invalid_request("client_secret is missing.")
    if not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
        raise errors.invalid_client("Unauthorized")
    return client


def _pkce_ok(code: AuthCode, verifier: str) -> bool:
    if not PKCE_RE.match(verifier):
        return False
    if code.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    else:
        computed = verifier
    return hmac.compare_digest(computed.encode(), (code.code_challenge or "").encode())


def _token_body(
    world: World, tok: AccessToken, refresh: RefreshToken | None, id_token: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": tok.token,
        "expires_in": int(tok.expires_at - world.clock.now()),
    }
    if refresh is not None:
        body["refresh_token"] = refresh.token
    body["scope"] = " ".join(_ordered(tok.scopes))
    body["token_type"] = "Bearer"
    if id_token is not None:
        body["id_token"] = id_token
    return body


def _authorization_code(request: Request, world: World, params: dict[str, str]) -> Response:
    client = _client_auth(request, world, params)
    raw_code = params.get("code", "")
    if not raw_code:
        raise errors.invalid_request("Missing required parameter: code")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        raise errors.invalid_request("Missing parameter: redirect_uri")
    code = world.auth_codes.get(raw_code)
    if code is None or code.client_id != client.client_id:
        raise errors.invalid_grant("Malformed auth code.")
    nonce = code.nonce
    if code.used or code.expires_at <= world.clock.now():
        raise errors.invalid_grant("Bad Request")
    code.used = True  # one attempt per code, successful or not
    grant = world.grants.get(code.grant_id)
    if grant is None or grant.revoked:
        raise errors.invalid_grant("Bad Request")
    if redirect_uri != code.redirect_uri:
        raise OAuthError("redirect_uri_mismatch", "Bad Request")
    if code.code_challenge is not None:
        verifier = params.get("code_verifier", "")
        if not verifier:
            raise errors.invalid_grant("Missing code verifier.")
        if not _pkce_ok(code, verifier):
            raise errors.invalid_grant("Invalid code verifier.")
    tok = world.issue_access_token(code.email, code.scopes, client.client_id, grant_id=grant.id)
    refresh = None
    if code.offline and code.prompt_consent:
        refresh = RefreshToken(
            token="1//0" + secrets.token_urlsafe(48),
            email=code.email,
            client_id=client.client_id,
            scopes=code.scopes,
            grant_id=grant.id,
        )
        world.refresh_tokens[refresh.token] = refresh
    id_token = None
    if "openid" in code.scopes:
        id_token = _id_token(
            world, code.email, client.client_id, client.client_id, code.scopes, nonce
        )
    return _json(_token_body(world, tok, refresh, id_token))


def _refresh(request: Request, world: World, params: dict[str, str]) -> Response:
    raw = params.get("refresh_token", "")
    if not raw:
        raise errors.invalid_request("Missing required parameter: refresh_token")
    client = _client_auth(request, world, params)
    rt = world.refresh_tokens.get(raw)
    grant = world.grants.get(rt.grant_id) if rt is not None else None
    if rt is None or rt.revoked or grant is None or grant.revoked:
        raise errors.invalid_grant("Token has been expired or revoked.")
    if rt.client_id != client.client_id:
        raise errors.unauthorized_client("Unauthorized")
    scopes = rt.scopes
    if params.get("scope"):
        asked = frozenset(parse_scopes(params["scope"]))
        if not asked <= rt.scopes:
            raise OAuthError(
                "invalid_scope",
                "The OAuth scopes requested are not a subset of the scopes granted.",
            )
        scopes = asked
    tok = world.issue_access_token(rt.email, scopes, client.client_id, grant_id=rt.grant_id)
    id_token = None
    if "openid" in scopes:
        id_token = _id_token(world, rt.email, client.client_id, client.client_id, scopes)
    return _json(_token_body(world, tok, None, id_token))


def _find_service_account(world: World, kid: str | None, iss: str) -> ServiceAccount | None:
    if kid:
        for sa in world.service_accounts.values():
            if sa.private_key_id == kid:
                return sa
    return world.service_accounts.get(iss.lower())  # keyed by client_email


def _times_ok(world: World, iat: int, exp: int) -> bool:
    """The client signs with its own (real) clock: accept if either real or emulator time fits."""
    if exp - iat > ASSERTION_MAX_LIFETIME or exp <= iat:
        return False
    for now in (time.time(), world.clock.now()):
        if iat - CLOCK_SKEW <= now < exp:
            return True
    return False


def _jwt_bearer(request: Request, world: World, params: dict[str, str]) -> Response:
    assertion = params.get("assertion", "")
    if not assertion:
        raise errors.invalid_request("Missing required parameter: assertion")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise errors.invalid_grant("Invalid JWT: malformed assertion.") from exc
    iss = str(unverified.get("iss", ""))
    sa = _find_service_account(world, header.get("kid"), iss)
    if sa is None or iss.lower() != sa.client_email:
        raise errors.invalid_grant("Invalid grant: account not found")
    if header.get("alg") != "RS256":
        raise errors.invalid_grant("Invalid JWT Signature.")
    try:
        claims = jwt.decode(
            assertion,
            sa.public_key_pem,
            algorithms=["RS256"],
            options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError as exc:
        raise errors.invalid_grant("Invalid JWT Signature.") from exc
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int) or not _times_ok(world, iat, exp):
        raise errors.invalid_grant(BAD_ASSERTION_TIME)
    own = {f"{base_url(request)}/token", f"{base_url(request)}/oauth2/v4/token"}
    if claims.get("aud") not in GOOGLE_TOKEN_AUDIENCES | own:
        raise errors.invalid_grant(
            f"Invalid JWT: Failed audience check. The expected value was {GOOGLE_TOKEN_URI}"
        )
    scopes = frozenset(parse_scopes(str(claims.get("scope", ""))))
    audience = claims.get("target_audience")
    if not scopes and isinstance(audience, str) and audience:
        # an ID-token request (google.oauth2.service_account.IDTokenCredentials)
        return _json(
            {"id_token": _id_token(world, sa.client_email, audience, sa.client_id, scopes)}
        )
    if not scopes:
        raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    email = sa.client_email
    sub = str(claims.get("sub") or "").lower()
    if sub and sub != sa.client_email:
        domain = sub.rpartition("@")[2]
        allowed = world.delegations.get(domain, {}).get(sa.client_id)
        if allowed is None or not scopes <= allowed:
            raise errors.unauthorized_client()
        person = world.accounts.get(sub)
        if person is None or person.is_service_account:
            raise errors.invalid_grant("Invalid email or User ID")
        email = sub
    tok = world.issue_access_token(email, scopes, sa.client_id)
    return _json(
        {
            "access_token": tok.token,
            "expires_in": int(tok.expires_at - world.clock.now()),
            "token_type": "Bearer",
        }
    )


async def token(request: Request) -> Response:
    world = world_of(request)
    params = await _params(request)
    grant_type = params.get("grant_type", "")
    with world.lock:
        if not grant_type:
            raise errors.invalid_request("Missing required parameter: grant_type")
        if grant_type == "authorization_code":
            return _authorization_code(request, world, params)
        if grant_type == "refresh_token":
            return _refresh(request, world, params)
        if grant_type == JWT_BEARER:
            return _jwt_bearer(request, world, params)
        raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant_type}")


# -- revoke, tokeninfo, userinfo -------------------------------------------------------------


async def revoke(request: Request) -> Response:
    world = world_of(request)
    params = await _params(request)
    raw = params.get("token", "")
    with world.lock:
        if not raw:
            raise errors.invalid_request("Missing required parameter: token")
        rt = world.refresh_tokens.get(raw)
        if rt is not None and not rt.revoked:
            _revoke_grant(world, rt.grant_id)
            return _json({})
        at = world.valid_access_token(raw)
        if at is not None:
            if at.grant_id is not None:
                _revoke_grant(world, at.grant_id)
            else:
                at.revoked = True
            return _json({})
    raise OAuthError("invalid_token", "Token expired or revoked")


def _access_type(world: World, tok: AccessToken) -> str:
    if tok.grant_id is None:
        return "online"
    return "offline" if _has_refresh_token(world, tok.grant_id) else "online"


async def tokeninfo(request: Request) -> Response:
    world = world_of(request)
    params = await _params(request)
    with world.lock:
        raw = params.get("access_token", "")
        tok = world.valid_access_token(raw) if raw else None
        if tok is None:
            id_token = params.get("id_token", "")
            if id_token:
                return _id_tokeninfo(id_token)
            return _json({"error": "invalid_token", "error_description": "Invalid Value"}, 400)
        expires_in = int(tok.expires_at - world.clock.now())
        body: dict[str, Any] = {"azp": tok.client_id, "aud": tok.client_id}
        if tok.scopes & IDENTITY_SCOPES:
            body["sub"] = subject_id(tok.email)
        body["scope"] = " ".join(_ordered(tok.scopes))
        body["exp"] = str(int(tok.expires_at))
        body["expires_in"] = str(expires_in)
        if SCOPE_EMAIL in tok.scopes:
            body["email"] = tok.email
            body["email_verified"] = "true"
        body["access_type"] = _access_type(world, tok)
        return _json(body)


def _id_tokeninfo(raw: str) -> Response:
    key, _ = _id_token_key()
    try:
        claims = jwt.decode(
            raw,
            key.public_key(),
            algorithms=["RS256"],
            options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        return _json({"error": "invalid_token", "error_description": "Invalid Value"}, 400)
    if int(claims.get("exp", 0)) <= time.time():
        return _json({"error": "invalid_token", "error_description": "Invalid Value"}, 400)
    # tokeninfo answers every claim as a string
    return _json({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in claims.items()})


def _unauthorized(request: Request) -> Response:
    headers = {
        "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
    }
    if request.url.path.startswith("/oauth2/v2/"):
        body: dict[str, Any] = {
            "error": {
                "code": 401,
                "message": "Request is missing required authentication credential. Expected "
                "OAuth 2 access token, login cookie or other valid authentication credential.",
                "status": "UNAUTHENTICATED",
            }
        }
    else:
        body = {"error": "invalid_request", "error_description": "Invalid Credentials"}
    return JSONResponse(body, status_code=401, headers=headers)


async def userinfo(request: Request) -> Response:
    world = world_of(request)
    raw = bearer(request)
    with world.lock:
        tok = world.valid_access_token(raw) if raw else None
        if tok is None or not tok.scopes & IDENTITY_SCOPES:
            return _unauthorized(request)
        request.state.account = tok.email
        account = world.accounts.get(tok.email)
        name = account.name if account is not None else tok.email
    given, _, family = name.partition(" ")
    v2 = request.url.path.startswith("/oauth2/v2/")
    body: dict[str, Any] = {("id" if v2 else "sub"): subject_id(tok.email)}
    if SCOPE_EMAIL in tok.scopes:
        body["email"] = tok.email
        body["verified_email" if v2 else "email_verified"] = True
    if SCOPE_PROFILE in tok.scopes:
        body["name"] = name
        body["given_name"] = given
        if family:
            body["family_name"] = family
    return JSONResponse(body)


# -- discovery ------------------------------------------------------------------------------


async def certs(request: Request) -> Response:
    key, kid = _id_token_key()
    numbers = key.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "kid": kid,
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }
    return JSONResponse({"keys": [jwk]})


async def openid_configuration(request: Request) -> Response:
    base = base_url(request)
    return JSONResponse(
        {
            "issuer": world_of(request).config.issuer,
            "authorization_endpoint": f"{base}/o/oauth2/v2/auth",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/v1/userinfo",
            "revocation_endpoint": f"{base}/revoke",
            "jwks_uri": f"{base}/oauth2/v3/certs",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "name"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": ["authorization_code", "refresh_token", JWT_BEARER],
        }
    )


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
