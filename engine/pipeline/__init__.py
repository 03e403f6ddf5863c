"""How every stage runs, one job a module.

- :mod:`~engine.pipeline.messages`: a message as the broker gave it, the event decoded from it.
- :mod:`~engine.pipeline.contract`: what a stage is (``load``, a pure ``decide``), its
  decisions and refusals, and the one marker of a fault worth retrying.
- :mod:`~engine.pipeline.processor`: a batch in, committed effects and messages out.
- :mod:`~engine.pipeline.outbox`: emitted events kept with the effects, produced again
  on redelivery.
- :mod:`~engine.pipeline.dead_letters`: the dead-letter message format.
- :mod:`~engine.pipeline.quarantine`: the offsets in hand, marked before a batch; a
  process that died handling them is found, and a message that kills its consumer
  quarantined.
- :mod:`~engine.pipeline.service`: the Kafka loop around the processor.
- :mod:`~engine.pipeline.crash`: the chaos harness's crash hooks (off in production).

A new stage writes its rules in ``consumers/`` against the contract and declares its
rows in :mod:`engine.ledger.recorder`, the only place that knows the ledger's write SQL.
"""
