"""The knee: the highest offered rate whose p99 stays under 1 s, and where to probe next."""

from __future__ import annotations

from tooling.bench.knee import find_knee, knee_line, next_probe
from tooling.bench.latency import LatencyResult


def at(rate: int, p99_s: float) -> LatencyResult:
    return LatencyResult("sqlite", "uniform", rate, 10, rate * 10, rate * 0.98, 0.1, 0.2, p99_s, 2)


def test_knee_is_the_last_rate_under_the_limit_before_the_first_over_it() -> None:
    curve = [at(2_000, 18.7), at(250, 0.32), at(1_000, 6.1), at(500, 0.75)]
    knee = find_knee(curve)
    assert (knee.offered_per_s, knee.first_over_per_s, knee.p99_s) == (500, 1_000, 0.75)
    assert knee.bounded
    assert knee.achieved_publish_per_s == 490.0


def test_a_rate_passing_again_above_a_failing_one_does_not_move_the_knee() -> None:
    knee = find_knee([at(250, 0.3), at(500, 1.0), at(1_000, 0.9)])  # 1.0 s is not under 1 s
    assert (knee.offered_per_s, knee.first_over_per_s) == (250, 500)


def test_no_rate_over_the_limit_leaves_the_knee_unbounded_and_nothing_to_probe() -> None:
    curve = [at(50, 0.2), at(100, 0.3)]
    knee = find_knee(curve)
    assert (knee.offered_per_s, knee.bounded) == (100, False)
    assert next_probe(curve) is None


def test_every_rate_over_the_limit_has_no_knee_and_probes_below_the_lowest() -> None:
    curve = [at(250, 1.5), at(500, 3.0)]
    knee = find_knee(curve)
    assert (knee.offered_per_s, knee.first_over_per_s, knee.p99_s) == (None, 250, None)
    assert next_probe(curve) == 125


def test_probes_halve_the_bracket_until_it_is_within_a_tenth_of_its_top() -> None:
    curve = [at(500, 0.75), at(1_000, 6.1)]
    assert next_probe(curve) == 750
    curve.append(at(750, 1.2))
    assert next_probe(curve) == 625
    curve.append(at(625, 0.9))
    assert next_probe(curve) == 687
    curve.append(at(687, 0.95))  # bracket 687..750: 63 <= 75
    assert next_probe(curve) is None
    assert find_knee(curve).offered_per_s == 687


def test_knee_line_says_when_the_knee_is_only_a_lower_bound() -> None:
    report = {
        "backends": {
            "sqlite": {"knee": {"p99_limit_s": 1.0, "offered_per_s": 500, "bounded": True,
                                "p99_s": 0.75, "first_over_per_s": 1_000}},
            "postgresql": {"knee": {"p99_limit_s": 1.0, "offered_per_s": 2_000, "bounded": False,
                                    "p99_s": 0.5, "first_over_per_s": None}},
        }
    }  # fmt: skip
    line = knee_line(report)
    assert "p99 under 1 s" in line
    assert "sqlite 500/s (p99 0.750 s)" in line
    assert "postgresql at least 2,000/s" in line
    assert knee_line({"backends": {"sqlite": {}}}) == ""
