"""calsync.sync (see docs/architecture.md)."""
