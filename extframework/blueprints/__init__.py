"""Thin HTTP layers, one per core service."""
