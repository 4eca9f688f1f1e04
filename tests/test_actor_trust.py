"""The acting user can be trusted: a change is never recorded under a user other than
the one in force for that write, and every user id follows one rule on every dialect.

Wrong user: a user switch whose stamp fails, raw transaction control sent as text
(``COMMIT``, ``ROLLBACK``, ``ROLLBACK TO SAVEPOINT``, ``RELEASE``...) and pooled
connections reused by AUTOCOMMIT or ``raw_connection()`` writes.

User ids: ``str``, ``int`` and ``uuid.UUID`` are stored as ``str(value)``; any other
type raises ``TypeError`` naming it, a NUL byte raises ``ValueError`` before anything
reaches the database, ``""`` means "no user", and any length up to 1 MB is recorded
exactly and found again by ``filter_user_ids`` through the user index.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import secrets
import uuid
from decimal import Decimal
from typing import Any, Callable, Iterator, Optional

import pytest
from sqlalchemy import String, event, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit import audit_context, register_hooks, track_table
from sqlaudit.config import SQLAuditConfig, clear_config, set_config
from sqlaudit.retrieval import get_resource_changes
from sqlaudit.schema import audit_table

from test_actor import note_model
from test_retrieval import plan_of_retrieval

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True

#: A user id whose stamp fails inside an open transaction while the application's own
#: statements still run (see engine_where_stamping_fails).
UNSTAMPABLE = "Ж" * 60_000


@pytest.fixture
def Note(engine, Base) -> type:
    model = note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    return model


def authors(Note: type, engine) -> list[tuple[str, Optional[str]]]:
    """(title, changed_by) of every recorded insert, oldest first."""
    with Session(engine) as s:
        return [(r.new_value, r.changed_by)
                for r in get_resource_changes(Note, session=s, sort_direction="asc")
                if r.operation == "insert"]


def log_rows(engine, Note: type) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(audit_table(Note.metadata))).scalar_one()


def insert(conn: Any, n: int, title: Optional[str] = None) -> None:
    conn.execute(text("INSERT INTO notes (id, title) VALUES (:id, :title)"),
                 {"id": n, "title": title or str(n)})


def engine_where_stamping_fails(make_engine: Callable[..., Any], dialect: str, **kw: Any) -> Any:
    """An engine on which the stamp of UNSTAMPABLE fails inside the open transaction
    while the application's own (short, ASCII) statements keep running: PostgreSQL
    connections talk LATIN1, which cannot carry "Ж"; SQLite connections refuse
    strings over 100,000 bytes; MariaDB connections talk latin1 (PyMySQL cannot encode
    "Ж" for them). The failures leave the transaction open."""
    if dialect == "mariadb":
        kw.setdefault("connect_args", {})["charset"] = "latin1"
    engine = make_engine(**kw)

    @event.listens_for(engine, "connect")
    def _limit(dbapi_connection: Any, record: Any) -> None:
        if dialect == "postgresql":
            dbapi_connection.execute("SET client_encoding TO 'LATIN1'")
            dbapi_connection.commit()
        elif dialect == "mariadb":
            pass  # latin1 from connect_args
        else:
            import sqlite3

            dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100_000)

    return engine


# ---------------------------------------------------------------- a failed user switch


def test_failed_user_switch_inside_a_transaction_records_no_user_instead_of_the_previous_one(
    make_engine, dialect, Base, caplog
) -> None:
    engine = engine_where_stamping_fails(make_engine, dialect)
    Note = note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with caplog.at_level(logging.WARNING, logger="sqlaudit"), engine.connect() as conn:
        with audit_context(user_id="A"):
            insert(conn, 1)
            with audit_context(user_id=UNSTAMPABLE):
                insert(conn, 2)  # the stamp fails: never recorded as A
            insert(conn, 3)
        conn.commit()
    assert authors(Note, engine) == [("1", "A"), ("2", None), ("3", "A")]
    assert "sqlaudit could not record the acting user" in [
        r.getMessage() for r in caplog.records if r.name == "sqlaudit"]


def test_failed_user_switch_with_require_user_id_fails_the_write(make_engine, dialect,
                                                                 Base) -> None:
    set_config(SQLAuditConfig(require_user_id=True))
    engine = engine_where_stamping_fails(make_engine, dialect)
    Note = note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with engine.connect() as conn:
        with audit_context(user_id="A"):
            insert(conn, 1)
            with pytest.raises(DBAPIError, match="needs an acting user"):
                with conn.begin_nested(), audit_context(user_id=UNSTAMPABLE):
                    insert(conn, 2)
            insert(conn, 3)
        conn.commit()
    assert authors(Note, engine) == [("1", "A"), ("3", "A")]


# ---------------------------------------------------------------- raw transaction control


@pytest.mark.parametrize("statement", [
    "ROLLBACK TO SAVEPOINT x", "rollback to x", "  /* app */ -- note\n ROLLBACK TO SAVEPOINT x",
])
def test_raw_rollback_to_savepoint_after_a_user_switch_records_the_user_in_force(
    engine, Note, statement
) -> None:
    with engine.connect() as conn, audit_context(user_id="A"):
        insert(conn, 1)
        conn.exec_driver_sql("SAVEPOINT x")
        with audit_context(user_id="B"):
            insert(conn, 2)
            conn.exec_driver_sql(statement)
            insert(conn, 3)
        insert(conn, 4)
        conn.commit()
    assert authors(Note, engine) == [("1", "A"), ("3", "B"), ("4", "A")]


def test_raw_rollback_to_savepoint_through_text_resolves_the_callback_user_again(engine, Note) -> None:
    users = iter(["A", "B"])
    set_config(SQLAuditConfig(get_user_id_callback=lambda: next(users)))
    with Session(engine) as s:
        s.execute(text("SAVEPOINT x"))
        s.execute(text("INSERT INTO notes (id, title) VALUES (1, 'rolled back')"))
        s.execute(text("ROLLBACK TO SAVEPOINT x"))
        s.execute(text("INSERT INTO notes (id, title) VALUES (2, 'kept')"))
        s.commit()
    # the stamp made inside the savepoint was rolled back with it: the next write
    # resolves the user again (the callback now answers B) and is stamped again
    assert authors(Note, engine) == [("kept", "B")]


@pytest.mark.parametrize("statement", ["COMMIT", "commit", "COMMIT; "])
def test_raw_commit_keeps_the_user_for_the_next_write(engine, Note, statement) -> None:
    _raw_commit_keeps_the_user(engine, Note, statement)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"], indirect=True)  # not a MariaDB statement
def test_raw_end_keeps_the_user_for_the_next_write(engine, Note) -> None:
    """END is SQLite's and PostgreSQL's spelling of COMMIT."""
    _raw_commit_keeps_the_user(engine, Note, "END")


def _raw_commit_keeps_the_user(engine, Note, statement: str) -> None:
    with engine.connect() as conn, audit_context(user_id="A"):
        insert(conn, 1)
        conn.exec_driver_sql(statement)
        insert(conn, 2)
        conn.commit()
    assert authors(Note, engine) == [("1", "A"), ("2", "A")]


def test_raw_commit_through_a_session_keeps_the_callback_user_for_the_next_write(
    engine, Note
) -> None:
    set_config(SQLAuditConfig(get_user_id_callback=lambda: "A"))
    with Session(engine) as s:
        s.execute(text("INSERT INTO notes (id, title) VALUES (1, 'first')"))
        s.execute(text("COMMIT"))
        s.execute(text("INSERT INTO notes (id, title) VALUES (2, 'second')"))
        s.commit()
    assert authors(Note, engine) == [("first", "A"), ("second", "A")]


def raw_rollback_then_write(engine: Any, statement: str) -> None:
    with engine.connect() as conn, audit_context(user_id="A"):
        insert(conn, 1)
        conn.exec_driver_sql(statement)
        insert(conn, 2)
        conn.commit()


def test_raw_rollback_keeps_the_user_for_the_next_write(engine, Note) -> None:
    raw_rollback_then_write(engine, "ROLLBACK")
    assert authors(Note, engine) == [("2", "A")]


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_raw_abort_keeps_the_user_for_the_next_write(engine, Note) -> None:
    """ABORT is PostgreSQL's synonym of ROLLBACK (SQLite has no such statement)."""
    raw_rollback_then_write(engine, "ABORT")
    assert authors(Note, engine) == [("2", "A")]


