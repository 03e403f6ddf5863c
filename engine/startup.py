"""The first instant of a ``sakk`` process: SIGTERM is honoured before anything else loads.

A supervisor may stop a process it has only just started. Until a command installs its
own handlers (``engine.pipeline.service.install_signal_handlers``), the process has done nothing
worth finishing, so SIGTERM ends it at once with exit code 0 instead of Python's
default action (death by signal, exit code -15).

The window before even this module runs (interpreter start-up) is closed by the parent:
``engine.supervisor`` starts children with SIGTERM blocked, so a signal sent then waits,
pending, until :func:`honour_sigterm_from_now` unblocks it and the handler below runs.
"""

from __future__ import annotations

import os
import signal

NOTHING_DONE_EXIT_CODE = 0


def _exit_before_work(_signum: int, _frame: object) -> None:
    os._exit(NOTHING_DONE_EXIT_CODE)  # nothing to flush: no work has begun


def honour_sigterm_from_now() -> None:
    """Exit 0 on SIGTERM until a command installs its own handler, then unblock SIGTERM."""
    signal.signal(signal.SIGTERM, _exit_before_work)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
