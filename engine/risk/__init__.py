"""Interbank risk: each bank's limits, the settlement window's lifecycle, the instruction
to the settlement bank and the check of its confirmation. Pure rules: no database, no
Kafka; the stages and commands that use them are planned in ``docs/settlement.md``."""
