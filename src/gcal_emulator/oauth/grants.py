"""Grants: what a person allowed a client. Revoking one kills its refresh and access tokens."""

from __future__ import annotations

from ..state import Grant, World


def revoke_grant(world: World, grant_id: str) -> None:
    grant = world.grants.get(grant_id)
    if grant is not None:
        grant.revoked = True
    for rt in world.refresh_tokens.values():
        if rt.grant_id == grant_id:
            rt.revoked = True
    for at in world.access_tokens.values():
        if at.grant_id == grant_id:
            at.revoked = True


def has_refresh_token(world: World, grant_id: str) -> bool:
    return any(rt.grant_id == grant_id and not rt.revoked for rt in world.refresh_tokens.values())


def active_grant(world: World, email: str, client_id: str) -> Grant | None:
    for grant in world.grants.values():
        if grant.email == email and grant.client_id == client_id and not grant.revoked:
            return grant
    return None
