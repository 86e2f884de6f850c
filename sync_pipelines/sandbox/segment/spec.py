"""What every Segment message must satisfy, shared by the Tracking API (app.py) and the sources (sources.py).

segment.md §2 and §3: Segment accepts these with a 200 and silently discards them later.
"""

from typing import Any

SINGLE_LIMIT = 32 * 1024  # segment.md §2: single calls and each batch item
MAX_MESSAGE_ID = 100  # segment.md §2
CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")


def drop_reason(message: Any) -> str | None:
    """Why Segment would discard an accepted message after answering 200 (segment.md §2, §3)."""
    if not isinstance(message, dict) or message.get("type") not in CALL_TYPES:
        return "invalid_type"
    if not message.get("userId") and not message.get("anonymousId"):
        return "no_user_anon_id"
    if message["type"] == "track" and not message.get("event"):
        return "missing_event"
    if message["type"] == "group" and not message.get("groupId"):
        return "missing_group_id"
    if message["type"] == "alias" and not message.get("previousId"):
        return "missing_previous_id"
    if len(str(message.get("messageId", ""))) > MAX_MESSAGE_ID:
        return "message_id_too_long"
    return None
