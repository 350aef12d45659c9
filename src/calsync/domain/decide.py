"""What to do with one entry, as a small table of cases (after vdirsyncer's sync decision).

Each side is described by one state relative to the entry's link; the table maps the pair to
one action. Deletion never beats an edit: an entry edited on one side and deleted on the other
is kept (and the edit wins), because losing a user's edit is worse than an entry to delete again.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    ABSENT = "absent"  # no counterpart on this side (not linked, never seen)
    UNCHANGED = "unchanged"  # hash equals the last-synced hash
    CHANGED = "changed"
    DELETED = "deleted"  # tombstoned in the CRM / cancelled in Google


class Action(StrEnum):
    NOTHING = "nothing"
    PUSH = "push"  # write the CRM's changes to Google
    PULL = "pull"  # write Google's changes to the CRM
    MERGE = "merge"  # both changed: three-way merge, policy for conflicts
    INSERT_GOOGLE = "insert_google"  # new in the CRM: create the Google event
    IMPORT = "import"  # new in Google: match an existing activity or create one
    DELETE_GOOGLE = "delete_google"
    DELETE_CRM = "delete_crm"  # tombstone, never a hard delete
    RESTORE_GOOGLE = "restore_google"  # edited in the CRM after Google deleted it
    RESTORE_CRM = "restore_crm"  # edited in Google after the CRM deleted it
    FORGET = "forget"  # gone on both sides: the link is done


_TABLE: dict[tuple[State, State], Action] = {
    (State.UNCHANGED, State.UNCHANGED): Action.NOTHING,
    (State.CHANGED, State.UNCHANGED): Action.PUSH,
    (State.UNCHANGED, State.CHANGED): Action.PULL,
    (State.CHANGED, State.CHANGED): Action.MERGE,
    (State.DELETED, State.UNCHANGED): Action.DELETE_GOOGLE,
    (State.DELETED, State.CHANGED): Action.RESTORE_CRM,
    (State.UNCHANGED, State.DELETED): Action.DELETE_CRM,
    (State.CHANGED, State.DELETED): Action.RESTORE_GOOGLE,
    (State.DELETED, State.DELETED): Action.FORGET,
    (State.CHANGED, State.ABSENT): Action.INSERT_GOOGLE,
    (State.UNCHANGED, State.ABSENT): Action.INSERT_GOOGLE,
    (State.ABSENT, State.CHANGED): Action.IMPORT,
    (State.ABSENT, State.UNCHANGED): Action.IMPORT,
    (State.DELETED, State.ABSENT): Action.NOTHING,
    (State.ABSENT, State.DELETED): Action.NOTHING,
    (State.ABSENT, State.ABSENT): Action.NOTHING,
}


def decide(crm: State, google: State) -> Action:
    return _TABLE[(crm, google)]
