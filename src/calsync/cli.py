"""The `calsync` command."""

from __future__ import annotations

import typer

from . import __version__

app = typer.Typer(help="calsync: two-way Google Calendar sync for CRMs.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print calsync's version."""
    typer.echo(__version__)


def main() -> None:
    app()
