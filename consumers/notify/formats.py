"""Formats: the bytes a bank is sent for a notification, JSON or ISO 20022.

JSON (:meth:`Notification.body`) by default; an ISO 20022 document (pacs.002, pacs.004
for a return: :mod:`engine.iso.notices`) for a bank whose reference data chose it
(:class:`BodyByBank`). A format knows nothing of channels or signing: the webhook
signs and posts whatever body it is given.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from consumers.notify.message import Notification
from engine.domain.notifications import CAP_ALERT
from engine.iso.notices import XML_CONTENT_TYPE, BankProfiles, iso_notification

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
PROFILES_REFRESH_S = 30.0  # how soon a bank's new notification format takes effect


@dataclass(frozen=True)
class Body:
    """What is posted: the bytes the signature covers, and their media type."""

    data: bytes
    content_type: str


def json_body(notification: Notification) -> Body:
    return Body(notification.body(), JSON_CONTENT_TYPE)


class BodyByBank:
    """Each bank's notification in the format its reference data names.

    JSON by default; ISO 20022 for a bank whose ``notification_format`` is ``pacs.002``.
    The banks' formats are read through ``load`` and read again every ``refresh_s``.
    When they cannot be read, the last ones read are kept; with none read yet, building
    fails and the attempt is retried later: a bank that chose ISO 20022 is never sent
    JSON because the ledger was busy.
    """

    def __init__(
        self,
        load: Callable[[], BankProfiles],
        refresh_s: float = PROFILES_REFRESH_S,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._refresh_s = refresh_s
        self._clock_s = clock_s
        self._lock = threading.Lock()
        self._profiles: BankProfiles | None = None
        self._next_load_s = 0.0

    def __call__(self, notification: Notification) -> Body:
        profiles = self.profiles()
        if not profiles.wants_iso(notification.recipient_bank) or notification.outcome == CAP_ALERT:
            return json_body(notification)  # an alert is no payment's status: no pacs.002
        n = notification
        document = iso_notification(n.notification_id, n.outcome, n.payload, n.recipient_bank,
                                    datetime.now(UTC), profiles.bics)  # fmt: skip
        return Body(document, XML_CONTENT_TYPE)

    def profiles(self) -> BankProfiles:
        with self._lock:  # one reader at a time; the others wait for what it reads
            if self._profiles is None or self._clock_s() >= self._next_load_s:
                try:
                    self._profiles = self._load()
                except SQLAlchemyError as exc:
                    if self._profiles is None:
                        raise
                    log.warning("banks' notification formats not re-read (%s)", type(exc).__name__)
                self._next_load_s = self._clock_s() + self._refresh_s
            return self._profiles


def ledger_profiles(engine: Engine) -> Callable[[], BankProfiles]:
    """Read the banks' notification formats from the ledger, each call."""

    def load() -> BankProfiles:
        with engine.connect() as conn:
            return BankProfiles.load(conn)

    return load
