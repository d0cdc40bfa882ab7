"""Helpers shared by the unit and the integration tests."""
