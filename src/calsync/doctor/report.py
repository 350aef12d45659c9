"""What a diagnosis is made of and how it is shown: the check statuses, `Text` (a message id
rendered in a language at the last moment), `Check`, `Diagnosis` with its plain-text support
report, and the terminal table of `calsync doctor`.

Texts are gettext message ids with %(name)s parameters, so the page shows them in the reader's
language and the terminal in English; `Text.render` does either.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from calsync import __version__
from calsync.settings import Settings
from calsync.store.models import GoogleConnection, SyncRun, Tenant, User

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
# a check that cannot pass in the sandbox by design (the emulator is not Google): neither a
# failure nor a warning there
SANDBOX = "sandbox"
Translate = Callable[[str], str]

_SECRET = re.compile(
    r"(ya29\.[\w.-]+|1//[\w.-]+|csk_[\w-]+|gAAAAA[\w=-]+|GOCSPX-[\w-]+|"
    r"-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----|"
    r"(?i:(?:token|secret|password|key)\s*[=:]\s*)\S+)"
)


def redact(text: str) -> str:
    """Tokens, keys and passwords out of anything headed for a support e-mail."""
    return _SECRET.sub("[redacted]", text)


def iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they are UTC."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Text:
    """A message id and its parameters; rendered in a language at the last moment."""

    msgid: str
    params: dict[str, Any] = field(default_factory=dict)
    # a singular/plural pair: msgid is the singular, `plural` the plural, `n` picks the form
    # (and is the message's %(num)s)
    plural: str | None = None
    n: int = 0

    @classmethod
    def counted(cls, forms: tuple[str, str], n: int, params: dict[str, Any] | None = None) -> Text:
        return cls(forms[0], dict(params or {}), forms[1], n)

    def render(self, translate: Translate | None = None) -> str:
        """In English (the support report), or through `translate` for singular messages."""
        params = {k: iso(v) if isinstance(v, datetime) else v for k, v in self.params.items()}
        if self.plural is not None:
            params["num"] = self.n
            text = self.msgid if self.n == 1 else self.plural
        else:
            text = translate(self.msgid) if translate else self.msgid
        return text % params if params else text


@dataclass(frozen=True)
class Check:
    key: str
    title: str  # message id
    status: str
    detail: Text
    remedy: Text | None = None
    code: str | None = None  # the error code behind a failure, for support


@dataclass
class Diagnosis:
    tenant: Tenant
    user: User
    connection: GoogleConnection | None
    checks: list[Check]
    checked_at: datetime
    recent_runs: list[SyncRun]
    settings: Settings

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    @property
    def worst(self) -> str:
        for status in (FAIL, WARN):
            if any(c.status == status for c in self.checks):
                return status
        return PASS

    def report(self) -> str:
        """What seed 000 says support needs — status, exact errors, since when, what was tried,
        versions — as plain English text with secrets redacted."""
        conn = self.connection
        lines = [
            "calsync support report",
            f"generated: {self.checked_at.isoformat(timespec='seconds')}",
            f"calsync version: {__version__}",
            f"company: {self.tenant.name}",
            f"CRM user: {self.user.email}",
            "integration: Google Calendar",
            f"auth mode: {conn.auth_mode if conn else self.tenant.auth_mode}",
            f"connection status: {conn.status if conn else 'not connected'}",
            f"Google account: {(conn.google_email if conn else None) or '-'}",
            f"connected since: {iso(conn.connected_at) if conn else '-'}",
            f"public URL: {self.settings.public_url}",
        ]
        if conn is not None and (conn.last_error_code or conn.last_error_message):
            lines.append(
                f"last connection error: {conn.last_error_code or ''} "
                f"{conn.last_error_message or ''} (since {iso(conn.last_error_at)})"
            )
        lines.append("")
        lines.append("checks:")
        for check in self.checks:
            line = f"  [{check.status.upper()}] {check.title}: {check.detail.render()}"
            if check.code:
                line += f" ({check.code})"
            lines.append(line)
        failing = [r for r in self.recent_runs if r.error_code]
        if failing:
            first = failing[-1]
            lines.append("")
            lines.append(f"errors since: {iso(first.started_at)}")
        lines.append("")
        lines.append("recent syncs (what was tried):")
        for run in self.recent_runs[:10]:
            error = f" {run.error_code}: {run.error_message}" if run.error_code else ""
            lines.append(
                f"  {iso(run.started_at)} {run.trigger} {'full ' if run.full_sync else ''}"
                f"{run.outcome} pulled={run.pulled} pushed={run.pushed}{error}"
            )
        if not self.recent_runs:
            lines.append("  none")
        return redact("\n".join(lines))


# -- the terminal ---------------------------------------------------------------------------

_STYLE = {PASS: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim", SANDBOX: "cyan"}


def print_diagnosis(diagnosis: Diagnosis, console: Any = None) -> None:
    """A Rich table of the checks, then the support report."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"calsync doctor — {diagnosis.user.email} ({diagnosis.tenant.name})")
    table.add_column("check")
    table.add_column("result")
    table.add_column("details")
    table.add_column("what to do")
    for check in diagnosis.checks:
        detail = check.detail.render()
        if check.code and check.status == FAIL:
            detail += f" [{check.code}]"
        remedy = check.remedy.render() if check.remedy and check.status in (FAIL, WARN) else ""
        style = _STYLE.get(check.status, "")
        table.add_row(
            check.title, f"[{style}]{check.status.upper()}[/]", detail, remedy, style=None
        )
    console.print(table)
    console.print("\n[bold]Support report[/] (secrets redacted):")
    console.print(diagnosis.report(), markup=False, highlight=False)
