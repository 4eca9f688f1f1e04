"""Faults: failed statements, rolled-back savepoints and killed connections (and, on
MariaDB, lock wait timeouts, deadlocks and failing triggers).

The audit records of a change live and die with the change: whatever makes a
transaction (or part of one) fail must take exactly its audit records with it,
leave every record committed earlier untouched, and never disturb the user
attributed to the writes that do survive.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Optional

import pytest
from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.pool import NullPool

from sqlaudit import audit_context, register_hooks, track_table
from sqlaudit.config import SQLAuditConfig, set_config

from conftest import changes

MARIADB_PORTED = True


# ---------------------------------------------------------------- models and helpers


def fault_models(Base: Any, engine: Optional[Engine] = None) -> tuple[type, type]:
    """Owners and their items, with a UNIQUE, a CHECK and two foreign keys (one deferred
    where the database defers: MariaDB checks every foreign key at once)."""
    deferred = engine is None or engine.dialect.name not in ("mysql", "mariadb")

    @track_table(tracked_fields=["name"])
    class Owner(Base):
        __tablename__ = "owners"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(50))

    @track_table(tracked_fields=["title", "qty", "owner_id"])
    class Item(Base):
        __tablename__ = "items"
        __table_args__ = (CheckConstraint("qty >= 0", name="qty_not_negative"),)
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        title: Mapped[str] = mapped_column(String(50), unique=True)
        qty: Mapped[int] = mapped_column(Integer)
        owner_id: Mapped[Optional[int]] = mapped_column(ForeignKey("owners.id"))
        checked_owner_id: Mapped[Optional[int]] = mapped_column(  # not tracked
            ForeignKey("owners.id", **({"deferrable": True, "initially": "DEFERRED"} if deferred else {}))
        )

    return Owner, Item


def enforce_sqlite_foreign_keys(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _fk_on(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.execute("PRAGMA foreign_keys = ON")


@pytest.fixture
def models(engine, Base) -> tuple[type, type]:
    """Committed history by user "seed": owners 1 and 2, items 1-3 (item 3 belongs to owner 2)."""
    enforce_sqlite_foreign_keys(engine)
    Owner, Item = fault_models(Base, engine)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="seed"):
        s.add_all([Owner(id=1, name="free"), Owner(id=2, name="busy")])
        s.flush()
        s.add_all([
            Item(id=1, title="item-1", qty=10),
            Item(id=2, title="item-2", qty=10),
            Item(id=3, title="item-3", qty=3, owner_id=2),
        ])
        s.commit()
    return Owner, Item


def audit_log(engine: Engine) -> list[tuple[Any, ...]]:
    """Every column of every audit row, in id order."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text("SELECT * FROM sqlaudit_log ORDER BY id"))]


