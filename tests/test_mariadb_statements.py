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

from test_mariadb import _assert_two_inserts_by_a, _inserts, _note_model

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
    _assert_two_inserts_by_a(engine, "before", "after", same_transaction=True)


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
    _assert_two_inserts_by_a(engine, "before", "after", same_transaction=False)


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
    _assert_two_inserts_by_a(engine, "first", "second", same_transaction=False)


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


def _event_model(Base: Any) -> Any:
    from sqlalchemy.dialects import mysql

    @track_table(tracked_fields=["at"])
    class Event(Base):
        __tablename__ = "events"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        at: Mapped[datetime] = mapped_column(mysql.TIMESTAMP(fsp=6), nullable=True)

    return Event


def _in_zone(engine_or_url: Any, zone: str) -> Any:
    """An engine on the same database (or URL) whose sessions run at ``time_zone = zone``."""
    from sqlalchemy import create_engine

    url = getattr(engine_or_url, "url", engine_or_url)
    return create_engine(url, connect_args={"init_command": f"SET time_zone = '{zone}'"})


def _three_zones(make_engine: Any, Base: Any) -> tuple[Any, Any, Any]:
    """Engines at '+00:00' (the tables created there), '+05:00' and '-03:00'; hooks on."""
    utc = make_engine(connect_args={"init_command": "SET time_zone = '+00:00'"})
    Base.metadata.create_all(utc)
    register_hooks()
    return utc, _in_zone(utc, "+05:00"), _in_zone(utc, "-03:00")


def _recorded(Event: Any, engine: Any) -> list[tuple[str, Any, Any]]:
    from sqlaudit import get_resource_changes

    with Session(engine) as s:
        changes = get_resource_changes(Event, session=s)
    return sorted((c.operation, c.old_value, c.new_value) for c in changes if c.field_name == "at")


def test_a_timestamp_column_is_recorded_as_its_utc_instant_whatever_the_writers_time_zone(
        make_engine, Base) -> None:
    """A TIMESTAMP column holds an instant, which a session reads in its own time_zone.
    The record holds the instant in UTC (as a session at '+00:00' reads the row): writers
    at +05:00 and -03:00 are recorded alike, old and new values, and every reader gets
    the same record whatever its own time_zone."""
    Event = _event_model(Base)
    utc, east, west = _three_zones(make_engine, Base)
    try:
        with Session(east) as s, audit_context(user_id="A"):
            s.add(Event(id=1, at=datetime(2020, 1, 1, 12, 0, 0, 250000)))  # 07:00:00.25 UTC
            s.commit()
        with Session(west) as s, audit_context(user_id="B"):
            s.get(Event, 1).at = datetime(2020, 1, 1, 6, 0, 0)  # 09:00 UTC
            s.commit()
        with Session(utc) as s:
            assert s.get(Event, 1).at == datetime(2020, 1, 1, 9, 0, 0)
        expected = [("insert", None, datetime(2020, 1, 1, 7, 0, 0, 250000)),
                    ("update", datetime(2020, 1, 1, 7, 0, 0, 250000), datetime(2020, 1, 1, 9, 0, 0))]
        assert _recorded(Event, utc) == expected
        assert _recorded(Event, east) == expected  # the reader's time_zone changes nothing
    finally:
        east.dispose()
        west.dispose()


def test_a_zero_or_null_timestamp_is_recorded_as_such(make_engine, Base) -> None:
    """The zero date (allowed where sql_mode has no NO_ZERO_DATE) and NULL are no instants:
    recorded as the zero date's text and NULL, not as 1970-01-01."""
    Event = _event_model(Base)
    engine = make_engine(connect_args={"init_command": "SET sql_mode = '', time_zone = '+05:00'"})
    Base.metadata.create_all(engine)
    register_hooks()
    with engine.begin() as conn, audit_context(user_id="A"):
        conn.execute(text("INSERT INTO events (id, at) VALUES (1, '0000-00-00 00:00:00'), (2, NULL)"))
    with engine.connect() as conn:
        recorded = conn.execute(text(
            "SELECT JSON_UNQUOTE(JSON_EXTRACT(new_data, '$.at')), JSON_TYPE(JSON_EXTRACT(new_data, "
            "'$.at')) FROM sqlaudit_log ORDER BY resource_id")).all()
    assert [tuple(r) for r in recorded] == [("0000-00-00 00:00:00.000000", "STRING"),
                                            ("null", "NULL")]


