"""What can go wrong with an ISO 20022 file, as exceptions the CLI turns into clear messages."""

from __future__ import annotations


class IsoError(Exception):
    """Base of every refusal of an ISO 20022 message as a whole."""


class UnsafeXmlError(IsoError):
    """The file uses an XML feature Sakk never parses (DTD, entities) or is too large."""


class MalformedXmlError(IsoError):
    """The file is not well-formed XML."""


class UnsupportedMessageError(IsoError):
    """The document is not one of the message versions Sakk reads or writes."""


class InvalidMessageError(IsoError):
    """The document breaks its message definition outside any one transaction."""

    def __init__(self, message: str, issues: tuple[str, ...] = ()) -> None:
        super().__init__(message if not issues else f"{message}: " + "; ".join(issues))
        self.issues = issues


class DirectoryFileError(Exception):
    """The bank directory file (``sakk directory export``) is missing, unreadable or not
    of its shape: the command cannot start, whatever the ISO 20022 file holds."""


class MappingError(Exception):
    """One transaction cannot become a PaymentInitiated: ``element`` says where, why says why."""

    def __init__(self, element: str, reason: str) -> None:
        super().__init__(f"{element}: {reason}")
        self.element = element
        self.reason = reason
