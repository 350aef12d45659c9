"""The `calsync` command: run the server, migrate the database, administer tenants and keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from calsync import __version__, runtime
from calsync.domain.activity import zone_names
from calsync.jobs.worker import migrate_jobs
from calsync.settings import Settings, get_settings
from calsync.store import apikeys, crypto, tenants, users, web_sessions
from calsync.store import migrate as migrations
from calsync.store import secrets as stored_secrets
from calsync.store.bootstrap import database_for, keyring_for
from calsync.store.db import Database
from calsync.store.errors import AlreadyExists
from calsync.store.models import Tenant, User
from calsync.store.statuses import UserRole

from .sync import register as register_sync
from .worker import register as register_worker

T = TypeVar("T")

app = typer.Typer(help="calsync: two-way Google Calendar sync for CRMs.", no_args_is_help=True)
tenant_app = typer.Typer(help="Manage tenants (companies).", no_args_is_help=True)
user_app = typer.Typer(help="Manage the users of a tenant.", no_args_is_help=True)
apikey_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
register_worker(app)  # `calsync worker` (cli/worker.py)


def _fail(message: str) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def _database(settings: Settings) -> Database:
    return database_for(settings, pooled=False)


def _with_db(work: Callable[[Database], Awaitable[T]], *, secrets: bool = False) -> T:
    """Run `work` against the configured database (installing the keyring when it needs one:
    loading a tenant decrypts its stored service-account key, so every command that reads
    tenants passes `secrets=True`)."""
    settings = get_settings()
    if secrets:
        _install_keyring(settings)

    async def run() -> T:
        db = _database(settings)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _install_keyring(settings: Settings) -> crypto.Keyring:
    try:
        keyring = keyring_for(settings)
    except crypto.SecretKeyError as exc:
        raise _fail(str(exc)) from exc
    crypto.install(keyring)
    return keyring


async def _tenant(session: AsyncSession, tenant: str) -> Tenant:
    """The tenant named (or with the id) `tenant`; exits with an error when there is none."""
    found = await tenants.find(session, tenant)
    if found is None:
        raise _fail(f"no tenant {tenant!r}")
    return found


async def _member(session: AsyncSession, tenant: Tenant, email: str) -> User:
    """The tenant's user with this e-mail; exits with an error when there is none."""
    member = await users.by_email(session, tenant.id, email)
    if member is None:
        raise _fail(f"no user {email!r} in tenant {tenant.name!r}")
    return member


@app.command()
def version() -> None:
    """Print calsync's version."""
    typer.echo(__version__)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    migrate: Annotated[
        bool, typer.Option(help="Run `calsync migrate` first (upgrade to the newest schema).")
    ] = True,
) -> None:
    """Run the web server (REST API, pages, webhooks).

    Configured by CALSYNC_DATABASE_URL (default: a SQLite file in CALSYNC_DATA_DIR) and
    CALSYNC_SECRET_KEY (required unless in sandbox mode). Protect /metrics with
    CALSYNC_METRICS_TOKEN (bearer) or serve it on CALSYNC_METRICS_PORT only (docs/deploy.md,
    "Security"). Google's request budget, shared by every process: CALSYNC_GOOGLE_BUDGET_PER_MINUTE
    (10000), CALSYNC_GOOGLE_BUDGET_PER_DAY (1000000); safety polls stop at
    CALSYNC_GOOGLE_BUDGET_POLL_SHARE (0.8) of either (docs/deploy.md, "Jobs"). An idle client
    connection stays open CALSYNC_KEEP_ALIVE_SECONDS (75): more than a load balancer's idle
    timeout.
    """
    import uvicorn

    from calsync.obs import setup as setup_logging
    from calsync.web.app import create_app

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    runtime.start_process(zone_names)  # the first sync finds the TLS context and zones made
    _install_keyring(settings)
    if migrate:
        _with_db(migrations.upgrade)
    sandbox = None
    if settings.sandbox and not settings.google_emulator_url:
        from .sandbox import Sandbox  # the emulator alongside, a demo company, printed logins

        sandbox = Sandbox.start(settings, host=host, port=port)
        settings = sandbox.settings
    app = create_app(settings)
    app.state.sandbox = sandbox
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        timeout_keep_alive=settings.keep_alive_seconds,
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Option(help="Target revision for upgrades.")] = "head",
    down: Annotated[
        str | None,
        typer.Option(help="Downgrade to this revision instead (`base` removes every table)."),
    ] = None,
) -> None:
    """Create or upgrade the database schema (Alembic); the only way the schema is made."""

    async def work(db: Database) -> str | None:
        if down is not None:
            await migrations.downgrade(db, down)
        else:
            await migrations.upgrade(db, revision)
            await migrate_jobs(db)  # procrastinate's tables, on PostgreSQL
        return await migrations.current_revision(db)

    current = _with_db(work)
    typer.echo(f"database at revision {current or 'base (empty)'}")


