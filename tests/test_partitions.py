"""Partitioned tracked tables.

PostgreSQL partitions and inheritance children: no write to them escapes the
audit. Writes made directly to a partition (or an inheritance child) are
recorded under the tracked table and read back through its model; writes
through the tracked table are recorded once.

MariaDB partitions (of an InnoDB table) are one table with one set of
triggers: writes to every partition and subpartition are recorded, also those
that name a partition (``INSERT INTO t PARTITION (p) ...``). The partition
maintenance statements ``ALTER TABLE ... TRUNCATE PARTITION``, ``DROP
PARTITION`` and ``EXCHANGE PARTITION`` move rows without running a trigger:
they are holes, and the tests below assert exactly that (docs/mariadb.md).
"""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, String, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit.ddl import AuditState, audit_status, install_audit_triggers
from sqlaudit.decorators import track_table

from conftest import changes

MARIADB_PORTED = True

postgresql_only = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
mariadb_only = pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)


def _model(Base, partitioned: bool = True):
    @track_table(tracked_fields=["body"])
    class Event(Base):
        __tablename__ = "events"
        __table_args__ = {"postgresql_partition_by": "RANGE (id)"} if partitioned else {}
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        body: Mapped[str] = mapped_column(String(50))

    return Event


def _sql(engine, *statements: str) -> None:
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql))


def _history(engine, model) -> list[tuple]:
    with Session(engine) as s:
        return [(r.operation, r.resource_id, r.old_value, r.new_value) for r in changes(model, s)]


@pytest.fixture
def partitioned(engine, Base):
    Event = _model(Base)
    Base.metadata.create_all(engine)
    _sql(engine,
         "CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (100)",
         "CREATE TABLE events_high PARTITION OF events FOR VALUES FROM (100) TO (200)"
         " PARTITION BY RANGE (id)",
         "CREATE TABLE events_high_a PARTITION OF events_high FOR VALUES FROM (100) TO (150)",
         "CREATE TABLE events_high_b PARTITION OF events_high FOR VALUES FROM (150) TO (200)")
    install_audit_triggers(engine, Event)
    return Event


@postgresql_only
def test_writes_made_directly_to_a_partition_are_recorded_under_the_tracked_table(
        engine, partitioned) -> None:
    _sql(engine,
         "INSERT INTO events_low (id, body) VALUES (1, 'a')",
         "UPDATE events_low SET body = 'b'",
         "DELETE FROM events_low")
    assert _history(engine, partitioned) == [
        ("insert", "1", None, "a"), ("update", "1", "a", "b"), ("delete", "1", "b", None)]


@postgresql_only
def test_writes_to_a_sub_partition_are_recorded(engine, partitioned) -> None:
    _sql(engine, "INSERT INTO events_high_b (id, body) VALUES (160, 'deep')")
    assert _history(engine, partitioned) == [("insert", "160", None, "deep")]


@postgresql_only
def test_a_write_through_the_tracked_table_is_recorded_once(engine, partitioned) -> None:
    _sql(engine,
         "INSERT INTO events (id, body) VALUES (1, 'a'), (120, 'b')",
         "UPDATE events SET id = 170 WHERE id = 120")  # moves the row across partitions
    assert _history(engine, partitioned) == [
        ("insert", "1", None, "a"), ("insert", "120", None, "b"),
        ("delete", "120", "b", None), ("insert", "170", None, "b")]


@postgresql_only
def test_truncate_of_the_tracked_table_is_recorded_once_and_of_a_partition_too(
        engine, partitioned) -> None:
    _sql(engine, "TRUNCATE events")
    _sql(engine, "TRUNCATE events_low")
    ops = [op for op, *_ in _history(engine, partitioned)]
    assert ops == ["truncate", "truncate"]


@postgresql_only
def test_a_partition_created_after_install_is_drift_until_installed_again(
        engine, partitioned) -> None:
    assert audit_status(engine, partitioned) == {"events": AuditState.CURRENT}
    _sql(engine, "CREATE TABLE events_late PARTITION OF events FOR VALUES FROM (200) TO (300)")
    assert audit_status(engine, partitioned) == {"events": AuditState.OUTDATED}
    install_audit_triggers(engine, partitioned)
    assert audit_status(engine, partitioned) == {"events": AuditState.CURRENT}
    _sql(engine, "INSERT INTO events_late (id, body) VALUES (250, 'late')")
    assert _history(engine, partitioned) == [("insert", "250", None, "late")]


