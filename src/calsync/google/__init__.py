"""calsync.google: Google's OAuth and Calendar v3 APIs as a typed async client (no database).

Modules: `models` (wire format), `errors` (one exception per failure kind), `retry` and
`ratelimit` (backoff and per-account budget), `auth` (token providers), `oauth` (user connect
flow), `service_account` (domain-wide delegation), `calls` + `calendar` (the client), `batch`.
"""
