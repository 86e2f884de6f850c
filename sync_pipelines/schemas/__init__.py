"""Pandera contracts for vendor records, one module per entity, and the helpers they share."""