@postgresql_only
def test_inheritance_children_are_recorded_under_the_parent(engine, Base) -> None:
    Event = _model(Base, partitioned=False)
    Base.metadata.create_all(engine)
    _sql(engine, "CREATE TABLE events_child (note text) INHERITS (events)")
    install_audit_triggers(engine, Event)
    _sql(engine,
         "INSERT INTO events_child (id, body, note) VALUES (5, 'kid', 'x')",
         "UPDATE events SET body = 'kid!' WHERE id = 5")  # through the parent: once
    assert _history(engine, Event) == [("insert", "5", None, "kid"), ("update", "5", "kid", "kid!")]


@postgresql_only
def test_drop_all_and_drop_audit_triggers_remove_the_partitions_triggers(
        engine, partitioned, Base) -> None:
    from sqlaudit.ddl import drop_audit_triggers

    drop_audit_triggers(engine, partitioned)
    with engine.connect() as conn:
        left = conn.execute(text(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'sqlaudit\\_%' "
            "AND tgrelid::regclass::text LIKE 'events%'")).scalar()
    assert left == 0
    _sql(engine, "INSERT INTO events_low (id, body) VALUES (2, 'unaudited now')")


@postgresql_only
def test_alembic_check_sees_a_partition_without_triggers(engine, partitioned, tmp_path) -> None:
    """(Partitions are not in the MetaData, so check also lists them as tables to
    remove; a real env.py filters them with include_name. Only the audit diffs matter here.)"""
    from alembic.util.exc import AutogenerateDiffsDetected

    from test_alembic import AlembicEnv

    env = AlembicEnv(tmp_path / "migrations", engine)

    def audit_diffs() -> list[str]:
        try:
            env.check(partitioned.metadata)
        except AutogenerateDiffsDetected as caught:
            return [d[0] for d in caught.diffs if "audit" in str(d[0])]
        return []

    assert audit_diffs() == []
    _sql(engine, "CREATE TABLE events_late PARTITION OF events FOR VALUES FROM (200) TO (300)")
    assert audit_diffs() == ["remove_audit_triggers", "add_audit_triggers"]


@postgresql_only
def test_copy_through_the_driver_inside_audit_context_carries_the_user(engine, Base) -> None:
    """COPY sent straight through psycopg, as the first statement of the transaction."""
    from sqlaudit import audit_context, register_hooks

    Event = _model(Base, partitioned=False)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="copier"):
        driver = s.connection().connection.driver_connection
        with driver.cursor() as cursor, cursor.copy("COPY events (id, body) FROM STDIN") as copy:
            copy.write_row((1, "copied"))
        s.commit()
    with Session(engine) as s:
        assert [(r.new_value, r.changed_by) for r in changes(Event, s)] == [("copied", "copier")]


# ---------------------------------------------------------------- MariaDB


@pytest.fixture
def mariadb_partitioned(engine, Base):
    """events, tracked, partitioned by RANGE (id) after its triggers were installed: p_low
    (ids below 100), p_high (100-199) in two hash subpartitions; and events_swap, a plain
    table of the same shape for EXCHANGE PARTITION."""
    Event = _model(Base, partitioned=False)
    Base.metadata.create_all(engine)
    _sql(engine,
         "ALTER TABLE events PARTITION BY RANGE (id) SUBPARTITION BY HASH (id) SUBPARTITIONS 2"
         " (PARTITION p_low VALUES LESS THAN (100), PARTITION p_high VALUES LESS THAN (200))",
         "CREATE TABLE events_swap LIKE events",
         "ALTER TABLE events_swap REMOVE PARTITIONING")
    return Event


@mariadb_only
def test_mariadb_partitioning_an_installed_table_keeps_its_triggers_current(
        engine, mariadb_partitioned) -> None:
    with engine.connect() as conn:
        partitions = conn.execute(text(
            "SELECT COUNT(*) FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME = 'events'")).scalar()
    assert partitions == 4  # two partitions of two subpartitions each
    assert audit_status(engine, mariadb_partitioned) == {"events": AuditState.CURRENT}


@mariadb_only
def test_mariadb_writes_to_every_partition_and_subpartition_are_recorded(
        engine, mariadb_partitioned) -> None:
    _sql(engine,
         "INSERT INTO events (id, body) VALUES (1, 'low'), (150, 'high'), (151, 'high too')",
         "UPDATE events SET body = CONCAT(body, '!')",
         "DELETE FROM events WHERE id IN (1, 151)")
    assert _history(engine, mariadb_partitioned) == [
        ("insert", "1", None, "low"), ("insert", "150", None, "high"),
        ("insert", "151", None, "high too"),
        ("update", "1", "low", "low!"), ("update", "150", "high", "high!"),
        ("update", "151", "high too", "high too!"),
        ("delete", "1", "low!", None), ("delete", "151", "high too!", None)]


