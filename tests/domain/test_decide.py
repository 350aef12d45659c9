"""The decision table (domain.decide) is total, and docs/sync.md prints it as the code has it.

That every cell is reached through the sync itself is tests/sync/test_decisions.py."""

from __future__ import annotations

from itertools import product
from pathlib import Path

from calsync.domain.decide import (
    KINDS,
    ONE_WAY,
    SIDES,
    WHEN,
    Action,
    Kind,
    State,
    Writes,
    action_for,
    render,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sync.md"


def test_every_side_pair_has_exactly_one_action() -> None:
    assert set(SIDES) == set(product(State, State))
    assert len(SIDES) == len(State) ** 2
    assert all(isinstance(action, Action) for action in SIDES.values())


def test_every_special_kind_has_exactly_one_action() -> None:
    assert set(KINDS) == set(Kind) - {Kind.ENTRY} == set(WHEN)
    assert all(isinstance(action, Action) for action in KINDS.values())


def test_every_case_has_one_action_whichever_sides_may_be_written() -> None:
    assert set(ONE_WAY) == set(Writes)
    for writes in Writes:
        for kind in Kind:
            if kind is Kind.ENTRY:
                for crm, google in product(State, State):
                    assert isinstance(action_for(kind, crm, google, writes), Action)
            else:
                assert isinstance(action_for(kind, writes=writes), Action)


def test_one_way_never_writes_the_side_it_may_not() -> None:
    to_google = {Action.PUSH, Action.INSERT_GOOGLE, Action.DELETE_GOOGLE, Action.RESTORE_GOOGLE}
    to_crm = {Action.PULL, Action.MERGE, Action.DELETE_CRM, Action.RESTORE_CRM}
    for crm, google in product(State, State):
        assert action_for(Kind.ENTRY, crm, google, Writes.CRM) not in {Action.MERGE}
        assert action_for(Kind.ENTRY, crm, google, Writes.GOOGLE) not in to_crm
        if SIDES[(crm, google)] in to_google - {Action.PUSH, Action.DELETE_GOOGLE}:
            assert action_for(Kind.ENTRY, crm, google, Writes.CRM) not in to_google


def test_docs_print_the_table_as_the_code_has_it() -> None:
    assert render() in DOCS.read_text(encoding="utf-8")
