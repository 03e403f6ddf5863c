"""A bank's client written from docs/banks.md alone: it imports nothing of Sakk."""
