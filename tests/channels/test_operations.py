"""Operations: /healthz, /readyz with the job runner, /metrics series, redacted JSON logs."""

from __future__ import annotations

import io
import json
import logging

import structlog

from calsync.obs import MASK, redact_text, setup
from calsync.store.base import utcnow
from calsync.sync.engine import sync_binding
from tests.channels.conftest import Served


async def test_readyz_reflects_the_job_runner(served: Served) -> None:
    client = served.world.client
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    resp = await client.get("/readyz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    served.jobs.alive = False
    resp = await client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "job_runner_unavailable"


async def test_metrics_expose_the_series(served: Served) -> None:
    served.jobs.run = True
    _, _, binding_id = await served.connected("mo@example.com")
    await served.wait_for(lambda: served.deliveries())
    served.insert_event("mo@example.com", "Metered")
    await served.wait_for(lambda: served.jobs.synced == 1)
    await sync_binding(served.world.db, binding_id, served.services.access, trigger="manual")
    resp = await served.world.client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    for series in (
        'calsync_syncs_total{outcome="ok"}',
        'calsync_bindings{state="incremental"}',
        # the database is shared with other tests: the series are there, their values vary
        'calsync_push_channels{kind="events",state="active"}',
        'calsync_push_channels{kind="calendar_list",state="active"}',
        'calsync_push_channels{kind="calendar_list",state="expired"}',
        "calsync_queue_depth",
        'calsync_google_requests_total{status="200"}',
        "calsync_google_requests_per_binding_per_day",
        'calsync_webhooks_total{result="accepted"} 1.0',
        "calsync_webhook_to_applied_seconds_count 1.0",
    ):
        assert series in text, series
    # observed once: the next scrape does not count the same notification again
    again = (await served.world.client.get("/metrics")).text
    assert "calsync_webhook_to_applied_seconds_count 1.0" in again


def test_logs_are_json_with_secrets_redacted() -> None:
    stream = io.StringIO()
    handler = setup("INFO", "json", stream=stream)
    try:
        log = logging.getLogger("calsync.test")
        log.info(
            "refreshed",
            extra={"refresh_token": "1//0abcdefSECRET", "binding": "b1", "code": "rateLimit"},
        )
        log.warning("calling Google with Authorization: Bearer ya29.SECRETTOKEN for a@b.c")
        log.info("url https://x/?access_token=SECRETQ&alt=json and key csk_SECRETKEY")
        structlog.get_logger("calsync.struct").info(
            "stored", client_secret="GOCSPX-SECRET", nested={"password": "SECRETPW", "n": 1}
        )
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 4
    out = stream.getvalue()
    assert "SECRET" not in out
    assert lines[0]["refresh_token"] == MASK
    assert lines[0]["binding"] == "b1" and lines[0]["code"] == "rateLimit"
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "calsync.test"
    assert "timestamp" in lines[0]
    assert lines[1]["event"] == f"calling Google with Authorization: Bearer {MASK} for a@b.c"
    assert lines[3]["client_secret"] == MASK
    assert lines[3]["nested"] == {"password": MASK, "n": 1}


def test_redact_text_patterns() -> None:
    assert redact_text('{"refresh_token": "1//0xyz", "expires_in": 3599}') == (
        f'{{"refresh_token": "{MASK}", "expires_in": 3599}}'
    )
    # an OAuth `state` is a secret too (issue 13): redacted like the code
    assert redact_text("code=4/0AbCd&state=s") == f"code={MASK}&state={MASK}"
    assert "utcnow" not in redact_text(str(utcnow()))
