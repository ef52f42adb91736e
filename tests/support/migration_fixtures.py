"""Fixtures for the migration tests."""
