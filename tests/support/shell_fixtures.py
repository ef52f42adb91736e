"""Fixtures for the shell tests."""
