"""Dagster's Postgres storage with its connections kept open, for every process of a deployment (dagster.yaml names it;
deploy/ on PYTHONPATH, as for the run launcher).

Outside the webserver, dagster-postgres opens a connection for every query and closes it after (SQLAlchemy's
NullPool), so that no process holds one between queries. Each connection costs Postgres a process of its own and
about 2 ms of CPU, and a sync run makes thousands of queries, so Postgres spent more CPU than the runs' own
sync_pipelines code in the tenants benchmark (README). Here each storage keeps one connection open, and more while
several threads query at once, as the webserver's do. A run's instance closes its connections when the run ends.
"""

from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

# Connections beyond the one each storage keeps, while several threads (the daemon's, the webserver's) query at once;
# each process holds them only for as long as it needs them.
MAX_OVERFLOW = 10
# A kept connection is replaced after an hour, as the webserver's are by default.
POOL_RECYCLE_SECONDS = 3600


class PooledPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres's storage (the same tables and config), whose run, event log and schedule storages keep
    their connections. No statement timeout: a long backfill's queries are not the webserver's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for storage in (self.run_storage, self.event_log_storage, self.schedule_storage):
            storage.optimize_for_webserver(
                statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS, max_overflow=MAX_OVERFLOW
            )

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> "PooledPostgresStorage":
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
