"""The delivery loop's former home: its parts now live in :mod:`consumers.notify`.

Kept so that code written against the old path keeps importing; new code imports
from :mod:`consumers.notify` directly.
"""

from consumers.notify.book import Announcement, DeliveryBook, deliver_due
from consumers.notify.dispatcher import Dispatcher
from consumers.notify.rules import Claimed, Finished, notified_event, notified_event_id
from consumers.notify.schedule import RetrySchedule

__all__ = [
    "Announcement",
    "Claimed",
    "DeliveryBook",
    "Dispatcher",
    "Finished",
    "RetrySchedule",
    "deliver_due",
    "notified_event",
    "notified_event_id",
]
