"""How the hooks read what the application sends on MariaDB, statement by statement:
which statements commit (a new transaction id), which raw spellings of the user
variables are cleared at checkin, and what the hooks cannot see (documented holes).
Each of these was a defect found by trying to fool the hooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Integer, String, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit import AuditState, audit_context, audit_status, register_hooks, track_table

from test_mariadb import _inserts, _note_model

pytestmark = pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)


@pytest.mark.parametrize("statement", [
    "CREATE OR REPLACE TEMPORARY TABLE scratch (id INT)",
    "CREATE /* x */ TEMPORARY TABLE scratch (id INT)",
])
def test_a_temporary_table_spelled_otherwise_keeps_the_transaction_id(
        engine, Base, statement) -> None:
    """A TEMPORARY table commits nothing on MariaDB, however it is spelled: the writes
    before and after it are one transaction and must share one transaction id."""
    _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="A"):
        s.execute(text("INSERT INTO notes (id, title) VALUES (1, 'before')"))
        s.execute(text(statement))
        s.execute(text("INSERT INTO notes (id, title) VALUES (2, 'after')"))
        s.commit()
    found = _inserts(engine)
    assert [r[:2] for r in found] == [("before", "A"), ("after", "A")]
    assert found[0][2] == found[1][2]


@pytest.mark.parametrize("statement", ["CHECK TABLE notes", "RESET QUERY CACHE"])
def test_a_statement_that_commits_outside_the_regex_gives_a_new_transaction_id(
        engine, Base, statement) -> None:
    """CHECK TABLE and RESET commit the open transaction on MariaDB 10.11 (as ANALYZE,
    OPTIMIZE and REPAIR, which _IMPLICIT_COMMIT_RE lists): 'before' is committed by it,
    so a rollback afterwards keeps it; the writes after it are another server
    transaction and must not share its transaction id."""
    _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="A"):
        s.execute(text("INSERT INTO notes (id, title) VALUES (1, 'before')"))
        result = s.execute(text(statement))
        if result.returns_rows:
            result.all()
        s.execute(text("INSERT INTO notes (id, title) VALUES (2, 'after')"))
        s.commit()
    found = _inserts(engine)
    assert [r[:2] for r in found] == [("before", "A"), ("after", "A")]
    assert found[0][2] != found[1][2]


def test_a_column_named_like_the_fingerprint_branch_keeps_the_status_current(
        engine, Base) -> None:
    """The fingerprint parser searches the whole trigger body; a column whose name holds
    ``IF FALSE THEN DO 'sqlaudit:{}'`` appears there (back-quoted, its ' not doubled)
    before the real dead branch and is taken as the fingerprint."""
    @track_table(tracked_fields=["odd"])
    class Odd(Base):
        __tablename__ = "odd"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        odd: Mapped[str] = mapped_column("c IF FALSE THEN DO 'sqlaudit:{}'", String(20))

    Base.metadata.create_all(engine)
    assert audit_status(engine, Odd) == {"odd": AuditState.CURRENT}



def test_two_phase_transactions_on_one_connection_get_two_transaction_ids(
        engine, Base) -> None:
    """Connection.begin_twophase() (XA on MariaDB) fires begin_twophase/commit_twophase,
    not begin/commit, so the hook never forgets the first XA transaction's stamp: the
    second one, committed separately by the server, is recorded with the same
    transaction id (and the session keeps its @sqlaudit_* variables between them)."""
    _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with engine.connect() as conn, audit_context(user_id="A"):
        xa = conn.begin_twophase()
        conn.execute(text("INSERT INTO notes (id, title) VALUES (1, 'first')"))
        xa.prepare()
        xa.commit()
        xa = conn.begin_twophase()
        conn.execute(text("INSERT INTO notes (id, title) VALUES (2, 'second')"))
        xa.prepare()
        xa.commit()
    found = _inserts(engine)
    assert [r[:2] for r in found] == [("first", "A"), ("second", "A")]
    assert found[0][2] != found[1][2]


def test_a_user_variable_set_through_a_raw_dbapi_cursor_outlives_checkin_is_a_documented_hole(
        make_engine, Base) -> None:
    """engine.raw_connection()'s cursor runs no SQLAlchemy event, so sqlaudit cannot
    know that it set @sqlaudit_user_id: checkin leaves it set, and the next checkout's
    write is credited to 42 (docs/mariadb.md: clear what a DBAPI cursor sets)."""
    engine = make_engine(pool_size=1, max_overflow=0)
    _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    raw = engine.raw_connection()  # a maintenance script acting for user 42
    try:
        cursor = raw.cursor()
        cursor.execute("SET @sqlaudit_user_id = '42'")
        cursor.execute("INSERT INTO notes (id, title) VALUES (1, 'by 42')")
        cursor.close()
        raw.commit()
    finally:
        raw.close()
    auto = engine.execution_options(isolation_level="AUTOCOMMIT")
    with auto.connect() as conn:  # request 2: no user at all
        conn.execute(text("INSERT INTO notes (id, title) VALUES (2, 'by nobody')"))
    assert [r[:2] for r in _inserts(engine)] == [("by 42", "42"), ("by nobody", "42")]


def test_grant_audit_read_never_creates_an_account(make_engine, Base) -> None:
    """grant_audit_read() promises an SQLAuditArgumentError for an account that does not
    exist ("the server creates none by a GRANT"). That holds only under sql_mode
    NO_AUTO_CREATE_USER (MariaDB's default); a session without it (sql_mode='', an
    application's own mode) makes the GRANT create the account, with no password, able
    to read the whole audit history from anywhere."""
    import uuid

    from sqlaudit import create_audit_log, grant_audit_read
    from sqlaudit.exceptions import SQLAuditArgumentError

    engine = make_engine(connect_args={"init_command": "SET SESSION sql_mode = ''"})
    create_audit_log(engine)
    name = f"rv_typo_{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(SQLAuditArgumentError):
            grant_audit_read(engine, f"{name}@%")
    finally:
        with engine.connect() as conn:
            created = conn.execute(text("SELECT COUNT(*) FROM mysql.user WHERE User = :u"),
                                   {"u": name}).scalar()
            conn.execute(text(f"DROP USER IF EXISTS `{name}`@`%`"))
    assert created == 0


def test_a_timestamp_column_is_recorded_in_the_writers_time_zone_is_a_documented_hole(
        make_engine, Base) -> None:
    """A TIMESTAMP column holds an instant; NEW.col in a trigger is that instant in the
    *writing* session's time_zone: a writer at +05:00 has its value recorded five hours
    off what a UTC session reads from the row (docs/mariadb.md: one time_zone for every
    writer, or DATETIME columns)."""

    from sqlalchemy.dialects import mysql

    from sqlaudit import get_resource_changes

    @track_table(tracked_fields=["at"])
    class Event(Base):
        __tablename__ = "events"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        at: Mapped[datetime] = mapped_column(mysql.TIMESTAMP(fsp=6), nullable=True)

    utc = make_engine(connect_args={"init_command": "SET time_zone = '+00:00'"})
    Base.metadata.create_all(utc)
    from sqlalchemy import create_engine
    east = create_engine(utc.url, connect_args={"init_command": "SET time_zone = '+05:00'"})
    register_hooks()
    try:
        with Session(east) as s, audit_context(user_id="A"):
            s.add(Event(id=1, at=datetime(2020, 1, 1, 12, 0, 0)))
            s.commit()
    finally:
        east.dispose()
    with Session(utc) as s:
        stored = s.get(Event, 1).at
        changes = get_resource_changes(Event, session=s, filter_resource_ids=1)
    recorded = [c.new_value for c in changes if c.field_name == "at"]
    assert stored == datetime(2020, 1, 1, 7, 0, 0)
    assert recorded == [datetime(2020, 1, 1, 12, 0, 0)]  # the writer's wall clock


@pytest.mark.parametrize("statement", ["# tool\nCOMMIT", "-- tool\nCOMMIT", "/* tool */ COMMIT"])
def test_a_raw_commit_after_a_comment_gives_the_next_writes_a_new_transaction_id(
        engine, Base, statement) -> None:
    """MariaDB takes '#', '-- ' and '/* */' as comments: the COMMIT after them ends the
    transaction, and the next writes get a new transaction id."""
    _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with engine.connect() as conn, audit_context(user_id="A"):
        conn.execute(text("INSERT INTO notes (id, title) VALUES (1, 'first')"))
        conn.exec_driver_sql(statement)
        conn.execute(text("INSERT INTO notes (id, title) VALUES (2, 'second')"))
        conn.commit()
    found = _inserts(engine)
    assert [r[:2] for r in found] == [("first", "A"), ("second", "A")]
    assert found[0][2] != found[1][2]



def test_analyze_update_is_recorded_with_the_acting_user(engine, Base) -> None:
    """MariaDB's ANALYZE <statement> runs the statement (and reports its plan):
    ANALYZE UPDATE writes, firing the triggers. _IMPLICIT_COMMIT_RE takes every
    statement starting with ANALYZE as DDL and returns before stamping, so the
    write runs without the acting user."""
    Note = _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="A"):
        s.add(Note(id=1, title="first"))
        s.commit()
    with Session(engine) as s, audit_context(user_id="B"):
        s.execute(text("ANALYZE UPDATE notes SET title = 'second' WHERE id = 1")).all()
        s.commit()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT operation, changed_by FROM sqlaudit_log ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("insert", "A"), ("update", "B")]


def test_analyze_update_is_not_credited_to_the_previous_user(engine, Base) -> None:
    """The same hole crediting the wrong user: in one transaction, a write as A, then
    under audit_context B an ANALYZE UPDATE, which the hook does not stamp: the update is
    recorded as A's."""
    Note = _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s:
        with audit_context(user_id="A"):
            s.add(Note(id=1, title="first"))
            s.flush()
        with audit_context(user_id="B"):
            s.execute(text("ANALYZE UPDATE notes SET title = 'second' WHERE id = 1")).all()
        s.commit()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT operation, changed_by FROM sqlaudit_log ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("insert", "A"), ("update", "B")]


def test_an_anonymous_compound_statement_is_recorded_with_the_acting_user(
        engine, Base) -> None:
    """MariaDB's anonymous block BEGIN NOT ATOMIC ... END is one statement that writes.
    _CONTROL_RE takes its leading BEGIN for a transaction start: the hook clears the
    variables and returns without stamping, so the block's writes have no user."""
    Note = _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="A"):
        s.add(Note(id=1, title="first"))
        s.commit()
    with Session(engine) as s, audit_context(user_id="B"):
        s.execute(text("BEGIN NOT ATOMIC UPDATE notes SET title = 'second' WHERE id = 1; END"))
        s.commit()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT operation, changed_by FROM sqlaudit_log ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("insert", "A"), ("update", "B")]
