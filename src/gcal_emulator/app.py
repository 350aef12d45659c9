"""Assembles the emulator: one Starlette app serving every Google host's paths from one host."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from . import control
from .errors import GoogleError, OAuthError
from .state import Config, World

log = logging.getLogger(__name__)
CLIENT_CLOSED = 499  # nginx's "client closed request": nobody is left to read the answer


def _route_modules() -> list[Any]:
    # imported lazily so each module can import `state`/`errors` without cycles
    from . import (
        batch,
        calendars,
        events,
        iam,
        middleware,
        oauth,
        persist,
        push,
        service_accounts,
    )

    # persist first: the saved world is loaded before any other module starts, saved after all stop
    return [
        persist,
        oauth,
        service_accounts,
        iam,
        calendars,
        push,
        events,
        batch,
        control,
        middleware,
    ]


async def _google_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GoogleError)
    return exc.response()


async def _oauth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    return exc.response()


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {
            "error": {
                "errors": [{"domain": "global", "reason": "notFound", "message": "Not Found"}],
                "code": 404,
                "message": "Not Found",
            }
        },
        status_code=404,
    )


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client went away before its request body arrived (a batch cancelled mid-upload):
    one log line, no traceback, and an answer nobody reads."""
    log.info("client went away during %s %s", request.method, request.url.path)
    return Response(status_code=CLIENT_CLOSED)


def create_app(
    world: World | None = None, *, config: Config | None = None, state_file: str | None = None
) -> Starlette:
    """The emulator as an ASGI app. Pass a `World` to share state with in-process tests."""
    world = world or World(config)
    modules = _route_modules()
    routes: list[BaseRoute] = []
    for module in modules:
        routes.extend(getattr(module, "routes", []))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for module in modules:
            start = getattr(module, "on_startup", None)
            if start is not None:
                await start(app)
        try:
            yield
        finally:
            for module in reversed(modules):
                stop = getattr(module, "on_shutdown", None)
                if stop is not None:
                    await stop(app)

    app = Starlette(
        routes=routes,
        exception_handlers={
            GoogleError: _google_error,
            OAuthError: _oauth_error,
            ClientDisconnect: _client_gone,
            404: _not_found,
        },
        lifespan=lifespan,
    )
    app.state.world = world
    app.state.state_file = state_file
    for module in modules:
        install = getattr(module, "install", None)
        if install is not None:
            install(app)
    return app
