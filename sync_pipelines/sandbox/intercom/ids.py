"""Intercom's id shapes (intercom.md §1): 24-hex ids for contacts, companies and segments, numeric strings for the
rest. A hex id starts with its creation second, like the spec's examples ("6762f0dd..." = 1734537437), so ids
sort in creation order; a per-kind salt keeps contact, company and segment ids apart.
"""

SALTS = {"contact": "1bb69f9f21", "company": "1bb69f9f22", "segment": "1bb69f9f23"}


def hex_id(kind: str, created_at: int, sequence: int) -> str:
    return f"{created_at & 0xFFFFFFFF:08x}{SALTS[kind]}{sequence & 0xFFFFFF:06x}"
