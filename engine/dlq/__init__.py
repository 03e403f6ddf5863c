"""Dead letters an operator inspects, fixes and sends again (``sakk dlq``).

- ``body``: a corrected message from a file (JSON fields or Avro bytes), checked and encoded;
- ``inspect``: one dead letter decoded for reading, personal data masked;
- ``redrive``: the copy put back on its source topic, exactly once in effect.

The ledger side (rows, queries, counting) is ``engine.ledger.dead_letters``.
"""
