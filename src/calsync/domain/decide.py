"""What to do with one entry: the sync's decision table (after vdirsyncer's `_get_actions`).

The pull (`sync.reconcile`, one Google event) and the push (`sync.plan`, one CRM activity) only
*classify* an entry and *carry out* the action this table gives; neither decides anything in
its own if-chains. Classifying answers three questions:

1. Its `Kind`: most entries are an ordinary `ENTRY`, linked on both sides. The few special kinds
   the sync tells apart (new on one side, waiting for a person, an attendee's copy, an exception
   of a series that moved …) have one action each, whatever the sides say.
2. For an `ENTRY`, each side's `State` relative to the link: unchanged, changed or deleted since
   the last sync. `SIDES` maps the pair to an action. Deletion never beats an edit: an entry
   edited on one side and deleted on the other is kept (and the edit wins), because losing a
   user's edit is worse than an entry to delete again.
3. Which sides the run may write (`Writes`): a calendar synced one way, or a link the CRM may
   only read, turns an action that would write the other side into what that side allows
   (`ONE_WAY`).

docs/sync.md prints these tables (`render()`); a test keeps the two in step.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """One side of a linked entry, relative to the last sync."""

    UNCHANGED = "unchanged"  # hash equals the last-synced hash
    CHANGED = "changed"
    DELETED = "deleted"  # tombstoned in the CRM / cancelled in Google


class Kind(StrEnum):
    ENTRY = "entry"  # linked on both sides: the sides decide (`SIDES`)
    NEW_IN_CRM = "new in the CRM"  # no event yet (or its insert unconfirmed)
    NEW_IN_GOOGLE = "new in Google"  # an event no link names, nor its tag or id
    GONE = "gone"  # deleted on the one side that has it, nothing to tell the other
    WAITING = "waiting"  # parked for a person, moving to another calendar, or detached
    FIRST_LINK = "linked, never synced"  # both sides exist, no merge base yet
    ATTENDEE_COPY = "attendee copy"  # a meeting another CRM user owns: only its answers
    ATTENDEE_COPY_GONE = "attendee copy cancelled"
    MOVED_EXCEPTION = "old instance of a moved exception"  # its series took it elsewhere
    UNPLACED_EXCEPTION = "exception not at its instance"  # new, or its series moved
    CANCELLED_EXCEPTION = "deleted exception, cancelled instance"
    ORPHANED_EXCEPTION = "deleted exception, occurrence free"  # the store dropped it
    SERIES_DELETED = "exception of a deleted series"
    READ_ONLY = "read-only"  # another organiser's meeting, focus time, a busy block
    REUSED_ID = "our id, deleted in Google"  # our insert met our own deleted event
    NOT_EXPORTED = "no longer exported"  # type unticked, or made a project task
    WITHDRAWN_ELSEWHERE = "deleted or unexported, in an unticked calendar"
    OUT_OF_SCOPE = "not for this calendar"  # import-only, from Google, type, window
    MOVES_HERE = "in the old export calendar"
    EXPORTED_AGAIN = "detached, exported again"
    BAD_RULE = "recurrence Google refuses"


class Writes(StrEnum):
    """Which sides the run may write for this entry."""

    BOTH = "both"
    CRM = "CRM only"  # google_to_crm, or a read-only link
    GOOGLE = "Google only"  # crm_to_google (the push never writes a read-only link anyway)


class Action(StrEnum):
    NOTHING = "nothing"
    PUSH = "push"  # write the CRM's changes to Google
    PULL = "pull"  # write Google's changes to the CRM
    MERGE = "merge"  # both changed: three-way merge, policy for conflicts
    LINK = "link"  # first merge of two entries never synced: differing units by policy
    INSERT_GOOGLE = "insert_google"  # create the Google event under its deterministic id
    IMPORT = "import"  # match an unlinked activity or create one (the pull, in bulk)
    DELETE_GOOGLE = "delete_google"
    DELETE_CRM = "delete_crm"  # tombstone, never a hard delete
    RESTORE_GOOGLE = "restore_google"  # the event comes back with the CRM's fields
    RESTORE_CRM = "restore_crm"  # the activity comes back with Google's fields
    FORGET = "forget"  # the link is done (if there is one); nothing is written
    ANSWERS = "answers"  # show Google's guests and their answers on the activity
    PLACE = "place"  # patch an exception into its series' instance
    FOLLOW_GOOGLE = "follow_google"  # undo a CRM edit, forget a CRM delete
    WITHDRAW = "withdraw"  # delete the event calsync wrote (or detach one it did not)
    MOVE = "move"  # events.move into this calendar
    ATTACH = "attach"  # written again: the CRM side is owed, then as an ordinary entry
    REPORT = "report"  # an issue for a person; nothing written


#: an ordinary linked entry: (CRM, Google) → action
SIDES: dict[tuple[State, State], Action] = {
    (State.UNCHANGED, State.UNCHANGED): Action.NOTHING,
    (State.CHANGED, State.UNCHANGED): Action.PUSH,
    (State.UNCHANGED, State.CHANGED): Action.PULL,
    (State.CHANGED, State.CHANGED): Action.MERGE,
    (State.DELETED, State.UNCHANGED): Action.DELETE_GOOGLE,
    (State.DELETED, State.CHANGED): Action.RESTORE_CRM,
    (State.UNCHANGED, State.DELETED): Action.DELETE_CRM,
    (State.CHANGED, State.DELETED): Action.RESTORE_GOOGLE,
    (State.DELETED, State.DELETED): Action.FORGET,
}

#: a special kind: one action, whatever the sides say — and when the sync sees it
KINDS: dict[Kind, Action] = {
    Kind.NEW_IN_CRM: Action.INSERT_GOOGLE,
    Kind.NEW_IN_GOOGLE: Action.IMPORT,
    Kind.GONE: Action.FORGET,
    Kind.WAITING: Action.NOTHING,
    Kind.FIRST_LINK: Action.LINK,
    Kind.ATTENDEE_COPY: Action.ANSWERS,
    Kind.ATTENDEE_COPY_GONE: Action.FORGET,
    Kind.MOVED_EXCEPTION: Action.NOTHING,
    Kind.UNPLACED_EXCEPTION: Action.PLACE,
    Kind.CANCELLED_EXCEPTION: Action.PUSH,
    Kind.ORPHANED_EXCEPTION: Action.RESTORE_CRM,
    Kind.SERIES_DELETED: Action.FORGET,
    Kind.READ_ONLY: Action.FOLLOW_GOOGLE,
    Kind.REUSED_ID: Action.RESTORE_GOOGLE,
    Kind.NOT_EXPORTED: Action.WITHDRAW,
    Kind.WITHDRAWN_ELSEWHERE: Action.WITHDRAW,
    Kind.OUT_OF_SCOPE: Action.NOTHING,
    Kind.MOVES_HERE: Action.MOVE,
    Kind.EXPORTED_AGAIN: Action.ATTACH,
    Kind.BAD_RULE: Action.REPORT,
}

WHEN: dict[Kind, str] = {
    Kind.NEW_IN_CRM: "a CRM entry with no event yet, or whose insert Google has not confirmed",
    Kind.NEW_IN_GOOGLE: "an event no link, tag or id ties to a CRM entry (matched or imported)",
    Kind.GONE: "deleted on the only side that has it (a CRM entry that never reached Google)",
    Kind.WAITING: "parked for a person, moving to another calendar, or detached",
    Kind.FIRST_LINK: "linked (again) but never synced: differing fields follow the policy",
    Kind.ATTENDEE_COPY: "a meeting another CRM user organises: only the guests' answers",
    Kind.ATTENDEE_COPY_GONE: "that copy cancelled: the organiser's calendar decides",
    Kind.MOVED_EXCEPTION: "the old instance of an exception its series took elsewhere",
    Kind.UNPLACED_EXCEPTION: "a CRM exception not yet at its Google instance",
    Kind.CANCELLED_EXCEPTION: "a deleted exception whose instance Google cancelled: the push decides",
    Kind.ORPHANED_EXCEPTION: "an exception dropped by a series move undone before the sync",
    Kind.SERIES_DELETED: "an occurrence edited in Google whose series the CRM deleted",
    Kind.READ_ONLY: "an event the CRM may not write: a CRM edit is undone",
    Kind.REUSED_ID: "our insert meets our own event Google holds as deleted: it comes back",
    Kind.NOT_EXPORTED: "its type is no longer exported: it leaves Google, stays in the CRM",
    Kind.WITHDRAWN_ELSEWHERE: "the same, for an event in a calendar no longer ticked",
    Kind.OUT_OF_SCOPE: "not for this calendar: type, import-only, from Google, before the window",
    Kind.MOVES_HERE: "written into the calendar that received CRM entries before",
    Kind.EXPORTED_AGAIN: "a detached entry whose type is exported again",
    Kind.BAD_RULE: "a stored recurrence Google would refuse: an issue for a person",
}

#: what an action becomes when a side may not be written (absent: unchanged)
ONE_WAY: dict[Writes, dict[Action, Action]] = {
    Writes.BOTH: {},
    # Google is only read: its side wins, a CRM edit of an entry Google deleted is lost
    Writes.CRM: {Action.MERGE: Action.PULL, Action.RESTORE_GOOGLE: Action.DELETE_CRM},
    # the CRM is only read: Google's edits are overwritten, its deletes only end the link.
    # (A crm_to_google run reads Google only to settle a write it made, where an unchanged
    # CRM side meets a deleted event only as REUSED_ID; `delete_crm → forget` is kept so
    # that the direction's promise holds whatever path leads here.)
    Writes.GOOGLE: {
        Action.PULL: Action.PUSH,
        Action.MERGE: Action.PUSH,
        Action.RESTORE_CRM: Action.PUSH,
        Action.DELETE_CRM: Action.FORGET,
    },
}


def decide(crm: State, google: State) -> Action:
    """An ordinary entry's action from its two sides (both sides writable)."""
    return SIDES[(crm, google)]


