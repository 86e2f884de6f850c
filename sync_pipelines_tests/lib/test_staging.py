"""The staging store on a real DuckDB file: migrations, the outbox, dead letters and the writer lock."""

import json
import multiprocessing
import subprocess
import sys
from datetime import timedelta

import dagster as dg
import duckdb
import pandas as pd
import pytest

from sync_pipelines.lib import staging
from sync_pipelines.lib.staging import MIGRATIONS, OutboxMessage, StagingResource


def _message(n: int) -> OutboxMessage:
    return OutboxMessage(f"m{n}", f"r{n}", "track", "Invoice Created", {"messageId": f"m{n}", "n": n})


def _claimed(conn, owner: str = "host:1:0", limit: int = 10) -> list[str]:
    claimed = staging.claim_pending(conn, flow="f", entity="e", run_id=owner, owner=owner, limit=limit)
    return [m.message_id for m in claimed]


def test_a_claimed_message_is_no_other_runs_until_released_and_what_went_out_is_counted(tmp_path):
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        staging.enqueue(conn, flow="f", entity="e", messages=[_message(n) for n in range(1, 5)], run_id=None)
        assert _claimed(conn, "a", limit=3) == ["m1", "m2", "m3"]
        assert _claimed(conn, "b") == ["m4"]  # the rest: never one message to two owners
        staging.mark_in_flight(conn, owner="a", flow="f", entity="e", message_ids=["m1", "m2"])
        staging.mark_in_flight(conn, owner="b", flow="f", entity="e", message_ids=["m1"])  # not b's: nothing changes
        assert [(run, owner, n) for run, owner, _, n in staging.claims(conn, flow="f", entity="e")] == [
            ("a", "a", 3),
            ("b", "b", 1),
        ]
        assert staging.release_claims(conn, owner="a") == 3
        again = staging.claim_pending(conn, flow="f", entity="e", run_id="c", owner="c", limit=10)
        assert {m.message_id: m.sends for m in again} == {"m1": 1, "m2": 1, "m3": 0}


def test_migrations_apply_once_and_record_the_version(tmp_path):
    store = StagingResource(database=str(tmp_path / "w.duckdb"))
    for _ in range(2):
        with store.connect() as conn:
            assert conn.execute("SELECT max(version), count(*) FROM schema_migrations").fetchone() == (
                len(MIGRATIONS),
                len(MIGRATIONS),
            )


def test_a_store_made_before_zstd_landing_keeps_its_landed_records_and_their_sequence(tmp_path):
    path = str(tmp_path / "w.duckdb")
    with duckdb.connect(path) as conn:  # the store as the release before this migration left it
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
        zstd = next(n for n, statements in enumerate(MIGRATIONS) if "USING COMPRESSION zstd" in "".join(statements))
        for number, statements in enumerate(MIGRATIONS[:zstd], start=1):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, now())", [number])
        page = staging.landing_frame(
            [{"InvoiceID": "a"}, {"InvoiceID": "b"}], id_field="InvoiceID", updated_at=[None] * 2
        )
        staging.land(conn, source="xero", entity="invoices", page=page, run_id="r1")
    with StagingResource(database=path).connect() as conn:
        page = staging.landing_frame(
            [{"InvoiceID": "b"}, {"InvoiceID": "c"}], id_field="InvoiceID", updated_at=[None] * 2
        )
        assert staging.land(conn, source="xero", entity="invoices", page=page, run_id="r2") == 1  # b was landed
        assert conn.execute("SELECT seq, record_id FROM raw_landing ORDER BY seq").fetchall() == [
            (1, "a"), (2, "b"), (3, "c"),
        ]  # fmt: skip
        conn.execute("CHECKPOINT")
        (compressions,) = conn.execute(
            "SELECT list(DISTINCT compression) FROM pragma_storage_info('raw_landing') WHERE column_name = 'payload'"
        ).fetchone()
        assert "ZSTD" in compressions


def test_records_land_in_the_order_they_were_read_so_a_records_last_version_is_its_latest(tmp_path):
    def frame(records: list[dict]) -> pd.DataFrame:
        return staging.landing_frame(records, id_field="Id", updated_at=[None] * len(records))

    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        staging.land(conn, source="v", entity="e", page=frame([{"Id": f"old{n}"} for n in range(20_000)]), run_id=None)
        read = [{"Id": "a", "v": 1}, *({"Id": f"r{n}"} for n in range(3_000)), {"Id": "a", "v": 2}]
        staging.land(conn, source="v", entity="e", page=frame(read), run_id=None)
        landed = conn.execute("SELECT payload FROM raw_landing WHERE seq > 20000 ORDER BY seq").fetchall()
        assert [json.loads(payload) for (payload,) in landed] == read


