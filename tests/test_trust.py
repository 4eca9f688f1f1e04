"""Trust: the trail cannot be forged, wiped or fooled (issue: attacker and careless-user cases).

Each test is one attack or one careless use, and asserts what the history
holds afterwards.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from sqlaudit import audit_context, register_hooks

from conftest import application_role, changes
from test_guarantees import models  # noqa: F401  (the README models with Ann recorded)


@pytest.fixture
def app_role(engine, models):
    """A login role with the rights of an application: its own tables and TEMP, nothing else."""
    yield from application_role(engine)


def _log_count(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM sqlaudit_log")).scalar())


# -- 1. forgery through the trigger functions (PostgreSQL) ---------------------------------


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_an_app_role_cannot_attach_a_trigger_function_to_its_own_temp_table(
        engine, models, app_role) -> None:
    """The temp-table forgery: attach sqlaudit_fn_customers() to a TEMP table, name a
    user and insert. EXECUTE is revoked from PUBLIC, so CREATE TRIGGER is refused."""
    _, app = app_role
    before = _log_count(engine)
    with pytest.raises(DBAPIError, match="permission denied for function"):
        with app.begin() as conn:
            conn.execute(text("CREATE TEMP TABLE fake (customer_id int, name text, email text,"
                              " user_id int)"))
            conn.execute(text("CREATE TRIGGER sqlaudit_insert AFTER INSERT ON fake "
                              "REFERENCING NEW TABLE AS sqlaudit_new_rows "
                              "FOR EACH STATEMENT EXECUTE FUNCTION sqlaudit_fn_customers()"))
    assert _log_count(engine) == before


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_trigger_function_refuses_to_record_for_any_other_table(engine, models) -> None:
    """Even a role that may execute the function (its owner) cannot make it write
    history for a table it was not generated for: the function checks TG_RELID."""
    before = _log_count(engine)
    with pytest.raises(DBAPIError, match="sqlaudit_fn_customers.* may only be fired by"):
        with engine.begin() as conn:
            conn.execute(text("CREATE TEMP TABLE fake (customer_id int, name text, email text,"
                              " user_id int)"))
            conn.execute(text("CREATE TRIGGER sqlaudit_insert AFTER INSERT ON fake "
                              "REFERENCING NEW TABLE AS sqlaudit_new_rows "
                              "FOR EACH STATEMENT EXECUTE FUNCTION sqlaudit_fn_customers()"))
            conn.execute(text("SET LOCAL sqlaudit.user_id = 'ceo'"))
            conn.execute(text("INSERT INTO fake VALUES (99, 'forged', NULL, 1)"))
    assert _log_count(engine) == before


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_trigger_function_refuses_a_row_level_or_before_trigger(engine, models) -> None:
    with pytest.raises(DBAPIError, match="may only be fired by"):
        with engine.begin() as conn:
            conn.execute(text("CREATE TRIGGER sqlaudit_forged BEFORE INSERT ON customers "
                              "FOR EACH STATEMENT EXECUTE FUNCTION sqlaudit_fn_customers()"))
            conn.execute(text("INSERT INTO customers (name, user_id) VALUES ('x', 1)"))


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_an_app_role_cannot_create_an_inheritance_child_of_a_tracked_table(
        engine, models, app_role) -> None:
    """A child table would be a way to write rows into the tracked table's tree under a
    table the app owns; PostgreSQL requires owning the parent for that."""
    _, app = app_role
    with pytest.raises(DBAPIError, match="must be owner"):
        with app.begin() as conn:
            conn.execute(text("CREATE TEMP TABLE child () INHERITS (customers)"))


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_the_app_role_keeps_writing_without_execute_on_the_functions(
        engine, models, app_role) -> None:
    """Trigger firing does not check EXECUTE: revoking it from PUBLIC breaks no write."""
    name, app = app_role
    _, Customer = models
    register_hooks()
    with app.connect() as conn:
        allowed = conn.execute(text(
            "SELECT has_function_privilege(current_user, 'sqlaudit_fn_customers()', 'EXECUTE')"
        )).scalar()
    assert allowed is False
    with Session(app) as s, audit_context(user_id="app-user"):
        s.execute(text("UPDATE customers SET name = 'Ann B'"))
        s.commit()
    with Session(engine) as s:
        last = changes(Customer, s)[-1]
    assert (last.new_value, last.changed_by, last.db_role) == ("Ann B", "app-user", name)


# -- 6. no column type can break the application's write (PostgreSQL) ----------------------

from datetime import date, datetime, timedelta, timezone  # noqa: E402

from sqlalchemy import ARRAY, JSON, Date, DateTime, Double, Integer, Interval, LargeBinary  # noqa: E402
from sqlalchemy import delete, insert, update  # noqa: E402
from sqlalchemy.dialects import postgresql  # noqa: E402
from sqlalchemy.orm import Mapped, mapped_column  # noqa: E402
from sqlalchemy.types import UserDefinedType  # noqa: E402

from sqlaudit.decorators import track_table  # noqa: E402


class _Named(UserDefinedType):  # type: ignore[type-arg]
    """A database type SQLAlchemy does not know, named as in the DDL."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **kw: object) -> str:
        return self.name