def entries(engine: Engine, skip: int) -> list[tuple[Any, ...]]:
    """(table_name, resource_id, operation) of the audit rows after the first ``skip``."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT table_name, resource_id, operation FROM sqlaudit_log ORDER BY id"))
        return [tuple(row) for row in rows][skip:]


def table_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            "owners": [tuple(r) for r in conn.execute(text("SELECT * FROM owners ORDER BY id"))],
            "items": [tuple(r) for r in conn.execute(text("SELECT * FROM items ORDER BY id"))],
        }


def titles_by(Item: type, engine: Engine, skip: int = 0) -> list[tuple[Any, ...]]:
    """(operation, resource_id, old title, new title, changed_by) of the title records."""
    with Session(engine) as s:
        records = changes(Item, s, filter_fields="title")[skip:]
    return [(r.operation, r.resource_id, r.old_value, r.new_value, r.changed_by) for r in records]


@contextlib.contextmanager
def refused_by_a_constraint() -> Any:
    """The database refuses the statement or the commit: an IntegrityError, or for a
    CHECK on MariaDB error 4025, which PyMySQL raises as an OperationalError."""
    with pytest.raises((IntegrityError, OperationalError)) as caught:
        yield
    if isinstance(caught.value, OperationalError):
        assert caught.value.orig.args[0] == 4025, caught.value  # CONSTRAINT ... failed


SEED_TITLES = 3  # title records written by the models fixture


def refused_item(Item: type, violation: str) -> Any:
    """A new item that the database refuses (item 3 and owner 99 never change)."""
    return {
        "unique": lambda: Item(id=90, title="item-3", qty=1),
        "foreign-key": lambda: Item(id=90, title="orphan", qty=1, owner_id=99),
        "check": lambda: Item(id=90, title="negative", qty=-1),
    }[violation]()


# Multi-row statements that the database refuses on their LAST row, after the
# earlier rows were already written (and, on SQLite, their row-level audit
# triggers already ran).
HALFWAY_STATEMENTS = {
    "update-violating-check": "UPDATE items SET qty = qty - 5",
    "insert-violating-unique": (
        "INSERT INTO items (id, title, qty) VALUES (10, 'new-a', 1), (11, 'new-b', 1), (12, 'item-2', 1)"
    ),
    "delete-violating-foreign-key": "DELETE FROM owners",
}


# ---------------------------------------------------------------- failed statement, rolled back


@pytest.mark.parametrize("violation", ["unique", "foreign-key"])
def test_rolled_back_transaction_with_a_failed_statement_leaves_the_audit_table_as_it_was(
    engine, models, violation
) -> None:
    Owner, Item = models
    before_log, before_rows = audit_log(engine), table_rows(engine)
    with Session(engine) as s, audit_context(user_id="lost"):
        s.add(Item(id=4, title="item-4", qty=1, owner_id=1))
        s.flush()
        s.get(Item, 1).title = "renamed"
        s.delete(s.get(Item, 2))
        s.get(Owner, 1).name = "renamed owner"
        s.flush()
        s.add(refused_item(Item, violation))
        with refused_by_a_constraint():
            s.flush()
        s.rollback()
    assert audit_log(engine) == before_log
    assert table_rows(engine) == before_rows
    assert titles_by(Item, engine) == [
        ("insert", "1", None, "item-1", "seed"),
        ("insert", "2", None, "item-2", "seed"),
        ("insert", "3", None, "item-3", "seed"),
    ]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"], indirect=True)  # MariaDB defers none
def test_commit_refused_by_a_deferred_foreign_key_leaves_the_audit_table_as_it_was(
    engine, models
) -> None:
    _, Item = models
    before_log, before_rows = audit_log(engine), table_rows(engine)
    with Session(engine) as s, audit_context(user_id="lost"):
        s.add(Item(id=4, title="item-4", qty=1, checked_owner_id=99))  # checked at COMMIT
        s.get(Item, 1).title = "renamed"
        s.flush()
        with refused_by_a_constraint():
            s.commit()
        s.rollback()
    assert audit_log(engine) == before_log
    assert table_rows(engine) == before_rows


# ---------------------------------------------------------------- failed statement in a savepoint


@pytest.mark.parametrize("violation", ["unique", "foreign-key", "check"])
@pytest.mark.parametrize("source", ["audit_context", "callback"])
def test_failed_statement_in_a_rolled_back_savepoint_keeps_the_outer_writes_and_their_user(
    engine, models, violation, source
) -> None:
    _, Item = models
    if source == "callback":
        set_config(SQLAuditConfig(get_user_id_callback=lambda: "A"))
    user = audit_context(user_id="A") if source == "audit_context" else contextlib.nullcontext()
    with Session(engine) as s:
        with user:
            s.add(Item(id=4, title="before", qty=1))
            s.flush()
            with refused_by_a_constraint():
                with s.begin_nested():
                    s.get(Item, 1).title = "inside"
                    s.flush()
                    s.add(refused_item(Item, violation))
                    s.flush()
            s.add(Item(id=5, title="after", qty=1))
            s.flush()
            s.commit()
    assert titles_by(Item, engine, skip=SEED_TITLES) == [
        ("insert", "4", None, "before", "A"),
        ("insert", "5", None, "after", "A"),
    ]


@pytest.mark.parametrize("failure", [True, False], ids=["after-a-failed-statement", "plain-rollback"])
def test_user_entered_inside_a_rolled_back_savepoint_is_recorded_for_its_later_writes(
    engine, models, failure
) -> None:
    """A nested audit_context entered inside a savepoint still names the writes made in it
    after the savepoint was rolled back, and the outer user is back once it exits."""
    _, Item = models
    with Session(engine) as s, audit_context(user_id="A"):
        s.add(Item(id=4, title="before", qty=1))
        s.flush()
        savepoint = s.begin_nested()
        s.add(Item(id=5, title="inside by A", qty=1))
        s.flush()  # the SAVEPOINT is now open in the database
        with audit_context(user_id="B"):
            s.add(Item(id=6, title="inside by B", qty=1))
            s.flush()
            if failure:
                s.add(Item(id=90, title="item-1", qty=1))
                with refused_by_a_constraint():
                    s.flush()
            savepoint.rollback()
            s.add(Item(id=7, title="after, by B", qty=1))
            s.flush()
        s.add(Item(id=8, title="after, by A", qty=1))
        s.flush()
        s.commit()
    assert titles_by(Item, engine, skip=SEED_TITLES) == [
        ("insert", "4", None, "before", "A"),
        ("insert", "7", None, "after, by B", "B"),
        ("insert", "8", None, "after, by A", "A"),
    ]


def test_records_around_a_failed_savepoint_share_their_transaction_id(engine, models) -> None:
    _, Item = models
    with Session(engine) as s, audit_context(user_id="A"):
        s.add(Item(id=4, title="before", qty=1))
        s.flush()
        with refused_by_a_constraint():
            with s.begin_nested():
                with audit_context(user_id="B"):
                    s.add(Item(id=90, title="item-1", qty=1))
                    s.flush()
        s.add(Item(id=5, title="after", qty=1))
        s.flush()
        s.commit()
    with Session(engine) as s:
        records = changes(Item, s, filter_resource_ids=[4, 5])
    assert [(r.resource_id, r.field_name) for r in records] == [
        ("4", "qty"), ("4", "title"), ("5", "qty"), ("5", "title"),
    ]
    assert len({r.transaction_id for r in records}) == 1


def test_failed_statement_in_a_savepoint_logs_no_sqlaudit_warning(engine, models, caplog) -> None:
    _, Item = models
    with caplog.at_level(logging.DEBUG, logger="sqlaudit"):
        with Session(engine) as s, audit_context(user_id="A"):
            s.add(Item(id=4, title="before", qty=1))
            s.flush()
            with refused_by_a_constraint():
                with s.begin_nested():
                    s.add(Item(id=90, title="item-1", qty=1))
                    s.flush()
            s.add(Item(id=5, title="after", qty=1))
            s.commit()
    assert [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "sqlaudit" and r.levelno >= logging.WARNING] == []
    assert titles_by(Item, engine, skip=SEED_TITLES) == [
        ("insert", "4", None, "before", "A"),
        ("insert", "5", None, "after", "A"),
    ]


# ---------------------------------------------------------------- statements failing halfway


@pytest.mark.parametrize("statement", list(HALFWAY_STATEMENTS))
def test_multi_row_statement_failing_halfway_in_a_savepoint_leaves_no_partial_records(
    engine, models, statement
) -> None:
    Owner, Item = models
    before_log, before_rows = audit_log(engine), table_rows(engine)
    with engine.connect() as conn, audit_context(user_id="A"):
        conn.execute(text("INSERT INTO items (id, title, qty) VALUES (4, 'kept', 1)"))
        savepoint = conn.begin_nested()
        with refused_by_a_constraint():
            conn.execute(text(HALFWAY_STATEMENTS[statement]))
        savepoint.rollback()
        conn.commit()
    assert audit_log(engine)[: len(before_log)] == before_log
    assert entries(engine, skip=len(before_log)) == [("items", "4", "insert")]
    after_rows = table_rows(engine)
    assert after_rows["owners"] == before_rows["owners"]
    assert after_rows["items"] == before_rows["items"] + [(4, "kept", 1, None, None)]
    assert titles_by(Item, engine, skip=SEED_TITLES) == [("insert", "4", None, "kept", "A")]


@pytest.mark.parametrize("dialect", ["sqlite", "mariadb"], indirect=True)  # PostgreSQL aborts
@pytest.mark.parametrize("statement", list(HALFWAY_STATEMENTS))
def test_statement_failing_halfway_leaves_no_partial_records_in_the_continuing_transaction(
    engine, models, statement
) -> None:
    """SQLite and MariaDB keep the transaction open after a constraint error (PostgreSQL
    aborts it): the row-level triggers of the rows written before the failing one must
    be undone with the statement."""
    _, Item = models
    before_log = audit_log(engine)
    with engine.connect() as conn, audit_context(user_id="A"):
        conn.execute(text("INSERT INTO items (id, title, qty) VALUES (4, 'before', 1)"))
        with refused_by_a_constraint():
            conn.execute(text(HALFWAY_STATEMENTS[statement]))
        conn.execute(text("INSERT INTO items (id, title, qty) VALUES (5, 'after', 1)"))
        conn.commit()
    assert audit_log(engine)[: len(before_log)] == before_log
    assert entries(engine, skip=len(before_log)) == [("items", "4", "insert"), ("items", "5", "insert")]
    assert titles_by(Item, engine, skip=SEED_TITLES) == [
        ("insert", "4", None, "before", "A"),
        ("insert", "5", None, "after", "A"),
    ]


# ---------------------------------------------------------------- killed connections

#: The server ends a connection from another session: pg_terminate_backend on
#: PostgreSQL, KILL CONNECTION on MariaDB.
killable = pytest.mark.parametrize("dialect", ["postgresql", "mariadb"], indirect=True)


# A COMMIT on a connection the server ended raises SQLAlchemy's OperationalError on
# PostgreSQL, its InterfaceError on MariaDB with PyMySQL (the statement that clears the
# @sqlaudit_* variables before the COMMIT met the lost connection first, and PyMySQL
# reports the COMMIT after it as (0, '')); both are DBAPIErrors with
# connection_invalidated set, and the pool discards the connection.


def backend_pid(conn: Any) -> int:
    mysql = conn.dialect.name in ("mysql", "mariadb")
    return int(conn.execute(text("SELECT CONNECTION_ID()" if mysql else "SELECT pg_backend_pid()"))
               .scalar_one())


def terminate(engine: Engine, pid: int) -> None:
    """End the server session ``pid`` from a separate connection; return once it is gone."""
    admin = create_engine(engine.url, poolclass=NullPool)
    try:
        with admin.connect() as conn:
            if engine.dialect.name in ("mysql", "mariadb"):
                conn.execute(text(f"KILL CONNECTION {int(pid)}"))
                alive = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = :pid"
            else:
                assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
                alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"
            deadline = time.monotonic() + 10
            while conn.execute(text(alive), {"pid": pid}).scalar_one():
                assert time.monotonic() < deadline, f"backend {pid} did not exit"
                time.sleep(0.02)
                conn.rollback()  # a fresh snapshot of the server's session list
    finally:
        admin.dispose()


@pytest.fixture
def kill_models(make_engine, Base) -> tuple[Engine, type, type]:
    engine = make_engine(pool_size=3, max_overflow=0)  # victim, other, and one to read with
    Owner, Item = fault_models(Base, engine)
    Base.metadata.create_all(engine)
    register_hooks()
    return engine, Owner, Item


def _seed_two_items(engine: Engine) -> int:
    """Items 1 and 2, written by "seed"; the number of audit records after them."""
    with engine.begin() as conn, audit_context(user_id="seed"):
        conn.execute(text("INSERT INTO items (id, title, qty) VALUES (1, 'one', 1), (2, 'two', 1)"))
    return len(audit_log(engine))


@killable
def test_connection_killed_mid_transaction_loses_only_its_own_uncommitted_records(kill_models) -> None:
    engine, Owner, Item = kill_models
    victim, other = engine.connect(), engine.connect()
    try:
        with audit_context(user_id="early"):
            victim.execute(text("INSERT INTO items (id, title, qty) VALUES (1, 'by early', 5)"))
            victim.commit()
        with audit_context(user_id="other"):
            other.execute(text("INSERT INTO items (id, title, qty) VALUES (2, 'by other', 5)"))
            other.commit()
        committed_log, committed_rows = audit_log(engine), table_rows(engine)
        pid = backend_pid(victim)
        victim.commit()
        with audit_context(user_id="victim"):
            victim.execute(text("INSERT INTO items (id, title, qty) VALUES (3, 'lost', 1)"))
            victim.execute(text("UPDATE items SET title = 'lost rename' WHERE id = 1"))
            victim.execute(text("DELETE FROM items WHERE id = 2"))
            terminate(engine, pid)
            with pytest.raises(DBAPIError) as failure:  # see lost_connection_error
                victim.commit()
        assert failure.value.connection_invalidated
    finally:
        victim.close()
        other.close()
    assert audit_log(engine) == committed_log
    assert table_rows(engine) == committed_rows
    assert titles_by(Item, engine) == [
        ("insert", "1", None, "by early", "early"),
        ("insert", "2", None, "by other", "other"),
    ]


@killable
def test_transaction_after_a_connection_killed_mid_transaction_records_its_user(
    make_engine, Base
) -> None:
    engine = make_engine(pool_size=1, max_overflow=0)  # no pre_ping
    _, Item = fault_models(Base, engine)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="victim"):
        s.add(Item(id=1, title="lost", qty=1))
        s.flush()
        killed = backend_pid(s.connection())
        terminate(engine, killed)
        with pytest.raises(DBAPIError) as failure:
            s.commit()
        assert failure.value.connection_invalidated
    with Session(engine) as s, audit_context(user_id="next"):
        s.add(Item(id=2, title="next", qty=1))
        s.flush()
        replacement = backend_pid(s.connection())
        s.commit()
    assert replacement != killed
    assert titles_by(Item, engine) == [("insert", "2", None, "next", "next")]


@killable
def test_pre_ping_replaces_a_killed_idle_connection_and_the_next_transaction_records_its_user(
    make_engine, Base
) -> None:
    engine = make_engine(pool_size=1, max_overflow=0, pool_pre_ping=True)
    _, Item = fault_models(Base, engine)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="first"):
        s.add(Item(id=1, title="first", qty=1))
        s.flush()
        killed = backend_pid(s.connection())
        s.commit()
    terminate(engine, killed)  # the connection now idles, dead, in the pool
    with Session(engine) as s, audit_context(user_id="second"):
        s.add(Item(id=2, title="second", qty=1))
        s.flush()
        replacement = backend_pid(s.connection())
        s.commit()
    assert replacement != killed
    assert titles_by(Item, engine) == [
        ("insert", "1", None, "first", "first"),
        ("insert", "2", None, "second", "second"),
    ]


@killable
def test_without_pre_ping_a_killed_idle_connection_fails_once_then_the_retry_records_its_user(
    make_engine, Base
) -> None:
    engine = make_engine(pool_size=1, max_overflow=0)
    _, Item = fault_models(Base, engine)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="first"):
        s.add(Item(id=1, title="first", qty=1))
        s.flush()
        killed = backend_pid(s.connection())
        s.commit()
    terminate(engine, killed)
    with Session(engine) as s, audit_context(user_id="second"):
        s.add(Item(id=2, title="second", qty=1))
        with pytest.raises(OperationalError) as failure:
            s.flush()
        assert failure.value.connection_invalidated
    with Session(engine) as s, audit_context(user_id="retry"):
        s.add(Item(id=2, title="second", qty=1))
        s.commit()
    assert titles_by(Item, engine) == [
        ("insert", "1", None, "first", "first"),
        ("insert", "2", None, "second", "retry"),
    ]


# ---------------------------------------------------------------- MariaDB: locks and failing triggers

mariadb_only = pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)


def log_users(engine: Engine, skip: int) -> list[tuple[Any, ...]]:
    """(resource_id, operation, changed_by) of the audit rows after the first ``skip``."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT resource_id, operation, changed_by FROM sqlaudit_log ORDER BY id"))
        return [tuple(row) for row in rows][skip:]


