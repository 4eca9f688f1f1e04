"""Every write path is audited: ORM, Core bulk, text() and foreign connections."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import delete, insert, text, update
from sqlalchemy.orm import Session

from sqlaudit import audit_context, register_hooks
from sqlaudit.config import SQLAuditConfig, set_config

from conftest import changes, summary
from sample_models import readme_models

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True


@pytest.fixture
def models(readme_db):
    return readme_db


def _foreign_execute(engine, statements: list[str]) -> None:
    """Run SQL through a raw DB-API connection that sqlaudit never saw."""
    if engine.dialect.name == "sqlite":
        conn = sqlite3.connect(engine.url.database)
        try:
            for sql in statements:
                conn.execute(sql)
            conn.commit()
        finally:
            conn.close()
    elif engine.dialect.name in ("mysql", "mariadb"):
        import pymysql

        url = engine.url
        conn = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                               password=url.password or "", database=url.database,
                               charset="utf8mb4")
        try:
            with conn.cursor() as cursor:
                for sql in statements:
                    cursor.execute(sql)
            conn.commit()
        finally:
            conn.close()
    else:
        import psycopg

        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, options=f"-csearch_path={engine.info_schema}") as conn:
            for sql in statements:
                conn.execute(sql)


def test_orm_insert_update_delete(engine, models) -> None:
    _, Customer = models
    register_hooks()
    with Session(engine) as s, audit_context(user_id=5):
        c = Customer(name="Ann", email="ann@example.com", user_id=1)
        s.add(c)
        s.commit()
        c.email = "ann@example.org"
        s.commit()
        s.delete(c)
        s.commit()
    with Session(engine) as s:
        assert summary(changes(Customer, s)) == [
            ("insert", "1", "email", None, "ann@example.com", "5"),
            ("insert", "1", "name", None, "Ann", "5"),
            ("insert", "1", "user_id", None, 1, "5"),
            ("update", "1", "email", "ann@example.com", "ann@example.org", "5"),
            ("delete", "1", "email", "ann@example.org", None, "5"),
            ("delete", "1", "name", "Ann", None, "5"),
            ("delete", "1", "user_id", 1, None, "5"),
        ]


def test_core_bulk_update_records_one_change_per_row(engine, models) -> None:
    _, Customer = models
    with Session(engine) as s:
        s.execute(insert(Customer), [{"name": f"c{i}", "user_id": 1} for i in range(5)])
        s.commit()
        s.execute(update(Customer).values(email="bulk@example.com"))
        s.commit()
        updates = [r for r in changes(Customer, s) if r.operation == "update"]
    assert sorted(r.resource_id for r in updates) == ["1", "2", "3", "4", "5"]
    assert {(r.field_name, r.old_value, r.new_value) for r in updates} == {
        ("email", None, "bulk@example.com")
    }


def test_core_bulk_delete_records_every_row(engine, models) -> None:
    _, Customer = models
    with Session(engine) as s:
        s.execute(insert(Customer), [{"name": f"c{i}", "user_id": 1} for i in range(3)])
        s.execute(delete(Customer).where(Customer.name != "c1"))
        s.commit()
        deletes = [r for r in changes(Customer, s) if r.operation == "delete"]
    assert sorted((r.resource_id, r.field_name, r.old_value) for r in deletes) == [
        ("1", "name", "c0"), ("1", "user_id", 1), ("3", "name", "c2"), ("3", "user_id", 1),
    ]


def test_text_sql_is_audited_with_the_acting_user(engine, models) -> None:
    _, Customer = models
    register_hooks()
    with Session(engine) as s, audit_context(user_id="42"):
        s.execute(text("INSERT INTO customers (name, user_id) VALUES ('Raw', 1)"))
        s.execute(text("UPDATE customers SET name = 'Raw 2' WHERE name = 'Raw'"))
        s.commit()
    with Session(engine) as s:
        assert summary(changes(Customer, s)) == [
            ("insert", "1", "name", None, "Raw", "42"),
            ("insert", "1", "user_id", None, 1, "42"),
            ("update", "1", "name", "Raw", "Raw 2", "42"),
        ]


def test_foreign_connection_writes_are_audited_without_a_user(engine, models) -> None:
    _, Customer = models
    register_hooks()
    set_config(SQLAuditConfig(get_user_id_callback=lambda: 9))
    _foreign_execute(engine, [
        "INSERT INTO customers (name, user_id) VALUES ('Shell', 1)",
        "UPDATE customers SET email = 'x@example.com'",
        "DELETE FROM customers",
    ])
    with Session(engine) as s:
        records = changes(Customer, s)
    assert [(r.operation, r.field_name, r.changed_by) for r in records] == [
        ("insert", "name", None), ("insert", "user_id", None),
        ("update", "email", None),
        ("delete", "email", None), ("delete", "name", None), ("delete", "user_id", None),
    ]


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "stamp", ["SELECT set_config('sqlaudit.user_id', '77', true)", "SET LOCAL sqlaudit.user_id = '77'"]
)
def test_foreign_postgres_connection_names_its_user(engine, models, stamp) -> None:
    _, Customer = models
    _foreign_execute(engine, ["BEGIN", stamp, "INSERT INTO customers (name, user_id) VALUES ('psql', 1)", "COMMIT"])
    _foreign_execute(engine, ["UPDATE customers SET name = 'later'"])  # next transaction: no user
    with Session(engine) as s:
        records = changes(Customer, s)
    assert [(r.operation, r.field_name, r.changed_by) for r in records] == [
        ("insert", "name", "77"), ("insert", "user_id", "77"), ("update", "name", None),
    ]


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_postgres_records_the_database_role(engine, models) -> None:
    _, Customer = models
    with Session(engine) as s:
        s.add(Customer(name="r", user_id=1))
        s.commit()
        role = s.execute(text("SELECT session_user")).scalar()
        (record, _) = changes(Customer, s)
    assert record.db_role == role


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_postgres_truncate_is_recorded_as_a_table_event(engine, models) -> None:
    _, Customer = models
    with Session(engine) as s:
        s.add(Customer(name="t", user_id=1))
        s.commit()
        s.execute(text("TRUNCATE customers"))
        s.commit()
        rows = s.execute(text(
            "SELECT operation, resource_id FROM sqlaudit_log ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("insert", "1"), ("truncate", None)]


def test_untracked_column_change_records_nothing(engine, models) -> None:
    _, Customer = models
    with Session(engine) as s:
        c = Customer(name="n", user_id=1)
        s.add(c)
        s.commit()
        c.notes = "untracked"
        s.commit()
        s.execute(text("UPDATE customers SET name = name"))  # SET x = x
        s.commit()
        assert [r.operation for r in changes(Customer, s)] == ["insert", "insert"]


def test_update_that_changes_the_key_is_recorded_per_key(engine, models) -> None:
    _, Customer = models
    with Session(engine) as s:
        s.execute(insert(Customer), [{"customer_id": i, "name": f"c{i}", "user_id": 1} for i in (1, 2)])
        s.commit()
        s.execute(text("UPDATE customers SET customer_id = customer_id + 10, name = 'moved' WHERE customer_id = 2"))
        s.execute(text("UPDATE customers SET name = 'stayed' WHERE customer_id = 1"))
        s.commit()
        later = [r for r in changes(Customer, s) if r.resource_id != "1" or r.operation != "insert"]
    assert summary(later) == [
        ("insert", "2", "name", None, "c2", None),
        ("insert", "2", "user_id", None, 1, None),
        ("delete", "2", "name", "c2", None, None),
        ("delete", "2", "user_id", 1, None, None),
        ("insert", "12", "name", None, "moved", None),
        ("insert", "12", "user_id", None, 1, None),
        ("update", "1", "name", "c1", "stayed", None),
    ]


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_sqlite_triggers_are_compiled_at_install(engine, models) -> None:
    from sqlaudit.ddl import _validate_installed
    from sqlaudit.exceptions import SQLAuditError

    _, Customer = models
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER sqlaudit_customers_update")
        conn.exec_driver_sql(
            "CREATE TRIGGER sqlaudit_customers_update AFTER UPDATE ON customers "
            "BEGIN INSERT INTO sqlaudit_log (no_such_column) VALUES (1); END"
        )
    with engine.connect() as conn, pytest.raises(SQLAuditError, match="do not compile.*no_such_column"):
        _validate_installed(conn, Customer.__table__)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM sqlaudit_log").scalar() == 0


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_stamping_keeps_the_connections_isolation_level(make_engine, Base, caplog) -> None:
    engine = make_engine(isolation_level="SERIALIZABLE")
    User, Customer = readme_models(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="iso"):
        s.add(User(user_id=1))
        s.flush()
        assert s.execute(text("SHOW transaction_isolation")).scalar() == "serializable"
        s.add(Customer(name="n", user_id=1))
        s.commit()
    with Session(engine) as s:
        assert {r.changed_by for r in changes(Customer, s)} == {"iso"}
    assert "could not record the acting user" not in caplog.text
