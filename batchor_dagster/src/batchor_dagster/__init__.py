"""Dagster integration for batchor."""
