"""The example's defs folder: batch jobs declared in YAML (see ``ticket_routing/defs.yaml``)."""
