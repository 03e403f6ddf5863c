"""The chaos harness reads the faults ridden out from the consumers' counters, not their logs."""

from prometheus_client import CollectorRegistry, Counter, generate_latest

from engine import metrics
from tooling.chaos.scrape import RIDDEN_OUT, CounterWatch, parse_counters


def _page(**counts: int) -> str:
    registry = CollectorRegistry()
    for name, n in counts.items():
        counter = Counter(name, "help", ["consumer"], registry=registry)
        counter.labels("validator").inc(n)
        counter.labels("settlement").inc(1)
    return generate_latest(registry).decode()


def test_each_figure_is_its_counter_summed_over_the_consumers():
    page = _page(sakk_batches_split=3, sakk_database_retries=2, sakk_messages=50)

    assert parse_counters(page, RIDDEN_OUT) == {"batches split": 4, "database retries": 3}


def test_the_counters_the_harness_reads_are_counters_the_engine_defines():
    declared = {
        f"{c._name}_total" for c in vars(metrics).values() if isinstance(c, Counter)
    }  # prometheus_client keeps a counter's name without its _total

    assert set(RIDDEN_OUT.values()) <= declared


def test_a_restarted_process_adds_to_what_the_one_before_it_counted():
    health = metrics.HealthState()
    watch = CounterWatch("127.0.0.1")
    server = metrics.MetricsServer("127.0.0.1", watch.port_of("validator-1"), health).start()
    try:
        before = parse_counters(generate_latest().decode(), RIDDEN_OUT)["batches split"]
        metrics.BATCHES_SPLIT.labels("validator").inc(2)
        watch.read("validator-1", pid=100)
        metrics.BATCHES_SPLIT.labels("validator").inc(1)
        watch.read("validator-1", pid=101)  # a new process: its counter starts again
    finally:
        server.stop()
    watch.read("validator-1", pid=101)  # no answer: what it last said stays

    assert watch.totals()["batches split"] == (before + 2) + (before + 3)
    assert watch.port_of("validator-1") == watch.ports["validator-1"]


def test_a_process_killed_while_answering_keeps_its_last_reading() -> None:
    """A kill mid-answer cuts the body short: the harness keeps what it read before."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_then_die() -> None:  # announces 1,000 bytes, sends 10, hangs up
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n# HELP x\n")
        conn.close()

    server = threading.Thread(target=answer_then_die, daemon=True)
    server.start()
    watch = CounterWatch("127.0.0.1")
    watch.ports["validator-0"] = port
    watch._last[("validator-0", 1)] = parse_counters(
        "# TYPE sakk_batches_split_total counter\nsakk_batches_split_total 2\n", RIDDEN_OUT
    )

    watch.read("validator-0", 1)

    server.join(timeout=5)
    listener.close()
    assert watch.totals() == {"batches split": 2}