def test_reverting_and_restoring_a_timestamp_in_another_time_zone_keeps_the_instant(
        make_engine, Base) -> None:
    """revert_transaction and restore_resource write a recorded (UTC) TIMESTAMP back as
    the same instant from a session at +05:00, and leave that session's time_zone as it
    was."""
    from sqlaudit import get_transactions, restore_resource, revert_transaction

    Event = _event_model(Base)
    utc = make_engine(connect_args={"init_command": "SET time_zone = '+00:00'"})
    Base.metadata.create_all(utc)
    east = _in_zone(utc, "+05:00")
    register_hooks()
    try:
        with Session(utc) as s, audit_context(user_id="A"):
            s.add(Event(id=1, at=datetime(2020, 1, 1, 7, 0)))
            s.commit()
        with Session(utc) as s:
            between = s.execute(text("SELECT UTC_TIMESTAMP(6)")).scalar()
        with Session(utc) as s, audit_context(user_id="A"):
            s.get(Event, 1).at = datetime(2020, 6, 1, 0, 0)
            s.commit()
        with Session(east) as s, audit_context(user_id="B"):
            last = get_transactions(session=s)[0].transaction_id
            revert_transaction(s, last)
            assert s.execute(text("SELECT @@session.time_zone")).scalar() == "+05:00"
            s.commit()
        with Session(utc) as s:
            assert s.get(Event, 1).at == datetime(2020, 1, 1, 7, 0)
        with Session(utc) as s, audit_context(user_id="A"):
            s.get(Event, 1).at = datetime(2021, 1, 1, 0, 0)
            s.commit()
        with Session(east) as s, audit_context(user_id="B"):
            from datetime import timezone
            restore_resource(s, Event, 1, at=between.replace(tzinfo=timezone.utc))
            assert s.execute(text("SELECT @@session.time_zone")).scalar() == "+05:00"
            s.commit()
        with Session(utc) as s:
            assert s.get(Event, 1).at == datetime(2020, 1, 1, 7, 0)
    finally:
        east.dispose()


def _load_time_zone(engine: Any, zone: str) -> None:
    """Load one IANA zone into the server's time zone tables (mariadb-tzinfo-to-sql piped
    into the mariadb client, on the mysql database), unless it is there already."""
    import shutil
    import subprocess

    from sqlalchemy import create_engine

    from test_alembic import mariadb_client

    with engine.connect() as conn:
        if conn.execute(text("SELECT COUNT(*) FROM mysql.time_zone_name WHERE Name = :z"),
                        {"z": zone}).scalar():
            return
    tool = shutil.which("mariadb-tzinfo-to-sql") or shutil.which("mysql_tzinfo_to_sql")
    if tool is None:
        pytest.fail("mariadb-tzinfo-to-sql (MariaDB's server package) is not on PATH", pytrace=False)
    script = subprocess.run([tool, f"/usr/share/zoneinfo/{zone}", zone], capture_output=True,
                            text=True, check=True).stdout
    system = create_engine(engine.url.set(database="mysql"))
    try:
        result = mariadb_client(system, script)
    finally:
        system.dispose()
    assert result.returncode == 0, result.stderr


def test_a_timestamp_in_the_repeated_hour_of_a_dst_change_keeps_its_instant(
        make_engine, Base) -> None:
    """In Europe/Berlin, 02:30 on 2021-10-31 happened twice (00:30 and 01:30 UTC). A writer
    whose time_zone is Europe/Berlin sees both rows' TIMESTAMP as 02:30; the record keeps
    the two instants apart. (Loads the zone into the server's time zone tables.)"""
    Event = _event_model(Base)
    utc = make_engine(connect_args={"init_command": "SET time_zone = '+00:00'"})
    _load_time_zone(utc, "Europe/Berlin")
    Base.metadata.create_all(utc)
    with utc.begin() as conn:  # written at UTC: the exact instants
        conn.execute(text("INSERT INTO events VALUES (1, '2021-10-31 00:30:00'), "
                          "(2, '2021-10-31 01:30:00')"))
    berlin = _in_zone(utc, "Europe/Berlin")
    register_hooks()
    try:
        with berlin.connect() as conn:
            seen = conn.execute(text("SELECT at FROM events ORDER BY id")).scalars().all()
        assert seen == [datetime(2021, 10, 31, 2, 30)] * 2  # one wall-clock time, twice
        with berlin.begin() as conn, audit_context(user_id="A"):
            conn.execute(text("DELETE FROM events"))
    finally:
        berlin.dispose()
    first, second = datetime(2021, 10, 31, 0, 30), datetime(2021, 10, 31, 1, 30)
    assert _recorded(Event, utc) == [("delete", first, None), ("delete", second, None),
                                     ("insert", None, first), ("insert", None, second)]


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
    _assert_two_inserts_by_a(engine, "first", "second", same_transaction=False)



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


