"""The switch's pipeline, declared once: validator -> settlement -> notification.

Each stage with what it reads and emits (its companions' emits included), the loops that
run beside it (the notification's delivery loop, settlement's expiry scheduler), what
the service counts of its emits. The composition root (``sakk.app``) makes the
:class:`~engine.topology.Topology` of them that the service, the replay, the supervisor
and the tools read.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine

from engine import metrics
from engine.config import Settings, check_notify_sender
from engine.events import (
    FUNDS_IN,
    FUNDS_OUT,
    OUTCOME_EVENTS,
    PAYMENT_FAILED,
    PAYMENT_INITIATED,
    PAYMENT_NOTIFIED,
    PAYMENT_REJECTED,
    PAYMENT_SETTLED,
    PAYMENT_STEP_COMPLETED,
    PAYMENT_STEP_REFUSED,
    PAYMENT_STEP_REQUESTED,
    PAYMENT_STEP_VALIDATED,
    PAYMENT_VALIDATED,
)
from engine.pipeline.contract import Stage
from engine.serialization import AvroCodec
from engine.topology import CompanionSpec, StageSpec


def _validator(settings: Settings) -> Stage[Any]:
    from consumers.validator import Validator

    return Validator(settings)


def _replay_validator(settings: Settings) -> Stage[Any]:
    """Signatures judged against the reference file's keys at each record's own time."""
    from consumers.signature_gate import SignatureGate
    from consumers.validator import Validator

    return Validator(settings, gate=SignatureGate(at_receipt=False))


def _forwarded_id(event_type: str, event_id: str) -> str:
    from consumers.validator import forwarded_id

    return forwarded_id(event_type, event_id)


def _settlement(settings: Settings) -> Stage[Any]:
    from consumers.settlement import Settlement

    return Settlement(settings)


def _notification(settings: Settings) -> Stage[Any]:
    from consumers.notification import NotificationStage

    return NotificationStage(settings, settings.notify_sender)


def make_dispatcher(
    settings: Settings, engine: Engine, codec: AvroCodec, stop_event: threading.Event
) -> Any:
    """The notification service's delivery loop, with the sender ``SAKK_NOTIFY_SENDER`` names."""
    from consumers.notify.channels import make_sender
    from consumers.notify.dispatcher import Dispatcher

    return Dispatcher(settings, engine, codec, make_sender(settings), stop_event)


def make_expiry_scheduler(
    settings: Settings, engine: Engine, codec: AvroCodec, stop_event: threading.Event
) -> Any:
    from consumers.expiry import ExpiryScheduler

    return ExpiryScheduler(settings, engine, codec, stop_event)


VALIDATOR = StageSpec(
    "validator",
    _validator,
    inputs=(PAYMENT_INITIATED, PAYMENT_STEP_REQUESTED),
    outputs=(PAYMENT_VALIDATED, PAYMENT_STEP_VALIDATED, PAYMENT_REJECTED, PAYMENT_STEP_REFUSED),
    replay_factory=_replay_validator,
    forwarded_id=_forwarded_id,
    instances_under_faults=2,
)
SETTLEMENT = StageSpec(
    "settlement",
    _settlement,
    # FundsIn, FundsOut: a bank's liquidity, posted with its position (consumers.liquidity)
    inputs=(PAYMENT_VALIDATED, PAYMENT_STEP_VALIDATED, FUNDS_IN, FUNDS_OUT),
    # PaymentStepValidated: the expiries its scheduler publishes to its own input
    outputs=(
        PAYMENT_SETTLED,
        PAYMENT_FAILED,
        PAYMENT_STEP_COMPLETED,
        PAYMENT_STEP_REFUSED,
        PAYMENT_STEP_VALIDATED,
    ),  # fmt: skip
    companions=(CompanionSpec("expiry", make_expiry_scheduler),),
    observes={
        PAYMENT_SETTLED.name: metrics.observe_settled,
        PAYMENT_STEP_COMPLETED.name: metrics.observe_steps,
    },
    instances_under_faults=2,
)
NOTIFICATION = StageSpec(
    "notification",
    _notification,
    inputs=OUTCOME_EVENTS,
    outputs=(PAYMENT_NOTIFIED,),  # by its delivery loop, once a bank was told
    companions=(CompanionSpec("delivery", make_dispatcher, woken_by_commits=True),),
    check=check_notify_sender,
)
STAGES = (VALIDATOR, SETTLEMENT, NOTIFICATION)  # in the order a payment meets them
