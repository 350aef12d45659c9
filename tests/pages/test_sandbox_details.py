"""The sandbox says it is a sandbox: the http webhook address (the emulator delivers over http)
is "not applicable in the sandbox", not a failure, while production still fails it; the start
banner lists as connected exactly the users with a Google account in the emulator."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from calsync import doctor
from calsync.cli.sandbox import EmulatorThread, Sandbox
from calsync.settings import Settings

from .conftest import Pages

ALICE = "alice@example.com"


async def webhook_check(pages: Pages, user_id: Any, **changes: Any) -> doctor.Check:
    services = pages.api.services
    settings = services.settings.model_copy(update=changes)
    result = await doctor.diagnose(
        pages.db, services.access, settings, pages.api.world.tenant_id, user_id, live=False
    )
    found = [c for c in result.checks if c.key == "webhook"]
    assert len(found) == 1
    assert "[SANDBOX]" in result.report() or found[0].status != doctor.SANDBOX
    return found[0]


async def test_the_http_webhook_address_is_not_applicable_in_the_sandbox(pages: Pages) -> None:
    user_id, _, browser = await pages.person(ALICE)
    http = "http://127.0.0.1:8765"
    check = await webhook_check(pages, user_id, mode="sandbox", public_url=http)
    assert check.status == doctor.SANDBOX and check.remedy is None and check.code is None
    assert "fine in the sandbox" in check.detail.render()
    # outside the sandbox the same address fails, as before
    check = await webhook_check(pages, user_id, mode="production", public_url=http)
    assert check.status == doctor.FAIL and check.code == "webhook_not_https"
    # an https sandbox address is checked like any other
    check = await webhook_check(pages, user_id, mode="sandbox", public_url="https://calsync.test")
    assert check.status == doctor.SKIP  # offline
    # the page's badge, in Swedish
    assert doctor.SANDBOX not in (doctor.PASS, doctor.WARN, doctor.FAIL)
    page = await browser.get("/diagnostics", headers={"Accept-Language": "sv"})
    assert page.status_code == 200 and "sandbox-note" not in page.text  # not a sandbox here


def test_the_banner_lists_only_connected_users_as_connected() -> None:
    settings = Settings(mode="sandbox", public_url="http://127.0.0.1:8765", data_dir=Path("data"))
    emulator = cast(EmulatorThread, SimpleNamespace(url="http://127.0.0.1:9999"))
    sandbox = Sandbox(settings, emulator, admin_key="csk_test")
    sandbox.logins = [
        ("admin@demo.example", "id-admin"),
        ("ada@demo.example", "id-ada"),
        ("bo@demo.example", "id-bo"),
    ]
    sandbox.connected = {"ada@demo.example", "bo@demo.example"}
    banner = sandbox.banner()
    connected, _, rest = banner.partition("already connected):\n")
    assert connected and rest, banner
    linked, _, others = rest.partition("  Users without a Google account (pages and API only):\n")
    assert "ada@demo.example" in linked and "bo@demo.example" in linked
    assert "admin@demo.example" not in linked
    assert "admin@demo.example" in others.splitlines()[0]
    # nobody connected: no "already connected" heading at all
    sandbox.connected = set()
    assert "already connected" not in sandbox.banner()
