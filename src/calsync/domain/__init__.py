"""calsync.domain (see docs/architecture.md)."""
