"""calsync: two-way Google Calendar sync for CRMs."""

__version__ = "0.1.0"
