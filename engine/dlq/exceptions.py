"""Errors of dead-letter redrive, named for what happened; each says what to do next."""


class RedriveError(RuntimeError):
    """Base of the errors raised by ``engine.dlq``."""


class StoredCopyMissingError(RedriveError):
    """The ledger holds no copy of the dead letter's bytes to send again."""


class StoredCopyTruncatedError(RedriveError):
    """The stored copy was cut to fit the dead-letter topic: only a corrected body can go."""


class StillUndecodableError(RedriveError):
    """The original bytes still do not decode: sending them would only dead-letter them again."""


class CorrectedBodyError(RedriveError, ValueError):
    """A corrected body file is unreadable, too large, or not an event of the source topic."""


class AlreadyHandledError(RedriveError):
    """The consumer already handled this very event: its payment has its outcome."""


class RedriveConflictError(RedriveError):
    """A redrive is in progress with other bytes than the ones given now."""


class RedriveNotAcknowledgedError(RedriveError):
    """The broker did not acknowledge the copy; the request stays, running again resends it."""


class RedriveSignatureError(RedriveError):
    """The bank's signature for the copy is missing, unreadable or would be refused."""


class SourceRecordGoneError(RedriveError):
    """The source topic no longer holds the original, so its signature cannot go with it."""


class SecurityDeadLetterError(RedriveError):
    """A message refused for its signature is never sent again from here: the bank re-signs."""


class RedriveRefusedError(RedriveError):
    """A kind of dead letter that is sent again only when forced (``engine.ops.redrive``)."""
