"""A range-partitioned sqlaudit_log (PostgreSQL, opt-in): creation, writes, the
append-only guards on every partition, maintenance, prune by partition, drop,
status and Alembic check. (tests/test_partitions.py is about partitioned
*tracked* tables; this file is about the log itself.)"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from sqlaudit import _partitions, audit_context, register_hooks
from sqlaudit.ddl import (AuditState, audit_status, create_audit_log, drop_audit_log,
                          drop_audit_triggers, install_audit_triggers, maintain_audit_partitions,
                          partition_audit_log, prune_audit_log)
from sqlaudit.exceptions import (SQLAuditArgumentError, SQLAuditArgumentTypeError, SQLAuditError,
                                 SQLAuditUnsupportedDialectError)
from sqlaudit.integrity import seal_audit_log, verify_audit_log

from conftest import application_role, changes
from test_guarantees import models  # noqa: F401  (the README models, plain log)

pg = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
sqlite = pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
UTC = timezone.utc


def _sql(engine, *statements, params=None):
    with engine.begin() as conn:
        result = None
        for sql in statements:
            result = conn.execute(text(sql), params or {})
        return result.all() if result is not None and result.returns_rows else None


def _layout(engine):
    with engine.connect() as conn:
        return _partitions.read_layout(conn, engine.info_schema)


def _now(engine) -> datetime:
    with engine.connect() as conn:
        return conn.execute(text("SELECT now()")).scalar_one()


def _relkind(engine, name):
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :s AND c.relname = :n"), {"s": engine.info_schema, "n": name}).scalar()


@pytest.fixture
def parted(engine, Base):
    """README models on a log partitioned by month (created first), one customer, Ann."""
    from sample_models import readme_models

    assert create_audit_log(engine, partition_by="month") is True
    User, Customer = readme_models(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(User(user_id=1))
        s.commit()
        s.add(Customer(name="Ann", user_id=1))
        s.commit()
    return User, Customer


def _add_past_partitions(engine, months: int) -> list[tuple[datetime, datetime]]:
    """Range partitions for the ``months`` months before the current one (as if the
    log had been maintained for that long)."""
    start = _partitions.period_start(_now(engine), "month")
    ranges = []
    for _ in range(months):
        end, start = start, _partitions.period_start(start - timedelta(days=1), "month")
        ranges.append((start, end))
    with engine.begin() as conn:
        for s, e in ranges:
            for sql in _partitions.range_statements(engine.info_schema, s, e):
                conn.execute(text(sql))
    return sorted(ranges)


def _insert_log_rows(engine, moments, table_name="customers"):
    """Rows written straight into the log by its owner (as a trigger would, at a chosen time)."""
    with engine.begin() as conn:
        for i, moment in enumerate(moments):
            conn.execute(text(
                "INSERT INTO sqlaudit_log (table_name, resource_id, operation, changed_at, new_data) "
                "VALUES (:t, :r, 'insert', :at, '{\"name\": \"x\"}')"),
                {"t": table_name, "r": str(1000 + i), "at": moment})


# ---------------------------------------------------------------- creation


@pg
def test_create_audit_log_partitions_by_month_with_ranges_ahead_and_a_default(engine) -> None:
    assert create_audit_log(engine, partition_by="month", ahead=2) is True
    layout = _layout(engine)
    assert layout.partitioned and layout.by == "month"
    assert layout.default is not None and layout.default.name == "sqlaudit_log_default"
    start = _partitions.period_start(_now(engine), "month")
    assert [(p.start, p.end) for p in layout.ranges] == _partitions.wanted_ranges(start, "month", 2)
    assert all(p.guarded for p in layout.partitions)
    with engine.connect() as conn:
        pk = sa_inspect(conn).get_pk_constraint("sqlaudit_log")
        indexes = {i["name"] for i in sa_inspect(conn).get_indexes("sqlaudit_log")}
    assert pk["constrained_columns"] == ["id", "changed_at"]
    assert indexes == {"ix_sqlaudit_log_resource", "ix_sqlaudit_log_user",
                       "ix_sqlaudit_log_transaction", "ix_sqlaudit_log_changed_at"}
    assert create_audit_log(engine, partition_by="month") is False  # exists: used as it is


@pg
@pytest.mark.parametrize("by, days", [("week", 7), ("day", 1)])
def test_week_and_day_partitions(engine, by, days) -> None:
    create_audit_log(engine, partition_by=by, ahead=1)
    ranges = _layout(engine).ranges
    assert len(ranges) == 2 and all((p.end - p.start).days == days for p in ranges)
    if by == "week":
        assert all(p.start.astimezone(UTC).weekday() == 0 for p in ranges)


@pg
def test_writes_are_recorded_once_and_read_back_through_a_partitioned_log(engine, parted) -> None:
    _, Customer = parted
    register_hooks()
    with Session(engine) as s, audit_context(user_id="u1"):
        s.get(Customer, 1).name = "Ann B"
        s.commit()
    with Session(engine) as s:
        got = [(r.operation, r.field_name, r.new_value, r.changed_by) for r in changes(Customer, s)]
    assert got[-1] == ("update", "name", "Ann B", "u1") and len(got) == 3
    current = _partitions.partition_name(_partitions.period_start(_now(engine), "month"))
    assert _sql(engine, f"SELECT count(*) FROM {current}") == [(2,)]
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log_default") == [(0,)]


@pg
def test_a_time_no_range_covers_lands_in_the_default_partition(engine, parted) -> None:
    _insert_log_rows(engine, [datetime(2099, 1, 1, tzinfo=UTC), datetime(1999, 1, 1, tzinfo=UTC)])
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log_default") == [(2,)]


@pg
def test_install_audit_triggers_uses_an_existing_partitioned_log_as_it_is(engine, parted) -> None:
    _, Customer = parted
    install_audit_triggers(engine, Customer)
    assert _relkind(engine, "sqlaudit_log") == "p"
    assert audit_status(engine, Customer) == {"customers": AuditState.CURRENT}


@pg
def test_partitioning_an_existing_plain_log_is_refused_with_the_way_to_convert(engine, models) -> None:
    with pytest.raises(SQLAuditError, match=r"already exists as one table.*partition_audit_log"):
        create_audit_log(engine, partition_by="month")
    assert _relkind(engine, "sqlaudit_log") == "r"


@sqlite
def test_sqlite_refuses_to_partition_and_names_the_option(engine) -> None:
    with pytest.raises(SQLAuditUnsupportedDialectError, match=r"partition_by='month'.*PostgreSQL"):
        create_audit_log(engine, partition_by="month")
    with pytest.raises(SQLAuditUnsupportedDialectError, match=r"maintain_audit_partitions"):
        maintain_audit_partitions(engine)
    assert create_audit_log(engine) is True  # the one-table log
    _sql(engine, "INSERT INTO sqlaudit_log (table_name, operation, changed_at) "
                 "VALUES ('t', 'insert', '2026-01-01')")
    with pytest.raises(DBAPIError, match="append-only"):
        _sql(engine, "DELETE FROM sqlaudit_log")


@pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)
def test_mariadb_refuses_to_partition_and_names_the_option(engine) -> None:
    with pytest.raises(SQLAuditUnsupportedDialectError, match=r"partition_by='month'.*PostgreSQL"):
        create_audit_log(engine, partition_by="month")
    with pytest.raises(SQLAuditUnsupportedDialectError, match=r"maintain_audit_partitions"):
        maintain_audit_partitions(engine)
    with pytest.raises(SQLAuditUnsupportedDialectError, match=r"partition_audit_log"):
        partition_audit_log(engine, by="month")
    assert create_audit_log(engine) is True  # the one-table log
    _sql(engine, "INSERT INTO sqlaudit_log (table_name, operation, changed_at) "
                 "VALUES ('t', 'insert', '2026-01-01')")
    with pytest.raises(DBAPIError, match="append-only"):
        _sql(engine, "DELETE FROM sqlaudit_log")


@pytest.mark.parametrize("kwargs, error", [
    ({"partition_by": "year"}, ValueError), ({"partition_by": 1}, TypeError),
    ({"ahead": -1}, ValueError), ({"ahead": "3"}, TypeError), ({"ahead": True}, TypeError),
    ({"ahead": 401}, ValueError)])
def test_bad_partition_arguments_are_refused_before_any_work(kwargs, error) -> None:
    with pytest.raises(error):
        create_audit_log(None, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- append-only on every partition


@pytest.fixture
def app_role(engine, parted):
    """A login role with the rights of an application: its own tables and TEMP, nothing else."""
    yield from application_role(engine)

def _write_while_blocked(engine, Customer, work):
    """Run ``work`` in a thread while a long transaction holds ACCESS SHARE on the log,
    and commit one audited write meanwhile; return (seconds the write waited, what
    ``work`` returned or raised). The long transaction ends afterwards."""
    import time

    blocker = engine.connect()
    blocker.begin()
    blocker.execute(text("SELECT count(*) FROM sqlaudit_log"))  # ACCESS SHARE until it ends
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.2)  # work is now waiting for its lock
    started = time.perf_counter()
    with Session(engine) as s:
        s.add(Customer(name="queued", user_id=1))
        s.commit()
    waited = time.perf_counter() - started
    thread.join()
    blocker.rollback()
    blocker.close()
    return waited, outcome



def _partition_names(engine):
    layout = _layout(engine)
    current = _partitions.partition_name(_partitions.period_start(_now(engine), "month"))
    future = layout.ranges[-1].name
    return current, future


def _log_rows(engine):
    return _sql(engine, "SELECT id, changed_at, changed_by, new_data::text FROM sqlaudit_log ORDER BY id")


@pg
@pytest.mark.parametrize("attack", [
    "UPDATE {p} SET changed_by = 'forged'",
    "DELETE FROM {p}",
    "TRUNCATE {p}",
    "INSERT INTO {p} (table_name, operation, changed_at) SELECT 'customers', 'insert', changed_at FROM {p}",
    "ALTER TABLE sqlaudit_log DETACH PARTITION {p}",
    "DROP TABLE {p}",
    "ALTER TABLE {p} DISABLE TRIGGER ALL",
])
@pytest.mark.parametrize("which", ["current", "future", "default"])
def test_the_app_role_cannot_touch_any_partition(engine, parted, app_role, attack, which) -> None:
    """Each partition (the current one, one created ahead, DEFAULT) refuses the
    application role: no privilege on it, and DETACH/DROP/ALTER need ownership."""
    _, app = app_role
    current, future = _partition_names(engine)
    name = {"current": current, "future": future, "default": "sqlaudit_log_default"}[which]
    before = _log_rows(engine)
    with pytest.raises(DBAPIError, match="permission denied|must be owner"):
        with app.begin() as conn:
            conn.execute(text(attack.format(p=name)))
    assert _log_rows(engine) == before
    assert name in {p.name for p in _layout(engine).partitions}


@pg
def test_the_app_role_cannot_attach_a_forged_partition_or_create_one(engine, parted, app_role) -> None:
    """A table the app owns, holding forged history, cannot become part of the log."""
    _, app = app_role
    before = _log_rows(engine)
    with pytest.raises(DBAPIError, match="must be owner"):
        with app.begin() as conn:
            conn.execute(text("CREATE TABLE forged (id bigint NOT NULL, table_schema varchar(255), "
                              "table_name varchar(255) NOT NULL, resource_id text, "
                              "operation varchar(8) NOT NULL, changed_at timestamptz NOT NULL, "
                              "changed_by text)"))
            conn.execute(text("INSERT INTO forged (id, table_name, operation, changed_at, changed_by) "
                              "VALUES (424242, 'customers', 'delete', '2099-06-01', 'ceo')"))
            conn.execute(text("ALTER TABLE sqlaudit_log ATTACH PARTITION forged "
                              "FOR VALUES FROM ('2099-06-01') TO ('2099-07-01')"))
    with pytest.raises(DBAPIError, match="must be owner"):
        with app.begin() as conn:
            conn.execute(text("CREATE TABLE forged2 PARTITION OF sqlaudit_log "
                              "FOR VALUES FROM ('2098-01-01') TO ('2098-02-01')"))
    assert _log_rows(engine) == before


@pg
@pytest.mark.parametrize("attack", [
    "UPDATE {p} SET changed_by = 'forged'", "DELETE FROM {p}", "TRUNCATE {p}",
    "UPDATE sqlaudit_log SET changed_by = 'forged'", "DELETE FROM sqlaudit_log",
    "TRUNCATE sqlaudit_log"])
def test_even_the_owner_cannot_edit_delete_or_truncate_any_partition(engine, parted, attack) -> None:
    """The guards hold for a superuser too, on partitions created now and by
    maintain_audit_partitions later (the row guard is cloned by PostgreSQL; the
    TRUNCATE guard is added to each partition)."""
    maintain_audit_partitions(engine, ahead=6)
    _insert_log_rows(engine, [p.start + timedelta(hours=1) for p in _layout(engine).ranges]
                     + [datetime(2099, 1, 1, tzinfo=UTC)])  # a row in each (row guards fire per row)
    before = _log_rows(engine)
    for p in _layout(engine).partitions:
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text(attack.format(p=p.name)))
    assert _log_rows(engine) == before


# ---------------------------------------------------------------- maintenance


@pg
def test_maintain_creates_partitions_ahead_and_is_idempotent(engine) -> None:
    create_audit_log(engine, partition_by="month", ahead=0)
    done = maintain_audit_partitions(engine, ahead=3)
    assert len(done.created) == 3 and done.moved_rows == 0
    assert len(_layout(engine).ranges) == 4
    again = maintain_audit_partitions(engine, ahead=3)
    assert again.created == [] and again.moved_rows == 0 and again.guarded == []


@pg
def test_maintain_moves_default_rows_into_the_partitions_it_creates(engine, parted) -> None:
    """Rows already in DEFAULT for a range being created are moved, in one
    transaction, keeping their ids; rows of other times stay in DEFAULT."""
    create_next = _layout(engine).ranges[-1].end  # the first month not covered yet
    _insert_log_rows(engine, [create_next + timedelta(days=2), create_next + timedelta(days=3),
                              datetime(2099, 1, 1, tzinfo=UTC)])
    before = _log_rows(engine)
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log_default") == [(3,)]
    done = maintain_audit_partitions(engine, ahead=4)
    assert done.moved_rows == 2 and _partitions.partition_name(create_next) in done.created
    assert _log_rows(engine) == before
    assert _sql(engine, f"SELECT count(*) FROM {_partitions.partition_name(create_next)}") == [(2,)]
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log_default") == [(1,)]
    layout = _layout(engine)
    assert layout.by == "month" and all(p.guarded for p in layout.partitions)
    with pytest.raises(DBAPIError, match="append-only"):
        _sql(engine, "TRUNCATE sqlaudit_log_default")


@pg
@pytest.mark.parametrize("by", ["month", "week", "day"])
def test_maintain_gives_past_periods_waiting_in_default_their_own_partitions(engine, by) -> None:
    """History that landed in DEFAULT while maintenance did not run (or was backfilled)
    gets a partition per past period, so a prune can drop it whole; its ids stay."""
    assert create_audit_log(engine, partition_by=by) is True
    current = _partitions.period_start(_now(engine), by)
    two_back = _partitions.period_start(_partitions.period_start(current - timedelta(days=1), by)
                                        - timedelta(days=1), by)
    old = datetime(2021, 3, 10, 12, tzinfo=UTC)
    _insert_log_rows(engine, [old, old + timedelta(hours=1), two_back + timedelta(hours=5)])
    before = _log_rows(engine)
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log_default") == [(3,)]
    done = maintain_audit_partitions(engine)
    expected = sorted({_partitions.partition_name(_partitions.period_start(old, by)),
                       _partitions.partition_name(two_back)})
    assert done.created == expected and done.moved_rows == 3
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log_default") == [(0,)]
    assert _log_rows(engine) == before
    assert all(p.guarded for p in _layout(engine).partitions)
    assert maintain_audit_partitions(engine).created == []  # idempotent
    assert prune_audit_log(engine, old + timedelta(days=400)) == 2
    assert _relkind(engine, _partitions.partition_name(_partitions.period_start(old, by))) is None


def _backfill_days(engine, days: int) -> datetime:
    """One log row for each of the ``days`` days before today, all in DEFAULT."""
    today = _partitions.period_start(_now(engine), "day")
    _sql(engine, "INSERT INTO sqlaudit_log (table_name, resource_id, operation, changed_at, new_data) "
                 "SELECT 'customers', g::text, 'insert', :t - g * interval '1 day' + interval '1 hour', "
                 "'{}' FROM generate_series(1, :n) AS g", params={"t": today, "n": days})
    return today


@pg
def test_maintain_after_years_of_backfilled_days_creates_a_bounded_batch_per_run(engine) -> None:
    """Six years of daily history backfilled into DEFAULT: one run creating 2,200
    partitions would exhaust the lock table ('out of shared memory') and fail on
    every run, so the current partitions would never come. A run creates today's
    and the ones ahead, plus the oldest PAST_PERIODS_PER_RUN days, and says how
    many wait for the next run."""
    assert create_audit_log(engine, partition_by="day", ahead=1) is True
    days, batch = 2200, _partitions.PAST_PERIODS_PER_RUN
    today = _backfill_days(engine, days)
    before = _log_rows(engine)
    done = maintain_audit_partitions(engine, ahead=2)
    oldest = [_partitions.period_start(today - timedelta(days=days - i), "day") for i in range(batch)]
    assert done.created == [_partitions.partition_name(d) for d in oldest] + [
        _partitions.partition_name(today + timedelta(days=2))]
    assert done.moved_rows == batch and done.waiting == days - batch
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log_default") == [(days - batch,)]
    assert _log_rows(engine) == before


@pg
def test_repeated_maintain_runs_empty_default_of_past_periods(engine) -> None:
    """Each run takes the next batch, oldest first, until DEFAULT holds no past day."""
    assert create_audit_log(engine, partition_by="day", ahead=1) is True
    batch = _partitions.PAST_PERIODS_PER_RUN
    days = 2 * batch + 7
    _backfill_days(engine, days)
    before = _log_rows(engine)
    runs = [maintain_audit_partitions(engine, ahead=1) for _ in range(4)]
    assert [r.waiting for r in runs] == [days - batch, days - 2 * batch, 0, 0]
    assert [r.moved_rows for r in runs] == [batch, batch, 7, 0]
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log_default") == [(0,)]
    assert _log_rows(engine) == before
    assert len(_layout(engine).ranges) == days + 2


@pg
def test_maintain_refuses_a_plain_log_and_names_the_conversion(engine, models) -> None:
    with pytest.raises(SQLAuditError, match=r"not partitioned.*partition_audit_log"):
        maintain_audit_partitions(engine)


@pg
def test_two_concurrent_maintains_and_writers(engine, parted, make_engine) -> None:
    """Two maintain runs at once, while four threads write through the tracked table:
    each partition is created once, no write fails, every write is recorded once."""
    _, Customer = parted
    # leave work for maintain: rows waiting in DEFAULT for two ranges it will create
    first_missing = _layout(engine).ranges[-1].end
    _insert_log_rows(engine, [first_missing + timedelta(days=1, hours=i) for i in range(50)])
    errors: list[BaseException] = []
    stop = threading.Event()
    written = [0] * 4

    def writer(n: int) -> None:
        try:
            while not stop.is_set():
                with Session(engine) as s:
                    s.add(Customer(name=f"w{n}", user_id=1))
                    s.commit()
                written[n] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    results = []

    def maintainer() -> None:
        try:
            results.append(maintain_audit_partitions(engine, ahead=8))
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in writers:
        t.start()
    stop.wait(0.3)
    maintainers = [threading.Thread(target=maintainer) for _ in range(2)]
    for t in maintainers:
        t.start()
    for t in maintainers:
        t.join()
    stop.wait(0.3)
    stop.set()
    for t in writers:
        t.join()
    assert errors == []
    created = [name for r in results for name in r.created]
    assert len(created) == len(set(created)) == 5  # ahead=8 from 4 existing ranges
    assert sorted(r.moved_rows for r in results) == [0, 50]
    assert len(_layout(engine).ranges) == 9
    inserts = _sql(engine, "SELECT count(*) FROM sqlaudit_log WHERE operation = 'insert' "
                           "AND table_name = 'customers' AND new_data->>'name' LIKE 'w%'")
    assert inserts == [(sum(written),)] and sum(written) > 0
    assert _sql(engine, "SELECT count(*) - count(DISTINCT id) FROM sqlaudit_log") == [(0,)]


# ---------------------------------------------------------------- prune


@pg
def test_prune_drops_whole_partitions_and_deletes_only_in_the_boundary(engine, parted) -> None:
    ranges = _add_past_partitions(engine, 3)  # oldest first
    (s0, e0), (s1, e1), (s2, e2) = ranges
    _insert_log_rows(engine, [s0 + timedelta(days=1), s0 + timedelta(days=2), s1 + timedelta(days=1),
                              s2 + timedelta(days=1), s2 + timedelta(days=20)])
    cutoff = s2 + timedelta(days=10)  # inside the newest past month
    total = _sql(engine, "SELECT count(*) FROM sqlaudit_log")[0][0]
    assert prune_audit_log(engine, cutoff) == 4
    names = {p.name for p in _layout(engine).partitions}
    assert _partitions.partition_name(s0) not in names and _partitions.partition_name(s1) not in names
    assert _partitions.partition_name(s2) in names  # the boundary: rows deleted inside it
    assert _relkind(engine, _partitions.partition_name(s0)) is None  # dropped, not emptied
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log") == [(total - 4,)]
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log WHERE changed_at < :c",
                params={"c": cutoff}) == [(0,)]
    with pytest.raises(DBAPIError, match="append-only"):
        _sql(engine, "DELETE FROM sqlaudit_log")  # the guard is back


@pg
def test_a_sealed_partitioned_log_still_verifies_after_a_prune_by_partition(engine, parted) -> None:
    (s0, _), (s1, _) = _add_past_partitions(engine, 2)
    _insert_log_rows(engine, [s0 + timedelta(days=1), s1 + timedelta(days=1), s1 + timedelta(days=9)])
    seal_audit_log(engine)
    assert verify_audit_log(engine).ok
    assert prune_audit_log(engine, s1 + timedelta(days=5)) == 2
    assert _partitions.partition_name(s0) not in {p.name for p in _layout(engine).partitions}
    result = verify_audit_log(engine)
    assert result.ok, result.problems
    with engine.connect() as conn:
        kinds = conn.execute(text("SELECT kind, row_count FROM sqlaudit_seal ORDER BY id")).all()
    assert ("prune", 2) in [tuple(k) for k in kinds]
    # tampering after the prune is still caught
    _sql(engine, "ALTER TABLE sqlaudit_log DISABLE TRIGGER USER",
         "UPDATE sqlaudit_log SET changed_by = 'forged' WHERE id = (SELECT max(id) FROM sqlaudit_log "
         "WHERE changed_at < now() - interval '1 day')",
         "ALTER TABLE sqlaudit_log ENABLE TRIGGER USER")
    assert not verify_audit_log(engine).ok


@pg
def test_a_prune_limited_to_some_models_keeps_partitions_holding_other_tables(engine, parted) -> None:
    _, Customer = parted
    (s0, e0), = _add_past_partitions(engine, 1)
    _insert_log_rows(engine, [s0 + timedelta(days=1)])
    _insert_log_rows(engine, [s0 + timedelta(days=2)], table_name="orders")
    assert prune_audit_log(engine, e0, models=[Customer]) == 1
    assert _partitions.partition_name(s0) in {p.name for p in _layout(engine).partitions}
    assert _sql(engine, f"SELECT table_name FROM {_partitions.partition_name(s0)}") == [("orders",)]


@pg
def test_prune_with_export_to_archives_the_dropped_partitions_too(engine, parted, tmp_path) -> None:
    """A whole partition is dropped, not deleted row by row: its rows reach the
    archive before the drop, so the archive holds exactly what the prune removed."""
    import json

    (s0, _), (s1, _) = _add_past_partitions(engine, 2)
    _insert_log_rows(engine, [s0 + timedelta(days=1), s0 + timedelta(days=2),
                              s1 + timedelta(days=1), s1 + timedelta(days=9)])
    cutoff = s1 + timedelta(days=5)
    doomed = _sql(engine, "SELECT id FROM sqlaudit_log WHERE changed_at < :c ORDER BY id",
                  params={"c": cutoff})
    archive = tmp_path / "pruned.jsonl"
    assert prune_audit_log(engine, cutoff, export_to=archive) == 3
    assert _partitions.partition_name(s0) not in {p.name for p in _layout(engine).partitions}
    archived = sorted(json.loads(line)["id"] for line in archive.read_text().splitlines())
    assert archived == [row[0] for row in doomed]


# ---------------------------------------------------------------- status, Alembic, drop


@pg
def test_audit_status_reports_no_drift_for_a_partitioned_log(engine, parted) -> None:
    _, Customer = parted
    maintain_audit_partitions(engine, ahead=5)
    assert audit_status(engine, Customer) == {"customers": AuditState.CURRENT}


@pg
def test_alembic_check_reports_no_drift_for_a_partitioned_log(engine, parted, tmp_path) -> None:
    from test_alembic import AlembicEnv

    User, _ = parted
    env = AlembicEnv(tmp_path / "migrations", engine)
    env.write_revision("a1", None, "pass")
    env.upgrade()
    env.check(User.metadata)
    assert env.output.getvalue() == "No new upgrade operations detected.\n"


@pg
def test_drop_audit_log_removes_a_partitioned_log_with_every_partition(engine, parted) -> None:
    User, Customer = parted
    with pytest.raises(SQLAuditError, match="still have sqlaudit triggers"):
        drop_audit_log(engine)
    drop_audit_triggers(engine, Customer)
    drop_audit_log(engine)
    with engine.connect() as conn:
        left = conn.execute(text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :s AND c.relname LIKE 'sqlaudit\\_log%'"), {"s": engine.info_schema}).all()
    assert left == []
    assert create_audit_log(engine, partition_by="week") is True  # and it can be made again


# ---------------------------------------------------------------- the command line


@pytest.fixture
def cli_url(engine, dialect) -> str:
    """This test's database for another process (PostgreSQL: its schema), as tests/test_cli.py."""
    if dialect == "postgresql":
        return engine.url.update_query_dict(
            {"options": f"-csearch_path={engine.info_schema}"}).render_as_string(hide_password=False)
    return engine.url.render_as_string(hide_password=False)


