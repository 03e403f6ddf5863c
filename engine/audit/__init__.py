"""Auditing: replay topics into an isolated ledger, reconcile, trace, verify, settlement windows.

The modules that read Kafka (``offsets``, ``replay``, ``window_events`` and the
topic scan of ``trace``) sit here, above the ledger; ``engine.ledger`` never
imports this package.
"""