# ---------------------------------------------------------------- review: TIMESTAMP edge cases


def _precise_event_model(Base: Any, fsp: int) -> Any:
    from sqlalchemy.dialects import mysql

    @track_table(tracked_fields=["at"])
    class PreciseEvent(Base):
        __tablename__ = "precise_events"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        at: Mapped[datetime] = mapped_column(mysql.TIMESTAMP(fsp=fsp), nullable=True)

    return PreciseEvent


@pytest.mark.parametrize("fsp", [0, 3, 6])
def test_every_timestamp_precision_and_both_ends_of_the_range_are_recorded_exactly(
        make_engine, Base, fsp) -> None:
    """TIMESTAMP(0), (3) and (6), at 1970-01-01 00:00:01 UTC (the first instant a
    TIMESTAMP holds), 2038-01-19 03:14:07.999999 (the last) and an ordinary instant with
    microseconds: recorded exactly as a session at '+00:00' reads the row, written from a
    session at -03:00 (where the first instant reads as 1969); the state now (rebuilt from
    the live rows, read in another zone) agrees with the records."""
    from datetime import timedelta, timezone

    from sqlaudit import get_resource_state, get_table_state

    Event = _precise_event_model(Base, fsp)
    utc, east, west = _three_zones(make_engine, Base)
    try:
        with west.begin() as conn, audit_context(user_id="A"):
            conn.execute(text(
                "INSERT INTO precise_events VALUES (1, '1969-12-31 21:00:01'), "
                "(2, '2038-01-19 00:14:07.999999'), (3, '2020-06-30 20:59:59.123456')"))
        with utc.connect() as conn:
            stored = dict(conn.execute(text("SELECT id, at FROM precise_events")).all())
        assert stored[1] == datetime(1970, 1, 1, 0, 0, 1)
        recorded = {c.resource_id: c.new_value for c in _changes_of(Event, utc)}
        assert recorded == {str(k): v for k, v in stored.items()}
        later = datetime.now(timezone.utc) + timedelta(days=1)
        with Session(east) as s:
            assert {rid: st["at"] for rid, st in get_table_state(Event, at=later, session=s)} \
                == recorded
            assert get_resource_state(Event, 2, at=later, session=s) == {"at": stored[2]}
    finally:
        west.dispose()
        east.dispose()


def _changes_of(model: Any, engine: Any) -> list[Any]:
    from sqlaudit import get_resource_changes

    with Session(engine) as s:
        return [c for c in get_resource_changes(model, session=s) if c.field_name == "at"]


def test_reverting_from_a_session_in_another_zone_stamps_a_datetime_on_update_column_in_that_zone(
        make_engine, Base) -> None:
    """A table with a tracked TIMESTAMP and an (untracked) DATETIME ... ON UPDATE
    CURRENT_TIMESTAMP: an ordinary update from a session at +05:00 stamps the DATETIME
    with that session's wall clock, and so does revert_transaction from that session.
    (Review defect: with time_zone '+00:00' for its statements the revert stamped the
    UTC wall clock, five hours off every other write of the application; the same held
    for DEFAULT CURRENT_TIMESTAMP on a re-inserted row and NOW() in the application's
    own triggers.)"""
    from sqlalchemy import DateTime
    from sqlalchemy.dialects import mysql

    from sqlaudit import get_transactions, revert_transaction

    @track_table(tracked_fields=["at"])
    class Stamped(Base):
        __tablename__ = "stamped"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        at: Mapped[datetime] = mapped_column(mysql.TIMESTAMP(fsp=6), nullable=True)
        touched: Mapped[datetime] = mapped_column(DateTime, nullable=True, server_default=text(
            "CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP"))

    east = make_engine(connect_args={"init_command": "SET time_zone = '+05:00'"})
    Base.metadata.create_all(east)
    register_hooks()

    def offset_of_touched(conn: Any) -> float:
        """Hours between the row's DATETIME stamp and this session's NOW()."""
        return conn.execute(text(
            "SELECT TIMESTAMPDIFF(SECOND, touched, NOW()) / 3600 FROM stamped")).scalar()

    with Session(east) as s, audit_context(user_id="A"):
        s.add(Stamped(id=1, at=datetime(2020, 1, 1)))
        s.commit()
    with Session(east) as s, audit_context(user_id="A"):
        s.get(Stamped, 1).at = datetime(2021, 1, 1)
        s.commit()
    with east.connect() as conn:
        assert abs(offset_of_touched(conn)) < 0.1  # an ordinary write: the session's clock
    with Session(east) as s, audit_context(user_id="B"):
        revert_transaction(s, get_transactions(session=s)[0].transaction_id)
        s.commit()
    with east.connect() as conn:
        assert conn.execute(text("SELECT at FROM stamped")).scalar() == datetime(2020, 1, 1)
        assert abs(offset_of_touched(conn)) < 0.1, "the revert stamped the UTC wall clock"