def test_raw_release_and_a_new_user_are_each_recorded(engine, Note) -> None:
    with engine.connect() as conn, audit_context(user_id="A"):
        conn.exec_driver_sql("SAVEPOINT x")
        insert(conn, 1)
        conn.exec_driver_sql("RELEASE SAVEPOINT x")
        insert(conn, 2)
        with audit_context(user_id="B"):
            insert(conn, 3)
        conn.commit()
    assert authors(Note, engine) == [("1", "A"), ("2", "A"), ("3", "B")]


# ---------------------------------------------------------------- pooled connections


def cause_rolled_back_savepoint(engine: Any, Note: type) -> None:
    with Session(engine) as s, audit_context(user_id="A"):
        s.add(Note(id=1, title="by A"))
        s.flush()
        savepoint = s.begin_nested()
        with audit_context(user_id="B"):
            s.add(Note(id=2, title="rolled back"))
            s.flush()
            savepoint.rollback()
        s.commit()


def cause_raw_commit(engine: Any, Note: type) -> None:
    with engine.connect() as conn, audit_context(user_id="A"):
        insert(conn, 1, "by A")
        conn.exec_driver_sql("COMMIT")
        # closed without commit(): the Connection rolls back what it thinks is open


def cause_dbapi_commit(engine: Any, Note: type) -> None:
    with Session(engine) as s, audit_context(user_id="A"):
        s.add(Note(id=1, title="by A"))
        s.flush()
        s.connection().connection.dbapi_connection.commit()  # behind SQLAlchemy's back