@mariadb_only
def test_a_statement_that_times_out_on_a_lock_leaves_no_record_and_the_transaction_goes_on(
    kill_models
) -> None:
    """InnoDB rolls back only the statement that waited too long (innodb_lock_wait_timeout,
    set here per session); the transaction's other writes keep their records and user."""
    engine, _, Item = kill_models
    before = _seed_two_items(engine)
    holder, waiter = engine.connect(), engine.connect()
    try:
        with audit_context(user_id="holder"):
            holder.execute(text("UPDATE items SET qty = 5 WHERE id = 1"))  # holds row 1
        with audit_context(user_id="waiter"):
            waiter.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
            waiter.execute(text("UPDATE items SET qty = 7 WHERE id = 2"))
            with pytest.raises(OperationalError) as timeout:
                waiter.execute(text("UPDATE items SET title = 'locked out' WHERE id = 1"))
            assert timeout.value.orig.args[0] == 1205  # Lock wait timeout exceeded
            waiter.execute(text("INSERT INTO items (id, title, qty) VALUES (3, 'three', 1)"))
            waiter.commit()
        holder.rollback()
    finally:
        holder.close()
        waiter.close()
    assert log_users(engine, before) == [("2", "update", "waiter"), ("3", "insert", "waiter")]
    assert table_rows(engine)["items"] == [(1, "one", 1, None, None), (2, "two", 7, None, None),
                                           (3, "three", 1, None, None)]


