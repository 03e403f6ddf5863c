"""Errors of the auditing tools, named for what happened."""


class AuditError(RuntimeError):
    """Base of the errors raised by ``engine.audit``."""


class ReplayTargetError(AuditError):
    """The replay's target ledger is the live one, or not fresh; nothing was replayed."""


class ReplayStalledError(AuditError):
    """A partition stopped yielding records before the end of its range."""


class OffsetLookupError(AuditError):
    """Offsets for a time or a range could not be found on the broker."""


# Raised by the read side (``engine.read``), which every trace goes through.
from engine.read.exceptions import PaymentNotFoundError, WindowError  # noqa: E402, F401
