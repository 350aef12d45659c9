"""The access log never carries an OAuth callback's `code` or `state` (issue 13, item 7): uvicorn
logs the path as the browser sent it, URL-encoded, which the token-shape patterns missed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from calsync.obs import MASK, redact_text, setup

CODE = "4/0AeanS0ZsecretAuthCode_xyz"
STATE = "Zk3s9StateSecretValue-_"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    access = logging.getLogger("uvicorn.access")
    saved = access.disabled, access.level, access.propagate
    # other tests' uvicorn servers (access_log=False) or dictConfig may have silenced it
    access.disabled, access.level = False, logging.NOTSET
    handler = setup("INFO", "json", out)
    yield out
    logging.getLogger().removeHandler(handler)
    access.disabled, access.level, access.propagate = saved


def test_the_access_log_redacts_the_callbacks_query(stream: io.StringIO) -> None:
    path = (
        f"/oauth/google/callback?state={STATE}&code=4%2F0AeanS0ZsecretAuthCode_xyz"
        "&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcalendar"
    )
    # exactly how uvicorn.protocols.http logs a request
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "203.0.113.9:51000", "GET", path, "1.1", 303
    )
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert STATE not in line["event"] and "secretAuthCode" not in line["event"]
    assert f"/oauth/google/callback?{MASK}" in line["event"]
    assert '"GET' in line["event"] and "303" in line["event"]


@pytest.mark.parametrize(
    "text",
    [
        f"GET /oauth/google/callback?code={CODE}&state={STATE} 302",
        f"GET /oauth/google/callback?error=access_denied&state={STATE} 302",
        f"redirect to https://app.example/cb?state={STATE}&code=4%2f0abcSecret",
        f"https://calsync.example/oauth/google/callback?state={STATE}",
    ],
)
def test_code_and_state_are_redacted_in_any_form(text: str) -> None:
    out = redact_text(text)
    assert STATE not in out and "Secret" not in out and "secret" not in out, out


def test_other_query_strings_stay_readable() -> None:
    assert redact_text("GET /api/v1/activities?expand=true&limit=5 200") == (
        "GET /api/v1/activities?expand=true&limit=5 200"
    )
