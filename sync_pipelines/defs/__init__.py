"""Dagster objects only; autoloaded by `dg.load_from_defs_folder` from definitions.py."""
