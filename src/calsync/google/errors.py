"""One exception class per way Google can fail, classified once so the engine never guesses.

Every class carries a stable `code` (stored with sync issues and shown in the UI), a plain
`message`, a `remedy` the user or admin can act on, and whether backing off and retrying can
help (`retryable`). `from_response` / `from_oauth_error` turn Google's bodies into them:

- Calendar API: ``{"error": {"errors": [{"domain", "reason", "message", ...}], "code", "message"}}``
- OAuth token endpoint: ``{"error": "invalid_grant", "error_description": "..."}``
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

from .models import ErrorBody

SETTINGS_PAGE = "Settings → Google Calendar"


class GoogleError(Exception):
    """Base class: anything calsync.google raises about Google."""

    code: ClassVar[str] = "google.error"
    default_message: ClassVar[str] = "Google Calendar returned an error."
    remedy: ClassVar[str] = (
        "Try again later; if it keeps happening, contact support with the error code."
    )
    retryable: ClassVar[bool] = False
    #: the connection can only recover by the user connecting Google again
    needs_reauth: ClassVar[bool] = False

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        reason: str | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
        body: ErrorBody | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.status = status
        self.reason = reason
        self.detail = detail  # Google's own wording, for logs and support
        self.retry_after = retry_after
        self.body = body
        super().__init__(self.message)

    def __str__(self) -> str:
        bits = [f"{self.code}: {self.message}"]
        if self.status is not None or self.reason:
            bits.append(f"(HTTP {self.status} {self.reason or ''}".rstrip() + ")")
        if self.detail and self.detail != self.message:
            bits.append(f"— Google said: {self.detail}")
        return " ".join(bits)

    def as_dict(self) -> dict[str, Any]:
        """What a sync issue / API response records about the failure."""
        return {
            "code": self.code,
            "message": self.message,
            "remedy": self.remedy,
            "retryable": self.retryable,
            "needs_reauth": self.needs_reauth,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
        }


# -- Calendar API (per request) ---------------------------------------------------------------


class TokenExpired(GoogleError):
    code = "google.token_expired"
    default_message = "The Google access token expired or was rejected."
    remedy = (
        "Nothing to do: calsync refreshes the token automatically. If this keeps happening, "
        f"reconnect Google Calendar in {SETTINGS_PAGE}."
    )


class RateLimited(GoogleError):
    code = "google.rate_limited"
    default_message = "Google asked calsync to slow down (rate limit reached)."
    remedy = (
        "Nothing to do: calsync waits and retries automatically. If it happens often, lower the "
        "sync frequency or ask the admin to raise the Calendar API quota in Google Cloud console."
    )
    retryable = True


class QuotaExceeded(GoogleError):
    code = "google.quota_exceeded"
    default_message = "Google's Calendar usage limit for this account was reached."
    remedy = (
        "Google limits how many events one account may create or change per day. calsync "
        "tries again later; avoid mass-creating events, and check that no other tool is "
        "writing to the same calendar."
    )


class InsufficientScope(GoogleError):
    code = "google.insufficient_scope"
    default_message = "calsync was not given permission to see and edit your calendars."
    remedy = (
        f"Reconnect Google Calendar in {SETTINGS_PAGE} and, on Google's consent screen, tick "
        "the box that lets calsync see, edit, share and delete your calendars."
    )
    needs_reauth = True


class ForbiddenForNonOrganizer(GoogleError):
    code = "google.forbidden_for_non_organizer"
    default_message = "Only the organiser of this event can change it."
    remedy = (
        "Change the event in the organiser's calendar, or ask the organiser to change it; "
        "calsync keeps your copy read-only."
    )


class Forbidden(GoogleError):
    code = "google.forbidden"
    default_message = "Your Google account may not change this calendar or event."
    remedy = (
        "Ask the calendar's owner to share it with you with 'Make changes to events', or choose "
        f"another calendar in {SETTINGS_PAGE}."
    )


class NotFound(GoogleError):
    code = "google.not_found"
    default_message = "The Google calendar or event was not found."
    remedy = (
        "The calendar was deleted or is no longer shared with your Google account. Choose "
        f"another calendar in {SETTINGS_PAGE}."
    )


class SyncTokenExpired(GoogleError):
    code = "google.sync_token_expired"
    default_message = "Google needs a full sync of this calendar (the sync token expired)."
    remedy = "Nothing to do: calsync runs a full sync and links existing entries again."


class Deleted(GoogleError):
    code = "google.deleted"
    default_message = "The Google event was already deleted."
    remedy = "Nothing to do: the entry is treated as deleted."


class PreconditionFailed(GoogleError):
    code = "google.precondition_failed"
    default_message = "The event changed in Google since calsync last read it."
    remedy = "Nothing to do: calsync reads the event again and merges both changes."


class Duplicate(GoogleError):
    code = "google.duplicate"
    default_message = "An event with this id already exists in Google."
    remedy = "Nothing to do: calsync links the existing event instead of creating another."


class BadRequest(GoogleError):
    code = "google.bad_request"
    default_message = "Google rejected the entry as invalid."
    remedy = (
        "Check the entry's times and fields (for example an end before the start) and save it "
        "again; it is retried after the next change. Contact support if it keeps failing."
    )


class BackendError(GoogleError):
    code = "google.backend_error"
    default_message = "Google Calendar had a temporary problem."
    remedy = (
        "Nothing to do: calsync retries automatically. Check Google Workspace Status if it lasts."
    )
    retryable = True


class NetworkError(GoogleError):
    code = "google.network_error"
    default_message = "calsync could not reach Google (timeout or connection error)."
    remedy = (
        "calsync retries automatically. If it lasts, check the server's internet access, "
        "proxy and firewall settings for googleapis.com."
    )
    retryable = True


# -- OAuth (user connections) -----------------------------------------------------------------


class GrantRevoked(GoogleError):
    code = "google.grant_revoked"
    default_message = "Google no longer accepts calsync's access to this Google account."
    remedy = (
        f"Reconnect Google Calendar in {SETTINGS_PAGE}; Google revoked access, usually after a "
        "password change, a security check or removing calsync from your Google account. "
        "Your CRM appointments are kept and sync resumes after reconnecting."
    )
    needs_reauth = True


class InvalidClient(GoogleError):
    code = "google.invalid_client"
    default_message = "Google does not accept calsync's OAuth client id or secret."
    remedy = (
        "The admin must check CALSYNC_GOOGLE_CLIENT_ID and CALSYNC_GOOGLE_CLIENT_SECRET against "
        "the OAuth client in Google Cloud console (APIs & Services → Credentials)."
    )


class OAuthNotConfigured(GoogleError):
    code = "google.oauth_not_configured"
    default_message = "OAuth is not configured: the server has no Google client credentials."
    remedy = (
        "The admin must create an OAuth client in Google Cloud console and set "
        "CALSYNC_GOOGLE_CLIENT_ID and CALSYNC_GOOGLE_CLIENT_SECRET (see docs/google-setup.md)."
    )


class AuthorizationFailed(GoogleError):
    code = "google.authorization_failed"
    default_message = "Connecting Google Calendar did not complete."
    remedy = f"Start again from {SETTINGS_PAGE} → Connect Google and allow access on Google's page."


class InvalidState(AuthorizationFailed):
    code = "google.oauth_state_invalid"
    default_message = (
        "This Google sign-in link is no longer valid (already used, expired or for another user)."
    )
    remedy = f"Start again from {SETTINGS_PAGE} → Connect Google; each link works only once."


class WrongBrowser(InvalidState):
    """A flow started from calsync's pages came back in another browser (a forwarded link)."""

    code = "google.oauth_wrong_browser"
    default_message = (
        "This Google sign-in was started in another browser, so it was not accepted here."
    )
    remedy = (
        f"Open {SETTINGS_PAGE} in the browser you use for calsync and press Connect Google there."
    )


