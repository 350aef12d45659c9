"""`calsync sync --tenant T --user EMAIL [--full]`: sync one user's calendars now, in the
terminal — a progress bar over the pages read and the events written, then a summary table.
`calsync resume --tenant T --user EMAIL --confirm-deletions|--restored`: resume calendars the
mass-delete guard paused, then sync them the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from calsync import runtime
from calsync.domain.activity import zone_names
from calsync.google.auth import TokenProvider
from calsync.google.calendar import CalendarClient
from calsync.google.calls import ApiCall
from calsync.google.models import EventsPage
from calsync.settings import Settings, get_settings
from calsync.store import bindings, connections, tenants, users
from calsync.store.bootstrap import database_for, keyring_for
from calsync.store.crypto import SecretKeyError, install
from calsync.store.db import Database
from calsync.store.models import CalendarBinding
from calsync.store.statuses import BindingStage, ConnectionStatus
from calsync.sync.engine import RunResult, sync_binding
from calsync.sync.errors import Outcome
from calsync.sync.tokens import GoogleAccess

T = TypeVar("T")
GOOD = (Outcome.OK, Outcome.PARTIAL)
COLUMNS = ("pulled", "pushed", "created", "updated", "deleted", "linked", "conflicts", "issues")


class Observer:
    """Moves the progress bar: pages read and events they held; events written to Google."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.pages = 0
        self.events = 0
        self.written = 0

    def start(self, label: str) -> None:
        self.pages = self.events = self.written = 0
        self.task = self.progress.add_task(label, total=None, stats="")

    def _show(self, advance: int = 0) -> None:
        if self.task is None:
            return
        stats = f"{self.pages} pages · {self.events} events read · {self.written} written"
        self.progress.update(self.task, advance=advance, stats=stats)

    def page(self, items: int) -> None:
        self.pages += 1
        self.events += items
        self._show(items)

    def writes(self, count: int) -> None:
        self.written += count
        self._show(count)

    def finish(self) -> None:
        if self.task is not None:
            self.progress.update(self.task, total=self.events + self.written)
            self.progress.update(self.task, completed=self.events + self.written)


class ObservedClient(CalendarClient):
    """A CalendarClient that tells the observer about every page and batch it completes."""

    def __init__(self, auth: TokenProvider, observer: Observer, **kwargs: Any) -> None:
        super().__init__(auth, **kwargs)
        self.observer = observer

    async def execute(self, call: ApiCall[T]) -> T:
        result = await super().execute(call)
        if isinstance(result, EventsPage):
            self.observer.page(len(result.items))
        return result

    async def batch(
        self, batch_calls: Sequence[ApiCall[Any]], *, chunk_size: int | None = None
    ) -> list[Any]:
        results = await super().batch(batch_calls, chunk_size=chunk_size)
        self.observer.writes(len(results))
        return results


@dataclass
class ObservedAccess(GoogleAccess):
    observer: Observer | None = None

    def client(self, tokens: TokenProvider) -> CalendarClient:
        if self.observer is None:
            return super().client(tokens)
        return ObservedClient(
            tokens,
            self.observer,
            settings=self.settings,
            http=self.http,
            retry=self.retry,
            rate_limiter=self.rate_limiter,
        )


def summary(rows: Sequence[tuple[CalendarBinding, RunResult]]) -> Table:
    table = Table(title="calsync sync", title_justify="left")
    table.add_column("Calendar", overflow="fold")
    table.add_column("Outcome")
    for name in COLUMNS:
        table.add_column(name.capitalize(), justify="right")
    for binding, result in rows:
        colour = "green" if result.outcome in GOOD else "red"
        if result.outcome is Outcome.SKIPPED:
            colour = "yellow"
        table.add_row(
            binding.summary or binding.google_calendar_id,
            f"[{colour}]{result.outcome.value}[/{colour}]",
            *(str(int(result.counts.get(name, 0))) for name in COLUMNS),
        )
    return table


def sync(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name or id.")],
    user: Annotated[str, typer.Option("--user", help="The user's (CRM) e-mail.")],
    full: Annotated[
        bool, typer.Option("--full", help="Relist the whole window instead of only changes.")
    ] = False,
) -> None:
    """Sync one user's Google calendars now, with progress and a summary table."""
    settings = get_settings()
    console = Console()
    runtime.start_process(zone_names)  # the first sync finds the TLS context and zones made
    try:
        install(keyring_for(settings))
    except SecretKeyError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    code = asyncio.run(_sync(settings, console, tenant, user, full))
    raise typer.Exit(code)


