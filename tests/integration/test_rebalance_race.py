"""Two settlement instances deciding the same payments (a rebalance): one outcome each.

Each instance plans its batch from a snapshot, off the write lock; the second to write
finds the payments no longer VALIDATED, its batch is refused whole and planned again,
and it sees the first one's work as duplicates.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from consumers.settlement import Settlement
from consumers.validator import Validator
from engine.config import load_settings
from engine.events import PAYMENT_INITIATED
from engine.ledger.checks import check_ledger
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import Posting
from engine.ledger.recorder import GuardFailed
from engine.ledger.reference import load_reference_data, read_file
from engine.pipeline.messages import RawMessage
from engine.pipeline.processor import BatchProcessor
from sakk.app import make_codec
from tests.factories import AMINA, KARIM, REFERENCE_FILE, YOUSSEF, payment, signed

pytestmark = pytest.mark.integration


def test_the_second_instance_to_settle_a_batch_is_refused_and_sees_duplicates(
    database_url: str, tmp_path: Path
) -> None:
    settings = load_settings(environ={}, database_url=database_url, data_dir=tmp_path)
    upgrade(settings.ledger_url)
    engine = make_engine(settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    codec = make_codec(settings)
    topic = PAYMENT_INITIATED.topic(settings)
    initiated = []
    for offset, (payer, payee) in enumerate([(AMINA, KARIM), (YOUSSEF, KARIM), (AMINA, YOUSSEF)]):
        record = payment(payer, payee, 1_000)
        key, value = PAYMENT_INITIATED.key(record), codec.encode(PAYMENT_INITIATED.name, record)
        headers = signed(topic, key, value, payer[0])
        ms = int(record["occurred_at"].timestamp() * 1000)
        initiated.append(RawMessage(topic, 0, offset, key, value, ms, headers))
    validated = BatchProcessor(Validator(settings), engine, codec, settings).process(initiated)
    batch = [
        RawMessage(m.topic, 0, offset, m.key, m.value, 0)
        for offset, m in enumerate(validated.outgoing)
    ]
    first = BatchProcessor(Settlement(settings), engine, codec, settings)
    second = BatchProcessor(Settlement(settings), engine, codec, settings)
    decoded, _ = first._decode(batch, None)

    plan_one, plan_two = first._plan(decoded, []), second._plan(decoded, [])  # same snapshot
    first._commit(plan_one)
    with pytest.raises(GuardFailed):
        second._commit(plan_two)
    again = second.process(batch)  # what its service loop does next

    assert again.handled == [] and again.duplicates == 3
    assert [m.value for m in again.outgoing] == [m.value for m in plan_one.result.outgoing]
    with engine.connect() as conn:
        per_payment = conn.execute(
            select(Posting.payment_id, func.count()).where(Posting.kind == "PAYMENT")
            .group_by(Posting.payment_id)
        ).all()  # fmt: skip
        assert check_ledger(conn).ok
    assert sorted(n for _, n in per_payment) == [1, 1, 1]  # settled once each
