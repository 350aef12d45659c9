"""The checklist (doctor) on the diagnostics page and in `calsync doctor`, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from typer.testing import CliRunner

from calsync import doctor
from calsync.cli import app as cli
from calsync.settings import get_settings
from calsync.store import bindings, connections, google_settings, tenants
from calsync.store.statuses import BindingStage

from .conftest import Pages

ALICE = "alice@example.com"
BOB = "bob@example.com"


def by_key(diagnosis: doctor.Diagnosis) -> dict[str, doctor.Check]:
    return {c.key: c for c in diagnosis.checks}


async def test_checks_for_a_connected_user(pages: Pages) -> None:
    pages.api.emu.account(ALICE)
    user_id, _, browser = await pages.person(ALICE)
    await pages.connect(browser, ALICE)
    services = pages.api.services
    result = await doctor.diagnose(
        pages.db, services.access, services.settings, pages.api.world.tenant_id, user_id, live=False
    )
    checks = by_key(result)
    assert checks["module"].status == doctor.PASS
    assert checks["credentials"].status == doctor.PASS
    assert checks["account"].detail.render() == f"Connected as {ALICE}."
    assert checks["webhook"].status == doctor.SKIP  # https, but offline
    assert checks["last_sync"].status == doctor.WARN  # never synced
    live = await doctor.diagnose(
        pages.db, services.access, services.settings, pages.api.world.tenant_id, user_id
    )
    checks = by_key(live)
    assert checks["connection"].status == doctor.PASS, checks["connection"]
    assert checks["calendars"].status == doctor.PASS, checks["calendars"]
    # another sync copying entries into the calendar
    for _ in range(2):
        pages.api.insert_event(ALICE, "Weekly sync", days=2)
    live = await doctor.diagnose(
        pages.db, services.access, services.settings, pages.api.world.tenant_id, user_id
    )
    assert by_key(live)["other_sync"].status == doctor.WARN
    other = by_key(live)["other_sync"].detail
    assert other.render().startswith("1 set of identical entries, e.g. 2 × “weekly sync” at ")
    assert isinstance(other.params["start"], datetime)  # shown in the reader's zone
    # one Google account connected to two CRM users
    bob_id, _, bob_browser = await pages.person(BOB)
    await pages.api.account_policy(domains=["example.com"])  # a colleague's account is allowed
    await pages.connect(bob_browser, ALICE)
    live = await doctor.diagnose(
        pages.db, services.access, services.settings, pages.api.world.tenant_id, bob_id
    )
    assert by_key(live)["duplicates"].status == doctor.FAIL
    assert by_key(live)["duplicates"].detail.render() == (
        f"The Google account {ALICE} is also connected to 1 other CRM user."
    )
    # the page shows the same, and a support report without secrets
    page = await bob_browser.get("/diagnostics")
    assert page.status_code == 200
    assert 'data-check="duplicates"' in page.text and "calsync support report" in page.text
    assert "gAAAAA" not in page.text and "1//" not in page.text
    # revoked at Google: the live refresh fails with the reconnect remedy
    pages.api.emu.control("POST", f"/accounts/{ALICE}/revoke-grants")
    live = await doctor.diagnose(
        pages.db, services.access, services.settings, pages.api.world.tenant_id, user_id
    )
    check = by_key(live)["connection"]
    assert check.status == doctor.FAIL and check.code == "google.grant_revoked"
    assert check.remedy is not None and "Reconnect" in check.remedy.render()
    german = await browser.get("/diagnostics", headers={"Accept-Language": "de"})
    assert "Neu verbinden erforderlich" in german.text


async def test_a_disabled_calendar_is_not_the_off_switch(pages: Pages) -> None:
    """A calendar disabled because of its stage (gone, no write access) has its own code and
    remedy: "switch sync on" is the remedy of the user's off switch and would not help."""
    pages.api.emu.account(ALICE)
    user_id, _, browser = await pages.person(ALICE)
    await pages.connect(browser, ALICE)
    async with pages.db.session() as s:
        conn = await connections.for_user(s, user_id)
        assert conn is not None
        (binding,) = await bindings.for_connection(s, conn.id)
        await bindings.set_stage(s, binding.id, BindingStage.DISABLED, "The calendar is gone.")
        await s.commit()
    services = pages.api.services
    result = await doctor.diagnose(
        pages.db, services.access, services.settings, pages.api.world.tenant_id, user_id, live=False
    )
    check = by_key(result)["calendars"]
    assert check.status == doctor.FAIL and check.code == "calsync.binding_disabled_stage"
    assert check.remedy is not None
    assert check.remedy.render() == "Choose another calendar in Settings → Google Calendar."


