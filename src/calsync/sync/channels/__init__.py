"""Google push channels: one `events.watch` channel per import binding, one
`calendarList.watch` channel per connection, both watched, renewed before expiry and stopped by
one implementation.

- kinds.py: the two kinds — channel ids, where each is stored, how each is watched at Google;
  the webhook address, the renewal margin and the state shown in the connection status.
- service.py: `Channels` — watch, replace, stop, reconcile with the bindings, and the periodic
  renewal (`renew_due_channels`, scheduled by the job runners).
- calendar_list.py: what a calendarList notification triggers — the check of the connection's
  calendars (bindings disabled or resumed), coalesced across every process.

The rows (and every SQL statement) are calsync.store.channels; the receiver is
calsync.web.webhooks.
"""
