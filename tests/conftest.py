"""Shared test settings."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Property tests run in CI on a 2-core machine: bound them by examples, not time.
settings.register_profile("ci", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
