"""Fixtures for the registry tests."""
