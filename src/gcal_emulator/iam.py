"""IAM's service-account keys, the one call a key's life needs besides creating it (the control
API's `POST /emulator/v1/service-accounts`): `projects.serviceAccounts.keys.delete`.

    DELETE /v1/projects/{project}/serviceAccounts/{account}/keys/{key}   → 200 {}

`{project}` is the account's project or `-` (Google infers it), `{account}` its e-mail or its
numeric unique id (the client id). Like Google, it wants a bearer token with the
`cloud-platform` or `iam` scope; unlike Google it checks no IAM role: any such token may delete
any account's key. Once deleted, the token endpoint answers an assertion signed with the key
400 `invalid_grant` "Invalid JWT Signature."; access tokens issued before live on until they
expire. Errors have the shape of Google's newer APIs: `{"error": {code, message, status}}`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .auth import bearer, world_of
from .service_accounts import _project_id
from .state import ServiceAccount, World

SCOPE_CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
SCOPE_IAM = "https://www.googleapis.com/auth/iam"
IAM_SCOPES = frozenset({SCOPE_CLOUD_PLATFORM, SCOPE_IAM})
_CREDENTIALS = (
    "Expected OAuth 2 access token, login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)


def _error(code: int, status: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "status": status}}, status_code=code
    )


def _account(world: World, project: str, account: str) -> ServiceAccount | None:
    """By e-mail or unique id, in `project` (or `-`: any)."""
    wanted = account.lower()
    for sa in world.service_accounts.values():
        if wanted in (sa.client_email, sa.client_id) and project in (
            "-",
            _project_id(sa.client_email),
        ):
            return sa
    return None


async def delete_key(request: Request) -> Response:
    world = world_of(request)
    raw = bearer(request)
    with world.lock:
        token = world.valid_access_token(raw) if raw else None
        if token is None:
            missing = "Request is missing required authentication credential. "
            invalid = "Request had invalid authentication credentials. "
            return _error(401, "UNAUTHENTICATED", (invalid if raw else missing) + _CREDENTIALS)
        request.state.account = token.email
        if not token.scopes & IAM_SCOPES:
            return _error(
                403, "PERMISSION_DENIED", "Request had insufficient authentication scopes."
            )
        params = request.path_params
        project, account, key_id = params["project"], params["account"], params["key"]
        sa = _account(world, project, account)
        name = f"projects/{project}/serviceAccounts/{account}"
        if sa is None:
            return _error(404, "NOT_FOUND", f"Service account {name} does not exist.")
        if sa.keys.pop(key_id, None) is None:
            return _error(
                404, "NOT_FOUND", f"Service account key {name}/keys/{key_id} does not exist."
            )
        return JSONResponse({})


routes: list[BaseRoute] = [
    Route(
        "/v1/projects/{project}/serviceAccounts/{account}/keys/{key}",
        delete_key,
        methods=["DELETE"],
    ),
]
