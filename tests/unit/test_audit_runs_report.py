"""An audit run's report is kept whole up to its bound, and cut (saying so) beyond it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from engine.audit.runs import AuditRunError, FinishedRun, bounded_report


def test_a_short_report_is_kept_whole():
    text, chars, cut = bounded_report({"ok": True}, {"problems": [{"problem": "p"}]})
    assert not cut and chars == len(text or "")
    assert json.loads(text or "") == {"summary": {"ok": True},
                                      "sections": {"problems": [{"problem": "p"}]}}  # fmt: skip


def test_a_long_report_is_cut_to_the_bound_and_says_how_much_it_kept():
    rows = [{"problem": f"finding {i} " + "x" * 80} for i in range(1_000)]
    text, chars, cut = bounded_report({"ok": False}, {"a": rows, "b": rows[:5]}, limit=10_000)
    assert cut and text is not None and len(text) <= 10_000 < chars
    kept = json.loads(text)
    assert kept["summary"] == {"ok": False} and kept["whole_chars"] == chars
    assert kept["sections"]["a"] == rows[: len(kept["sections"]["a"])]
    assert kept["cut"]["a"] == f"{len(kept['sections']['a'])} of 1000"
    assert kept["cut"]["b"] == "0 of 5"


def test_a_run_must_name_its_kind_its_actor_and_end_after_it_starts():
    at = datetime(2026, 11, 24, tzinfo=UTC)
    with pytest.raises(AuditRunError, match="kind"):
        FinishedRun("audit", "a", "cli", at, at, {}, "OK")
    with pytest.raises(AuditRunError, match="actor"):
        FinishedRun("verify", "", "cli", at, at, {}, "OK")
    with pytest.raises(AuditRunError, match="after"):
        FinishedRun("verify", "a", "cli", at, at - timedelta(seconds=1), {}, "OK")
