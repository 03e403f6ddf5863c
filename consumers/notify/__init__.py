"""Telling the banks: a persisted schedule, one bounded attempt at a time, banks apart.

The notification stage (:mod:`consumers.notification`) only records each notification
PENDING, due now, in its Kafka batch's transaction. Everything after that happens here,
off the Kafka loop, so the batch never waits on a bank's endpoint:

1. **Claim.** A dispatcher leases due notifications, per bank, at most
   ``SAKK_NOTIFY_MAX_IN_FLIGHT_PER_BANK`` in flight for each: a bank that hangs holds
   its own slots, never another bank's. The lease is ``next_attempt_at`` pushed forward
   plus a ``claim_token``; a dispatcher killed mid-attempt leaves a lease that expires,
   and another dispatcher takes the notification over.
2. **Attempt.** One bounded attempt (``SAKK_WEBHOOK_TIMEOUT_MS``), under the same
   ``notification_id`` every time, so the bank deduplicates.
3. **Record.** Attempts are stored; a success finishes the notification DELIVERED; a
   failure schedules the next attempt (capped exponential backoff with equal jitter),
   until the horizon (``deadline_at``); past it the notification is FAILED. Finishing
   is a guarded UPDATE (``claim_token`` still ours, still PENDING, at the attempt
   claimed) so exactly one dispatcher finishes it, and that one stores its
   ``PaymentNotified`` in the same transaction.
4. **Announce.** The stored ``PaymentNotified`` is produced, then ``announced_at`` is
   set. One left unannounced by a crash is produced again by the next sweep (same event
   id: a harmless copy).

One job per module:

- :mod:`~consumers.notify.message`: the notification, an attempt, the channel protocol.
- :mod:`~consumers.notify.formats`: the body, JSON or ISO 20022 (pacs.002, pacs.004).
- :mod:`~consumers.notify.signing`: the switch's signature, and its check for receivers.
- :mod:`~consumers.notify.channels`: the webhook and the log;
  :mod:`~consumers.notify.transport`: one HTTP POST under a hard deadline.
- :mod:`~consumers.notify.schedule`: the retry schedule, a pure function.
- :mod:`~consumers.notify.rules`: what a round of attempts means, and the claim's
  fair share per bank, pure.
- :mod:`~consumers.notify.book`: the ledger side; every change a guarded row of
  :mod:`engine.ledger.notification_writes`, written by the recorder.
- :mod:`~consumers.notify.dispatcher`: the live loop (threads, producer, clock).
"""