# -- service accounts (domain-wide delegation) --------------------------------------------------


class UnauthorizedClient(GoogleError):
    code = "google.unauthorized_client"
    default_message = (
        "The client ID is not authorised for domain-wide delegation in the Google Admin console "
        "(Security → API controls → Domain-wide delegation)."
    )
    remedy = (
        "In admin.google.com open Security → API controls → Domain-wide delegation, add the "
        "service account's client ID with the scope https://www.googleapis.com/auth/calendar, "
        "then press Test again (changes can take a few minutes)."
    )


class DelegatedUserNotFound(GoogleError):
    code = "google.delegation_unknown_user"
    default_message = (
        "No such user in the Workspace domain — the CRM e-mail must equal the Google e-mail."
    )
    remedy = (
        "Change the user's CRM e-mail to their Google Workspace e-mail address (or create the "
        "user in Google Workspace), then switch sync on again."
    )


class ServiceAccountKeyError(GoogleError):
    code = "google.service_account_key"
    default_message = "The service-account key cannot be used."
    remedy = (
        "Download a new key for the service account in Google Cloud console (IAM & Admin → "
        "Service accounts → Keys → Add key), upload it with its password (P12: 'notasecret' "
        "unless changed) and press Test."
    )


# -- classification ---------------------------------------------------------------------------

