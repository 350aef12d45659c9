"""What every OAuth endpoint shares: the account id Google gives (`sub`), the server's own
base URL, the parameters of a request (form, JSON or query), and JSON answers that no cache
keeps (tokens must never be cached).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse

from .. import errors

NO_STORE = {"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate", "Pragma": "no-cache"}


def subject_id(email: str) -> str:
    """Google's stable numeric account id (`sub`), derived from the e-mail so it survives resets."""
    digest = int(hashlib.sha256(email.lower().encode()).hexdigest(), 16)
    return str(10**20 + digest % (9 * 10**20))


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def json_response(data: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=NO_STORE)


async def request_params(request: Request) -> dict[str, str]:
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
