"""Errors are JSON with code, message and remedy; bad input is 4xx; operations endpoints."""

from __future__ import annotations

from .conftest import World


def assert_error(body: dict[str, object]) -> None:
    error = body["error"]
    assert isinstance(error, dict) and error["code"] and error["message"]


async def test_unknown_route_method_and_bad_json(world: World) -> None:
    resp = await world.call("GET", "/api/v1/nothing-here")
    assert resp.status_code == 404
    assert_error(resp.json())
    resp = await world.call("PUT", "/api/v1/activities")
    assert resp.status_code == 405
    assert_error(resp.json())
    resp = await world.call(
        "POST",
        "/api/v1/activities",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 422
    assert_error(resp.json())
    resp = await world.call(
        "POST", "/api/v1/users", content=b"[]", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 422


async def test_bad_query_parameters(world: World) -> None:
    for params in (
        {"limit": "0"},
        {"limit": "99999999999999999999"},
        {"offset": "-1"},
        {"from": "yesterday"},
        {"owner": "nobody"},
        {"type": "x\u0000"},
        {"from": "0001-01-01T00:00:00+01:00"},
        {"to": "9999-12-31T23:59:59-14:00"},
    ):
        resp = await world.call("GET", "/api/v1/activities", params=params)
        assert resp.status_code == 422, (params, resp.text)
        assert_error(resp.json())
    resp = await world.call("GET", "/api/v1/changes", params={"after": "-5"})
    assert resp.status_code == 422


async def test_strings_the_database_cannot_store_are_refused(world: World) -> None:
    for raw in (
        b'{"email": "a\\u0000@x.io"}',
        b'{"email": "a\\ud800@x.io"}',
        b'{"email": "a@x.io", "name": "\\udfff"}',
    ):
        resp = await world.call(
            "POST", "/api/v1/users", content=raw, headers={"Content-Type": "application/json"}
        )
        assert resp.status_code == 422, (raw, resp.text)


async def test_health_and_readiness(world: World) -> None:
    assert (await world.client.get("/healthz")).json() == {"status": "ok"}
    assert (await world.client.get("/readyz")).json() == {"status": "ok"}


async def test_openapi_is_served(world: World) -> None:
    spec = (await world.client.get("/openapi.json")).json()
    paths = set(spec["paths"])
    assert {
        "/api/v1/tenant/settings",
        "/api/v1/users",
        "/api/v1/users/{user_id}",
        "/api/v1/activity-types",
        "/api/v1/activities",
        "/api/v1/activities/{activity_id}",
        "/api/v1/changes",
    } <= paths
    assert (await world.client.get("/docs")).status_code == 200
