"""batchor's example Dagster code location (see ``definitions.py``)."""
