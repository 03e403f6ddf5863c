"""Errors of the chaos harness itself (never a finding about the engine: those are violations)."""

from __future__ import annotations


class ChaosError(Exception):
    """Base of the harness's own errors."""


class ChaosSetupError(ChaosError):
    """The run could not be set up: broker, database or webhook endpoint did not start."""


class PublishError(ChaosError):
    """The harness could not publish its workload, so nothing it checks would mean anything."""
