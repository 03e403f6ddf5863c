"""The senders' former home: the message, formats, signing and channels now live apart in
:mod:`consumers.notify`.

Kept so that code written against the old path keeps importing; new code imports
from :mod:`consumers.notify` directly.
"""

from consumers.notify.channels import LogSender, WebhookSender, backoff_delays_s, make_sender
from consumers.notify.formats import JSON_CONTENT_TYPE, Body, BodyByBank, json_body, ledger_profiles
from consumers.notify.message import OUTCOMES, Attempt, DeliveryResult, Notification, Sender
from consumers.notify.signing import sign, verify_signature

__all__ = [
    "JSON_CONTENT_TYPE",
    "OUTCOMES",
    "Attempt",
    "Body",
    "BodyByBank",
    "DeliveryResult",
    "LogSender",
    "Notification",
    "Sender",
    "WebhookSender",
    "backoff_delays_s",
    "json_body",
    "ledger_profiles",
    "make_sender",
    "sign",
    "verify_signature",
]