def _type_model(Base, type_):
    @track_table(tracked_fields=["x"])
    class Val(Base):
        __tablename__ = "vals"
        id: Mapped[int] = mapped_column(primary_key=True)
        x = mapped_column(type_, nullable=True)

    return Val


PG_TYPES = {
    # name: (type, first value, second value, extension or DDL needed first)
    "hstore": (postgresql.HSTORE, {"a": "1"}, {"a": "2", "b": None}, "CREATE EXTENSION IF NOT EXISTS hstore SCHEMA public"),
    "citext": (_Named("public.citext"), "Ann", "ANN", "CREATE EXTENSION IF NOT EXISTS citext SCHEMA public"),
    "json-array": (ARRAY(JSON), [{"a": 1}], [{"a": 2}], None),
    "json": (JSON, {"a": 1}, {"a": 2}, None),
    "xml": (_Named("xml"), "<a>1</a>", "<a>2</a>", None),
    "point": (_Named("point"), "(1,2)", "(3,4)", None),
    "box": (_Named("box"), "(1,1),(0,0)", "(2,2),(0,0)", None),
    "tsvector": (postgresql.TSVECTOR, "a fat cat", "a thin cat", None),
    "enum": (postgresql.ENUM("red", "green", name="colour"), "red", "green", None),
    "domain": (postgresql.DOMAIN("posint", Integer, check="VALUE > 0"), 1, 2, None),
}


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
@pytest.mark.parametrize("case", list(PG_TYPES))
def test_every_column_type_can_be_inserted_updated_and_deleted(engine, Base, case) -> None:
    """Values are compared in a form every type has (its text), never through an operator
    the pinned search_path could hide (hstore, citext) or that does not exist (json, xml, point)."""
    type_, first, second, setup = PG_TYPES[case]
    path = f'SET search_path = "{engine.info_schema}", public'  # where the extensions live
    if setup:
        with engine.begin() as conn:
            conn.execute(text(setup))
    Val = _type_model(Base, type_)
    with engine.begin() as conn:
        conn.execute(text(path))
        Base.metadata.create_all(conn)
    with engine.begin() as conn:
        conn.execute(text(path))
        conn.execute(insert(Val).values(id=1, x=first))
        conn.execute(update(Val).values(x=second))
        conn.execute(update(Val).values(x=second))  # a no-op: nothing recorded
        conn.execute(delete(Val))
    with Session(engine) as s:
        s.execute(text(path))
        ops = [r.operation for r in changes(Val, s)]
    assert ops == ["insert", "update", "delete"]


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_case_only_change_to_a_citext_value_is_recorded(engine, Base) -> None:
    """citext compares case-insensitively, but an audit trail records what was written."""
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS citext SCHEMA public"))
    Val = _type_model(Base, _Named("public.citext"))
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Val).values(id=1, x="Ann"))
        conn.execute(update(Val).values(x="ANN"))
    with Session(engine) as s:
        last = changes(Val, s)[-1]
    assert (last.operation, last.old_value, last.new_value) == ("update", "Ann", "ANN")


# -- 7. values do not depend on the writer's session settings (PostgreSQL) ------------------