@pg
def test_cli_maintain_partitions_creates_them_ahead_then_has_nothing_to_do(engine, cli_url) -> None:
    from test_cli import run

    create_audit_log(engine, partition_by="week", ahead=0)
    first = run("maintain-partitions", "--ahead", "2", url=cli_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("created 2 partitions: sqlaudit_log_p")
    assert len(_layout(engine).ranges) == 3
    second = run("maintain-partitions", "--ahead", "2", url=cli_url)
    assert second.returncode == 0, second.stderr
    assert "nothing to create" in second.stdout


@pg
def test_cli_maintain_partitions_on_a_plain_log_fails_with_one_line(engine, models, cli_url) -> None:
    from sqlaudit.cli import EXIT_FAILED
    from test_cli import error_line, run

    result = run("maintain-partitions", url=cli_url)
    assert result.returncode == EXIT_FAILED
    assert "not partitioned" in error_line(result) and "partition_audit_log" in error_line(result)


@sqlite
def test_cli_maintain_partitions_on_sqlite_says_it_needs_postgresql(engine, models, cli_url) -> None:
    from sqlaudit.cli import EXIT_FAILED
    from test_cli import error_line, run

    result = run("maintain-partitions", url=cli_url)
    assert result.returncode == EXIT_FAILED
    assert "needs PostgreSQL" in error_line(result)


# ---------------------------------------------------------------- converting a plain log


def _writers(engine, Customer, count=4):
    """Threads inserting and updating customers until stopped; each keeps the ids it committed."""
    stop, errors = threading.Event(), []
    committed: list[list[int]] = [[] for _ in range(count)]

    def write(n: int) -> None:
        try:
            while not stop.is_set():
                with Session(engine) as s:
                    c = Customer(name=f"w{n}", user_id=1)
                    s.add(c)
                    s.flush()
                    c.name = f"w{n}-renamed"
                    s.commit()
                    committed[n].append(c.customer_id)
        except BaseException as exc:  # pragma: no cover - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()

    def finish() -> list[int]:
        stop.set()
        for t in threads:
            t.join()
        assert errors == []
        return [i for ids in committed for i in ids]

    return finish


def _snapshot(engine):
    return _sql(engine, "SELECT id, md5(row(l.*)::text) FROM sqlaudit_log AS l ORDER BY id")


@pg
def test_converting_a_plain_log_while_writers_run_keeps_every_record_exactly_once(
        engine, models) -> None:
    """partition_audit_log() with four threads writing through the tracked table the
    whole time: afterwards each committed insert and update is recorded once, every
    record from before is there unchanged, ids are unique, and the seals verify."""
    _, Customer = models
    _insert_log_rows(engine, [datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=i) for i in range(500)])
    seal_audit_log(engine)
    finish = _writers(engine, Customer)
    threading.Event().wait(0.4)
    before = dict(_snapshot(engine))
    assert partition_audit_log(engine, by="month") is True
    threading.Event().wait(0.4)
    ids = finish()
    assert _relkind(engine, "sqlaudit_log") == "p" and len(ids) > 0
    after = dict(_snapshot(engine))
    assert {k: after.get(k) for k in before} == before  # nothing lost or changed
    assert _sql(engine, "SELECT count(*) - count(DISTINCT id) FROM sqlaudit_log") == [(0,)]
    per_key = dict(_sql(engine, "SELECT resource_id::int, count(*) FROM sqlaudit_log WHERE "
                                "table_name = 'customers' AND changed_at > '2026-01-01' "
                                "AND new_data->>'name' LIKE 'w%' GROUP BY 1"))
    assert per_key == {i: 2 for i in ids}  # the insert and the rename, once each
    assert verify_audit_log(engine).ok
    layout = _layout(engine)
    assert layout.by == "month" and all(p.guarded for p in layout.partitions)
    assert partition_audit_log(engine, by="month") is False  # already partitioned


