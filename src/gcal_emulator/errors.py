"""Google's error bodies, exactly as the Calendar API and the OAuth server send them."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class GoogleError(Exception):
    """A Calendar API error: `{"error": {"errors": [...], "code": N, "message": "..."}}`."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        location_type: str | None = None,
        location: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location_type = location_type
        self.location = location
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "domain": self.domain,
            "reason": self.reason,
            "message": self.message,
        }
        if self.location_type:
            item["locationType"] = self.location_type
        if self.location:
            item["location"] = self.location
        return {"error": {"errors": [item], "code": self.code, "message": self.message}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.code, headers=self.headers)


# One constructor per case in Google's "Handle API errors" guide.


def invalid(message: str = "Invalid value", location: str | None = None) -> GoogleError:
    lt = "parameter" if location else None
    return GoogleError(400, "invalid", message, location_type=lt, location=location)


def bad_request(message: str = "Bad Request") -> GoogleError:
    return GoogleError(400, "badRequest", message)


def required(message: str, location: str | None = None) -> GoogleError:
    return GoogleError(
        400, "required", message, location_type="parameter" if location else None, location=location
    )


def time_range_empty(location: str = "timeMax") -> GoogleError:
    return GoogleError(
        400,
        "timeRangeEmpty",
        "The specified time range is empty.",
        location_type="parameter",
        location=location,
    )


def auth_error() -> GoogleError:
    return GoogleError(
        401,
        "authError",
        "Invalid Credentials",
        location_type="header",
        location="Authorization",
        headers={
            "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
        },
    )


def insufficient_permissions() -> GoogleError:
    return GoogleError(403, "insufficientPermissions", "Insufficient Permission")


def forbidden(message: str = "Forbidden") -> GoogleError:
    return GoogleError(403, "forbidden", message)


def required_access_level() -> GoogleError:
    return GoogleError(
        403, "requiredAccessLevel", "You need to have writer access to this calendar."
    )


def parse_error() -> GoogleError:
    return GoogleError(400, "parseError", "Parse Error")


def forbidden_for_non_organizer() -> GoogleError:
    return GoogleError(
        403,
        "forbiddenForNonOrganizer",
        "Shared properties can only be changed by the organizer of the event.",
    )


def user_rate_limit_exceeded() -> GoogleError:
    return GoogleError(403, "userRateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")


def rate_limit_exceeded(code: int = 403) -> GoogleError:
    return GoogleError(code, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")


def quota_exceeded() -> GoogleError:
    return GoogleError(
        403, "quotaExceeded", "Calendar usage limits exceeded.", domain="usageLimits"
    )


def not_found() -> GoogleError:
    return GoogleError(404, "notFound", "Not Found")


def duplicate() -> GoogleError:
    return GoogleError(409, "duplicate", "The requested identifier already exists.")


def full_sync_required() -> GoogleError:
    return GoogleError(
        410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required."
    )


def deleted() -> GoogleError:
    return GoogleError(410, "deleted", "Resource has been deleted")


def updated_min_too_long_ago() -> GoogleError:
    return GoogleError(
        410,
        "updatedMinTooLongAgo",
        "The requested minimum modification time lies too far in the past.",
    )


def condition_not_met() -> GoogleError:
    return GoogleError(
        412, "conditionNotMet", "Precondition Failed", location_type="header", location="If-Match"
    )


def backend_error(code: int = 500) -> GoogleError:
    return GoogleError(code, "backendError", "Backend Error")


REASON_DEFAULTS: dict[str, tuple[str, str]] = {
    # reason -> (domain, message): used by fault injection to build faithful bodies
    "invalid": ("global", "Invalid value"),
    "badRequest": ("global", "Bad Request"),
    "timeRangeEmpty": ("global", "The specified time range is empty."),
    "authError": ("global", "Invalid Credentials"),
    "insufficientPermissions": ("global", "Insufficient Permission"),
    "forbidden": ("global", "Forbidden"),
    "requiredAccessLevel": ("global", "You need to have writer access to this calendar."),
    "parseError": ("global", "Parse Error"),
    "forbiddenForNonOrganizer": (
        "global",
        "Shared properties can only be changed by the organizer of the event.",
    ),
    "userRateLimitExceeded": ("usageLimits", "Rate Limit Exceeded"),
    "rateLimitExceeded": ("usageLimits", "Rate Limit Exceeded"),
    "quotaExceeded": ("usageLimits", "Calendar usage limits exceeded."),
    "notFound": ("global", "Not Found"),
    "duplicate": ("global", "The requested identifier already exists."),
    "fullSyncRequired": ("global", "Sync token is no longer valid, a full sync is required."),
    "deleted": ("global", "Resource has been deleted"),
    "updatedMinTooLongAgo": (
        "global",
        "The requested minimum modification time lies too far in the past.",
    ),
    "conditionNotMet": ("global", "Precondition Failed"),
    "backendError": ("global", "Backend Error"),
}

DEFAULT_REASON_FOR_STATUS = {
    400: "invalid",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    409: "duplicate",
    410: "deleted",
    412: "conditionNotMet",
    429: "rateLimitExceeded",
    500: "backendError",
    502: "backendError",
    503: "backendError",
}


def from_reason(code: int, reason: str | None = None) -> GoogleError:
    """A faithful error for a status code and (optional) reason, for fault injection."""
    reason = reason or DEFAULT_REASON_FOR_STATUS.get(code, "backendError")
    domain, message = REASON_DEFAULTS.get(reason, ("global", reason))
    if code == 503 and reason == "backendError":
        message = "The service is currently unavailable."
    return GoogleError(code, reason, message, domain=domain)


class OAuthError(Exception):
    """An OAuth 2.0 token-endpoint error: `{"error": ..., "error_description": ...}`."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "error_description": self.description}, status_code=self.status
        )


def invalid_grant(description: str = "Token has been expired or revoked.") -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_client(description: str = "The OAuth client was not found.") -> OAuthError:
    return OAuthError("invalid_client", description, 401)


def unauthorized_client(
    description: str = (
        "Client is unauthorized to retrieve access tokens using this method, "
        "or client not authorized for any of the scopes requested."
    ),
) -> OAuthError:
    return OAuthError("unauthorized_client", description, 401)


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)