def test_a_revert_that_fails_midway_puts_the_sessions_zone_back_and_leaves_it_usable(
        make_engine, Base) -> None:
    """A revert that the database refuses halfway (the re-insert of a deleted row meets
    a row created since with the same unique value) raises, restores the session's named
    time_zone, and leaves the caller's transaction usable."""
    from sqlalchemy.dialects import mysql

    from sqlaudit import get_transactions, revert_transaction

    @track_table(tracked_fields=["at", "code"])
    class Slot(Base):
        __tablename__ = "slots"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        at: Mapped[datetime] = mapped_column(mysql.TIMESTAMP(fsp=6), nullable=True)
        code: Mapped[str] = mapped_column(String(10), unique=True)

    engine = make_engine(connect_args={"init_command": "SET time_zone = 'SYSTEM'"})
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="A"):
        s.add(Slot(id=1, at=datetime(2020, 1, 1), code="x"))
        s.commit()
    with Session(engine) as s, audit_context(user_id="A"):
        s.delete(s.get(Slot, 1))
        s.commit()
    with Session(engine) as s, audit_context(user_id="A"):
        s.add(Slot(id=2, at=datetime(2020, 1, 2), code="x"))
        s.commit()
    with Session(engine) as s, audit_context(user_id="B"):
        deleting = get_transactions(session=s)[1].transaction_id
        s.add(Slot(id=3, at=None, code="y"))
        s.flush()
        with pytest.raises(Exception):
            revert_transaction(s, deleting)
        assert s.execute(text("SELECT @@session.time_zone")).scalar() == "SYSTEM"
        s.commit()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM slots ORDER BY id")).scalars().all() == [2, 3]


def test_a_timestamp_resource_key_names_one_row_whatever_the_sessions_zone(
        make_engine, Base) -> None:
    """A TIMESTAMP in the resource key is recorded as its UTC instant, as its value is:
    one row has one key for writers and readers in any zone, so get_table_state from a
    session at +05:00 does not list the row twice (live and recorded) and
    find_history_gaps does not report a row that is there as removed."""
    from datetime import timedelta, timezone

    from sqlalchemy.dialects import mysql

    from sqlaudit import get_table_state
    from sqlaudit.integrity import find_history_gaps

    @track_table
    class Reading(Base):
        __tablename__ = "readings"
        taken: Mapped[datetime] = mapped_column(mysql.TIMESTAMP, primary_key=True)
        value: Mapped[int] = mapped_column(Integer)

    utc = make_engine(connect_args={"init_command": "SET time_zone = '+00:00'"})
    Base.metadata.create_all(utc)
    east = _in_zone(utc, "+05:00")
    register_hooks()
    try:
        before = datetime.now(timezone.utc) - timedelta(seconds=1)
        with utc.begin() as conn, audit_context(user_id="A"):
            conn.execute(text("INSERT INTO readings VALUES ('2020-01-01 00:00:00', 1)"))
        with Session(utc) as s:  # a reader in the writer's zone: no row yet at ``before``
            assert list(get_table_state(Reading, at=before, session=s)) == []
        with Session(east) as s:  # the same question from +05:00
            assert list(get_table_state(Reading, at=before, session=s)) == []
        with east.connect() as conn:
            assert find_history_gaps(conn, Reading) == []
    finally:
        east.dispose()


