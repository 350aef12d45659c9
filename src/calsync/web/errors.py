"""Every error leaves the API as JSON `{"error": {"code", "message", "remedy"?}}`, never a trace.

A browser (it asks for text/html, outside /api/ and the webhooks) gets an HTML error page
instead, in its language with the navigation: web/pages installs it as `app.state.error_page`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)

# (request, status, names of the invalid fields, headers) → an HTML page; see web/pages
ErrorPage = Callable[[Request, int, list[str], dict[str, str]], Awaitable[Response]]
# machine endpoints answer JSON whatever the client accepts
_MACHINE_PATHS = ("/api/", "/webhooks/", "/metrics", "/healthz", "/readyz", "/openapi")


def _quality(accept: str, wanted: str) -> float:
    """The q value the Accept header gives this exact media type (0 when absent)."""
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        if media.strip().lower() == wanted:
            for param in params.split(";"):
                name, _, value = param.strip().partition("=")
                if name.strip() == "q":
                    try:
                        return float(value)
                    except ValueError:
                        return 0.0
            return 1.0
    return 0.0


def wants_html(request: Request) -> bool:
    """A browser on a page: it prefers text/html to JSON, and the path is no API's."""
    if request.url.path.startswith(_MACHINE_PATHS):
        return False
    accept = request.headers.get("accept", "")
    html = _quality(accept, "text/html")
    return html > 0 and html >= _quality(accept, "application/json")


async def _page_or_none(
    request: Request, status: int, fields: list[str], headers: dict[str, str] | None = None
) -> Response | None:
    page: ErrorPage | None = getattr(request.app.state, "error_page", None)
    if page is None or not wants_html(request):
        return None
    try:
        return await page(request, status, fields, headers or {})
    except Exception:  # the error page itself failed: the JSON error still tells what happened
        log.exception("error page failed", path=request.url.path, status=status)
        return None


class FieldProblem(BaseModel):
    field: str
    code: str
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    remedy: str | None = None
    fields: list[FieldProblem] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """Raised by handlers; becomes an error response with this status, code and remedy."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        remedy: str | None = None,
        fields: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.remedy, self.fields, self.headers = remedy, fields, headers


def not_found(what: str = "resource") -> ApiError:
    return ApiError(
        404, "not_found", f"no such {what}", "check the id; ids of other tenants are never visible"
    )


def error_response(
    status: int,
    code: str,
    message: str,
    remedy: str | None = None,
    fields: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    detail = ErrorDetail(code=code, message=message, remedy=remedy, fields=fields)
    return JSONResponse(
        {"error": detail.model_dump(exclude_none=True)}, status_code=status, headers=headers
    )


# documented on every API route so clients (and schemathesis) know the error shape
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Malformed request"),
        (401, "Missing or unknown API key"),
        (403, "The key may not do this"),
        (404, "Not found (or another tenant's)"),
        (409, "Conflicts with existing data"),
        (410, "Deleted (tombstone)"),
        (412, "If-Match does not match the current version"),
        (422, "Invalid field values"),
        (503, "Busy: every API slot of the process stayed taken; retry after Retry-After"),
    )
}

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
}


# pydantic names union members and wrapped validators in error locations; they are no field
_TYPE_PARTS = {"datetime", "date", "str", "int", "bool", "float", "uuid", "list", "dict", "none"}


def _location(loc: tuple[Any, ...]) -> str:
    parts = [
        str(p)
        for p in loc
        if p not in ("body", "query", "path", "header")
        and not (isinstance(p, str) and (p in _TYPE_PARTS or "[" in p))
    ]
    return ".".join(parts) or "request"


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields = [
        FieldProblem(
            field=_location(tuple(e.get("loc", ()))),
            code=str(e.get("type", "invalid")),
            message=str(e.get("msg", "invalid")),
        )
        for e in exc.errors()
    ]
    page = await _page_or_none(request, 422, sorted({f.field for f in fields}))
    if page is not None:
        return page
    summary = "; ".join(f"{f.field}: {f.message}" for f in fields[:5])
    return error_response(
        422, "validation_failed", f"invalid request: {summary}", "fix the listed fields", fields
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    page = await _page_or_none(request, exc.status, [f.field for f in exc.fields or []])
    if page is not None:
        return page
    return error_response(exc.status, exc.code, exc.message, exc.remedy, exc.fields, exc.headers)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    page = await _page_or_none(request, exc.status_code, [], dict(exc.headers or {}))
    if page is not None:
        return page
    code = _STATUS_CODES.get(exc.status_code, "error" if exc.status_code >= 500 else "bad_request")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", path=request.url.path, error=type(exc).__name__)
    page = await _page_or_none(request, 500, [])
    if page is not None:
        return page
    return error_response(
        500,
        "internal_error",
        "calsync hit an unexpected error",
        "retry; if it persists, send the server log around this time to support",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