async def _sync(settings: Settings, console: Console, tenant: str, email: str, full: bool) -> int:
    db = database_for(settings, pooled=False)
    try:
        targets = await _targets(db, console, tenant, email)
        if targets is None:
            return 1
        return await _run(db, settings, console, targets, full)
    finally:
        await db.dispose()


async def _targets(
    db: Database, console: Console, tenant: str, email: str
) -> list[CalendarBinding] | None:
    def fail(message: str) -> None:
        console.print(f"[red]{message}[/red]")

    async with db.session() as session:
        found = await tenants.find(session, tenant)
        if found is None:
            fail(f"no tenant {tenant!r}")
            return None
        member = await users.by_email(session, found.id, email)
        if member is None:
            fail(f"no user {email!r} in tenant {found.name!r}")
            return None
        conn = await connections.for_user(session, member.id)
        if conn is None or conn.status != ConnectionStatus.CONNECTED:
            state = "not connected" if conn is None else conn.status
            fail(
                f"{email}'s Google Calendar is {state}: connect it first "
                f"(POST /api/v1/users/{member.id}/google/connect)."
            )
            return None
        targets = [b for b in await bindings.for_connection(session, conn.id) if b.enabled]
    if not targets:
        fail(f"{email} has no calendar switched on for sync.")
        return None
    return targets


async def _run(
    db: Database,
    settings: Settings,
    console: Console,
    targets: Sequence[CalendarBinding],
    full: bool,
) -> int:
    rows: list[tuple[CalendarBinding, RunResult]] = []
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        observer = Observer(progress)
        access = ObservedAccess(settings, observer=observer)
        try:
            for binding in targets:
                observer.start(binding.summary or binding.google_calendar_id)
                result = await sync_binding(db, binding.id, access, trigger="manual", full=full)
                observer.finish()
                rows.append((binding, result))
        finally:
            await access.aclose()
    console.print(summary(rows))
    failed = [(b, r) for b, r in rows if r.outcome not in GOOD and r.error is not None]
    for binding, result in failed:
        assert result.error is not None
        console.print(
            f"[red]{binding.google_calendar_id}: {result.error.message}[/red]\n"
            f"  What to do: {result.error.remedy}"
        )
    return 1 if any(r.outcome not in (*GOOD, Outcome.SKIPPED) for _, r in rows) else 0


def resume(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name or id.")],
    user: Annotated[str, typer.Option("--user", help="The user's (CRM) e-mail.")],
    confirm_deletions: Annotated[
        bool | None,
        typer.Option(
            "--confirm-deletions/--restored",
            help="--confirm-deletions: apply the deletions Google reported to the CRM. "
            "--restored: the entries were restored in Google; nothing is deleted (still "
            "missing, the calendar pauses again).",
            show_default=False,
        ),
    ] = None,
    calendar: Annotated[
        str | None,
        typer.Option("--calendar", help="The Google calendar id (default: every paused one)."),
    ] = None,
) -> None:
    """Resume calendars the mass-delete guard paused, then sync them now."""
    console = Console()
    if confirm_deletions is None:
        console.print("[red]Say what to do: --confirm-deletions or --restored.[/red]")
        raise typer.Exit(2)
    settings = get_settings()
    try:
        install(keyring_for(settings))
    except SecretKeyError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    code = asyncio.run(_resume(settings, console, tenant, user, calendar, confirm_deletions))
    raise typer.Exit(code)


async def _resume(
    settings: Settings,
    console: Console,
    tenant: str,
    email: str,
    calendar: str | None,
    confirm: bool,
) -> int:
    db = database_for(settings, pooled=False)
    try:
        targets = await _targets(db, console, tenant, email)
        if targets is None:
            return 1
        paused = [
            b
            for b in targets
            if b.stage == BindingStage.PAUSED and calendar in (None, b.google_calendar_id)
        ]
        if not paused:
            which = f"{calendar} is" if calendar else "no calendar of theirs is"
            console.print(f"[red]Nothing to resume: {which} paused for {email}.[/red]")
            return 1
        async with db.session() as session:
            for binding in paused:
                await bindings.resume(session, binding.id, confirm_deletions=confirm)
            await session.commit()
        what = "the deletions will be applied" if confirm else "nothing will be deleted"
        for binding in paused:
            console.print(f"Resumed {binding.summary or binding.google_calendar_id}: {what}.")
        return await _run(db, settings, console, paused, False)
    finally:
        await db.dispose()


def register(app: typer.Typer, name: str = "sync") -> Callable[..., None]:
    """Add the commands to the `calsync` Typer app."""
    app.command(name)(sync)
    app.command("resume")(resume)
    return sync
