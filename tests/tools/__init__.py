"""Shared helpers for the tooling tests: where ../shared/data is, and tiny synthetic models."""
