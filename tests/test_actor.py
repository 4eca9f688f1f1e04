"""The acting user: resolved once per transaction and stamped into it, never leaking.

``register_hooks()`` resolves the user (an enclosing ``audit_context`` first,
else ``get_user_id_callback``) just before the first statement of each
transaction and hands it to the triggers inside that transaction only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any, Optional

import pytest
from sqlalchemy import ForeignKey, String, event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit import audit_context, register_hooks, track_table, unregister_hooks
from sqlaudit.config import SQLAuditConfig, set_config
from sqlaudit.schema import audit_table

from conftest import changes, summary

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True


def note_model(Base: Any) -> type:
    """One audited field, so every insert is exactly one change record."""

    @track_table(tracked_fields=["title"])
    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(100), unique=True)

    return Note


@pytest.fixture
def Note(engine, Base) -> type:
    model = note_model(Base)
    Base.metadata.create_all(engine)
    return model


class CountingCallback:
    """A get_user_id_callback that counts its calls."""

    def __init__(self, user_id: Any) -> None:
        self.user_id = user_id
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.user_id


def use_callback(user_id: Any) -> CountingCallback:
    callback = CountingCallback(user_id)
    set_config(SQLAuditConfig(get_user_id_callback=callback))
    return callback


def authors(Note: type, engine) -> list[tuple[str, Optional[str]]]:
    """(title, changed_by) of every recorded insert, oldest first."""
    with Session(engine) as s:
        return [(r.new_value, r.changed_by) for r in changes(Note, s) if r.operation == "insert"]


def log_rows(Note: type, engine) -> int:
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(audit_table(Note.metadata))).scalar_one()


def add(session: Session, Note: type, title: str) -> None:
    session.add(Note(title=title))
    session.flush()


# ------------------------------------------------------------------ once per transaction


def test_callback_is_called_once_per_transaction_not_per_statement(engine, Note) -> None:
    callback = use_callback(7)
    register_hooks()
    with Session(engine) as s:
        add(s, Note, "a")
        add(s, Note, "b")
        s.execute(text("UPDATE notes SET title = 'b2' WHERE title = 'b'"))
        s.execute(select(Note)).all()
        add(s, Note, "c")
        s.commit()
        assert callback.calls == 1
        add(s, Note, "d")
        s.commit()
        assert callback.calls == 2
    with Session(engine) as s:
        assert summary(changes(Note, s)) == [
            ("insert", "1", "title", None, "a", "7"),
            ("insert", "2", "title", None, "b", "7"),
            ("update", "2", "title", "b", "b2", "7"),
            ("insert", "3", "title", None, "c", "7"),
            ("insert", "4", "title", None, "d", "7"),
        ]


def test_register_hooks_twice_records_each_change_once_and_calls_the_callback_once(
    engine, Note
) -> None:
    callback = use_callback("u")
    register_hooks()
    register_hooks()
    with Session(engine) as s:
        add(s, Note, "one")
        add(s, Note, "two")
        s.commit()
    assert callback.calls == 1
    assert log_rows(Note, engine) == 2
    assert authors(Note, engine) == [("one", "u"), ("two", "u")]


# ------------------------------------------------------------------ audit_context


def test_audit_context_overrides_the_callback(engine, Note) -> None:
    use_callback("callback-user")
    register_hooks()
    with Session(engine) as s:
        with audit_context(user_id=1):
            add(s, Note, "in context")
            s.commit()
        add(s, Note, "outside")
        s.commit()
    assert authors(Note, engine) == [("in context", "1"), ("outside", "callback-user")]


def test_audit_context_nests_and_restores_the_outer_user(engine, Note) -> None:
    use_callback("callback-user")
    register_hooks()
    with Session(engine) as s:
        with audit_context(user_id="outer"):
            add(s, Note, "1")
            s.commit()
            with audit_context(user_id="inner"):
                add(s, Note, "2")
                s.commit()
            add(s, Note, "3")
            s.commit()
        add(s, Note, "4")
        s.commit()
    assert authors(Note, engine) == [
        ("1", "outer"), ("2", "inner"), ("3", "outer"), ("4", "callback-user"),
    ]


def test_nested_audit_context_switches_user_inside_one_transaction(engine, Note) -> None:
    use_callback("callback-user")
    register_hooks()
    with Session(engine) as s:
        with audit_context(user_id="outer"):
            add(s, Note, "1")
            with audit_context(user_id="inner"):
                add(s, Note, "2")
            add(s, Note, "3")
        add(s, Note, "4")
        s.commit()
    assert authors(Note, engine) == [
        ("1", "outer"), ("2", "inner"), ("3", "outer"), ("4", "callback-user"),
    ]


def test_audit_context_restores_the_outer_user_when_its_block_raises(engine, Note) -> None:
    register_hooks()
    with Session(engine) as s, audit_context(user_id="outer"):
        with pytest.raises(RuntimeError), audit_context(user_id="inner"):
            raise RuntimeError("boom")
        add(s, Note, "after the error")
        s.commit()
    assert authors(Note, engine) == [("after the error", "outer")]


# ------------------------------------------------------------------ no leaks


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_sqlite_recursive_triggers_stamp_each_audit_row_once(make_engine, Base) -> None:
    """With PRAGMA recursive_triggers = ON (what makes INSERT OR REPLACE fire delete
    triggers) the TEMP stamp trigger may fire on its own re-insert: it must stop
    there, so each audit row is written once, with the user."""
    engine = make_engine()
    event.listen(engine, "connect",
                 lambda dbapi_conn, record: dbapi_conn.execute("PRAGMA recursive_triggers = ON"))
    Note = note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="A"):
        assert s.execute(text("PRAGMA recursive_triggers")).scalar() == 1
        add(s, Note, "first")
        s.execute(text("INSERT OR REPLACE INTO notes (id, title) VALUES (1, 'replaced')"))
        s.commit()
    with Session(engine) as s:
        assert summary(changes(Note, s)) == [
            ("insert", "1", "title", None, "first", "A"),
            ("delete", "1", "title", "first", None, "A"),
            ("insert", "1", "title", None, "replaced", "A"),
        ]
    assert log_rows(Note, engine) == 3


def test_user_does_not_leak_into_the_next_transaction_on_the_same_pooled_connection(
    make_engine, Base
) -> None:
    engine = make_engine(pool_size=1, max_overflow=0)
    Note = note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="A"):
        add(s, Note, "by A")
        first = s.connection().connection.dbapi_connection
        s.commit()
    with Session(engine) as s:  # no audit_context, no callback
        add(s, Note, "by nobody")
        second = s.connection().connection.dbapi_connection
        s.commit()
    assert second is first
    assert authors(Note, engine) == [("by A", "A"), ("by nobody", None)]


def test_users_alternating_on_one_pooled_connection_are_each_recorded(make_engine, Base) -> None:
    engine = make_engine(pool_size=1, max_overflow=0)
    Note = note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    users = ["A", "B", "A", "it's \\ 'B'", "A", None, "A"]
    for n, user in enumerate(users):
        with Session(engine) as s, audit_context(user_id=user):
            add(s, Note, f"note {n}")
            s.commit()
    assert authors(Note, engine) == [(f"note {n}", user) for n, user in enumerate(users)]


def test_user_does_not_leak_into_the_next_core_transaction_on_the_same_connection(
    make_engine, Base
) -> None:
    engine = make_engine(pool_size=1, max_overflow=0)
    Note = note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with engine.connect() as conn:
        with audit_context(user_id="A"):
            conn.execute(text("INSERT INTO notes (id, title) VALUES (1, 'by A')"))
            conn.commit()
        conn.execute(text("INSERT INTO notes (id, title) VALUES (2, 'by nobody')"))
        conn.commit()
    assert authors(Note, engine) == [("by A", "A"), ("by nobody", None)]


def test_user_does_not_leak_into_a_later_autocommit_write_on_the_same_connection(
    make_engine, Base
) -> None:
    engine = make_engine(pool_size=1, max_overflow=0)
    Note = note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="A"):
        add(s, Note, "by A")
        first = s.connection().connection.dbapi_connection
        s.commit()
    with engine.connect() as conn:  # AUTOCOMMIT: the hook cannot stamp, so nothing is stamped
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("INSERT INTO notes (id, title) VALUES (2, 'autocommit')"))
        second = conn.connection.dbapi_connection
    assert second is first
    assert authors(Note, engine) == [("by A", "A"), ("autocommit", None)]


def test_rolled_back_transaction_leaves_no_audit_records(engine, Note) -> None:
    register_hooks()
    with Session(engine) as s, audit_context(user_id="A"):
        add(s, Note, "never")
        s.execute(text("UPDATE notes SET title = 'never again'"))
        s.rollback()
    assert log_rows(Note, engine) == 0


@pytest.mark.parametrize("source", ["audit_context", "callback"])
def test_rolled_back_savepoint_drops_only_its_changes_and_keeps_the_user(
    engine, Note, source
) -> None:
    use_callback("A" if source == "callback" else "callback-user")
    register_hooks()
    user = audit_context(user_id="A") if source == "audit_context" else contextlib.nullcontext()
    with Session(engine) as s, user:
        add(s, Note, "before")
        savepoint = s.begin_nested()
        add(s, Note, "inside")
        savepoint.rollback()
        add(s, Note, "after")
        s.commit()
    assert authors(Note, engine) == [("before", "A"), ("after", "A")]


def test_other_user_inside_a_rolled_back_savepoint_does_not_stick(engine, Note) -> None:
    use_callback("A")
    register_hooks()
    with Session(engine) as s:
        add(s, Note, "before")
        savepoint = s.begin_nested()
        with audit_context(user_id="B"):
            add(s, Note, "inside")
            savepoint.rollback()
        add(s, Note, "after")
        s.commit()
    assert authors(Note, engine) == [("before", "A"), ("after", "A")]


def test_failed_statement_rolled_back_leaves_no_records_and_next_transaction_has_its_user(
    engine, Note
) -> None:
    current = {"user": "A"}
    set_config(SQLAuditConfig(get_user_id_callback=lambda: current["user"]))
    register_hooks()
    with Session(engine) as s:
        add(s, Note, "taken")
        s.commit()
        add(s, Note, "lost with the rollback")
        s.add(Note(title="taken"))
        with pytest.raises(IntegrityError):
            s.flush()
        s.rollback()
        assert log_rows(Note, engine) == 1  # only the committed "taken"
        current["user"] = "B"
        add(s, Note, "next")
        s.commit()
    assert authors(Note, engine) == [("taken", "A"), ("next", "B")]


# ------------------------------------------------------------------ threads and tasks


def test_concurrent_threads_each_record_their_own_user(make_engine, dialect, Base) -> None:
    writers, writes_each = 8, 5
    if dialect == "sqlite":
        engine = make_engine(connect_args={"timeout": 30}, pool_size=writers, max_overflow=0)
    else:
        engine = make_engine(pool_size=writers, max_overflow=0)
    Note = note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            with audit_context(user_id=i):
                start.wait()
                for j in range(writes_each):
                    with Session(engine) as s:
                        s.add(Note(title=f"{i}-{j}"))
                        s.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    recorded = authors(Note, engine)
    assert len(recorded) == writers * writes_each
    assert sorted(recorded) == sorted(
        (f"{i}-{j}", str(i)) for i in range(writers) for j in range(writes_each)
    )


def test_asyncio_tasks_each_record_their_own_user_through_to_thread(engine, Note) -> None:
    register_hooks()
    tasks = 8

    def write(title: str) -> None:
        with Session(engine) as s:
            s.add(Note(title=title))
            s.commit()

    async def task(i: int) -> None:
        with audit_context(user_id=f"task-{i}"):
            await asyncio.sleep(0)  # let the other tasks enter their contexts
            await asyncio.to_thread(write, f"note-{i}")

    async def main() -> None:
        await asyncio.gather(*(task(i) for i in range(tasks)))

    asyncio.run(main())
    assert sorted(authors(Note, engine)) == sorted(
        (f"note-{i}", f"task-{i}") for i in range(tasks)
    )


# ------------------------------------------------------------------ hooks on and off


def test_unregister_hooks_stops_attribution_but_triggers_keep_recording(engine, Note) -> None:
    use_callback("7")
    register_hooks()
    with Session(engine) as s:
        add(s, Note, "with hooks")
        s.commit()
    unregister_hooks()
    with Session(engine) as s, audit_context(user_id="8"):
        add(s, Note, "without hooks")
        s.commit()
    assert authors(Note, engine) == [("with hooks", "7"), ("without hooks", None)]


# ------------------------------------------------------------------ callbacks


def test_readme_callback_reading_an_expired_orm_instance_records_its_id(engine, Base) -> None:
    class User(Base):
        __tablename__ = "users"
        user_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)

    @track_table(tracked_fields=["name"])
    class Customer(Base):
        __tablename__ = "customers"
        customer_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        name: Mapped[str] = mapped_column(String(50))
        user_id: Mapped[int] = mapped_column(ForeignKey("users.user_id"))

    Base.metadata.create_all(engine)
    user = User()
    set_config(SQLAuditConfig(
        user_model=User, user_model_user_id_field="user_id",
        get_user_id_callback=lambda: user.user_id,  # expired by every commit
    ))
    register_hooks()
    with Session(engine) as s:
        s.add(user)
        s.commit()
        s.add(Customer(name="Jane Doe", user_id=1))
        s.commit()
    with Session(engine) as s:
        assert summary(changes(Customer, s)) == [("insert", "1", "name", None, "Jane Doe", "1")]


def test_callback_that_raises_does_not_fail_the_write(engine, Note, caplog) -> None:
    def broken() -> int:
        raise LookupError("no request in this thread")

    set_config(SQLAuditConfig(get_user_id_callback=broken))
    register_hooks()
    with caplog.at_level(logging.ERROR, logger="sqlaudit"), Session(engine) as s:
        add(s, Note, "still written")
        s.commit()
    logged = [(r.levelname, r.message) for r in caplog.records if r.name == "sqlaudit"]
    assert logged == [("ERROR", "get_user_id_callback raised; recording the change without a user")]
    assert authors(Note, engine) == [("still written", None)]


def test_user_id_with_a_nul_byte_is_refused_before_it_reaches_the_database(engine, Note) -> None:
    """PostgreSQL text cannot hold NUL (SQLite could, but one rule holds on every
    dialect): audit_context refuses it with ValueError before any statement runs, so
    nothing is written or recorded under a guessed user, and the next transaction is
    stamped as usual."""
    register_hooks()
    with Session(engine) as s:
        with pytest.raises(ValueError, match="NUL"), audit_context(user_id="a\x00b"):
            add(s, Note, "never written")
        s.rollback()
    assert log_rows(Note, engine) == 0
    with Session(engine) as s, audit_context(user_id="next"):
        add(s, Note, "next transaction")
        s.commit()
    assert authors(Note, engine) == [("next transaction", "next")]
