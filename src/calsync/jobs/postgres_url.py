"""What the procrastinate runner asks of the database URL, without loading procrastinate (and
psycopg: ≈ 12 MB in every process) where it is not used: SQLite's `calsync serve`, the CLI's
other commands, a worker on the embedded runner."""

from __future__ import annotations

from sqlalchemy.engine import make_url


class NeedsPostgres(RuntimeError):
    """procrastinate keeps its jobs in PostgreSQL; the message says what to set."""


def conninfo(database_url: str) -> str:
    """A libpq URL for psycopg from calsync's SQLAlchemy URL."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise NeedsPostgres(
            "CALSYNC_JOBS=procrastinate needs PostgreSQL: set CALSYNC_DATABASE_URL to a "
            "postgresql:// URL, or use CALSYNC_JOBS=inprocess (the default) with SQLite."
        )
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
