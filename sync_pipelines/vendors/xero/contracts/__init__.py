"""Xero records as the sync relies on them: pandera contracts and the flatteners that make their rows."""
