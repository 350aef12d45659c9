"""Which way a calendar syncs: a user's choice per calendar (stored in calendar_binding.direction)."""

from __future__ import annotations

from enum import StrEnum


class Direction(StrEnum):
    TWO_WAY = "two_way"
    GOOGLE_TO_CRM = "google_to_crm"  # Google's edits come in; the CRM's never go out
    CRM_TO_GOOGLE = "crm_to_google"  # the CRM's fields overwrite Google's edits

    @property
    def pulls(self) -> bool:
        """Google's changes are written into the CRM."""
        return self is not Direction.CRM_TO_GOOGLE

    @property
    def pushes(self) -> bool:
        """The CRM's changes are written into Google."""
        return self is not Direction.GOOGLE_TO_CRM