@mariadb_only
def test_a_deadlock_victims_records_roll_back_with_its_writes_and_its_retry_is_recorded(
    kill_models
) -> None:
    """InnoDB rolls back the whole transaction of the deadlock victim (error 1213): none of
    its records remain; the winner's commit with their own user; the victim's retry too."""
    import threading

    engine, _, Item = kill_models
    before = _seed_two_items(engine)
    first_locks = threading.Barrier(2)
    outcome: dict[str, Any] = {}

    def worker(user: str, mine: int, theirs: int) -> None:
        with engine.connect() as conn, audit_context(user_id=user):
            try:
                conn.execute(text(f"UPDATE items SET title = '{user}' WHERE id = {mine}"))
                first_locks.wait(timeout=10)
                conn.execute(text(f"UPDATE items SET qty = qty + 1 WHERE id = {theirs}"))
                conn.commit()
                outcome[user] = "committed"
            except OperationalError as exc:
                outcome[user] = exc.orig.args[0]
                conn.rollback()

    threads = [threading.Thread(target=worker, args=("A", 1, 2)),
               threading.Thread(target=worker, args=("B", 2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcome.values(), key=str) == [1213, "committed"]  # one victim, one winner
    winner = next(u for u, o in outcome.items() if o == "committed")
    victim = "B" if winner == "A" else "A"
    mine, theirs = ("1", "2") if winner == "A" else ("2", "1")
    assert log_users(engine, before) == [(mine, "update", winner), (theirs, "update", winner)]
    with engine.begin() as conn, audit_context(user_id=victim):  # the retry
        conn.execute(text(f"UPDATE items SET title = '{victim}' WHERE id = {theirs}"))
    assert log_users(engine, before)[2:] == [(theirs, "update", victim)]


@mariadb_only
def test_a_write_whose_trigger_fails_is_refused_whole_and_the_transaction_keeps_the_rest(
    engine, models
) -> None:
    """A trigger that fails (here: a transaction id that is not a number, set with raw
    SQL) fails its statement, and InnoDB undoes every row that statement wrote; the
    writes before and after it in the transaction, and their records, stay."""
    _, Item = models
    before_log = audit_log(engine)
    with engine.connect() as conn, audit_context(user_id="A"):
        conn.execute(text("INSERT INTO items (id, title, qty) VALUES (4, 'kept', 1)"))
        txid = conn.execute(text("SELECT @sqlaudit_transaction_id")).scalar_one()
        conn.execute(text("SET @sqlaudit_transaction_id = 'not a number'"))
        with pytest.raises(DBAPIError) as refused:
            conn.execute(text("UPDATE items SET qty = qty + 1"))
        assert refused.value.orig.args[0] == 1366  # Incorrect integer value
        conn.execute(text("SET @sqlaudit_transaction_id = :txid"), {"txid": txid})
        conn.execute(text("INSERT INTO items (id, title, qty) VALUES (5, 'after', 1)"))
        conn.commit()
    assert entries(engine, skip=len(before_log)) == [("items", "4", "insert"), ("items", "5", "insert")]
    assert [row[2] for row in table_rows(engine)["items"]] == [10, 10, 3, 1, 1]  # no qty + 1
    with Session(engine) as s:
        assert {r.transaction_id for r in changes(Item, s, filter_resource_ids=[4, 5])} == {txid}


@mariadb_only
def test_a_write_refused_by_the_fail_closed_guard_leaves_nothing_and_the_transaction_goes_on(
    engine, Base
) -> None:
    @track_table(require_user_id=True)
    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        body: Mapped[str] = mapped_column(String(50))

    Base.metadata.create_all(engine)
    register_hooks()
    with engine.connect() as conn:
        with audit_context(user_id="A"):
            conn.execute(text("INSERT INTO notes (id, body) VALUES (1, 'by A')"))
            conn.commit()
        with pytest.raises(DBAPIError, match="needs an acting user"):
            conn.execute(text("INSERT INTO notes (id, body) VALUES (2, 'nobody'), (3, 'nobody')"))
        conn.rollback()
    assert log_users(engine, 0) == [("1", "insert", "A")]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM notes")).scalars().all() == [1]


@mariadb_only
def test_the_connection_after_a_killed_one_holds_no_user_variables(make_engine, Base) -> None:
    """The server drops a killed session's @sqlaudit_* variables with it; the replacement
    connection starts with none, so a write without a user records none."""
    engine = make_engine(pool_size=1, max_overflow=0)
    _, Item = fault_models(Base, engine)
    Base.metadata.create_all(engine)
    register_hooks()
    with engine.connect() as conn, audit_context(user_id="victim", reason="killed"):
        conn.execute(text("INSERT INTO items (id, title, qty) VALUES (1, 'lost', 1)"))
        killed = backend_pid(conn)
        terminate(engine, killed)
        with pytest.raises(DBAPIError) as failure:
            conn.commit()
        assert failure.value.connection_invalidated
    with engine.connect() as conn:
        assert backend_pid(conn) != killed
        assert conn.execute(text(  # (the transaction id is this transaction's own)
            "SELECT @sqlaudit_user_id, @sqlaudit_reason, @sqlaudit_context")).one() == (
            None, None, None)
        conn.execute(text("INSERT INTO items (id, title, qty) VALUES (2, 'nobody', 1)"))
        conn.commit()
    assert log_users(engine, 0) == [("2", "insert", None)]


@mariadb_only
def test_a_non_transactional_table_keeps_a_rolled_back_write_without_its_record_is_a_documented_hole(
    engine, Base
) -> None:
    """A tracked MyISAM (or Aria) table cannot roll back: the write stays while its audit
    record, in the InnoDB log, rolls back with the transaction (docs/mariadb.md, Holes).
    Installing the triggers on it warns, naming the table and the fix."""
    from sqlaudit import SQLAuditWarning

    @track_table
    class Counter(Base):
        __tablename__ = "counters"
        __table_args__ = {"mysql_engine": "MyISAM"}
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        n: Mapped[int] = mapped_column(Integer)

    with pytest.warns(SQLAuditWarning, match=r"'counters' is stored in MyISAM.*ENGINE=InnoDB"):
        Base.metadata.create_all(engine)
    register_hooks()
    with engine.connect() as conn, audit_context(user_id="A"):
        conn.execute(text("INSERT INTO counters (id, n) VALUES (1, 1)"))
        conn.rollback()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, n FROM counters")).all() == [(1, 1)]  # kept
    assert log_users(engine, 0) == []  # and not recorded


@mariadb_only
def test_installing_on_an_aria_table_warns_and_on_an_innodb_table_does_not(engine, Base) -> None:
    """install_audit_triggers on an existing table checks its storage engine: Aria (no
    transactions) warns with the table's name, InnoDB installs silently."""
    import warnings

    from sqlaudit import SQLAuditWarning, install_audit_triggers

    @track_table
    class Kept(Base):
        __tablename__ = "kept"
        __table_args__ = {"mysql_engine": "Aria"}
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)

    @track_table
    class Safe(Base):
        __tablename__ = "safe"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SQLAuditWarning)
        Base.metadata.create_all(engine)
    with pytest.warns(SQLAuditWarning, match=r"'kept' is stored in Aria, which has no transactions"):
        install_audit_triggers(engine, Kept)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SQLAuditWarning)
        install_audit_triggers(engine, Safe)


