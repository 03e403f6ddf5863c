"""The steps where ``SAKK_CRASH_POINT`` may kill a process, named once.

The consumer loop of ``engine.pipeline.service`` and the notification delivery loop of
``consumers.notify`` pass them to their crash hook (``engine.pipeline.crash``);
``engine.config`` refuses any other name at start-up; the chaos harness aims at each.
A leaf module, so that the settings can check the names without importing the hooks.
"""

CRASH_POINTS = (
    "before_db_commit", "after_db_commit", "after_complete", "after_produce",
    "after_attempt", "after_delivery_record",
)  # fmt: skip