def victim_autocommit(engine: Any) -> None:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        insert(conn, 9, "victim")


def victim_raw_connection(engine: Any) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("INSERT INTO notes (id, title) VALUES (9, 'victim')")
        cursor.close()
        raw.commit()
    finally:
        raw.close()


@pytest.mark.parametrize("victim", [victim_autocommit, victim_raw_connection],
                         ids=["autocommit", "raw_connection"])
@pytest.mark.parametrize("cause", [cause_rolled_back_savepoint, cause_raw_commit,
                                   cause_dbapi_commit],
                         ids=["rolled-back-savepoint", "raw-commit", "dbapi-commit"])
def test_user_never_outlives_its_transaction_on_a_pooled_connection(
    make_engine, Base, cause, victim
) -> None:
    """One pooled connection: after a transaction by A ends in any of these ways, a write
    the hook cannot stamp (AUTOCOMMIT, or a raw DBAPI connection) is recorded without a
    user, never as A (on SQLite the user lives in a TEMP table of the connection)."""
    engine = make_engine(pool_size=1, max_overflow=0)
    Note = note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    cause(engine, Note)
    victim(engine)
    assert authors(Note, engine) == [("by A", "A"), ("victim", None)]


# ---------------------------------------------------------------- user id validation


class Role(enum.IntEnum):
    ADMIN = 5


class Named(str, enum.Enum):
    ALICE = "alice"


USER_UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(("user_id", "stored"), [
    ("alice", "alice"), (42, "42"), (-7, "-7"), (USER_UUID, str(USER_UUID)),
    (Role.ADMIN, "5"), (Named.ALICE, "alice"), ("  spaced ", "  spaced "),
])
def test_user_ids_of_str_int_and_uuid_are_stored_as_text(engine, Note, user_id, stored) -> None:
    with Session(engine) as s, audit_context(user_id=user_id):
        s.add(Note(id=1, title="t"))
        s.commit()
    assert authors(Note, engine) == [("t", stored)]


@pytest.mark.parametrize("user_id", [True, False, 1.5, Decimal("1"), b"alice", bytearray(b"a"),
                                     ["alice"], ("alice",), {"id": 1}, object()])
def test_audit_context_refuses_any_other_user_id_type_naming_it(user_id) -> None:
    with pytest.raises(TypeError, match=f"got {type(user_id).__name__}"):
        with audit_context(user_id=user_id):
            pass


@pytest.mark.parametrize("reason", [1, b"why", True])
def test_audit_context_refuses_a_reason_that_is_not_text(reason) -> None:
    with pytest.raises(TypeError, match=f"got {type(reason).__name__}"):
        with audit_context(user_id="a", reason=reason):
            pass


@pytest.mark.parametrize(("user_id", "reason"), [("a\x00b", None), ("a", "why\x00not"),
                                                 ("\x00", None), ("a\ud800", None)])
def test_audit_context_refuses_nul_or_lone_surrogates_with_value_error(user_id, reason) -> None:
    with pytest.raises(ValueError, match="user_id" if reason is None else "reason"):
        with audit_context(user_id=user_id, reason=reason):
            pass


@contextlib.contextmanager
def callback_returning(value: Any) -> Iterator[None]:
    """get_user_id_callback returns ``value`` inside the block (on PostgreSQL the user is
    stamped before the first statement of a transaction, reads included, so the
    checks after the block need the callback gone)."""
    set_config(SQLAuditConfig(get_user_id_callback=lambda: value))
    try:
        yield
    finally:
        clear_config()


@pytest.mark.parametrize("returned", [True, 1.5, b"alice", object()])
def test_callback_returning_another_type_fails_the_write_with_type_error(
    engine, Note, returned
) -> None:
    with callback_returning(returned), Session(engine) as s:
        s.add(Note(id=1, title="refused"))
        with pytest.raises(TypeError, match=f"get_user_id_callback returned {type(returned).__name__}"):
            s.flush()
        s.rollback()
    assert log_rows(engine, Note) == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM notes")).scalar_one() == 0


