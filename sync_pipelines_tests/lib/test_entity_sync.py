"""Staging a batch on a real DuckDB file: an older version of a record never overwrites a newer one."""

import json

import pandas as pd

from sync_pipelines.lib.entity_sync import EntitySyncSpec, stage_batch
from sync_pipelines.lib.sources.intercom import IntercomSegments
from sync_pipelines.lib.staging import StagingResource
from sync_pipelines.schemas.intercom import RESOLVED, IntercomSegment, flatten_segment

SEGMENTS = EntitySyncSpec(
    flow="test", entity="segments", source=IntercomSegments(), contract=IntercomSegment, key="id",
    flatten=flatten_segment, target=None, description="segments",
)  # fmt: skip


def _landed(seq: int, members: list[str], updated_at: int) -> pd.DataFrame:
    record = {"id": "7", "name": "Trial", "updated_at": updated_at, RESOLVED: {"member_ids": members}}
    return pd.DataFrame({"seq": [seq], "record_id": ["7"], "payload": [json.dumps(record)]})


def test_a_version_older_than_the_staged_one_is_kept_out_and_audited(tmp_path):
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        assert stage_batch(conn, SEGMENTS, _landed(1, ["a", "b"], 2_000), "run-1").changed == 1
        # A late delivery of an earlier state (e.g. a webhook retried after a newer one was read).
        assert stage_batch(conn, SEGMENTS, _landed(2, ["a"], 1_000), "run-2").changed == 0
        assert stage_batch(conn, SEGMENTS, _landed(3, ["b"], 3_000), "run-3").changed == 1

        assert conn.execute(f'SELECT member_ids FROM "{SEGMENTS.table}"').fetchall() == [('["b"]',)]
        (outcome, detail), *others = conn.execute(
            "SELECT outcome, detail FROM audit_log WHERE action = 'stale'"
        ).fetchall()
    assert not others and outcome == "kept staged"
    assert json.loads(detail)["arrived_updated_at"] == "1970-01-01 00:16:40+00:00"
