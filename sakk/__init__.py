"""The composition root: the ``sakk`` command line and the wiring of stages into a service.

``engine`` is the framework and the ledger, ``consumers`` the stages, ``producers`` the bank's
side. Only this package (and tests) may import all of them; ``engine`` imports none of them.
"""