def test_a_landing_larger_than_duckdbs_memory_limit_lands_and_skips_only_exact_copies(tmp_path):
    def frame(records: list[dict], stamped: bool = True) -> pd.DataFrame:
        stamps = [pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=r["n"]) for r in records]
        return staging.landing_frame(records, id_field="Id", updated_at=stamps if stamped else [None] * len(records))

    first = [{"Id": f"r{n}", "n": n, "Notes": "x" * 2_000} for n in range(20_000)]  # ~40 MB of payloads
    with StagingResource(database=str(tmp_path / "w.duckdb"), memory_limit="32MB").connect() as conn:
        assert staging.land(conn, source="v", entity="e", page=frame(first), run_id=None) == 20_000
        assert staging.land(conn, source="v", entity="e", page=frame(first[:2], stamped=False), run_id=None) == 2
        changed = {**first[5], "Notes": "changed"}
        again = [*first[:3], first[10_000], changed, {"Id": "new", "n": 30_000}]
        again_unstamped = [first[0], first[2]]
        assert staging.land(conn, source="v", entity="e", page=frame(again), run_id=None) == 2
        assert staging.land(conn, source="v", entity="e", page=frame(again_unstamped, stamped=False), run_id=None) == 1
        landed = conn.execute("SELECT record_id FROM raw_landing WHERE seq > 20_002 ORDER BY seq").fetchall()
    assert landed == [("r5",), ("new",), ("r2",)]


def test_outbox_never_queues_a_message_id_twice(tmp_path):
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        assert staging.enqueue(conn, flow="f", entity="e", messages=[_message(1), _message(2)], run_id=None) == 2
        assert staging.enqueue(conn, flow="f", entity="e", messages=[_message(2), _message(3)], run_id=None) == 1
        assert _claimed(conn) == ["m1", "m2", "m3"]


def test_dead_letters_back_off_then_replay_and_bad_input_waits_for_a_human(tmp_path):
    with StagingResource(database=str(tmp_path / "w.duckdb")).connect() as conn:
        staging.enqueue(conn, flow="f", entity="e", messages=[_message(1), _message(2)], run_id=None)
        common = {"flow": "f", "entity": "e", "target": "segment", "run_id": None}
        staging.dead_letter(conn, failures=[("m1", "r1", "503 from target")], retryable=True, **common)
        staging.dead_letter(conn, failures=[("m2", "r2", "no userId")], retryable=False, **common)
        assert _claimed(conn) == []
        # Not due yet: the first retry waits 30 s.
        assert staging.requeue_dead_letters(conn, flow="f") == 0
        conn.execute("UPDATE dead_letters SET next_attempt_at = next_attempt_at - ?", [timedelta(minutes=1)])
        assert [(f, e, n) for f, e, n, _ in staging.due_dead_letters(conn)] == [("f", "e", 1)]
        assert staging.requeue_dead_letters(conn, flow="f") == 1
        assert _claimed(conn) == ["m1"]
        staging.mark_delivered(conn, delivered=[("m1", "r1")], **common)
        assert conn.execute("SELECT message_id, status FROM dead_letters ORDER BY 1").fetchall() == [
            ("m1", "replayed"),
            ("m2", "exhausted"),
        ]
        assert staging.requeue_dead_letters(conn, flow="f", include_exhausted=True) == 1


def _write_many(database: str, worker: int) -> None:
    store = StagingResource(database=database)
    for n in range(25):
        with store.connect() as conn:
            staging.enqueue(conn, flow="f", entity="e", messages=[_message(worker * 1000 + n)], run_id=None)


def test_parallel_processes_take_turns_on_the_writer_lock(tmp_path):
    database = str(tmp_path / "w.duckdb")
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_write_many, args=(database, w)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    with StagingResource(database=database).connect() as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (100,)


def _opens_at_first_try(database: str) -> bool:
    """Whether another process can open the file right now, without waiting for its lock."""
    script = f"import duckdb; duckdb.connect({database!r}).close()"
    return subprocess.run([sys.executable, "-c", script], capture_output=True).returncode == 0


