"""Replays the dead-letter queue: a failed write is retried when its backoff expires, never forgotten."""

import json

import dagster as dg

from sync_pipelines.defs.xero_to_segment import SPECS
from sync_pipelines.lib.staging import StagingResource, due_dead_letters

_DELIVERED_KEYS = {(spec.flow, spec.entity): spec.delivered_key for spec in SPECS}


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=list(_DELIVERED_KEYS.values()),
    description="Requests a delivery run for every entity with dead letters whose next attempt is due.",
)
def dead_letter_replay(context: dg.SensorEvaluationContext, staging_db: StagingResource) -> dg.SensorResult:
    """The cursor keeps the last failure wave requested per entity, so one wave makes one run."""
    requested: dict[str, str] = json.loads(context.cursor or "{}")
    with staging_db.connect() as conn:
        due = due_dead_letters(conn)
    runs = []
    for flow, entity, count, wave in due:
        name = f"{flow}/{entity}"
        if (flow, entity) not in _DELIVERED_KEYS or requested.get(name) == wave:
            continue
        requested[name] = wave
        runs.append(
            dg.RunRequest(
                run_key=f"replay:{name}:{wave}",
                asset_selection=[_DELIVERED_KEYS[(flow, entity)]],
                tags={"sync_pipelines/dead_letters": str(count)},
            )
        )
    return dg.SensorResult(run_requests=runs, cursor=json.dumps(requested, sort_keys=True))
