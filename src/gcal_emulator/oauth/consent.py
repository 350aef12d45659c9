"""The authorization page: validating an authorization request in Google's order, the consent
form (accounts and scopes), prompt=none, and the redirect carrying the code.
"""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..auth import world_of
from ..state import Account, AuthCode, Grant, OAuthClient, World
from .grants import active_grant, has_refresh_token
from .scopes import SCOPE_TEXT, known_scope, ordered_scopes, parse_scopes

CODE_TTL = 600  # authorization codes live ten minutes
# a PKCE code challenge or verifier (RFC 7636)
PKCE_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


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
    bad = [s for s in scopes if not known_scope(s)]
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
    grant = active_grant(world, account.email, req.client.client_id)
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
        prompt_consent="consent" in req.prompts or not has_refresh_token(world, grant.id),
        grant_id=grant.id,
        expires_at=world.clock.now() + CODE_TTL,
    )
    code.nonce = req.nonce or None  # the ID token of the exchange must carry it
    world.auth_codes[code.code] = code
    values = {"code": code.code, "scope": " ".join(ordered_scopes(scopes)), "authuser": "0"}
    if shown_consent:
        values["prompt"] = "consent"
    return _redirect(req, values)


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
    grant = active_grant(world, account.email, req.client.client_id)
    if grant is None or not set(req.scopes) <= grant.scopes:
        return _redirect(req, {"error": "consent_required"})
    return _issue_code(world, req, account, shown_consent=False)
