"""What a Google failure means for a sync: the one place errors turn into outcomes.

- the connection needs the user (`needs_reauth`): stop, keep CRM changes queued;
- the calendar is gone (404 on the calendar): disable the binding with a message;
- Google is busy or unreachable after the retry budget: back off, try the whole run later;
- one event is refused (quota for that event, not the organiser, invalid): park it as an issue
  and carry on with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from calsync.google import errors
from calsync.store.statuses import Code


class Outcome(StrEnum):
    OK = "ok"
    PARTIAL = "partial"  # done, but some entries were parked or deferred
    NEEDS_REAUTH = "needs_reauth"
    BACKOFF = "backoff"
    DISABLED = "disabled"
    PAUSED = "paused"
    SKIPPED = "skipped"  # locked elsewhere, paused, disconnected
    FAILED = "failed"


#: failures of one event that must not stop the others
PARK: tuple[type[errors.GoogleError], ...] = (
    errors.QuotaExceeded,
    errors.ForbiddenForNonOrganizer,
    errors.BadRequest,
    errors.Forbidden,
)


@dataclass(frozen=True)
class Failure:
    outcome: Outcome
    code: str
    message: str
    remedy: str

    @classmethod
    def of(cls, exc: errors.GoogleError, outcome: Outcome) -> Failure:
        return cls(outcome, exc.code, exc.message, exc.remedy)


class CalendarGone(errors.GoogleError):
    code = Code.CALENDAR_GONE
    default_message = "The Google calendar no longer exists or is no longer shared with you."
    remedy = (
        "Choose another calendar in Settings → Google Calendar; the CRM's appointments are kept."
    )


def run_failure(exc: errors.GoogleError) -> Failure:
    """The outcome of a failure that stops a whole run."""
    if exc.needs_reauth:
        return Failure.of(exc, Outcome.NEEDS_REAUTH)
    if isinstance(exc, errors.NotFound):
        gone = CalendarGone(detail=exc.detail)
        return Failure.of(gone, Outcome.DISABLED)
    if exc.retryable or isinstance(exc, errors.QuotaExceeded):
        return Failure.of(exc, Outcome.BACKOFF)
    return Failure.of(exc, Outcome.FAILED)


def parks(exc: BaseException) -> bool:
    """True when this error concerns only the one event it happened to."""
    return isinstance(exc, PARK)


def backoff_delay(failures: int, base: timedelta = timedelta(minutes=1)) -> timedelta:
    """Exponential run-level backoff, capped at 6 hours."""
    delay: timedelta = base * (2 ** min(max(0, failures), 16))
    return min(delay, timedelta(hours=6))