SETTINGS = {
    # name: (hostile setting, type, first value, second value)
    "extra_float_digits": ("extra_float_digits = 0", Double, 0.3, 0.1 + 0.2),
    "DateStyle": ("DateStyle = 'SQL, DMY'", ARRAY(Date), [date(2024, 1, 2)], [date(2024, 2, 1)]),
    "IntervalStyle": ("IntervalStyle = 'sql_standard'", Interval,
                      timedelta(days=1, hours=2, seconds=3), timedelta(days=-1, microseconds=5)),
    "TimeZone": ("TimeZone = 'Pacific/Chatham'", ARRAY(DateTime(timezone=True)),
                 [datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)],
                 [datetime(2024, 7, 2, 3, 4, 5, 6, tzinfo=timezone.utc)]),
    "bytea_output": ("bytea_output = 'escape'", ARRAY(LargeBinary), [b"\x00\xffab"], [b"\\x41"]),
}


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
@pytest.mark.parametrize("case", list(SETTINGS))
def test_values_are_recorded_the_same_whatever_the_writer_session_settings(
        engine, Base, case) -> None:
    setting, type_, first, second = SETTINGS[case]
    Val = _type_model(Base, type_)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text(f"SET LOCAL {setting}"))
        conn.execute(insert(Val).values(id=1, x=first))
        conn.execute(update(Val).values(x=second))
    with Session(engine) as s:
        records = changes(Val, s)
    assert [(r.operation, r.old_value, r.new_value) for r in records] == [
        ("insert", None, first), ("update", first, second)]


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_history_reads_the_same_under_a_hostile_reader_session(engine, Base) -> None:
    """Stored text is read back by casts that accept every input style. (A DateStyle
    other than ISO output is refused by psycopg itself for any timestamptz it reads.)"""
    Val = _type_model(Base, ARRAY(Date))
    Base.metadata.create_all(engine)
    value = [date(2024, 1, 2)]
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL DateStyle = 'SQL, MDY'"))
        conn.execute(insert(Val).values(id=1, x=value))
    with Session(engine) as s:
        s.execute(text("SET DateStyle = 'ISO, DMY'"))
        assert changes(Val, s)[0].new_value == value


# -- 2. history survives drop_all() of any MetaData -----------------------------------------

from sqlalchemy.orm import DeclarativeBase  # noqa: E402

from sqlaudit.ddl import drop_audit_log, drop_audit_triggers  # noqa: E402
from sqlaudit.exceptions import SQLAuditError  # noqa: E402


def _note_model(Base, name: str):
    @track_table(tracked_fields=["body"])
    class Note(Base):
        __tablename__ = name
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str]

    return Note


