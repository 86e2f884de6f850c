"""Segment's history as its AWS S3 destination keeps it, for a historical migration.

https://segment.com/docs/connections/storage/catalog/aws-s3/#data-format: "gzipped, newline-separated JSON containing
the full call information" under `segment-logs/{source-id}/{received-day}/`, one message per line as a destination
gets it. A migration puts the archive's messages in the inbox as if the Webhooks destination had delivered them
(deduplicated on messageId, so a message both archived and delivered lands once), and the flow runs as usual.
"""

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from sync_pipelines.vendors.segment.webhooks import MESSAGE, inbox_event
from sync_pipelines.webhooks.inbox import InboxEvent, WebhookInbox

PREFIX = "segment-logs"
CHUNK = 1_000  # messages stored in the inbox per transaction


@dataclass
class Imported:
    """What a migration took from the archive: files, messages read, and the lines refused with why."""

    files: int = 0
    messages: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file:line, reason)


def archive_files(bucket: Path) -> list[Path]:
    """The archive's files, oldest received first (day, then hour), then by source."""
    return sorted((bucket / PREFIX).glob("*/*/*.gz"), key=lambda path: (path.parts[-2], path.name, path.parts[-3]))


def archived_events(bucket: Path, imported: Imported) -> Iterator[InboxEvent]:
    """Each valid message of the archive as the inbox keeps it; a line that is not a Segment message is refused."""
    for path in archive_files(bucket):
        imported.files += 1
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    message = MESSAGE.validate_python(json.loads(line))
                except (ValueError, ValidationError) as error:
                    reason = str(error).splitlines()[0]
                    imported.refused.append((f"{path.relative_to(bucket)}:{number}", reason))
                    continue
                imported.messages += 1
                yield inbox_event(message)


def import_archive(bucket: Path, inbox: WebhookInbox) -> Imported:
    """Store the archive's messages in the inbox, in chunks."""
    imported, chunk = Imported(), []
    for event in archived_events(bucket, imported):
        chunk.append(event)
        if len(chunk) == CHUNK:
            inbox.store(chunk)
            chunk = []
    if chunk:
        inbox.store(chunk)
    return imported
