from engine.startup import honour_sigterm_from_now

honour_sigterm_from_now()  # before the heavy imports: a SIGTERM now exits 0 at once

from sakk.cli import main  # noqa: E402

main()
