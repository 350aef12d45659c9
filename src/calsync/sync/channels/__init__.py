"""Google push channels: two `events.watch` channels per import binding (the first and its
twin; CALSYNC_PUSH_CHANNELS_PER_CALENDAR=1: one), one `calendarList.watch` channel per
connection, all watched, renewed before expiry and stopped by one implementation.

- kinds.py: the three kinds — channel ids, where each is stored, how each is watched at Google;
  the webhook address, the renewal margin and the state shown in the connection status.
- service.py: `Channels` — watch, replace, stop, reconcile with the bindings, re-create a
  binding's suspect channels, and the periodic renewal (`renew_due_channels`, scheduled by the
  job runners).
- echo.py: the echo of a change (calsync's write, or one the other twin announced) as
  evidence a channel works.
- calendar_list.py: what a calendarList notification triggers — the check of the connection's
  calendars (bindings disabled or resumed), coalesced across every process.

The rows (and every SQL statement) are calsync.store.channels and .echoes; the receiver is
calsync.web.webhooks.
"""