@mariadb_only
def test_mariadb_writes_that_name_a_partition_are_recorded(engine, mariadb_partitioned) -> None:
    _sql(engine,
         "INSERT INTO events PARTITION (p_low) (id, body) VALUES (5, 'a')",
         "UPDATE events PARTITION (p_low) SET body = 'b'",
         "INSERT INTO events PARTITION (p_highsp0) (id, body) VALUES (150, 'sub')",
         "DELETE FROM events PARTITION (p_low)")
    assert _history(engine, mariadb_partitioned) == [
        ("insert", "5", None, "a"), ("update", "5", "a", "b"), ("insert", "150", None, "sub"),
        ("delete", "5", "b", None)]


@mariadb_only
def test_mariadb_an_update_moving_a_row_across_partitions_is_recorded_as_delete_and_insert(
        engine, mariadb_partitioned) -> None:
    _sql(engine, "INSERT INTO events (id, body) VALUES (20, 'moves')",
         "UPDATE events SET id = 120 WHERE id = 20")
    assert _history(engine, mariadb_partitioned) == [
        ("insert", "20", None, "moves"), ("delete", "20", "moves", None),
        ("insert", "120", None, "moves")]


@mariadb_only
@pytest.mark.parametrize("maintenance", [
    "ALTER TABLE events TRUNCATE PARTITION p_low",
    "ALTER TABLE events DROP PARTITION p_low",
])
def test_mariadb_truncate_and_drop_partition_record_nothing_is_a_documented_hole(
        engine, mariadb_partitioned, maintenance) -> None:
    """The rows of the partition are gone; no trigger ran for them (docs/mariadb.md, Holes)."""
    _sql(engine, "INSERT INTO events (id, body) VALUES (1, 'low'), (150, 'high')")
    _sql(engine, maintenance)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM events ORDER BY id")).scalars().all() == [150]
    assert _history(engine, mariadb_partitioned) == [
        ("insert", "1", None, "low"), ("insert", "150", None, "high")]  # no delete of 1


@mariadb_only
def test_mariadb_exchange_partition_records_nothing_is_a_documented_hole(
        engine, mariadb_partitioned) -> None:
    """EXCHANGE PARTITION swaps a partition's rows with another table's: the rows that
    leave and the rows that arrive are not recorded (docs/mariadb.md, Holes)."""
    _sql(engine, "INSERT INTO events (id, body) VALUES (2, 'leaves')",  # HASH(2): p_lowsp0
         "INSERT INTO events_swap (id, body) VALUES (4, 'arrives')")
    # in AUTOCOMMIT: run with autocommit off, MariaDB 10.11's check that the rows fit the
    # partition waits for a lock of its own session until innodb_lock_wait_timeout
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ALTER TABLE events EXCHANGE PARTITION p_lowsp0 WITH TABLE events_swap"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, body FROM events")).all() == [(4, "arrives")]
        assert conn.execute(text("SELECT id, body FROM events_swap")).all() == [(2, "leaves")]
    assert _history(engine, mariadb_partitioned) == [("insert", "2", None, "leaves")]


@mariadb_only
@pytest.mark.parametrize("maintenance", [
    "ALTER TABLE events TRUNCATE PARTITION p_low",
    "ALTER TABLE events DROP PARTITION p_low",
    "ALTER TABLE events EXCHANGE PARTITION p_lowsp0 WITH TABLE events_swap",
])
def test_mariadb_rows_removed_by_partition_maintenance_are_found_as_history_gaps(
        engine, mariadb_partitioned, maintenance) -> None:
    """find_history_gaps, given the model, finds the rows the maintenance removed (a row
    EXCHANGE brings in has no history at all, which it cannot find)."""
    from sqlaudit.integrity import find_history_gaps

    _sql(engine, "INSERT INTO events (id, body) VALUES (2, 'low'), (150, 'high')")
    assert find_history_gaps(engine, mariadb_partitioned) == []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(maintenance))  # (AUTOCOMMIT: see the EXCHANGE test above)
    gaps = find_history_gaps(engine, mariadb_partitioned)
    assert [(g.table_name, g.resource_id) for g in gaps] == [("events", "2")]