def test_a_run_keeps_the_file_open_between_uses_and_lets_go_when_another_process_waits_or_the_run_ends(tmp_path):
    database = str(tmp_path / "w.duckdb")
    with dg.build_resources({"staging_db": StagingResource(database=database, linger_seconds=3600)}) as resources:
        with resources.staging_db.connect() as conn:
            staging.enqueue(conn, flow="f", entity="e", messages=[_message(0)], run_id=None)
        assert not _opens_at_first_try(database)  # still the run's, though unused
        # A process that waits its turn (it tells the run it waits) gets the file many times over, and the run
        # has it back whenever it asks.
        writer = multiprocessing.get_context("spawn").Process(target=_write_many, args=(database, 1))
        writer.start()
        for n in range(1, 26):
            with resources.staging_db.connect() as conn:
                staging.enqueue(conn, flow="f", entity="e", messages=[_message(n)], run_id=None)
        writer.join(timeout=120)
        assert writer.exitcode == 0
        with resources.staging_db.connect() as conn:
            assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (51,)
    assert _opens_at_first_try(database)  # the run's end let go of it


def test_a_block_given_its_own_memory_limit_runs_under_it_and_the_run_gets_the_stores_back_even_after_a_failure(
    tmp_path,
):
    def limit(conn: duckdb.DuckDBPyConnection) -> str:
        return conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]

    store = StagingResource(database=str(tmp_path / "w.duckdb"), memory_limit="256MB", linger_seconds=3600)
    with dg.build_resources({"staging_db": store}) as resources:
        with resources.staging_db.connect(memory_limit="32MB") as conn:
            assert limit(conn) == "30.5 MiB"
        with resources.staging_db.connect() as conn:
            assert limit(conn) == "244.1 MiB"
        with pytest.raises(duckdb.InvalidInputException, match="inside the block"):
            with resources.staging_db.connect(memory_limit="32MB") as conn:
                conn.execute("BEGIN TRANSACTION")
                conn.execute("SELECT error('inside the block')")
        with resources.staging_db.connect() as conn:
            assert limit(conn) == "244.1 MiB"


def test_a_run_holding_the_store_lets_duckdb_checkpoint_after_it_makes_a_table(tmp_path):
    # The held database's own connection once kept a transaction open (a result left partly read), and DuckDB
    # then wrote no checkpoint after a table was made: the write-ahead log grew through the run.
    store = StagingResource(database=str(tmp_path / "w.duckdb"), linger_seconds=3600)
    with store.connect():
        pass  # made and migrated: a run opens a store that exists
    with dg.build_resources({"staging_db": store}) as resources:
        with resources.staging_db.connect() as conn:
            staging.append_rows(conn, "stg_things", pd.DataFrame({"id": ["a"]}))
        with resources.staging_db.connect() as conn:
            conn.execute("CHECKPOINT")
        assert not (tmp_path / "w.duckdb.wal").exists()


def test_a_statement_that_fails_on_a_registered_frame_raises_its_own_error():
    # Seen as "transaction is aborted" in place of DuckDB's out-of-memory error while a landing ran.
    conn = duckdb.connect()
    conn.execute("BEGIN TRANSACTION")
    with pytest.raises(duckdb.ConversionException), staging.frame_as(conn, "page", pd.DataFrame({"n": ["x"]})):
        conn.execute("SELECT CAST(n AS INTEGER) FROM page").fetchall()


def test_staged_tables_take_on_columns_a_contract_gains_and_type_all_empty_columns(tmp_path):
    staging_db = StagingResource(database=str(tmp_path / "evolve.duckdb"))
    with staging_db.connect() as conn:
        staging.upsert_state(conn, "stg_things", "id", pd.DataFrame({"id": ["a"], "note": [None]}))
        staging.upsert_state(conn, "stg_things", "id", pd.DataFrame({"id": ["b"], "note": ["later"], "size": [3]}))
        rows = conn.execute("SELECT id, note, size FROM stg_things ORDER BY id").fetchall()
    assert rows == [("a", None, None), ("b", "later", 3)]


def test_a_chunk_of_a_long_landing_backlog_is_read_within_duckdbs_memory_limit(tmp_path):
    path = str(tmp_path / "w.duckdb")
    records = [{"Id": f"r{n}", "Notes": f"{n} " + "x" * 2_000} for n in range(60_000)]  # ~120 MB waiting
    with StagingResource(database=path).connect() as conn:
        for start in range(0, len(records), 20_000):
            part = records[start : start + 20_000]
            page = staging.landing_frame(part, id_field="Id", updated_at=[None] * len(part))
            staging.land(conn, source="v", entity="e", page=page, run_id=None)
    with StagingResource(database=path, memory_limit="32MB").connect() as conn:
        chunk = staging.unprocessed_landing(conn, source="v", entity="e", after_seq=10_000, limit=5_000)
    assert chunk["seq"].tolist() == list(range(10_001, 15_001))
    assert chunk["record_id"].tolist() == [f"r{n}" for n in range(10_000, 15_000)]