def test_redaction() -> None:
    text = "token=ya29.abc refresh 1//0gXYZ key csk_live_123 and gAAAAABhsecret ok"
    out = doctor.redact(text)
    for secret in ("ya29.abc", "1//0gXYZ", "csk_live_123", "gAAAAABhsecret"):
        assert secret not in out
    assert out.endswith("ok")


async def test_cli_doctor_exit_codes(pages: Pages, db_url: str, monkeypatch: Any) -> None:
    pages.api.emu.account(ALICE)
    await pages.api.user(ALICE)
    async with pages.db.session() as s:
        tenant = await tenants.get(s, pages.api.world.tenant_id)
        assert tenant is not None
        name = tenant.name
    settings = pages.api.services.settings
    env = {
        "CALSYNC_DATABASE_URL": db_url,
        "CALSYNC_SECRET_KEY": "",
        "CALSYNC_MODE": "sandbox",
        "CALSYNC_GOOGLE_EMULATOR_URL": settings.google_emulator_url or "",
        "CALSYNC_GOOGLE_CLIENT_ID": settings.google_client_id or "",
        "CALSYNC_GOOGLE_CLIENT_SECRET": "x",
        "CALSYNC_PUBLIC_URL": "http://crm.example.com",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CALSYNC_DATA_DIR", str(pages.api.services.settings.data_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        result = await _invoke(runner, ["doctor", "--tenant", name, "--user", ALICE, "--offline"])
        assert result.exit_code == 1, result.output
        assert "Not connected." in result.output and "not https" in result.output
        assert "calsync support report" in result.output
        result = await _invoke(runner, ["doctor", "--tenant", name, "--user", "nobody@x.org"])
        assert result.exit_code == 2
    finally:
        get_settings.cache_clear()


async def _invoke(runner: CliRunner, args: list[str]) -> Any:
    import asyncio

    # the CLI runs its own event loop: keep it off this test's loop
    return await asyncio.to_thread(runner.invoke, cli, args, catch_exceptions=False)


async def test_live_checks_reuse_the_refreshed_token(pages: Pages) -> None:
    """The connection check's refresh serves the calendar and duplicate checks too: with the
    stored access token expired at Google they ask /token no more than that once."""
    pages.api.emu.account(ALICE)
    user_id, _, browser = await pages.person(ALICE)
    await pages.connect(browser, ALICE)
    pages.api.emu.control("POST", "/tokens/expire", {"email": ALICE})
    mark = int(pages.api.emu.control("GET", "/requests?after=999999999").json()["last_seq"])
    services = pages.api.services
    live = await doctor.diagnose(
        pages.db, services.access, services.settings, pages.api.world.tenant_id, user_id
    )
    checks = by_key(live)
    assert checks["connection"].status == doctor.PASS, checks["connection"]
    assert checks["calendars"].status == doctor.PASS, checks["calendars"]
    assert checks["other_sync"].status == doctor.PASS, checks["other_sync"]
    log = pages.api.emu.control("GET", f"/requests?after={mark}").json()["items"]
    assert [r["status"] for r in log if r["path"] == "/token"] == [200]
    assert all(r["status"] != 401 for r in log)


async def test_a_disconnected_user_is_not_connected(pages: Pages) -> None:
    """Disconnecting stores the status "revoked" (there is no "disconnected" status): the
    checklist says not connected and skips what needs an account."""
    pages.api.emu.account(ALICE)
    user_id, _, browser = await pages.person(ALICE)
    await pages.connect(browser, ALICE)
    async with pages.db.session() as s:
        conn = await connections.for_user(s, user_id)
        assert conn is not None
        await google_settings.disconnect(s, conn)
        await s.commit()
    services = pages.api.services
    result = await doctor.diagnose(
        pages.db, services.access, services.settings, pages.api.world.tenant_id, user_id
    )
    checks = by_key(result)
    assert checks["connection"].status == doctor.FAIL
    assert checks["connection"].code == "not_connected"
    for key in ("account", "enabled", "calendars", "duplicates"):
        assert checks[key].status == doctor.SKIP, checks[key]