def _write(engine, table: str, body: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {table} (body) VALUES ('{body}')"))


def test_drop_all_of_another_metadata_keeps_every_history_and_write(engine) -> None:
    class AppBase(DeclarativeBase):
        pass

    class OtherBase(DeclarativeBase):
        pass

    Note = _note_model(AppBase, "notes")
    Memo = _note_model(OtherBase, "memos")
    AppBase.metadata.create_all(engine)
    OtherBase.metadata.create_all(engine)
    _write(engine, "notes", "kept")
    _write(engine, "memos", "gone with its table")

    OtherBase.metadata.drop_all(engine)

    _write(engine, "notes", "still audited")
    with Session(engine) as s:
        assert [r.new_value for r in changes(Note, s)] == ["kept", "still audited"]
        assert [r.new_value for r in changes(Memo, s)] == ["gone with its table"]


def test_drop_all_then_create_all_keeps_the_history(engine, Base) -> None:
    Note = _note_model(Base, "notes")
    Base.metadata.create_all(engine)
    _write(engine, "notes", "before")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    _write(engine, "notes", "after")
    with Session(engine) as s:
        assert [r.new_value for r in changes(Note, s)] == ["before", "after"]
    with pytest.raises(DBAPIError, match="append-only"):  # still guarded
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM sqlaudit_log"))


def test_drop_audit_log_refuses_while_triggers_are_installed(engine, Base) -> None:
    _note_model(Base, "notes")
    Base.metadata.create_all(engine)
    _write(engine, "notes", "kept")
    with pytest.raises(SQLAuditError, match=r"notes'\] still have sqlaudit triggers.*"
                                             r"drop_audit_triggers\(\)"):
        drop_audit_log(engine)
    assert _log_count(engine) == 1


def test_drop_audit_log_removes_the_history_once_no_trigger_is_left(engine, Base) -> None:
    Note = _note_model(Base, "notes")
    Base.metadata.create_all(engine)
    _write(engine, "notes", "x")
    drop_audit_triggers(engine, Note)
    drop_audit_log(engine)
    with engine.connect() as conn:
        from sqlalchemy import inspect as sa_inspect

        assert not sa_inspect(conn).has_table("sqlaudit_log")
    Base.metadata.create_all(engine)  # and it can be created again
    _write(engine, "notes", "y")
    assert _log_count(engine) == 0  # create_all skipped the existing notes table: no triggers


# -- 5. one rule for user ids on every dialect -----------------------------------------------

import logging  # noqa: E402

from sqlaudit.config import SQLAuditConfig, clear_config, set_config  # noqa: E402


def _customer_writes(engine, Customer, name: str) -> None:
    with Session(engine) as s:
        s.execute(text(f"UPDATE customers SET name = '{name}'"))
        s.commit()


@pytest.mark.parametrize("user_id, stored", [
    ("alice", "alice"), (42, "42"),
    (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
])
def test_str_int_and_uuid_user_ids_are_stored_as_text(engine, models, user_id, stored) -> None:
    _, Customer = models
    register_hooks()
    with audit_context(user_id=user_id):
        _customer_writes(engine, Customer, "B")
    with Session(engine) as s:
        assert changes(Customer, s)[-1].changed_by == stored


@pytest.mark.parametrize("user_id", [True, 1.5, b"alice", ["a"], object()])
def test_other_user_id_types_are_refused_by_audit_context(user_id) -> None:
    with pytest.raises(TypeError, match=f"must be a str, int or uuid.UUID .*got {type(user_id).__name__}"):
        with audit_context(user_id=user_id):
            pass


def test_a_callback_returning_another_type_fails_the_write(engine, models) -> None:
    _, Customer = models
    register_hooks()
    before = _log_count(engine)
    set_config(SQLAuditConfig(get_user_id_callback=lambda: 4.5))
    try:
        with pytest.raises(TypeError, match="get_user_id_callback returned float"):
            _customer_writes(engine, Customer, "B")
    finally:
        clear_config()
    assert _log_count(engine) == before


@pytest.mark.parametrize("field", ["user_id", "reason"])
def test_a_nul_byte_is_refused_before_reaching_the_database(field) -> None:
    kwargs = {"user_id": "a", field: "a\x00b"}
    with pytest.raises(ValueError, match=f"{field} contains a NUL character"):
        with audit_context(**kwargs):
            pass


def test_an_empty_user_id_means_no_user(engine, models) -> None:
    _, Customer = models
    register_hooks()
    with audit_context(user_id=""):
        _customer_writes(engine, Customer, "B")
    with Session(engine) as s:
        assert changes(Customer, s)[-1].changed_by is None


def test_a_user_id_of_one_megabyte_is_recorded_exactly_and_found(engine, models) -> None:
    _, Customer = models
    register_hooks()
    big = "u" * (1024 * 1024 - 1) + "z"
    with audit_context(user_id=big):
        _customer_writes(engine, Customer, "B")
    with audit_context(user_id=big[:-1] + "y"):  # same prefix, another user
        _customer_writes(engine, Customer, "C")
    with Session(engine) as s:
        found = changes(Customer, s, filter_user_ids=big)
    assert [(r.new_value, r.changed_by == big) for r in found] == [("B", True)]


def test_a_user_id_over_one_megabyte_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 1 MiB"):
        with audit_context(user_id="u" * (1024 * 1024 + 1)):
            pass


def test_drop_audit_log_also_removes_the_seals(engine, Base) -> None:
    from sqlalchemy import inspect as sa_inspect

    from sqlaudit.integrity import seal_audit_log

    Note = _note_model(Base, "notes")
    Base.metadata.create_all(engine)
    _write(engine, "notes", "x")
    seal_audit_log(engine)
    Base.metadata.drop_all(engine)  # keeps both history tables
    with engine.connect() as conn:
        assert {"sqlaudit_log", "sqlaudit_seal"} <= set(sa_inspect(conn).get_table_names())
    drop_audit_log(engine)
    with engine.connect() as conn:
        assert not {"sqlaudit_log", "sqlaudit_seal"} & set(sa_inspect(conn).get_table_names())


# -- 4. never the wrong user -----------------------------------------------------------------


def _note_authors(engine, Note) -> list:
    with Session(engine) as s:
        return [(r.new_value, r.changed_by) for r in changes(Note, s)]


@pytest.fixture
def pooled_note(make_engine, Base):
    """One pooled connection (so any leak would reach the next user of it) and a Note model."""
    engine = make_engine(pool_size=1, max_overflow=0)
    Note = _note_model(Base, "notes")
    Base.metadata.create_all(engine)
    register_hooks()
    return engine, Note


def test_a_raw_commit_ends_the_user_and_the_next_transaction_is_stamped_again(pooled_note) -> None:
    engine, Note = pooled_note
    with engine.connect() as conn:
        with audit_context(user_id="A"):
            conn.execute(text("INSERT INTO notes (body) VALUES ('a')"))
            conn.exec_driver_sql("COMMIT")
            conn.execute(text("INSERT INTO notes (body) VALUES ('a again')"))
        conn.commit()
    assert _note_authors(engine, Note) == [("a", "A"), ("a again", "A")]


def test_a_raw_commit_leaves_no_user_for_a_later_autocommit_write(pooled_note) -> None:
    engine, Note = pooled_note
    with engine.connect() as conn, audit_context(user_id="A"):
        conn.execute(text("INSERT INTO notes (body) VALUES ('a')"))
        conn.exec_driver_sql("COMMIT")
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("INSERT INTO notes (body) VALUES ('nobody')"))
    assert _note_authors(engine, Note) == [("a", "A"), ("nobody", None)]


def test_a_raw_rollback_to_savepoint_after_a_user_switch_restamps_the_current_user(
        pooled_note) -> None:
    engine, Note = pooled_note
    with engine.connect() as conn:
        with audit_context(user_id="A"):
            conn.execute(text("INSERT INTO notes (body) VALUES ('a')"))
            conn.exec_driver_sql("SAVEPOINT sp")
            with audit_context(user_id="B"):
                conn.execute(text("INSERT INTO notes (body) VALUES ('b, undone')"))
                conn.exec_driver_sql("ROLLBACK TO SAVEPOINT sp")
                conn.execute(text("INSERT INTO notes (body) VALUES ('b')"))
            conn.execute(text("INSERT INTO notes (body) VALUES ('a again')"))
        conn.commit()
    assert _note_authors(engine, Note) == [("a", "A"), ("b", "B"), ("a again", "A")]


def test_no_user_survives_a_rolled_back_savepoint_into_later_autocommit_writes(
        pooled_note) -> None:
    engine, Note = pooled_note
    with Session(engine) as s:
        with audit_context(user_id="A"):
            s.execute(text("INSERT INTO notes (body) VALUES ('a')"))
            savepoint = s.begin_nested()
            with audit_context(user_id="B"):
                s.execute(text("INSERT INTO notes (body) VALUES ('b, undone')"))
            savepoint.rollback()
        s.commit()
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("INSERT INTO notes (body) VALUES ('nobody')"))
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("INSERT INTO notes (body) VALUES ('raw, nobody')")
        raw.commit()
    finally:
        raw.close()
    assert _note_authors(engine, Note) == [("a", "A"), ("nobody", None), ("raw, nobody", None)]


