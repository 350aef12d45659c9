"""calsync.jobs (see docs/architecture.md)."""
