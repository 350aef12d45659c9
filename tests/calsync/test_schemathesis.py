"""Property-based API test: no 5xx, and every response matches the OpenAPI document."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from calsync.domain.activity import ActivityDraft, validate
from calsync.settings import Settings
from calsync.store import activities, apikeys, crypto, tenants, users
from calsync.store.db import Database
from calsync.web.app import create_app

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@dataclass(frozen=True)
class Fixture:
    admin_key: str
    user_key: str
    path_parameters: dict[str, str]


@pytest.fixture
def data(db_url: str, keyring: crypto.Keyring) -> Fixture:
    """A tenant with an admin key, a user with a key and an activity of that user."""

    async def setup() -> Fixture:
        db = Database(db_url, pooled=False)
        async with db.session() as s:
            tenant = await tenants.create(s, f"fuzz-{uuid.uuid4()}")
            user = await users.create(s, tenant.id, "fuzz@acme.test")
            _, admin = await apikeys.create(s, tenant.id)
            _, member = await apikeys.create(s, tenant.id, user_id=user.id)
            values = validate(
                ActivityDraft(
                    start=datetime(2025, 6, 2, 9),
                    end=datetime(2025, 6, 2, 10),
                    time_zone="Europe/Oslo",
                    recurrence=["RRULE:FREQ=WEEKLY"],
                )
            )
            row = await activities.create(
                s, tenant.id, type_key="meeting", owner_id=user.id, values=values
            )
            await s.commit()
        await db.dispose()
        return Fixture(admin, member, {"activity_id": str(row.id), "user_id": str(user.id)})

    crypto.install(keyring)
    return asyncio.run(setup())


@pytest.fixture
def api_schema(db_url: str, keyring: crypto.Keyring, tmp_path: Path) -> BaseSchema:
    # no pool: schemathesis drives the app from its own event loop in another thread
    app = create_app(
        Settings(data_dir=tmp_path, mode="sandbox"),
        database=Database(db_url, pooled=False),
        keyring=keyring,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def exercise(strategy: SearchStrategy[schemathesis.Case], headers: dict[str, str]) -> None:
    @given(case=strategy)
    @settings(
        max_examples=12,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_api_conforms(api_schema: BaseSchema, data: Fixture, mode: GenerationMode) -> None:
    """Every operation, with valid (positive) and schema-breaking (negative) input: as the
    admin with generated ids, and as a user on its own existing user and activity."""
    failures: list[str] = []
    for result, as_user in itertools.product(api_schema.get_all_operations(), (False, True)):
        operation = result.ok()
        key = data.user_key if as_user else data.admin_key
        headers = {"Authorization": f"Bearer {key}"}
        fixed = {
            k: v
            for k, v in data.path_parameters.items()
            if as_user and f"{{{k}}}" in operation.path
        }
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed or None)
        try:
            exercise(strategy, headers)
        except Unsatisfiable:
            continue  # nothing to break in an operation without inputs (negative mode)
        except Exception as exc:  # collect all operations' failures, then report them together
            failures.append(f"{operation.label} ({'user' if as_user else 'admin'}): {exc}")
    assert not failures, "\n\n".join(failures)