def _stamping_fails_for(user_id: str, engine, monkeypatch) -> None:
    """Fault injection: stamping ``user_id`` into a transaction raises (the database stays real)."""
    from sqlaudit import hooks

    name = {"postgresql": "_stamp_postgresql", "sqlite": "_stamp_sqlite",
            "mysql": "_stamp_mysql", "mariadb": "_stamp_mysql"}[engine.dialect.name]
    real = getattr(hooks, name)

    def failing(cursor, dialect, actor, conn):
        if actor.user_id == user_id:
            raise RuntimeError("the stamp could not be written")
        return real(cursor, dialect, actor, conn)

    monkeypatch.setattr(hooks, name, failing)


def test_a_failed_user_switch_never_leaves_the_previous_user(pooled_note, monkeypatch) -> None:
    """If stamping a new user fails mid-transaction, the old user is cleared: the next
    write is recorded without a user (or refused when fail-closed), never as the old one."""
    engine, Note = pooled_note
    _stamping_fails_for("B", engine, monkeypatch)
    with engine.connect() as conn:
        with audit_context(user_id="A"):
            conn.execute(text("INSERT INTO notes (body) VALUES ('a')"))
            with audit_context(user_id="B"):
                conn.execute(text("INSERT INTO notes (body) VALUES ('b?')"))
        conn.commit()
    assert _note_authors(engine, Note) == [("a", "A"), ("b?", None)]


# -- 8. every library statement names the log by schema ---------------------------------------

from datetime import datetime as _dt  # noqa: E402

from sqlaudit.ddl import audit_status, prune_audit_log  # noqa: E402


def _fake_temp_log(conn) -> None:
    """A TEMP sqlaudit_log in the reader's session, holding a forged record."""
    conn.execute(text("CREATE TEMP TABLE sqlaudit_log AS SELECT * FROM sqlaudit_log WHERE false"))
    conn.execute(text(
        "INSERT INTO temp.sqlaudit_log (id, table_name, resource_id, operation, changed_at, "
        "changed_by, new_data) VALUES (999, 'customers', '1', 'insert', CURRENT_TIMESTAMP, "
        "'forger', '{\"name\": \"forged\"}')" if conn.dialect.name == "sqlite" else
        "INSERT INTO pg_temp.sqlaudit_log (id, table_name, resource_id, operation, changed_at, "
        "changed_by, new_data) VALUES (999, 'customers', '1', 'insert', now(), 'forger', "
        "'{\"name\": \"forged\"}')"))


# Not on MariaDB: a TEMPORARY table shadows the log whatever the name says, a documented
# hole there (test_mariadb.py::test_a_temporary_table_named_sqlaudit_log_captures_...).
on_postgresql_and_sqlite = pytest.mark.parametrize("dialect", ["sqlite", "postgresql"], indirect=True)


@on_postgresql_and_sqlite
def test_a_temp_table_named_sqlaudit_log_does_not_replace_the_history_shown(engine, models) -> None:
    _, Customer = models
    with Session(engine) as s:
        _fake_temp_log(s.connection())
        records = changes(Customer, s)
    assert [(r.new_value, r.changed_by) for r in records if r.field_name == "name"] == [("Ann", None)]


