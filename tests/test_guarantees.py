"""Guarantees: append-only history, pruning, fail-closed mode, least privilege."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from sqlaudit import audit_context, register_hooks
from sqlaudit.config import SQLAuditConfig, set_config
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit.ddl import grant_audit_read, prune_audit_log
from sqlaudit.decorators import track_table
from sqlaudit.exceptions import SQLAuditTableNotTrackedError, SQLAuditUnsupportedDialectError

from conftest import changes
from sample_models import readme_models

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True


@pytest.fixture
def models(engine, readme_db):
    """The README models with one customer, Ann, recorded."""
    User, Customer = readme_db
    with Session(engine) as s:
        s.add(Customer(name="Ann", user_id=1))
        s.commit()
    return User, Customer


@pytest.mark.parametrize(
    "statement",
    ["UPDATE sqlaudit_log SET changed_by = 'forged'", "DELETE FROM sqlaudit_log"],
)
def test_audit_records_cannot_be_edited_or_deleted(engine, models, statement) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*), count(changed_by) FROM sqlaudit_log")).one()
    assert tuple(rows) == (1, 0)


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_truncating_the_audit_table_is_refused_even_for_a_superuser(engine, models) -> None:
    with engine.connect() as conn:
        assert conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar()
    with pytest.raises(DBAPIError, match="TRUNCATE on .*sqlaudit_log is refused"):
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE sqlaudit_log"))


def test_prune_removes_only_records_older_than_the_bound(engine, models) -> None:
    _, Customer = models
    with Session(engine) as s:
        bound = max(r.timestamp for r in changes(Customer, s)) + timedelta(microseconds=1)
    with Session(engine) as s:
        s.add(Customer(name="Bob", user_id=1))
        s.commit()
    assert prune_audit_log(engine, bound) == 1
    with Session(engine) as s:
        assert [r.new_value for r in changes(Customer, s, filter_fields="name")] == ["Bob"]
    with pytest.raises(DBAPIError, match="append-only"):  # the guard is back
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM sqlaudit_log"))


def test_prune_can_be_limited_to_some_models(engine, Base, models) -> None:
    _, Customer = models

    @track_table(tracked_fields=["body"])
    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str]

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Note(body="keep me"))
        s.commit()
    later = datetime.now(timezone.utc) + timedelta(days=1)
    assert prune_audit_log(engine, later, models=[Customer]) == 1
    with Session(engine) as s:
        assert changes(Customer, s) == []
        assert [r.new_value for r in changes(Note, s)] == ["keep me"]


def test_prune_names_an_untracked_model(engine, models) -> None:
    User, _ = models
    with pytest.raises(SQLAuditTableNotTrackedError, match="User is not tracked"):
        prune_audit_log(engine, datetime.now(timezone.utc), models=[User])


def test_prune_rejects_a_non_datetime(engine, models) -> None:
    with pytest.raises(TypeError, match="older_than must be a datetime"):
        prune_audit_log(engine, "2020-01-01")  # type: ignore[arg-type]


@pytest.fixture
def fail_closed(engine, Base):
    set_config(SQLAuditConfig(require_user_id=True))
    User, Customer = readme_models(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s:
        s.add(User(user_id=1))
        s.commit()
    return Customer


def test_fail_closed_refuses_an_orm_write_without_a_user(engine, fail_closed) -> None:
    with Session(engine) as s:
        s.add(fail_closed(name="nobody", user_id=1))
        with pytest.raises(DBAPIError, match="needs an acting user"):
            s.commit()


def test_fail_closed_refuses_raw_sql_without_a_user(engine, fail_closed) -> None:
    with pytest.raises(DBAPIError, match="needs an acting user"):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO customers (name, user_id) VALUES ('raw', 1)"))


def test_fail_closed_accepts_writes_with_a_user(engine, fail_closed) -> None:
    with Session(engine) as s, audit_context(user_id=3):
        s.execute(insert(fail_closed), [{"name": "a", "user_id": 1}])
        s.execute(text("UPDATE customers SET name = 'b'"))
        s.commit()
    with Session(engine) as s:
        assert {r.changed_by for r in changes(fail_closed, s)} == {"3"}


def test_fail_closed_refuses_foreign_connections_without_a_user(engine, fail_closed) -> None:
    sql = "INSERT INTO customers (name, user_id) VALUES ('shell', 1)"
    if engine.dialect.name == "sqlite":
        conn = sqlite3.connect(engine.url.database)
        with pytest.raises(sqlite3.DatabaseError, match="needs an acting user"):
            conn.execute(sql)
        conn.close()
    elif engine.dialect.name in ("mysql", "mariadb"):
        import pymysql

        url = engine.url
        conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                               password=url.password or "", database=url.database)
        try:
            with conn.cursor() as cursor:
                with pytest.raises(pymysql.Error, match="needs an acting user"):
                    cursor.execute(sql)
                cursor.execute("SET @sqlaudit_user_id = 'psql-user'")
                cursor.execute(sql)  # a foreign MariaDB connection can name its user
            conn.commit()
        finally:
            conn.close()
    else:
        import psycopg

        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, options=f"-csearch_path={engine.info_schema}") as conn:
            with pytest.raises(psycopg.Error, match="needs an acting user"):
                conn.execute(sql)
            conn.rollback()
            conn.execute("SET LOCAL sqlaudit.user_id = 'psql-user'")
            conn.execute(sql)  # a foreign PostgreSQL connection can name its user
    with Session(engine) as s:
        assert [r.changed_by for r in changes(fail_closed, s)] == (
            [] if engine.dialect.name == "sqlite" else ["psql-user", "psql-user"]
        )


def test_fail_open_is_the_default(engine, models) -> None:
    _, Customer = models
    with Session(engine) as s:
        assert {r.changed_by for r in changes(Customer, s)} == {None}


@pytest.fixture
def app_role(engine, models):
    """A login role that may only read and write the application's own tables."""
    name = f"sqlaudit_app_{uuid.uuid4().hex[:8]}"
    schema = engine.info_schema
    with engine.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{name}" LOGIN'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{name}"'))
        conn.execute(text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON users, customers TO "{name}"'))
        conn.execute(text(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{name}"'))
    url = engine.url.set(username=name)
    app = create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    yield name, app
    app.dispose()
    with engine.begin() as conn:
        conn.execute(text(f'DROP OWNED BY "{name}"'))
        conn.execute(text(f'DROP ROLE "{name}"'))


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_least_privilege_role_is_audited(engine, models, app_role) -> None:
    name, app = app_role
    _, Customer = models
    register_hooks()
    with Session(app) as s, audit_context(user_id="app-user"):
        s.execute(text("UPDATE customers SET name = 'Ann B'"))
        s.commit()
    with Session(engine) as s:
        last = changes(Customer, s)[-1]
    assert (last.operation, last.new_value, last.changed_by, last.db_role) == (
        "update", "Ann B", "app-user", name,
    )


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO sqlaudit_log (table_name, operation, changed_at) VALUES ('customers', 'insert', now())",
        "UPDATE sqlaudit_log SET changed_by = 'forged'",
        "DELETE FROM sqlaudit_log",
        "SELECT * FROM sqlaudit_log",
    ],
)
def test_a_least_privilege_role_cannot_touch_the_audit_table(engine, models, app_role, statement) -> None:
    _, app = app_role
    with pytest.raises(DBAPIError, match="permission denied"):
        with app.begin() as conn:
            conn.execute(text(statement))


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_grant_audit_read_lets_a_role_read_history_only(engine, models, app_role) -> None:
    name, app = app_role
    _, Customer = models
    grant_audit_read(engine, name)
    with Session(app) as s:
        assert [r.new_value for r in changes(Customer, s, filter_fields="name")] == ["Ann"]
    with pytest.raises(DBAPIError, match="permission denied"):
        with app.begin() as conn:
            conn.execute(text("INSERT INTO sqlaudit_log (table_name, operation, changed_at) "
                              "VALUES ('customers', 'insert', now())"))


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_grant_audit_read_needs_postgresql(engine, models) -> None:
    with pytest.raises(SQLAuditUnsupportedDialectError, match="PostgreSQL roles"):
        grant_audit_read(engine, "reader")


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_trigger_functions_cannot_be_redirected_through_search_path(engine, models, app_role) -> None:
    """A role that controls a schema early in its search_path cannot capture audit rows."""
    name, app = app_role
    _, Customer = models
    trap = f"trap_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{trap}" AUTHORIZATION "{name}"'))
    try:
        with app.begin() as conn:
            conn.execute(text(f'CREATE TABLE "{trap}".sqlaudit_log (LIKE pg_catalog.pg_class)'))
            conn.execute(text(f'SET LOCAL search_path = "{trap}", "{engine.info_schema}"'))
            conn.execute(text("UPDATE customers SET name = 'via trap'"))
        with Session(engine) as s:
            assert changes(Customer, s)[-1].new_value == "via trap"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{trap}" CASCADE'))


def test_installing_on_a_missing_table_says_so(engine, Base) -> None:
    from sqlaudit.ddl import install_audit_triggers
    from sqlaudit.exceptions import SQLAuditError

    _, Customer = readme_models(Base)
    with pytest.raises(SQLAuditError, match="'customers' does not exist in this database"):
        install_audit_triggers(engine, Customer)


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_trigger_statements_are_never_jit_compiled(engine, models) -> None:
    """A session's cached trigger plans are never JIT-compiled, whatever the session's jit settings.

    A plan cached for a big statement otherwise made PostgreSQL JIT-compile it
    again for every later one-row write on the same pooled connection.
    auto_explain reports the plans of the statements run inside the trigger.
    """
    notices: list[str] = []
    with engine.connect() as conn:
        if not conn.execute(text("SELECT pg_jit_available()")).scalar():
            pytest.skip("this PostgreSQL server has no JIT provider (llvmjit) installed")
        conn.connection.driver_connection.add_notice_handler(
            lambda diag: notices.append(diag.message_primary or ""))
        conn.execute(text("LOAD 'auto_explain'"))
        for setting in ("jit = on", "jit_above_cost = 0", "auto_explain.log_min_duration = 0",
                        "auto_explain.log_nested_statements = on", "auto_explain.log_level = notice"):
            conn.execute(text(f"SET {setting}"))
        conn.execute(text("UPDATE customers SET name = name || '!'"))
        conn.commit()
    outer = [n for n in notices if "Update on customers" in n]
    inner = [n for n in notices if "Insert on sqlaudit_log" in n]
    assert outer and "JIT:" in outer[0]  # the application's own statement was JIT-compiled
    assert inner and not any("JIT:" in n for n in inner)