def test_callback_returning_a_nul_byte_fails_the_write_with_value_error(engine, Note) -> None:
    with callback_returning("a\x00b"), engine.connect() as conn:
        with pytest.raises(ValueError, match="NUL"):
            insert(conn, 1)
        conn.rollback()
    assert log_rows(engine, Note) == 0


def test_connection_refusing_a_bad_callback_user_records_the_next_transaction(engine, Note) -> None:
    current: dict[str, Any] = {"user": 1.5}
    set_config(SQLAuditConfig(get_user_id_callback=lambda: current["user"]))
    with engine.connect() as conn:
        with pytest.raises(TypeError):
            insert(conn, 1)
        conn.rollback()
        current["user"] = "good"
        insert(conn, 2)
        conn.commit()
    assert authors(Note, engine) == [("2", "good")]


@pytest.mark.parametrize("source", ["audit_context", "callback"])
def test_empty_user_id_records_no_user(engine, Note, source) -> None:
    if source == "callback":
        set_config(SQLAuditConfig(get_user_id_callback=lambda: ""))
    with Session(engine) as s:
        if source == "audit_context":
            with audit_context(user_id="", reason=""):
                s.add(Note(id=1, title="t"))
                s.commit()
        else:
            s.add(Note(id=1, title="t"))
            s.commit()
    with engine.connect() as conn:
        row = conn.execute(text("SELECT changed_by, reason FROM sqlaudit_log")).one()
    assert tuple(row) == (None, None)


def test_empty_user_id_with_require_user_id_fails_the_write(engine, Base) -> None:
    set_config(SQLAuditConfig(require_user_id=True))
    Note = note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with engine.connect() as conn, audit_context(user_id=""):
        with pytest.raises(DBAPIError, match="needs an acting user"):
            insert(conn, 1)


# ---------------------------------------------------------------- long user ids


def incompressible_id(length: int) -> str:
    """Random text of ``length`` characters, some of two bytes in UTF-8 (PostgreSQL
    compresses long index entries: a repetitive id would fit where a real one fails)."""
    text_ = "é" + secrets.token_urlsafe(length)
    return text_[:length]


@pytest.mark.parametrize("length", [2_000, 2_800, 10_000, 1_000_000])
def test_user_id_of_any_length_up_to_1_mb_is_recorded_exactly_and_found(
    engine, Note, length
) -> None:
    long_id = incompressible_id(length)
    twin = long_id[:-1] + "~"  # the same but for its last character
    for n, user in enumerate([long_id, twin]):
        with Session(engine) as s, audit_context(user_id=user):
            s.add(Note(id=n + 1, title=f"by {n}"))  # not 0: MariaDB would auto-number it
            s.commit()
    with Session(engine) as s:
        found = get_resource_changes(Note, session=s, filter_user_ids=long_id)
        assert [(r.new_value, r.changed_by == long_id) for r in found] == [("by 0", True)]
        found = get_resource_changes(Note, session=s, filter_user_ids=[twin, "nobody"])
        assert [(r.new_value, r.changed_by == twin) for r in found] == [("by 1", True)]


@pytest.mark.parametrize("filters", [{}, {"limit": 5}], ids=["all", "latest-5"])
@pytest.mark.parametrize("length", [5, 5_000])
def test_a_users_latest_changes_are_read_through_the_user_index(engine, Note, filters,
                                                                length) -> None:
    user = incompressible_id(length)
    for n, by in enumerate([user, "someone else", user]):
        with Session(engine) as s, audit_context(user_id=by):
            s.add(Note(id=n + 1, title=f"by {n}"))  # not 0: MariaDB would auto-number it
            s.commit()
    plan = plan_of_retrieval(engine, Note, {"filter_user_ids": user, **filters})
    assert "ix_sqlaudit_log_user" in plan, plan


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_alembic_reports_a_user_index_made_before_the_prefix(engine) -> None:
    """PostgreSQL only: Alembic reflects expression indexes there (on SQLite it skips
    them with a warning), so a database still holding the old (changed_by,
    changed_at) index shows up in ``alembic check`` and autogenerate replaces it."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import MetaData

    metadata = MetaData()
    audit_table(metadata)
    metadata.create_all(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_sqlaudit_log_user")
        conn.exec_driver_sql("CREATE INDEX ix_sqlaudit_log_user ON sqlaudit_log (changed_by, changed_at)")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [(op, index.name) for op, index in diff] == [
        ("remove_index", "ix_sqlaudit_log_user"), ("add_index", "ix_sqlaudit_log_user")]