@on_postgresql_and_sqlite
def test_prune_never_touches_a_temp_table_named_sqlaudit_log(engine, models) -> None:
    with engine.begin() as conn:
        _fake_temp_log(conn)
        removed = prune_audit_log(conn, _dt(2999, 1, 1, tzinfo=timezone.utc))
        temp_rows = conn.execute(text("SELECT count(*) FROM sqlaudit_log")).scalar()
        conn.execute(text("DROP TABLE sqlaudit_log"))  # the TEMP one: the pool keeps the session
    with engine.connect() as conn:
        left = conn.execute(text("SELECT operation, table_name FROM sqlaudit_log")).all()
    assert (removed, temp_rows, left) == (1, 1, [])  # the real record went; the temp one stayed


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_audit_status_reads_the_catalog_not_a_temp_table_shadowing_it(engine, models) -> None:
    _, Customer = models
    with engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE pg_trigger (tgname name)"))
        assert audit_status(conn, Customer) == {"customers": "current"}


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_prune_puts_the_guard_back_on_the_real_log_even_with_a_temp_shadow(engine, models) -> None:
    with engine.begin() as conn:
        _fake_temp_log(conn)
        prune_audit_log(conn, _dt(2000, 1, 1, tzinfo=timezone.utc))
        conn.execute(text("DROP TABLE temp.sqlaudit_log"))
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM main.sqlaudit_log"))


# -- 9. fail-closed is a property of what is installed --------------------------------------

from sqlaudit.ddl import install_audit_triggers  # noqa: E402


def _strict_and_lax(Base):
    @track_table(tracked_fields=["body"], require_user_id=True)
    class Strict(Base):
        __tablename__ = "strict_notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str]

    @track_table(tracked_fields=["body"])
    class Lax(Base):
        __tablename__ = "lax_notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str]

    return Strict, Lax


def test_fail_closed_is_declared_per_table(engine, Base) -> None:
    _strict_and_lax(Base)
    Base.metadata.create_all(engine)
    with pytest.raises(DBAPIError, match="needs an acting user"):
        _write(engine, "strict_notes", "no user")
    _write(engine, "lax_notes", "no user")  # fail-open: recorded without a user
    register_hooks()
    with audit_context(user_id="u"):
        _write(engine, "strict_notes", "with a user")
    assert _log_count(engine) == 2


def test_fail_closed_survives_a_prune_from_a_process_with_another_config(engine, Base) -> None:
    Strict, Lax = _strict_and_lax(Base)
    Base.metadata.create_all(engine)
    set_config(SQLAuditConfig(require_user_id=False))
    prune_audit_log(engine, _dt(2000, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(DBAPIError, match="needs an acting user"):
        _write(engine, "strict_notes", "no user")
    assert audit_status(engine, Strict, Lax) == {"strict_notes": "current", "lax_notes": "current"}


def test_install_can_override_fail_closed_and_status_shows_the_difference(engine, Base) -> None:
    Strict, Lax = _strict_and_lax(Base)
    Base.metadata.create_all(engine)
    install_audit_triggers(engine, Lax, require_user_id=True)
    with pytest.raises(DBAPIError, match="needs an acting user"):
        _write(engine, "lax_notes", "no user")
    assert audit_status(engine, Lax) == {"lax_notes": "outdated"}  # the model says fail-open


def test_the_global_config_is_only_the_default_at_install_time(engine, Base) -> None:
    set_config(SQLAuditConfig(require_user_id=True))
    Strict, Lax = _strict_and_lax(Base)
    Base.metadata.create_all(engine)
    clear_config()
    with pytest.raises(DBAPIError, match="needs an acting user"):
        _write(engine, "lax_notes", "no user")
    set_config(SQLAuditConfig(require_user_id=True))
    assert audit_status(engine, Strict, Lax) == {"strict_notes": "current", "lax_notes": "current"}


def test_require_user_id_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="require_user_id must be True, False or None"):
        track_table(require_user_id="yes")  # type: ignore[arg-type]


def test_the_alembic_operation_installs_fail_closed_on_request(engine, Base) -> None:
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    import sqlaudit.alembic  # noqa: F401

    _note_model(Base, "notes")
    with engine.begin() as conn:
        Base.metadata.tables["notes"].create(conn)
        op = Operations(MigrationContext.configure(conn))
        op.create_audit_triggers("notes", ["body"], require_user_id=True)
    with pytest.raises(DBAPIError, match="needs an acting user"):
        _write(engine, "notes", "no user")


# -- 10. unsafe models refused up front -----------------------------------------------------

from sqlalchemy import Index, String, UniqueConstraint  # noqa: E402

from sqlaudit.exceptions import SQLAuditUnsafeKeyError  # noqa: E402


def _keyed_model(Base, unique: str):
    args = {"constraint": (UniqueConstraint("code"),), "index": (Index("ix_code", "code", unique=True),),
            "none": ()}[unique]

    @track_table(tracked_fields=["body"], resource_id_field="code")
    class Item(Base):
        __tablename__ = "items"
        __table_args__ = args
        id: Mapped[int] = mapped_column(primary_key=True)
        code: Mapped[str] = mapped_column(String(20))
        body: Mapped[str]

    return Item


def test_a_resource_id_field_that_is_not_unique_is_refused_at_install(engine, Base) -> None:
    _keyed_model(Base, "none")
    with pytest.raises(SQLAuditUnsafeKeyError,
                       match="resource_id_field 'code' of table 'items' is not unique"):
        Base.metadata.create_all(engine)
    assert issubclass(SQLAuditUnsafeKeyError, ValueError)


@pytest.mark.parametrize("unique", ["constraint", "index"])
def test_a_unique_resource_id_field_is_accepted(engine, Base, unique) -> None:
    Item = _keyed_model(Base, unique)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO items (code, body) VALUES ('a', 'x'), ('b', 'y'), ('c', 'z')"))
        concat = "CONCAT(body, '!')" if engine.dialect.name in ("mysql", "mariadb") else "body || '!'"
        conn.execute(text(f"UPDATE items SET body = {concat}"))
    with Session(engine) as s:
        assert len([r for r in changes(Item, s) if r.operation == "update"]) == 3


def test_install_on_an_existing_table_checks_the_database_for_a_unique_key(engine, Base) -> None:
    """A key made unique in the database only (not in the model) is found by reflection."""
    Item = _keyed_model(Base, "none")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, code VARCHAR(20), body TEXT)"))
        conn.execute(text("CREATE UNIQUE INDEX ix_items_code ON items (code)"))
    install_audit_triggers(engine, Item)
    assert audit_status(engine, Item) == {"items": "current"}