@pg
def test_a_converted_log_keeps_its_guards_status_and_alembic_check(engine, models, tmp_path) -> None:
    from test_alembic import AlembicEnv

    User, Customer = models
    partition_audit_log(engine, by="week", ahead=1)
    history = next(p for p in _layout(engine).ranges if p.start is None)
    for attack in (f"DELETE FROM {history.name}", f"TRUNCATE {history.name}",
                   "UPDATE sqlaudit_log SET changed_by = 'x'"):
        with pytest.raises(DBAPIError, match="append-only"):
            _sql(engine, attack)
    assert audit_status(engine, Customer) == {"customers": AuditState.CURRENT}
    env = AlembicEnv(tmp_path / "migrations", engine)
    env.write_revision("a1", None, "pass")
    env.upgrade()
    env.check(User.metadata)
    assert env.output.getvalue() == "No new upgrade operations detected.\n"
    # maintain leaves the old log's range alone and keeps creating ahead
    assert maintain_audit_partitions(engine, ahead=3).created
    # and a prune past the boundary drops the old log's partition whole
    assert prune_audit_log(engine, history.end + timedelta(seconds=1)) >= 1
    assert history.name not in {p.name for p in _layout(engine).partitions}


@pg
def test_the_alembic_operation_converts_online_and_refuses_sql_mode(engine, models, tmp_path) -> None:
    from alembic import command

    from test_alembic import AlembicEnv

    env = AlembicEnv(tmp_path / "migrations", engine)
    env.write_revision("p1", None, 'op.partition_audit_log(by="day", ahead=2)')
    with pytest.raises(SQLAuditError, match=r"cannot be rendered offline \(--sql\)"):
        env.upgrade(sql=True)
    before = _snapshot(engine)
    with engine.connect() as connection:  # not inside a transaction: the op needs autocommit
        env.config.attributes.update(connection=connection, target_metadata=None, configure={})
        command.upgrade(env.config, "head")
    assert _relkind(engine, "sqlaudit_log") == "p" and _layout(engine).by == "day"
    assert _snapshot(engine) == before
    assert _sql(engine, "SELECT version_num FROM alembic_version") == [("p1",)]