@pytest.mark.parametrize("names, recorded", [
    (("mysql", "mariadb"), datetime(2020, 1, 1, 7, 0)),  # a TIMESTAMP either way: UTC
    (("mariadb",), datetime(2020, 1, 1, 12, 0)),  # a DATETIME for mysql://: the wall clock
])
def test_a_timestamp_variant_on_a_mariadb_url_is_recorded_and_reverted_to_its_instant(
        make_engine, Base, names, recorded) -> None:
    """On a mariadb+pymysql:// URL SQLAlchemy picks a column's "mariadb" variant, on a
    mysql:// URL its "mysql" one. A variant that is a TIMESTAMP under both names is
    recorded as its UTC instant; one that is a TIMESTAMP under one name only is recorded
    as the writing session reads it, as a DATETIME is (docs/mariadb.md). Either way
    revert_transaction from the writer's zone puts back the instant that was written."""
    from sqlalchemy import DateTime
    from sqlalchemy.dialects import mysql

    from sqlaudit import get_transactions, revert_transaction

    @track_table(tracked_fields=["at"])
    class Meeting(Base):
        __tablename__ = "meetings"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        at: Mapped[datetime] = mapped_column(
            DateTime().with_variant(mysql.TIMESTAMP(fsp=6), *names), nullable=True)

    base = make_engine()
    url = base.url.set(drivername="mariadb+pymysql")
    utc = _in_zone(url, "+00:00")
    east = _in_zone(url, "+05:00")
    try:
        Base.metadata.create_all(utc)
        with utc.connect() as conn:
            assert conn.execute(text(
                "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME = 'meetings' AND COLUMN_NAME = 'at'")).scalar() == "timestamp"
        register_hooks()
        with Session(east) as s, audit_context(user_id="A"):
            s.add(Meeting(id=1, at=datetime(2020, 1, 1, 12, 0)))  # 07:00 UTC
            s.commit()
        with Session(east) as s, audit_context(user_id="A"):
            s.get(Meeting, 1).at = datetime(2021, 1, 1, 12, 0)
            s.commit()
        assert recorded in [c.new_value for c in _changes_of(Meeting, utc)]
        with Session(east) as s, audit_context(user_id="B"):
            revert_transaction(s, get_transactions(session=s)[0].transaction_id)
            s.commit()
        with Session(utc) as s:
            assert s.get(Meeting, 1).at == datetime(2020, 1, 1, 7, 0)
    finally:
        utc.dispose()
        east.dispose()


@pytest.mark.parametrize("mode", ["ANSI,NO_BACKSLASH_ESCAPES", "TRADITIONAL", ""])
def test_timestamp_triggers_install_and_record_under_other_sql_modes(make_engine, Base, mode) -> None:
    """The new TIMESTAMP SQL (a TIMESTAMP literal, INTERVAL ... MICROSECOND) installs and
    records alike whatever the installing and writing sessions' sql_mode."""
    Event = _precise_event_model(Base, 6)
    engine = make_engine(connect_args={
        "init_command": f"SET sql_mode = '{mode}', time_zone = '+02:00'"})
    Base.metadata.create_all(engine)
    register_hooks()
    with engine.begin() as conn, audit_context(user_id="A"):
        conn.execute(text("INSERT INTO precise_events VALUES (1, '2020-01-01 02:00:00.5')"))
    assert [c.new_value for c in _changes_of(Event, engine)] == [datetime(2020, 1, 1, 0, 0, 0, 500000)]


def test_a_revert_from_a_named_zone_writes_back_an_instant_of_the_repeated_dst_hour(
        make_engine, Base) -> None:
    """A session at Europe/Berlin reverts an update whose old value is 2021-10-31 00:30
    UTC, the first of the two 02:30 of that night: the row holds that instant again, not
    the second one, and the session's zone is Europe/Berlin afterwards."""
    from sqlaudit import get_transactions, revert_transaction

    Event = _event_model(Base)
    utc = make_engine(connect_args={"init_command": "SET time_zone = '+00:00'"})
    _load_time_zone(utc, "Europe/Berlin")
    Base.metadata.create_all(utc)
    register_hooks()
    with utc.begin() as conn, audit_context(user_id="A"):
        conn.execute(text("INSERT INTO events VALUES (1, '2021-10-31 00:30:00')"))
    with utc.begin() as conn, audit_context(user_id="A"):
        conn.execute(text("UPDATE events SET at = '2022-01-01 00:00:00'"))
    berlin = _in_zone(utc, "Europe/Berlin")
    try:
        with Session(berlin) as s, audit_context(user_id="B"):
            revert_transaction(s, get_transactions(session=s)[0].transaction_id)
            assert s.execute(text("SELECT @@session.time_zone")).scalar() == "Europe/Berlin"
            s.commit()
    finally:
        berlin.dispose()
    with utc.connect() as conn:
        assert conn.execute(text("SELECT at FROM events")).scalar() == datetime(2021, 10, 31, 0, 30)
