"""Errors of the bank side, named for what happened."""

from __future__ import annotations


class PublisherError(RuntimeError):
    """Base of the errors raised by ``producers``."""


class InvalidPaymentError(PublisherError, ValueError):
    """A payment does not fit the PaymentInitiated schema; ``field`` names the field at fault.

    Raised before anything is sent: a bank finds its mistake at the call, not in a
    dead-letter topic.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid payment: {field}: {problem}")
        self.field = field
        self.problem = problem


class SigningKeyError(PublisherError):
    """No key to sign with, or a key file that does not say (or contradicts) whose it is."""


class PublisherNotStartedError(PublisherError):
    """``publish`` was called outside ``with PaymentPublisher(...)`` (or after ``close``)."""


class PaymentSigningError(PublisherError):
    """A payment this publisher cannot sign: its key is another bank's (``bank`` names the payer's).

    Raised before anything is sent: the switch would refuse it as a forgery.
    """

    def __init__(self, bank: str, message: str) -> None:
        super().__init__(message)
        self.bank = bank


class PaymentDeliveryError(PublisherError):
    """The broker did not acknowledge some payments: they may not have been published."""

    def __init__(self, message: str, failed: int) -> None:
        super().__init__(message)
        self.failed = failed
