"""docs/publishing.md is a promise: its example lines publish as they are and conform."""

from __future__ import annotations

import re
from pathlib import Path

from engine.config import PROJECT_ROOT, Settings
from engine.events import PAYMENT_INITIATED, PAYMENT_STEP_REQUESTED
from engine.serialization import AvroCodec, SchemaRegistry
from producers.conformance import Reference, check_content
from producers.jsonl import parse_message
from tests.factories import REFERENCE_FILE

DOC = (PROJECT_ROOT / "docs" / "publishing.md").read_text(encoding="utf-8")


def example_lines() -> list[str]:
    blocks = re.findall(r"```json\n(.*?)```", DOC, re.S)
    return [line for block in blocks for line in block.splitlines() if '"type"' in line]


def test_the_documented_payments_and_steps_fit_their_schemas_and_conform() -> None:
    codec = AvroCodec(SchemaRegistry.from_dir(Settings().schemas_dir))
    reference = Reference.read(Path(REFERENCE_FILE))
    kinds = []
    for line in example_lines():
        event, record = parse_message(line)
        codec.encode(event.name, record, validate=True)
        assert check_content(event, record, reference) == [], line
        kinds.append(event)
    assert kinds.count(PAYMENT_INITIATED) == 2 and kinds.count(PAYMENT_STEP_REQUESTED) == 2
