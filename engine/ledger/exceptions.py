"""Errors of the ledger, named for what happened."""


class LedgerError(RuntimeError):
    """Base of the errors raised by ``engine.ledger``."""


class UnbalancedPostingError(LedgerError):
    """A posting's legs do not sum to zero per currency; nothing was written."""


class ReferenceDataError(LedgerError):
    """A reference data file is invalid; the message names the entry at fault."""


class VignetteFeeError(LedgerError):
    """A fee was computed for a vehicle-tax vignette payment, which is free by law."""


class DeadLetterNotFoundError(LedgerError):
    """No dead letter with that id in the ledger."""


class ChainKeyError(LedgerError):
    """A posting's chain key is outside the chains a ledger may have; nothing was written."""


class ReleaseSchemaConflictError(LedgerError):
    """The ledger holds another schema under a fingerprint of this release's schemas."""


class UnsupportedDatabaseError(LedgerError):
    """The ledger runs on SQLite and PostgreSQL only."""