@pg
def test_partition_audit_log_needs_an_engine_and_a_log(engine, models) -> None:
    with engine.connect() as conn, pytest.raises(TypeError, match="needs an Engine"):
        partition_audit_log(conn, by="month")
    with pytest.raises(ValueError, match="partition_by must be one of"):
        partition_audit_log(engine, by="year")


@sqlite
def test_partition_audit_log_on_sqlite_says_it_needs_postgresql(engine, models) -> None:
    with pytest.raises(SQLAuditUnsupportedDialectError, match="needs PostgreSQL"):
        partition_audit_log(engine, by="month")


# ---------------------------------------------------------------- reads prune partitions and use indexes


def _scanned(plan) -> list[tuple[str, str]]:
    """(node type, relation or index) of every scan in an EXPLAIN (FORMAT JSON) plan."""
    found = []

    def walk(node):
        if "Relation Name" in node or "Index Name" in node:
            found.append((node["Node Type"], node.get("Index Name") or node["Relation Name"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def _explain_log_reads(engine, read):
    """Run ``read(session)`` and EXPLAIN each statement it sent that reads sqlaudit_log
    (with its parameters: the custom plan that a first execution gets)."""
    from sqlalchemy import event

    sent = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "sqlaudit_log" in statement and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with Session(engine) as s:
            result = read(s)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    plans = []
    with engine.connect() as conn:
        for statement, parameters in sent:
            plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
            plans.append(_scanned(plan))
    assert plans, "the read sent no query on sqlaudit_log"
    return result, plans


@pytest.fixture
def big_parted(engine, parted):
    """Three past months of history (20,000 records each, 2,000 resources) plus the
    current month, analysed: enough rows for the planner to prefer indexes."""
    ranges = _add_past_partitions(engine, 3)
    with engine.begin() as conn:
        for start, end in ranges:
            conn.execute(text(
                "INSERT INTO sqlaudit_log (table_name, resource_id, operation, changed_at, new_data, "
                "transaction_id) SELECT 'customers', (g % 2000 + 100)::text, 'update', "
                ":start + (g * (:end - :start) / 20000), jsonb_build_object('name', 'n' || g), g "
                "FROM generate_series(0, 19999) AS g"), {"start": start, "end": end})
        conn.execute(text("ANALYZE sqlaudit_log"))
    return parted, ranges


@pg
def test_a_date_range_read_scans_only_the_partitions_of_that_range(engine, big_parted) -> None:
    from sqlaudit.retrieval import get_changes

    (_, Customer), ranges = big_parted
    start, end = ranges[1]
    window = (start + timedelta(days=3), start + timedelta(days=5))
    records, plans = _explain_log_reads(engine, lambda s: get_changes(s, date_range=window, limit=50))
    assert len(records) == 50 and len(plans) >= 2  # the page, then its rows' typed values
    wanted = _partitions.partition_name(start)
    for plan in plans:  # the partition of that month or one of its indexes, nothing else
        assert plan and all(name.startswith(wanted) for _, name in plan), plan
    # and a model's history for a date range too
    _, plans = _explain_log_reads(engine, lambda s: changes(Customer, s, filter_date_range=window))
    assert all(plan and all(name.startswith(wanted) for _, name in plan) for plan in plans), plans


@pg
def test_one_resource_history_reads_through_the_resource_index_of_each_partition(
        engine, big_parted) -> None:
    (_, Customer), ranges = big_parted
    records, plans = _explain_log_reads(
        engine, lambda s: changes(Customer, s, filter_resource_ids=[150]))
    assert len(records) == 30  # 10 updates in each of the 3 past months
    scans = [scan for plan in plans for scan in plan]
    filled = {_partitions.partition_name(start) for start, _ in ranges}  # 20,000 rows each
    # each filled partition is read through its resource index; the nearly empty
    # current, future and DEFAULT partitions may be read whole (that is cheaper)
    for name in filled:
        used = [(node, index) for node, index in scans if index.startswith(name)]
        assert used == [("Index Scan", f"{name}_table_name_resource_id_changed_at_idx")], scans


def test_every_test_docs_partitioning_names_exists() -> None:
    """docs/partitioning.md cites its proofs by test name: each one is in this file."""
    import re  # noqa: F811
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "partitioning.md").read_text()
    named = set(re.findall(r"`(?:tests/test_log_partitions\.py::)?(test_[a-z0-9_]+)`", doc))
    assert len(named) >= 20
    assert sorted(n for n in named if n not in globals()) == []


@pg
def test_two_concurrent_conversions_convert_once(engine, models) -> None:
    """Two partition_audit_log() calls at once while writers run: one converts, the
    other waits for it and finds the log partitioned; no error, no record lost."""
    _, Customer = models
    finish = _writers(engine, Customer, count=2)
    results, errors = [], []

    def convert() -> None:
        try:
            results.append(partition_audit_log(engine, by="month"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=convert) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = finish()
    assert errors == [] and sorted(results) == [False, True]
    per_key = dict(_sql(engine, "SELECT resource_id::int, count(*) FROM sqlaudit_log WHERE "
                                "table_name = 'customers' AND new_data->>'name' LIKE 'w%' GROUP BY 1"))
    assert per_key == {i: 2 for i in ids}


@pg
def test_a_conversion_that_cannot_get_its_lock_gives_up_without_holding_writers(
        engine, models) -> None:
    """A long transaction holding a lock on the log: each attempt of the conversion
    waits at most lock_timeout, so a writer queued behind it waits no longer; after
    the last attempt it raises with nothing changed, and succeeds once the
    transaction is gone."""
    _, Customer = models
    waited, outcome = _write_while_blocked(
        engine, Customer, lambda: partition_audit_log(engine, by="month", lock_timeout=0.5, attempts=2))
    assert waited < 1.5  # lock_timeout 0.5 s, plus the machine's noise
    assert len(outcome) == 1 and isinstance(outcome[0], SQLAuditError), outcome
    assert "within 0.5 s, 2 times" in str(outcome[0]) and "nothing was changed" in str(outcome[0])
    assert _relkind(engine, "sqlaudit_log") == "r"
    assert partition_audit_log(engine, by="month", lock_timeout=0.5, attempts=2) is True


@pytest.mark.parametrize("kwargs, error", [
    ({"lock_timeout": 0}, ValueError), ({"lock_timeout": "2"}, TypeError),
    ({"attempts": 0}, ValueError), ({"attempts": 1.5}, TypeError)])
def test_bad_lock_arguments_of_a_conversion_are_refused(kwargs, error) -> None:
    with pytest.raises(error):
        partition_audit_log(None, by="month", **kwargs)  # type: ignore[arg-type]


@pg
def test_a_swap_that_cannot_get_its_lock_is_undone_and_can_be_retried(engine, models) -> None:
    """The swap's attempts run in savepoints: one that times out leaves the log as it
    was and the transaction usable; the next attempt, once the lock is free, swaps."""
    policy = _partitions.LockPolicy(timeout=0.3, attempts=2, pause=0.1)
    with engine.connect() as conn:
        boundary = _partitions.prepare(conn.execution_options(isolation_level="AUTOCOMMIT"),
                                       "month", policy)
    blocker = engine.connect()
    blocker.begin()
    blocker.execute(text("SELECT count(*) FROM sqlaudit_log"))
    with engine.begin() as conn:
        with pytest.raises(SQLAuditError, match=r"for the swap within 0.3 s, 2 times"):
            _partitions.swap(conn, "month", 3, boundary, policy)
        assert conn.execute(text("SELECT current_setting('lock_timeout')")).scalar() == "0"
        assert _relkind(engine, "sqlaudit_log") == "r"
        blocker.rollback()
        blocker.close()
        assert _partitions.swap(conn, "month", 3, boundary, policy) is True
    assert _relkind(engine, "sqlaudit_log") == "p"


@pg
def test_maintain_waits_for_its_lock_at_most_lock_timeout_then_says_so(engine, parted) -> None:
    """A long transaction holding the log: maintain gives up after its attempts,
    with nothing created, and a writer queued behind it waits no longer than
    lock_timeout; once the transaction ends, maintain creates the partitions."""
    _, Customer = parted
    waited, outcome = _write_while_blocked(
        engine, Customer, lambda: maintain_audit_partitions(engine, ahead=6, lock_timeout=0.5, attempts=2))
    assert waited < 1.5
    assert isinstance(outcome[0], SQLAuditError) and "maintain_audit_partitions()" in str(outcome[0])
    assert "no partition was created" in str(outcome[0])
    assert len(_layout(engine).ranges) == 4  # nothing created
    assert len(maintain_audit_partitions(engine, ahead=6, lock_timeout=0.5).created) == 3


@pg
def test_a_sealed_prune_and_maintain_at_once_never_deadlock(engine, parted, monkeypatch) -> None:
    """A prune of a sealed partitioned log holds the log (ACCESS SHARE, from sealing)
    when it comes to drop partitions; maintain, started at that moment, must wait for
    the prune instead of taking the partition lock and waiting for the log (which
    ended with one of them killed by deadlock_detected). Both succeed."""
    from sqlaudit import integrity

    (s0, e0), _ = _add_past_partitions(engine, 2)
    _insert_log_rows(engine, [s0 + timedelta(days=1)])
    seal_audit_log(engine)
    sealed, go = threading.Event(), threading.Event()
    real_verify = integrity._verify

    def verify(*args, **kwargs):
        if threading.current_thread().name == "pruner":
            sealed.set()  # the log is sealed and locked by this transaction
            go.wait(30)
        return real_verify(*args, **kwargs)

    monkeypatch.setattr(integrity, "_verify", verify)
    outcome: dict = {}

    def run(key, work):
        try:
            outcome[key] = work()
        except Exception as exc:  # noqa: BLE001 - the outcome is asserted below
            outcome[key] = exc

    pruner = threading.Thread(target=run, name="pruner", args=("prune", lambda: prune_audit_log(engine, e0)))
    pruner.start()
    assert sealed.wait(30)
    maintainer = threading.Thread(target=run, name="maintainer", args=(
        "maintain", lambda: maintain_audit_partitions(engine, ahead=6, lock_timeout=5)))
    maintainer.start()
    maintainer.join(1.5)  # past deadlock_timeout (1 s): a deadlock would be found by now
    assert maintainer.is_alive()  # waiting for the prune, holding nothing
    go.set()
    pruner.join(60)
    maintainer.join(60)
    assert outcome["prune"] == 1, outcome
    assert len(outcome["maintain"].created) == 3, outcome
    assert verify_audit_log(engine).ok


def _thread(work):
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # noqa: BLE001 - asserted by the caller
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _in_open_transaction(engine, first, then):
    """``first(conn)`` in a transaction; ``then()`` in a thread, given 0.5 s to get
    to its lock; then ``prune_audit_log``-like ``second(conn)`` in the same
    transaction and COMMIT. Returns (the transaction's result or error, seconds the
    second step took, the thread's outcome)."""
    with engine.connect() as conn:
        conn.begin()
        first(conn)
        thread, outcome = _thread(then[0])
        time.sleep(0.5)
        started = time.perf_counter()
        try:
            mine = then[1](conn)
            conn.commit()
        except Exception as exc:  # noqa: BLE001 - asserted by the caller
            mine = exc
            conn.rollback()
        took = time.perf_counter() - started
    thread.join(60)
    return mine, took, outcome[0]


_WRITE = ("INSERT INTO sqlaudit_log (table_name, resource_id, operation, changed_at, new_data) "
          "VALUES ('customers', '1', 'insert', now(), '{}')")


def _waits_for_the_log(engine, timeout=20.0) -> bool:
    """True once some transaction waits for ACCESS EXCLUSIVE on this test's log."""
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation "
                    "JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE NOT l.granted AND "
                    "l.mode = 'AccessExclusiveLock' AND c.relname = 'sqlaudit_log' AND n.nspname = :s)"),
                    {"s": engine.info_schema}).scalar():
                return True
            conn.rollback()
            time.sleep(0.05)
    return False


@pg
def test_a_prune_in_a_transaction_that_wrote_the_log_and_maintain_at_once_both_finish(
        engine, parted) -> None:
    """The caller's transaction wrote a log row (any audited write does), so it holds
    the log when its prune asks for the partition lock, which maintain holds while it
    waits for the log. PostgreSQL's deadlock detector ends maintain's attempt after
    deadlock_timeout (1 s), well before its lock_timeout (5 s); the attempt is undone
    with the partition lock, the prune goes through, maintain's next attempt succeeds."""
    (s0, e0), _ = _add_past_partitions(engine, 2)
    _insert_log_rows(engine, [s0 + timedelta(days=1)])

    with engine.connect() as conn:
        conn.begin()
        conn.execute(text(_WRITE))
        thread, outcome = _thread(
            lambda: maintain_audit_partitions(engine, ahead=6, lock_timeout=5, attempts=3))
        assert _waits_for_the_log(engine)  # maintain holds the partition lock, waits for the log
        started = time.perf_counter()
        pruned = prune_audit_log(conn, e0)
        took = time.perf_counter() - started
        conn.commit()
    thread.join(60)
    maintained = outcome[0]
    assert pruned == 1, pruned
    assert took < 3  # the deadlock timeout, not maintain's lock_timeout
    assert isinstance(maintained, _partitions.PartitionMaintenance) and len(maintained.created) == 3


@pg
@pytest.mark.parametrize("second", ["seal", "prune"])
def test_a_prune_dropping_partitions_and_a_seal_or_prune_in_a_transaction_that_wrote_the_log_end_at_once(
        engine, parted, second) -> None:
    """A prune holds the partition lock and waits for the log to drop partitions; a
    transaction that wrote the log now seals or prunes and waits for the partition
    lock: a cycle. The deadlock detector ends the prune within deadlock_timeout with
    deadlock_detected (nothing pruned, nothing lost) and the other goes on; nothing
    hangs, and nothing is reported as a long transaction."""
    (s0, e0), _ = _add_past_partitions(engine, 2)
    _insert_log_rows(engine, [s0 + timedelta(days=1)])
    seal_audit_log(engine)
    started = time.perf_counter()
    with engine.connect() as conn:
        conn.begin()
        conn.execute(text(_WRITE))
        thread, outcome = _thread(lambda: prune_audit_log(engine, e0))
        assert _waits_for_the_log(engine)
        mine = seal_audit_log(conn) if second == "seal" else prune_audit_log(conn, e0)
        conn.commit()
    thread.join(60)
    assert time.perf_counter() - started < 5
    assert isinstance(outcome[0], DBAPIError) and outcome[0].orig.sqlstate == "40P01", outcome
    assert mine == 1 if second == "prune" else isinstance(mine, str)
    assert verify_audit_log(engine).ok


@pg
def test_maintain_in_a_transaction_already_holding_the_partition_lock_names_the_deadlock(
        engine, parted) -> None:
    """The caller sealed (so holds the partition lock) and then maintains in the same
    transaction, while another transaction that wrote the log waits for that lock:
    each attempt is ended by the deadlock detector and undoing it cannot release a
    lock taken before the call. The error says so, not 'a long transaction'."""
    with engine.connect() as writer, engine.connect() as conn:
        writer.begin()
        writer.execute(text(_WRITE))  # holds the log
        conn.begin()
        seal_audit_log(conn)  # holds the partition lock
        thread, outcome = _thread(lambda: maintain_audit_partitions(conn, ahead=6, attempts=2))
        assert _waits_for_the_log(engine)
        time.sleep(0.5)
        sealer, sealed = _thread(lambda: seal_audit_log(writer))  # waits for the partition lock
        thread.join(30)
        conn.rollback()  # the caller gives up: the writer's seal goes on
        sealer.join(30)
        writer.rollback()
    assert isinstance(sealed[0], str), sealed
    error = outcome[0]
    assert isinstance(error, SQLAuditError), error
    assert "deadlock detector" in str(error) and "transaction of its own" in str(error)


@pg
def test_a_seal_waiting_for_another_honours_the_callers_lock_timeout(engine, parted) -> None:
    """The partition and seal locks are waited for in the server: the caller's
    lock_timeout (and statement_timeout, and pg_cancel_backend) end the wait."""
    seal_audit_log(engine)
    with engine.connect() as holder:
        holder.begin()
        seal_audit_log(holder)  # holds the partition and seal locks until it ends

        def second():
            with engine.connect() as conn:
                conn.execute(text("SET lock_timeout = '300ms'"))
                return seal_audit_log(conn)

        thread, outcome = _thread(second)
        thread.join(5)
        still_waiting = thread.is_alive()
        holder.rollback()
    thread.join(30)
    assert not still_waiting
    assert isinstance(outcome[0], DBAPIError) and outcome[0].orig.sqlstate == "55P03", outcome


@pg
def test_a_prune_limited_to_some_models_is_not_refused_for_partitions_it_keeps(
        engine, parted, monkeypatch) -> None:
    """The cap counts the partitions a whole-log prune drops; a prune with models=
    keeps the partitions holding other tables' rows, so it is not refused for them.
    (DROPS_PER_PRUNE lowered to 3 to keep the layout small.)"""
    _, Customer = parted
    monkeypatch.setattr(_partitions, "DROPS_PER_PRUNE", 3)
    ranges = _add_past_partitions(engine, 5)
    _insert_log_rows(engine, [s + timedelta(days=1) for s, _ in ranges])
    _insert_log_rows(engine, [s + timedelta(days=2) for s, _ in ranges], table_name="orders")
    assert prune_audit_log(engine, ranges[-1][1], models=[Customer]) == 5
    assert len(_layout(engine).ranges) == 5 + 4  # every partition kept: they hold orders
    with pytest.raises(SQLAuditError, match="5 partitions"):
        prune_audit_log(engine, ranges[-1][1])  # the whole log: refused, nothing pruned
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log WHERE table_name = 'orders'") == [(5,)]


@pg
def test_a_seal_then_prune_of_another_schemas_log_and_a_prune_of_it_at_once_finish(engine) -> None:
    """A log in another schema is pruned with its own locks and its own seal table:
    a transaction that sealed the default log and then prunes the other one, and a
    prune of the other one at once, wait for each other instead of hanging."""
    from sqlalchemy import Column, Integer, MetaData, String
    from sqlalchemy.orm import DeclarativeBase

    from sqlaudit import track_table

    other = f"{engine.info_schema}_x"
    _sql(engine, f'CREATE SCHEMA "{other}"')
    try:
        assert create_audit_log(engine) is True
        assert create_audit_log(engine, metadata=MetaData(schema=other)) is True

        class XBase(DeclarativeBase):
            metadata = MetaData(schema=other)

        @track_table(tracked_fields=["name"])
        class T(XBase):
            __tablename__ = "t"
            id = Column(Integer, primary_key=True)
            name = Column(String)

        for schema in (engine.info_schema, other):
            _sql(engine, f'INSERT INTO "{schema}".sqlaudit_log (table_schema, table_name, resource_id, '
                         "operation, changed_at, new_data) VALUES (:s, 't', '1', 'insert', "
                         "now() - interval '40 days', '{}')", params={"s": other})
        seal_audit_log(engine)
        cutoff = _now(engine) - timedelta(days=30)
        with engine.connect() as conn:
            conn.begin()
            seal_audit_log(conn)  # the default log's locks, to the end of this transaction
            thread, outcome = _thread(lambda: prune_audit_log(engine, cutoff, models=[T]))
            thread.join(0.5)
            mine = prune_audit_log(conn, cutoff, models=[T])
            conn.commit()
        thread.join(30)
        assert not thread.is_alive()
        assert sorted([mine, outcome[0]]) == [0, 1], (mine, outcome)
        assert _sql(engine, f'SELECT count(*) FROM "{other}".sqlaudit_log') == [(0,)]
        assert _sql(engine, "SELECT count(*) FROM sqlaudit_log") == [(1,)]  # the default log untouched
    finally:
        _sql(engine, f'DROP SCHEMA "{other}" CASCADE')


@pg
def test_a_transaction_that_seals_then_prunes_and_another_prune_at_once_both_finish(
        engine, parted) -> None:
    """A nightly job seals and then prunes in one transaction while another prune
    runs: every path takes the partition lock before the seal lock, so one waits
    for the other instead of a deadlock."""
    (s0, e0), _ = _add_past_partitions(engine, 2)
    _insert_log_rows(engine, [s0 + timedelta(days=1)])
    seal_audit_log(engine)
    mine, _, other = _in_open_transaction(engine, seal_audit_log, (
        lambda: prune_audit_log(engine, e0), lambda conn: prune_audit_log(conn, e0)))
    assert not isinstance(mine, Exception), mine
    assert not isinstance(other, Exception), other
    assert sorted([mine, other]) == [0, 1]
    assert verify_audit_log(engine).ok


@pg
def test_a_prune_that_would_drop_more_partitions_than_one_transaction_can_lock_names_a_step(
        engine) -> None:
    """Each dropped partition holds ~24 locks to the end of the transaction; PostgreSQL's
    lock table holds 64 x connections by default. A prune over more than
    DROPS_PER_PRUNE partitions is refused before any work, naming the cutoff of a
    first step; pruning in steps removes everything."""
    assert create_audit_log(engine, partition_by="day", ahead=1) is True
    limit = _partitions.DROPS_PER_PRUNE
    today = _partitions.period_start(_now(engine), "day")
    days = [today - timedelta(days=limit + 5 - i) for i in range(limit + 5)]
    with engine.begin() as conn:
        for day in days:
            for sql in _partitions.range_statements(engine.info_schema, day, day + timedelta(days=1)):
                conn.execute(text(sql))
    _insert_log_rows(engine, [day + timedelta(hours=1) for day in days])
    step = days[limit - 1] + timedelta(days=1)
    with pytest.raises(SQLAuditError, match=rf"{limit + 5} partitions.*older_than={re.escape(step.isoformat())}"):
        prune_audit_log(engine, today)
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log") == [(limit + 5,)]  # nothing pruned
    assert prune_audit_log(engine, step) == limit
    assert prune_audit_log(engine, today) == 5
    assert len(_layout(engine).ranges) == 2  # today and tomorrow


@pg
def test_a_partitioned_prune_waits_for_its_lock_at_most_lock_timeout_then_says_so(engine, parted) -> None:
    """A long transaction holding the log: the prune of whole partitions gives up after
    its attempts with nothing pruned (no partition dropped, no row deleted), and a
    writer queued behind it waits no longer than lock_timeout; afterwards it prunes."""
    _, Customer = parted
    (s0, e0), _ = _add_past_partitions(engine, 2)
    _insert_log_rows(engine, [s0 + timedelta(days=1), s0 + timedelta(days=2)])
    total = _sql(engine, "SELECT count(*) FROM sqlaudit_log")[0][0]
    waited, outcome = _write_while_blocked(
        engine, Customer, lambda: prune_audit_log(engine, e0, lock_timeout=0.5, attempts=2))
    assert waited < 1.5
    assert isinstance(outcome[0], SQLAuditError), outcome
    assert "prune_audit_log()" in str(outcome[0]) and "lock_timeout" in str(outcome[0])
    assert "nothing was pruned" in str(outcome[0])
    assert _partitions.partition_name(s0) in {p.name for p in _layout(engine).partitions}
    assert _sql(engine, "SELECT count(*) FROM sqlaudit_log") == [(total + 1,)]  # + the queued write
    assert prune_audit_log(engine, e0, lock_timeout=0.5) == 2
    assert _relkind(engine, _partitions.partition_name(s0)) is None


@pytest.mark.parametrize("kwargs, error", [
    ({"lock_timeout": 0}, SQLAuditArgumentError), ({"lock_timeout": "2"}, SQLAuditArgumentTypeError),
    ({"attempts": 0}, SQLAuditArgumentError)])
def test_bad_prune_lock_arguments_are_refused_before_any_work(engine, kwargs, error) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        prune_audit_log(engine, datetime(2000, 1, 1, tzinfo=UTC), **kwargs)


@pg
def test_a_partitioned_log_in_the_metadatas_own_schema(engine) -> None:
    """create_audit_log and maintain_audit_partitions take the MetaData that names the
    log's schema, like drop_audit_log; the search_path's schema is left alone."""
    from sqlalchemy import MetaData

    other = f"{engine.info_schema}_log"
    _sql(engine, f'CREATE SCHEMA "{other}"')
    try:
        metadata = MetaData(schema=other)
        assert create_audit_log(engine, partition_by="day", ahead=0, metadata=metadata) is True
        assert len(maintain_audit_partitions(engine, ahead=2, metadata=metadata).created) == 2
        with engine.connect() as conn:
            assert len(_partitions.read_layout(conn, other).ranges) == 3
            assert _partitions.read_layout(conn, engine.info_schema) is None
    finally:
        _sql(engine, f'DROP SCHEMA "{other}" CASCADE')
