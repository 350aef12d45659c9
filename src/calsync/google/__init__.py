"""calsync.google (see docs/architecture.md)."""
