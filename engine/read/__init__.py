"""The read side: every query the command line, the auditors and (later) the console ask.

Outside the stages' batch loads, the ledger is read here and nowhere else. Each query
takes an :class:`~engine.read.audience.Audience` (who asks decides what is masked and
what is visible at all), returns typed, frozen views, pages lists by a keyset cursor
with a stated maximum page (:data:`~engine.read.paging.MAX_PAGE`), and runs inside a
read-only :func:`~engine.read.snapshot.snapshot`.

- ``audience.py``: operator, auditor, one bank; the masking each is entitled to.
- ``paging.py``: ``Page``, ``Cursor``, ``MAX_PAGE``.
- ``snapshot.py``: a read-only transaction, with a statement timeout on PostgreSQL.
- ``payments.py``: one payment, and ``search_payments`` (the console's search).
- ``trace.py``: a payment's whole life, as a view.
- ``positions.py``: the one net-position rule (by effective settlement window).
- ``notifications.py``, ``dead_letters.py``: listed, paged.
- ``reports.py``: per channel, per reason, per bank (the demo's summary).
- ``reference.py``: approved schemas, the banks' keys.
- ``rows.py``: whole rows of payments, holds and steps for reconciliation and trace.

For a screen (the console's HTTP routes): open ``snapshot(engine)``, call the query
with the caller's ``Audience`` and the cursor it passed back, render the ``Page``.
"""
