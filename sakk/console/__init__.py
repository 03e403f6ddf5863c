"""The console: an HTTP API (JSON, ``/api/v1``) and server-rendered pages for operators,
auditors and each bank, served by ``sakk console`` (docs/console.md).

Every read goes through ``engine.read`` with the caller's audience; every action through
``engine.ops``. Routes hold no SQL.
"""
