"""PostgreSQL partitions and inheritance children: no write to them escapes the audit.

Writes made directly to a partition (or an inheritance child) are recorded
under the tracked table and read back through its model; writes through the
tracked table are recorded once.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, String, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit.ddl import AuditState, audit_status, install_audit_triggers
from sqlaudit.decorators import track_table

from conftest import changes

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)


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


def test_writes_made_directly_to_a_partition_are_recorded_under_the_tracked_table(
        engine, partitioned) -> None:
    _sql(engine,
         "INSERT INTO events_low (id, body) VALUES (1, 'a')",
         "UPDATE events_low SET body = 'b'",
         "DELETE FROM events_low")
    assert _history(engine, partitioned) == [
        ("insert", "1", None, "a"), ("update", "1", "a", "b"), ("delete", "1", "b", None)]


def test_writes_to_a_sub_partition_are_recorded(engine, partitioned) -> None:
    _sql(engine, "INSERT INTO events_high_b (id, body) VALUES (160, 'deep')")
    assert _history(engine, partitioned) == [("insert", "160", None, "deep")]


def test_a_write_through_the_tracked_table_is_recorded_once(engine, partitioned) -> None:
    _sql(engine,
         "INSERT INTO events (id, body) VALUES (1, 'a'), (120, 'b')",
         "UPDATE events SET id = 170 WHERE id = 120")  # moves the row across partitions
    assert _history(engine, partitioned) == [
        ("insert", "1", None, "a"), ("insert", "120", None, "b"),
        ("delete", "120", "b", None), ("insert", "170", None, "b")]


def test_truncate_of_the_tracked_table_is_recorded_once_and_of_a_partition_too(
        engine, partitioned) -> None:
    _sql(engine, "TRUNCATE events")
    _sql(engine, "TRUNCATE events_low")
    ops = [op for op, *_ in _history(engine, partitioned)]
    assert ops == ["truncate", "truncate"]


def test_a_partition_created_after_install_is_drift_until_installed_again(
        engine, partitioned) -> None:
    assert audit_status(engine, partitioned) == {"events": AuditState.CURRENT}
    _sql(engine, "CREATE TABLE events_late PARTITION OF events FOR VALUES FROM (200) TO (300)")
    assert audit_status(engine, partitioned) == {"events": AuditState.OUTDATED}
    install_audit_triggers(engine, partitioned)
    assert audit_status(engine, partitioned) == {"events": AuditState.CURRENT}
    _sql(engine, "INSERT INTO events_late (id, body) VALUES (250, 'late')")
    assert _history(engine, partitioned) == [("insert", "250", None, "late")]


def test_inheritance_children_are_recorded_under_the_parent(engine, Base) -> None:
    Event = _model(Base, partitioned=False)
    Base.metadata.create_all(engine)
    _sql(engine, "CREATE TABLE events_child (note text) INHERITS (events)")
    install_audit_triggers(engine, Event)
    _sql(engine,
         "INSERT INTO events_child (id, body, note) VALUES (5, 'kid', 'x')",
         "UPDATE events SET body = 'kid!' WHERE id = 5")  # through the parent: once
    assert _history(engine, Event) == [("insert", "5", None, "kid"), ("update", "5", "kid", "kid!")]


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