def action_for(
    kind: Kind,
    crm: State | None = None,
    google: State | None = None,
    writes: Writes = Writes.BOTH,
) -> Action:
    """The action for a classified entry; `crm`/`google` are read for an `ENTRY` only."""
    if kind is Kind.ENTRY:
        assert crm is not None and google is not None
        action = decide(crm, google)
    else:
        action = KINDS[kind]
    return ONE_WAY[writes].get(action, action)


def render() -> str:
    """The tables as markdown, for docs/sync.md."""
    lines = ["| CRM ↓ · Google → | " + " | ".join(g.value for g in State) + " |"]
    lines.append("|---|" + "---|" * len(State))
    for crm in State:
        cells = " | ".join(f"`{decide(crm, google)}`" for google in State)
        lines.append(f"| **{crm.value}** | {cells} |")
    lines += ["", "| Special kind | Action | When |", "|---|---|---|"]
    lines += [f"| {kind.value} | `{action}` | {WHEN[kind]} |" for kind, action in KINDS.items()]
    lines += ["", "| May write | Action | Becomes |", "|---|---|---|"]
    lines += [
        f"| {writes.value} | `{before}` | `{after}` |"
        for writes, changes in ONE_WAY.items()
        for before, after in changes.items()
    ]
    return "\n".join(lines) + "\n"
