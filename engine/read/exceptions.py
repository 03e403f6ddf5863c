"""Errors of the read side, named for what happened."""

from __future__ import annotations


class ReadError(ValueError):
    """A read asked with something out of bounds: a page too long, a bad cursor or audience."""


class NotVisibleError(LookupError):
    """No such thing for this audience: missing, or another bank's (the same words for both)."""


class CursorError(ReadError):
    """A cursor that this query did not hand out (or that was altered)."""


class PaymentNotFoundError(NotVisibleError):
    """No payment with that id or bank reference that this audience may see."""


class WindowError(ReadError):
    """A settlement window request that cannot be honoured (format, length, not over yet)."""
