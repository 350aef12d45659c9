"""calsync.web (see docs/architecture.md)."""