def _wide_model(Base, width: int):
    from sqlalchemy import Column

    attrs: dict = {"__tablename__": "wide", "id": Column(Integer, primary_key=True)}
    attrs.update({f"c{i}": Column(Integer) for i in range(width)})
    return track_table()(type("Wide", (Base,), attrs))


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_a_table_of_nearly_2000_columns_is_audited_on_sqlite(engine, Base) -> None:
    """SQLite allows 2000 columns; the triggers' expressions are balanced trees, so
    they stay within SQLite's depth limits at any width."""
    Wide = _wide_model(Base, 1990)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO wide (id, c0, c1989) VALUES (1, 1, 1)"))
        conn.execute(text("UPDATE wide SET c1989 = 2"))
    with Session(engine) as s:
        last = changes(Wide, s)[-1]
    assert (last.operation, last.field_name, last.old_value, last.new_value) == ("update", "c1989", 1, 2)


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_triggers_sqlite_refuses_are_never_half_installed(engine, Base) -> None:
    import sqlite3 as sqlite3_module

    Wide = _wide_model(Base, 300)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE wide (id INTEGER PRIMARY KEY, "
                          + ", ".join(f"c{i} INTEGER" for i in range(300)) + ")"))
    with engine.connect() as conn:
        conn.connection.dbapi_connection.setlimit(sqlite3_module.SQLITE_LIMIT_EXPR_DEPTH, 8)
        with pytest.raises(SQLAuditError, match="SQLite refused the audit triggers of table 'wide' "
                                                 r"\(301 tracked columns\).*nothing was installed"):
            install_audit_triggers(conn, Wide)
        conn.commit()
        names = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                  "AND tbl_name = 'wide'")).scalars().all()
    assert names == []


# -- 12. truncate records are returned; foreign bytes never break SQLite retrieval ------------