@mariadb_only
def test_the_aria_warning_points_at_the_callers_line(engine, Base) -> None:
    """SQLAuditWarning names the application's line that installed the triggers
    (create_all, install_audit_triggers), so that ``warnings.filterwarnings(...,
    module="myapp")`` matches it. (Review defect: stacklevel=2 pointed at sqlaudit/ddl.py.)"""
    import warnings

    from sqlaudit import SQLAuditWarning, install_audit_triggers

    @track_table
    class Kept(Base):
        __tablename__ = "kept"
        __table_args__ = {"mysql_engine": "Aria"}
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Base.metadata.create_all(engine)
        install_audit_triggers(engine, Kept)
    found = [w for w in caught if issubclass(w.category, SQLAuditWarning)]
    assert len(found) == 2  # once per installation
    assert {w.filename for w in found} == {__file__}, [w.filename for w in found]


@mariadb_only
def test_an_alembic_migration_installing_on_an_aria_table_warns(engine, Base) -> None:
    """docs/mariadb.md: "installing triggers on a table whose engine has no transactions
    issues a SQLAuditWarning": so does op.create_audit_triggers, the Alembic operation,
    online. (Review defect: it installed them without the check.)"""
    import warnings

    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    import sqlaudit.alembic  # noqa: F401  (registers the operations)
    from sqlaudit import SQLAuditWarning

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE kept (id INT PRIMARY KEY) ENGINE=Aria"))
    with engine.begin() as conn:
        op = Operations(MigrationContext.configure(conn))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            op.create_audit_triggers("kept", ["id"])
    assert [w for w in caught if issubclass(w.category, SQLAuditWarning)], \
        "no SQLAuditWarning from op.create_audit_triggers on an Aria table"


