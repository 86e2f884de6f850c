"""The seeded history as Segment's AWS S3 destination leaves it in a bucket, for a historical migration to read.

The layout, from https://segment.com/docs/connections/storage/catalog/aws-s3/#data-format: "Segment stores logs as
gzipped, newline-separated JSON containing the full call information", grouped by day as
`s3://{bucket}/segment-logs/{source-id}/{received-day}/filename.gz`, received-day being "the UTC date Unix
timestamp" of the day Segment received the calls: in milliseconds, as keys in public code show
(".../segment-logs/VhBYQcAjH5/1432684800000/"). The same page says Segment copies data into the bucket every hour,
so the sandbox writes one file per source and hour received; the page leaves the filename open, and the sandbox
names each file by the Unix milliseconds the hour starts at, `{hour}.gz` (unconfirmed). Each line is a message as
the destination gets it (sources.complete), compact, in the order received; files are gzipped with no timestamp in
the header, so the same history always writes the same bytes.

A directory the caller names stands for the bucket; nothing is recorded, queued or delivered.
"""

import gzip
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sync_pipelines.sandbox.segment.seed import history
from sync_pipelines.sandbox.segment.sources import complete
from sync_pipelines.sandbox.store import dumps

PREFIX = "segment-logs"


def _unix_ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


def key(message: dict[str, Any]) -> str:
    """The file a completed message lands in: segment-logs/{source id}/{received day}/{received hour}.gz."""
    hour = datetime.fromisoformat(message["receivedAt"]).replace(minute=0, second=0, microsecond=0)
    return f"{PREFIX}/{message['projectId']}/{_unix_ms(hour.replace(hour=0))}/{_unix_ms(hour)}.gz"


def write(bucket: Path, messages: Sequence[dict[str, Any]]) -> list[str]:
    """Write completed messages, in the order given, into their files under `bucket`; returns the files' keys."""
    files: dict[str, list[str]] = {}
    for message in messages:
        files.setdefault(key(message), []).append(dumps(message) + "\n")
    for name, lines in files.items():
        path = bucket / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress("".join(lines).encode(), mtime=0))
    return list(files)


def archive_history(bucket: Path, seed: int, people: int, limit: int | None) -> dict[str, Any]:
    """The seeded history (seed.py), or its first `limit` messages, completed and written -> {files, messages}."""
    emissions = history(seed, people)[:limit]
    messages = [complete(emission.source, emission.message, emission.received) for emission in emissions]
    return {"files": write(bucket, messages), "messages": len(messages)}