from sqlaudit.retrieval import get_resource_changes  # noqa: E402

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
@pytest.mark.parametrize("per_field", [False, True])
def test_truncate_is_returned_for_the_truncated_model(engine, models, per_field) -> None:
    """One record per TRUNCATE: operation 'truncate', no resource, no field. (SQLite has no
    TRUNCATE: its `DELETE FROM t` is recorded row by row.) ``per_field`` takes the
    query that pages in SQL."""
    _, Customer = models
    register_hooks()
    with engine.begin() as conn, audit_context(user_id="ops"):
        conn.execute(text("TRUNCATE customers"))
    extra = {"limit": 10} if per_field else {}
    with Session(engine) as s:
        records = get_resource_changes(Customer, session=s, sort_direction="asc", **extra)
        by_user = get_resource_changes(Customer, session=s, filter_user_ids="ops", **extra)
        by_id = get_resource_changes(Customer, session=s, filter_resource_ids=1, **extra)
    last = records[-1]
    assert (last.operation, last.resource_id, last.field_name, last.old_value, last.new_value,
            last.changed_by) == ("truncate", None, None, None, None, "ops")
    assert [r.operation for r in by_user] == ["truncate"]
    assert "truncate" not in [r.operation for r in by_id]


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_text_that_is_not_utf8_never_breaks_sqlite_retrieval(engine, models) -> None:
    """Another program may store bytes that are not UTF-8 as TEXT; they come back with
    U+FFFD in place of each invalid byte instead of failing the read."""
    _, Customer = models
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET name = CAST(x'41c328ff42' AS TEXT)"))
    with Session(engine) as s:
        last = changes(Customer, s)[-1]
    assert (last.field_name, last.old_value, last.new_value) == ("name", "Ann", "A\ufffd(\ufffdB")


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_rendered_fail_closed_ddl_runs_verbatim_through_the_driver(engine, Base) -> None:
    """No percent-sign placeholders in the generated SQL: it runs as is through
    drivers that treat % as one, and the check it installs refuses userless writes."""
    from sqlaudit.ddl import render_audit_ddl

    Strict, _ = _strict_and_lax(Base)
    with engine.begin() as conn:
        Base.metadata.tables["sqlaudit_log"].create(conn)
        conn.execute(text("CREATE TABLE strict_notes (id serial PRIMARY KEY, body text)"))
        for sql in render_audit_ddl(Strict, "postgresql", audit_schema=engine.info_schema):
            conn.exec_driver_sql(sql)
    with pytest.raises(DBAPIError, match="INSERT on .*strict_notes needs an acting user"):
        _write(engine, "strict_notes", "no user")


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_every_output_setting_is_pinned_on_the_trigger_functions(engine, models) -> None:
    """The settings without a behaviour test here (lc_monetary needs a second locale
    on the server; xmlbinary and xmloption) are pinned like the tested ones."""
    with engine.connect() as conn:
        config = conn.execute(text(
            "SELECT proconfig FROM pg_proc WHERE proname = 'sqlaudit_fn_customers'")).scalar()
    assert {item.split("=", 1)[0].lower() for item in config} >= {
        "search_path", "extra_float_digits", "datestyle", "intervalstyle", "timezone",
        "bytea_output", "lc_monetary", "xmlbinary", "xmloption", "jit"}


def test_a_failed_user_switch_on_a_fail_closed_table_refuses_the_write(
        make_engine, Base, monkeypatch) -> None:
    """Fail-closed: with the previous user cleared, the write has no user and is refused,
    never credited to the previous one."""
    engine = make_engine(pool_size=1, max_overflow=0)
    _strict_and_lax(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    _stamping_fails_for("B", engine, monkeypatch)
    with pytest.raises(DBAPIError, match="needs an acting user"):
        with engine.connect() as conn:
            with audit_context(user_id="A"):
                conn.execute(text("INSERT INTO strict_notes (body) VALUES ('a')"))
                with audit_context(user_id="B"):
                    conn.execute(text("INSERT INTO strict_notes (body) VALUES ('b?')"))
            conn.commit()


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_search_path_naming_pg_temp_first_does_not_redirect_readers(engine, models) -> None:
    """current_schema() would be pg_temp_N here; the log is read from the first real schema."""
    _, Customer = models
    with Session(engine) as s:
        _fake_temp_log(s.connection())
        s.execute(text(f'SET search_path = pg_temp, "{engine.info_schema}"'))
        records = changes(Customer, s)
    assert [(r.new_value, r.changed_by) for r in records if r.field_name == "name"] == [("Ann", None)]


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_a_temp_table_in_the_writers_session_never_captures_its_audit_rows(engine, models) -> None:
    """The TEMP stamp trigger cannot name main in its INSERT (SQLite forbids it), so with a
    TEMP sqlaudit_log in the writing connection it stands aside: the change reaches the
    real log, without a user, instead of disappearing into the TEMP table."""
    _, Customer = models
    register_hooks()
    with engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE sqlaudit_log AS SELECT * FROM main.sqlaudit_log WHERE 0"))
        with audit_context(user_id="w"):
            conn.execute(text("UPDATE customers SET name = 'not captured'"))
        captured = conn.execute(text("SELECT count(*) FROM temp.sqlaudit_log")).scalar()
        conn.execute(text("DROP TABLE temp.sqlaudit_log"))
    with Session(engine) as s:
        last = changes(Customer, s)[-1]
    assert (captured, last.new_value, last.changed_by) == (0, "not captured", None)
