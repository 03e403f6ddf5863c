"""The in-process stage benchmark: every payment is carried through, figures come out."""

from __future__ import annotations

from pathlib import Path

from tooling.bench.stages import main, measure_stages


def test_every_payment_goes_through_every_stage_and_is_notified(
    database_url: str, tmp_path: Path
) -> None:
    costs = {c.step: c for c in measure_stages(200, database_url, batch=50, work_dir=tmp_path)}

    assert list(costs) == ["validator", "settlement", "notification", "delivery"]
    assert costs["validator"].messages == 200
    assert 0 < costs["settlement"].messages < 200  # what was validated (some are refused)
    assert costs["settlement"].messages < costs["notification"].messages <= 200
    # One notification per outcome to the payer's bank, a second when money crossed banks.
    assert costs["notification"].messages <= costs["delivery"].messages
    assert costs["delivery"].messages <= 2 * costs["notification"].messages
    assert all(c.cpu_s > 0 and c.cpu_s_per_1000 > 0 for c in costs.values())


def test_the_command_prints_one_line_per_step(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    main(["--payments", "50", "--batch", "25", "--work-dir", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["step", "messages"]
    assert [line.split()[0] for line in lines[1:]] == [
        "validator", "settlement", "notification", "delivery",
    ]  # fmt: skip


def test_the_null_pipeline_forwards_along_the_declared_topology() -> None:
    """Its hops are the payment's main line through the declared stages, not a copy of it."""
    from tooling.bench.null_pipeline import HOPS

    assert HOPS == (
        ("validator", "initiated", "validated"),
        ("settlement", "validated", "settled"),
        ("notification", "settled", "notified"),
    )
