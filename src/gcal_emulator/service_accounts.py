"""Control routes for service accounts and domain-wide delegation.

`POST /emulator/v1/service-accounts` plays the Cloud Console "create key" button: it returns the
JSON key file and the legacy P12 key exactly as Google hands them out, with `token_uri` pointing
at this emulator; called again for the same account it adds a key (the earlier ones stay valid
until IAM's keys.delete, iam.py, removes them). `POST /emulator/v1/domains/{domain}/delegations` plays the Workspace admin who
authorises a client id for some scopes (Security → API controls → Domain-wide delegation).
"""

from __future__ import annotations

import base64
import datetime
import secrets
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .auth import world_of
from .control import PREFIX, ControlError, _handler, _json, _need
from .state import ServiceAccount, World

P12_PASSWORD = "notasecret"  # what Google sets on every P12 key it issues
SA_DOMAIN = "iam.gserviceaccount.com"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _new_client_id(world: World) -> str:
    taken = {sa.client_id for sa in world.service_accounts.values()}
    while True:
        client_id = "1" + "".join(secrets.choice("0123456789") for _ in range(20))
        if client_id not in taken:
            return client_id


def _project_id(client_email: str) -> str:
    domain = client_email.partition("@")[2]
    if domain.endswith("." + SA_DOMAIN):
        return domain[: -len(SA_DOMAIN) - 1]
    return domain.split(".")[0] or "emulator-project"


def _self_signed_cert(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


@_handler
async def create_service_account(request: Request) -> Response:
    world = world_of(request)
    data = await _json(request)
    client_email = str(_need(data, "client_email")).lower()
    if "@" not in client_email:
        raise ControlError("'client_email' must be an e-mail address")
    password = str(data.get("p12_password") or P12_PASSWORD)
    existing = world.service_accounts.get(client_email)
    if existing is None and client_email in world.accounts:
        raise ControlError(f"{client_email} is already a person's account")
    client_id = existing.client_id if existing is not None else _new_client_id(world)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = secrets.token_hex(20)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # another key of the same account: the earlier ones stay valid, as in Google, until
    # IAM's keys.delete removes them (iam.py)
    account = existing or ServiceAccount(client_email=client_email, client_id=client_id)
    account.keys[key_id] = public_pem.decode()
    world.service_accounts[client_email] = account
    name = str(data.get("name") or client_email.split("@")[0])
    world.add_account(client_email, name, is_service_account=True)
    base = _base(request)
    json_key: dict[str, Any] = {
        "type": "service_account",
        "project_id": _project_id(client_email),
        "private_key_id": key_id,
        "private_key": private_pem.decode(),
        "client_email": client_email,
        "client_id": client_id,
        "auth_uri": f"{base}/o/oauth2/auth",
        "token_uri": f"{base}/token",
        "auth_provider_x509_cert_url": f"{base}/oauth2/v1/certs",
        "client_x509_cert_url": f"{base}/robot/v1/metadata/x509/{quote(client_email)}",
        "universe_domain": "googleapis.com",
    }
    p12 = pkcs12.serialize_key_and_certificates(
        b"privatekey",
        key,
        _self_signed_cert(key, client_id),
        None,
        serialization.BestAvailableEncryption(password.encode()),
    )
    return JSONResponse(
        {
            "client_email": client_email,
            "client_id": client_id,
            "private_key_id": key_id,
            "json_key": json_key,
            "p12_base64": base64.b64encode(p12).decode(),
            "p12_password": password,
        },
        status_code=201,
    )


@_handler
async def list_service_accounts(request: Request) -> Response:
    world = world_of(request)
    items = [
        {
            "client_email": sa.client_email,
            "client_id": sa.client_id,
            "private_key_id": sa.newest_key_id,
            "private_key_ids": list(sa.keys),
        }
        for sa in world.service_accounts.values()
    ]
    return JSONResponse({"items": items})


def _client_id(world: World, value: str) -> str:
    """Admins paste the numeric client id; the service account's e-mail is accepted too."""
    sa = world.service_accounts.get(value.lower())
    return sa.client_id if sa is not None else value


def _scopes(value: Any) -> set[str]:
    """A list, or the comma-separated string the admin console takes."""
    if isinstance(value, str):
        items = [s.strip() for s in value.split(",")]
    elif isinstance(value, list):
        items = [str(s).strip() for s in value]
    else:
        raise ControlError("'scopes' must be a list or a comma-separated string")
    scopes = {s for s in items if s}
    if not scopes:
        raise ControlError("'scopes' must not be empty")
    return scopes


@_handler
async def delegations(request: Request) -> Response:
    world = world_of(request)
    domain = request.path_params["domain"].lower()
    if request.method == "GET":
        current = world.delegations.get(domain, {})
        items = [{"client_id": c, "scopes": sorted(s)} for c, s in current.items()]
        return JSONResponse({"domain": domain, "items": items})
    data = await _json(request)
    raw = data.get("client_id") or request.query_params.get("client_id")
    if not raw:
        raise ControlError("'client_id' is required")
    client_id = _client_id(world, str(raw))
    if request.method == "DELETE":
        world.delegations.get(domain, {}).pop(client_id, None)
        return JSONResponse({"domain": domain, "client_id": client_id, "deleted": True})
    # authorising a client id again replaces its scopes, as in the admin console
    scopes = _scopes(_need(data, "scopes"))
    world.delegations.setdefault(domain, {})[client_id] = scopes
    return JSONResponse(
        {"domain": domain, "client_id": client_id, "scopes": sorted(scopes)}, status_code=201
    )


routes: list[BaseRoute] = [
    Route(f"{PREFIX}/service-accounts", create_service_account, methods=["POST"]),
    Route(f"{PREFIX}/service-accounts", list_service_accounts, methods=["GET"]),
    Route(
        f"{PREFIX}/domains/{{domain}}/delegations",
        delegations,
        methods=["GET", "POST", "DELETE"],
    ),
]