@mariadb_only
def test_a_partitioned_aria_table_and_one_in_another_database_warn(engine, Base) -> None:
    """The engine check reads the partitions' engine (Aria) and looks in the table's own
    database (schema=)."""
    from sqlalchemy import MetaData

    from sqlaudit import SQLAuditWarning, install_audit_triggers

    with engine.begin() as conn:
        conn.execute(text("CREATE DATABASE IF NOT EXISTS sqlaudit_review_other"))
        conn.execute(text("CREATE TABLE parted (id INT PRIMARY KEY) ENGINE=Aria "
                          "PARTITION BY HASH(id) PARTITIONS 2"))
        conn.execute(text("DROP TABLE IF EXISTS sqlaudit_review_other.elsewhere"))
        conn.execute(text("CREATE TABLE sqlaudit_review_other.elsewhere (id INT PRIMARY KEY) "
                          "ENGINE=MyISAM"))
        conn.execute(text("CREATE TABLE elsewhere (id INT PRIMARY KEY) ENGINE=InnoDB"))
    try:
        @track_table
        class Parted(Base):
            __tablename__ = "parted"
            id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)

        @track_table
        class Elsewhere(Base):
            __tablename__ = "elsewhere"
            __table_args__ = {"schema": "sqlaudit_review_other"}
            id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)

        with pytest.warns(SQLAuditWarning, match="'parted' is stored in Aria"):
            install_audit_triggers(engine, Parted)
        with pytest.warns(SQLAuditWarning, match="'sqlaudit_review_other.elsewhere' is stored in MyISAM"):
            install_audit_triggers(engine, Elsewhere)
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP DATABASE sqlaudit_review_other"))