_BY_REASON_403: dict[str, type[GoogleError]] = {
    "userRateLimitExceeded": RateLimited,
    "rateLimitExceeded": RateLimited,
    "quotaExceeded": QuotaExceeded,
    "dailyLimitExceeded": QuotaExceeded,
    "insufficientPermissions": InsufficientScope,
    "forbiddenForNonOrganizer": ForbiddenForNonOrganizer,
}

_BY_STATUS: dict[int, type[GoogleError]] = {
    400: BadRequest,
    401: TokenExpired,
    403: Forbidden,
    404: NotFound,
    409: Duplicate,
    412: PreconditionFailed,
    429: RateLimited,
}


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def parse_error_body(content: bytes | str | Mapping[str, Any] | None) -> ErrorBody | None:
    """Google's JSON error object, or None when the body is not one (an HTML proxy page...)."""
    data: Any = content
    if isinstance(content, bytes | str):
        try:
            data = json.loads(content or b"null")
        except ValueError:
            return None
    if not isinstance(data, Mapping) or not isinstance(data.get("error"), Mapping):
        return None
    try:
        return ErrorBody.model_validate(data["error"])
    except ValueError:
        return None


def classify(status: int, reason: str | None) -> type[GoogleError]:
    """The exception class for a Calendar API status and first error reason."""
    if status == 410:
        return Deleted if reason == "deleted" else SyncTokenExpired
    if status == 403 and reason in _BY_REASON_403:
        return _BY_REASON_403[reason]
    if status >= 500:
        return BackendError
    return _BY_STATUS.get(status, GoogleError)


def from_response(
    status: int, headers: Mapping[str, str] | None, content: bytes | str | None
) -> GoogleError:
    """The exception for a Calendar API error response (also used for batch parts)."""
    body = parse_error_body(content)
    reason = body.reason if body else None
    cls = classify(status, reason)
    detail = body.message if body else None
    if body is None and content:
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        detail = text[:200]
    retry_after = parse_retry_after((headers or {}).get("retry-after"))
    message = None
    if cls is BadRequest and detail:
        message = f"Google rejected the entry as invalid: {detail}"
    return cls(
        message, status=status, reason=reason, detail=detail, retry_after=retry_after, body=body
    )


def from_oauth_error(
    error: str | None,
    description: str | None,
    *,
    status: int | None = None,
    service_account: bool = False,
) -> GoogleError:
    """The exception for a token-endpoint error (`{"error", "error_description"}`).

    For service accounts `invalid_grant` means the impersonated user does not exist (or the
    JWT itself is bad: a deleted key, a skewed clock); for users it means the grant is gone.
    """
    desc = description or ""
    low = desc.lower()
    kw: dict[str, Any] = {"status": status, "reason": error, "detail": desc or None}
    if error == "unauthorized_client":
        if service_account:
            return UnauthorizedClient(**kw)
        # a refresh token issued to another OAuth client (the client id was changed)
        return GrantRevoked(**kw)
    if error == "invalid_client":
        if service_account:
            return ServiceAccountKeyError(
                "Google does not know this service-account key (deleted or replaced).", **kw
            )
        return InvalidClient(**kw)
    if error == "invalid_grant":
        if service_account:
            if "email" in low or "user id" in low:  # Google: "Invalid email or User ID"
                return DelegatedUserNotFound(**kw)
            return ServiceAccountKeyError(
                "Google rejected the service account's signed request: the key or the service "
                "account was deleted, or the server's clock is wrong.",
                **kw,
            )
        return GrantRevoked(**kw)
    if error == "invalid_scope":
        return InsufficientScope(**kw)
    if error in ("temporarily_unavailable", "server_error"):
        return BackendError(**kw)
    return AuthorizationFailed(
        f"Google refused the sign-in ({error}{': ' + desc if desc else ''}).", **kw
    )