@app.command("generate-key")
def generate_key() -> None:
    """Print a new secret key for CALSYNC_SECRET_KEY."""
    typer.echo(crypto.generate_key())


@app.command("rotate-key")
def rotate_key() -> None:
    """Re-encrypt every stored secret with the newest key in CALSYNC_SECRET_KEY.

    Put the new key first (`CALSYNC_SECRET_KEY=new,old`), run this, then drop the old key.
    """
    keyring = _install_keyring(get_settings())

    async def work(db: Database) -> int:
        async with db.session() as session:
            count = await stored_secrets.rotate(session, keyring)
            await session.commit()
        return count

    typer.echo(f"re-encrypted {_with_db(work)} stored secrets with the newest key")


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="The company's name (unique).")],
) -> None:
    """Create a tenant with the built-in activity types; prints its id."""

    async def work(db: Database) -> str:
        async with db.session() as session:
            tenant = await tenants.create(session, name)
            await session.commit()
            return str(tenant.id)

    try:
        typer.echo(_with_db(work, secrets=True))
    except AlreadyExists as exc:
        raise _fail(str(exc)) from exc


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Argument(help="The user's e-mail (the same as their Google one).")],
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name or id.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin.")] = False,
) -> None:
    """Create a user in a tenant; prints its id."""

    async def work(db: Database) -> str:
        async with db.session() as session:
            found = await _tenant(session, tenant)
            user = await users.create(
                session, found.id, email, name=name, role=UserRole.ADMIN if admin else UserRole.USER
            )
            await session.commit()
            return str(user.id)

    try:
        typer.echo(_with_db(work, secrets=True))
    except AlreadyExists as exc:
        raise _fail(str(exc)) from exc


@apikey_app.command("create")
def apikey_create(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name or id.")],
    user: Annotated[
        str | None,
        typer.Option("--user", help="E-mail of the user the key acts for; omit for an admin key."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="A label to recognise the key by.")] = None,
) -> None:
    """Create an API key and print it. It is shown only this once; calsync keeps a hash."""

    async def work(db: Database) -> str:
        async with db.session() as session:
            found = await _tenant(session, tenant)
            user_id = (await _member(session, found, user)).id if user is not None else None
            _, plain = await apikeys.create(session, found.id, user_id=user_id, name=name)
            await session.commit()
            return plain

    typer.echo(_with_db(work, secrets=True))


@user_app.command("set-password")
def user_set_password(
    email: Annotated[str, typer.Argument(help="The user's e-mail.")],
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name or id.")],
    password: Annotated[
        str | None,
        typer.Option(help="The new password (asked for, hidden, when omitted)."),
    ] = None,
) -> None:
    """Set the password the user logs in to calsync's pages with (stored as a scrypt hash).

    Ends every page session the user has (they log in again with the new password)."""
    from calsync.store.passwords import MIN_LENGTH, hash_password

    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_LENGTH:
        raise _fail(f"the password needs at least {MIN_LENGTH} characters")
    hashed = hash_password(password)

    async def work(db: Database) -> int:
        async with db.session() as session:
            member = await _member(session, await _tenant(session, tenant), email)
            member.password_hash = hashed
            ended = await web_sessions.end_all(session, member.id)
            await session.commit()
            return ended

    ended = _with_db(work, secrets=True)
    typer.echo(f"password set for {email}" + (f"; ended {ended} page sessions" if ended else ""))


@app.command()
def doctor(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name or id.")],
    user: Annotated[str, typer.Option("--user", help="The CRM user's e-mail.")],
    offline: Annotated[
        bool, typer.Option("--offline", help="Skip the checks that talk to Google or the URL.")
    ] = False,
) -> None:
    """Run the troubleshooting checklist for one user; exits 1 when a check fails."""
    from calsync.doctor import run_cli as run_doctor

    settings = get_settings()
    _install_keyring(settings)
    code = asyncio.run(run_doctor(settings, _database(settings), tenant, user, live=not offline))
    raise typer.Exit(code=code)


register_sync(app)  # `calsync sync --tenant T --user EMAIL [--full]` (cli/sync.py)


def main() -> None:
    app()
