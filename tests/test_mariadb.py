"""MariaDB (and MySQL), the third dialect: what is specific to it.

Modules of the rest of the suite that pass on MariaDB set ``MARIADB_PORTED = True``
and run there as a third dialect; this module holds what only MariaDB has (its
write statements, session user variables, its holes). It runs on MariaDB only,
from ``SQLAUDIT_TEST_MARIADB_URL`` (see tests/conftest.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Optional

import pytest
from sqlalchemy import Integer, Numeric, String, create_engine, event, insert, inspect, text, update
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sqlaudit import (AuditState, audit_context, audit_status, drop_audit_triggers,
                      get_resource_changes, install_audit_triggers, register_hooks,
                      render_audit_ddl, track_table, unregister_hooks)
from sqlaudit.config import SQLAuditConfig, set_config

pytestmark = pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)


def test_each_test_gets_a_fresh_empty_database(engine) -> None:
    with engine.connect() as conn:
        database = conn.execute(text("SELECT DATABASE()")).scalar()
        charset = conn.execute(text(
            "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_NAME = DATABASE()")).scalar()
    assert database == engine.info_schema and database.startswith("sqlaudit_t_")
    assert charset == "utf8mb4"
    assert inspect(engine).get_table_names() == []


# ------------------------------------------------------------------ the log table


def test_log_and_seal_tables_create_with_innodb_utf8mb4_and_microseconds(engine) -> None:
    from datetime import datetime

    from sqlalchemy import MetaData, insert, select

    from sqlaudit.schema import audit_table, seal_table

    metadata = MetaData()
    log, seal = audit_table(metadata), seal_table(metadata)
    metadata.create_all(engine)

    with engine.connect() as conn:
        tables = dict(conn.execute(text(
            "SELECT TABLE_NAME, CONCAT(ENGINE, ' ', TABLE_COLLATION) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE()")).all())
        types = dict(conn.execute(text(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'sqlaudit_log'")).all())
        collations = dict(conn.execute(text(
            "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'sqlaudit_log' "
            "AND COLUMN_NAME IN ('table_name', 'resource_id', 'changed_by')")).all())
        indexes = conn.execute(text(
            "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'sqlaudit_log' "
            "ORDER BY INDEX_NAME, SEQ_IN_INDEX")).all()
    assert tables == {"sqlaudit_log": "InnoDB utf8mb4_general_ci",
                      "sqlaudit_seal": "InnoDB utf8mb4_general_ci"}
    assert types["changed_at"] == "datetime(6)"
    assert collations == dict.fromkeys(("table_name", "resource_id", "changed_by"), "utf8mb4_nopad_bin")
    assert [tuple(r) for r in indexes] == [
        ("ix_sqlaudit_log_changed_at", "changed_at", None),
        ("ix_sqlaudit_log_resource", "table_name", None),
        ("ix_sqlaudit_log_resource", "resource_id", 255),
        ("ix_sqlaudit_log_resource", "changed_at", None),
        ("ix_sqlaudit_log_transaction", "transaction_id", None),
        ("ix_sqlaudit_log_user", "changed_by", 200),
        ("ix_sqlaudit_log_user", "changed_at", None),
        ("PRIMARY", "id", None),
    ]

    when = datetime(2024, 5, 6, 7, 8, 9, 123456)
    with engine.begin() as conn:
        conn.execute(insert(log).values(
            table_name="t", resource_id="r\U0001F600", operation="insert", changed_at=when,
            changed_by="\U0001F600" * 300, new_data={"name": "\U0001F600"}))
        conn.execute(insert(seal).values(
            format_version=1, kind="seal", sealed_at=when, row_count=0, columns="[]",
            rows_digest="0" * 64, previous_digest="0" * 64, digest="0" * 64))
    with engine.connect() as conn:
        row = conn.execute(select(log.c.resource_id, log.c.changed_at, log.c.changed_by,
                                  log.c.new_data)).one()
        sealed_at = conn.execute(select(seal.c.sealed_at)).scalar()
    assert tuple(row) == ("r\U0001F600", when, "\U0001F600" * 300, {"name": "\U0001F600"})
    assert sealed_at == when


@pytest.mark.parametrize("drivername", ["mysql+pymysql", "mariadb+pymysql"])
def test_the_log_creates_through_a_mysql_and_a_mariadb_url(engine, drivername) -> None:
    """SQLAlchemy names the dialect "mysql" or "mariadb" after the URL; both read the
    log's InnoDB, utf8mb4 and index prefix options."""
    from sqlalchemy import MetaData

    from sqlaudit.schema import audit_table

    other = create_engine(engine.url.set(drivername=drivername))
    try:
        metadata = MetaData()
        audit_table(metadata)
        metadata.create_all(other)
        with other.connect() as conn:
            assert conn.dialect.name == drivername.split("+")[0]
            options = conn.exec_driver_sql(
                "SELECT CONCAT(ENGINE, ' ', TABLE_COLLATION) FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'sqlaudit_log'").scalar()
            prefix = conn.exec_driver_sql(
                "SELECT SUB_PART FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
                "AND INDEX_NAME = 'ix_sqlaudit_log_resource' AND COLUMN_NAME = 'resource_id'").scalar()
    finally:
        other.dispose()
    assert (options, prefix) == ("InnoDB utf8mb4_general_ci", 255)


# ------------------------------------------------------------------ the triggers


def invoice_model(Base: Any, fields: tuple[str, ...] = ("customer", "amount"), **options: Any) -> type:
    @track_table(tracked_fields=list(fields), **options)
    class Invoice(Base):
        __tablename__ = "invoices"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        customer: Mapped[Optional[str]] = mapped_column(String(50))
        amount: Mapped[Optional[Decimal]] = mapped_column(Numeric(10, 2))
        note: Mapped[Optional[str]] = mapped_column(String(50))

    return Invoice


def log_rows(engine) -> list[tuple[Any, ...]]:
    """(operation, resource_id, changed_by, old_data, new_data) of every audit row, in order."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT operation, resource_id, changed_by, old_data, new_data "
            "FROM sqlaudit_log ORDER BY id")).all()
    return [(op, rid, user, _json(old), _json(new)) for op, rid, user, old, new in rows]


def _json(value: Optional[str]) -> Any:
    return None if value is None else json.loads(value)


def raw(engine, *statements: str) -> None:
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql))


def trigger_names(engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(text(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = DATABASE()")).scalars())


def test_create_all_installs_row_triggers_and_the_append_only_guards(engine, Base) -> None:
    invoice_model(Base)
    Base.metadata.create_all(engine)

    assert trigger_names(engine) == [
        "sqlaudit_invoices_delete", "sqlaudit_invoices_insert", "sqlaudit_invoices_update",
        "sqlaudit_log_no_delete", "sqlaudit_log_no_update"]


def test_raw_sql_writes_are_recorded_one_row_per_changed_row(engine, Base) -> None:
    invoice_model(Base)
    Base.metadata.create_all(engine)

    raw(engine,
        "INSERT INTO invoices (id, customer, amount, note) VALUES (1, 'Acme', 10.50, 'n')",
        "UPDATE invoices SET amount = 12.00 WHERE id = 1",
        "UPDATE invoices SET customer = 'ACME' WHERE id = 1",  # only the case: a change
        "UPDATE invoices SET amount = 12.00, note = 'untracked' WHERE id = 1",  # no tracked change
        "UPDATE invoices SET customer = NULL WHERE id = 1",
        "DELETE FROM invoices WHERE id = 1")

    assert log_rows(engine) == [
        ("insert", "1", None, None, {"customer": "Acme", "amount": "10.50"}),
        ("update", "1", None, {"amount": "10.50"}, {"amount": "12.00"}),
        ("update", "1", None, {"customer": "Acme"}, {"customer": "ACME"}),
        ("update", "1", None, {"customer": "ACME"}, {"customer": None}),
        ("delete", "1", None, {"customer": None, "amount": "12.00"}, None),
    ]


def test_an_update_of_the_key_is_recorded_as_delete_and_insert(engine, Base) -> None:
    invoice_model(Base)
    Base.metadata.create_all(engine)

    raw(engine, "INSERT INTO invoices (id, customer, amount) VALUES (1, 'Acme', 1)",
        "UPDATE invoices SET id = 2")

    assert log_rows(engine)[1:] == [
        ("delete", "1", None, {"customer": "Acme", "amount": "1.00"}, None),
        ("insert", "2", None, None, {"customer": "Acme", "amount": "1.00"}),
    ]


@pytest.mark.parametrize("drivername", ["mysql+pymysql", "mariadb+pymysql"])
def test_audit_status_is_the_same_through_a_mysql_and_a_mariadb_url(engine, Base, drivername) -> None:
    """SQLAlchemy's MariaDB dialect quotes more reserved words (``body``) than its MySQL
    one: the fingerprint does not depend on it, so either URL reports the same state."""

    @track_table(tracked_fields=["body"])
    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        body: Mapped[Optional[str]] = mapped_column(String(50))

    engines = {name: create_engine(engine.url.set(drivername=name))
               for name in ("mysql+pymysql", "mariadb+pymysql")}
    try:
        Base.metadata.create_all(engines[drivername])
        states = [audit_status(e, Note) for e in engines.values()]
    finally:
        for e in engines.values():
            e.dispose()
    assert states == [{"notes": AuditState.CURRENT}] * 2


def test_the_log_refuses_update_and_delete(engine, Base) -> None:
    invoice_model(Base)
    Base.metadata.create_all(engine)
    raw(engine, "INSERT INTO invoices (id, customer) VALUES (1, 'Acme')")

    for sql, verb in (("UPDATE sqlaudit_log SET changed_by = 'mallory'", "UPDATE"),
                      ("DELETE FROM sqlaudit_log", "DELETE")):
        with pytest.raises(OperationalError,
                           match=f"sqlaudit: {verb} on sqlaudit_log is refused: the audit trail "
                                 f"is append-only"):
            raw(engine, sql)
    assert [r[0] for r in log_rows(engine)] == ["insert"]


def test_drop_all_removes_the_triggers_and_keeps_the_log(engine, Base) -> None:
    invoice_model(Base)
    Base.metadata.create_all(engine)
    raw(engine, "INSERT INTO invoices (id, customer) VALUES (1, 'Acme')")

    Base.metadata.drop_all(engine)

    assert trigger_names(engine) == ["sqlaudit_log_no_delete", "sqlaudit_log_no_update"]
    assert inspect(engine).get_table_names() == ["sqlaudit_log"]
    assert len(log_rows(engine)) == 1


def test_install_and_drop_audit_triggers_on_an_existing_table(engine, Base) -> None:
    raw(engine, "CREATE TABLE invoices (id INT PRIMARY KEY, customer VARCHAR(50), "
                "amount DECIMAL(10, 2), note VARCHAR(50))",
        "INSERT INTO invoices (id, customer) VALUES (1, 'before')")
    Invoice = invoice_model(Base)

    install_audit_triggers(engine, Invoice)
    sent: list[str] = []
    listen = lambda conn, cursor, statement, *args: sent.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listen)
    try:
        install_audit_triggers(engine, Invoice)  # idempotent: never doubles records
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    raw(engine, "UPDATE invoices SET customer = 'after'")
    drop_audit_triggers(engine, Invoice)
    raw(engine, "UPDATE invoices SET customer = 'unrecorded'")

    assert log_rows(engine) == [("update", "1", None, {"customer": "before"}, {"customer": "after"})]
    assert trigger_names(engine) == ["sqlaudit_log_no_delete", "sqlaudit_log_no_update"]
    # re-installing on MariaDB replaced each trigger in place: no moment without it
    assert not [s for s in sent if s.startswith("DROP TRIGGER")]
    assert len([s for s in sent if s.startswith("CREATE OR REPLACE TRIGGER")]) == 3


def test_render_audit_ddl_for_mysql_and_mariadb_runs_verbatim(engine, Base) -> None:
    raw(engine, "CREATE TABLE `Order Lines` (id INT PRIMARY KEY, customer VARCHAR(50), "
                "amount DECIMAL(10, 2), note VARCHAR(50))")

    @track_table(tracked_fields=["customer", "amount"])
    class Order(Base):
        __tablename__ = "Order Lines"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        customer: Mapped[Optional[str]] = mapped_column(String(50))
        amount: Mapped[Optional[Decimal]] = mapped_column(Numeric(10, 2))

    ddl = render_audit_ddl(Order, "mysql")
    # MariaDB's own rendering replaces each trigger in one statement
    assert render_audit_ddl(Order, "mariadb") == [
        sql.replace("CREATE TRIGGER", "CREATE OR REPLACE TRIGGER", 1)
        for sql in ddl if not sql.startswith("DROP TRIGGER")]
    created = [sql for sql in ddl if sql.startswith("CREATE TRIGGER")]
    assert [sql.split(" FOR EACH ROW")[0].split(" AFTER ")[1] for sql in created] == [
        "INSERT ON `Order Lines`", "UPDATE ON `Order Lines`", "DELETE ON `Order Lines`"]
    Base.metadata.create_all(engine, tables=[Base.metadata.tables["sqlaudit_log"]])
    with engine.begin() as conn:
        for sql in ddl:
            conn.exec_driver_sql(sql)
    raw(engine, "INSERT INTO `Order Lines` (id, customer) VALUES (1, 'Acme')")

    assert log_rows(engine) == [("insert", "1", None, None, {"customer": "Acme", "amount": None})]


def test_audit_status_reports_missing_current_outdated_and_broken(engine, Base) -> None:
    Invoice = invoice_model(Base)
    raw(engine, "CREATE TABLE invoices (id INT PRIMARY KEY, customer VARCHAR(50), "
                "amount DECIMAL(10, 2), note VARCHAR(50))")
    assert audit_status(engine, Invoice) == {"invoices": AuditState.MISSING}

    install_audit_triggers(engine, Invoice)
    assert audit_status(engine, Invoice) == {"invoices": AuditState.CURRENT}

    class Other(DeclarativeBase):
        pass

    Narrower = invoice_model(Other, fields=("customer",))  # what the code tracks now
    assert audit_status(engine, Narrower) == {"invoices": AuditState.OUTDATED}

    raw(engine, "DROP TRIGGER sqlaudit_invoices_delete")
    assert audit_status(engine, Invoice) == {"invoices": AuditState.OUTDATED}

    install_audit_triggers(engine, Invoice)
    raw(engine, "ALTER TABLE invoices DROP COLUMN amount")
    assert audit_status(engine, Invoice) == {"invoices": AuditState.BROKEN}


# ------------------------------------------------------------------ the acting user


def user_variables(conn) -> tuple[Any, ...]:
    """The session's @sqlaudit_* variables, read on the DBAPI connection (no hook runs,
    so this shows what the session holds, not what a new transaction would stamp)."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute("SELECT @sqlaudit_user_id, @sqlaudit_reason, @sqlaudit_context, "
                       "@sqlaudit_transaction_id")
        return tuple(cursor.fetchone())
    finally:
        cursor.close()


def test_orm_writes_are_recorded_with_the_acting_user(engine, Base) -> None:
    Invoice = invoice_model(Base)
    Base.metadata.create_all(engine)
    set_config(SQLAuditConfig(get_user_id_callback=lambda: 7))
    register_hooks()

    with Session(engine) as session:
        session.add(Invoice(id=1, customer="Acme", amount=Decimal("10.50")))
        session.commit()
        with audit_context(user_id="alice", reason="ticket 7"):
            session.get(Invoice, 1).customer = "Acme Ltd"
            session.commit()
        session.delete(session.get(Invoice, 1))
        session.commit()

    assert log_rows(engine) == [
        ("insert", "1", "7", None, {"customer": "Acme", "amount": "10.50"}),
        ("update", "1", "alice", {"customer": "Acme"}, {"customer": "Acme Ltd"}),
        ("delete", "1", "7", {"customer": "Acme Ltd", "amount": "10.50"}, None),
    ]
    with engine.connect() as conn:
        reasons = conn.exec_driver_sql("SELECT reason FROM sqlaudit_log ORDER BY id").scalars().all()
        transactions = conn.exec_driver_sql(
            "SELECT transaction_id FROM sqlaudit_log ORDER BY id").scalars().all()
    assert reasons == [None, "ticket 7", None]
    assert all(isinstance(t, int) for t in transactions) and len(set(transactions)) == 3


def test_core_bulk_update_and_text_sql_are_recorded_per_row(engine, Base) -> None:
    Invoice = invoice_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()

    with engine.begin() as conn, audit_context(user_id="batch"):
        conn.execute(insert(Invoice), [{"id": i, "customer": f"c{i}", "amount": i} for i in (1, 2, 3)])
        conn.execute(update(Invoice).where(Invoice.id >= 2).values(customer="bulk"))
        conn.execute(text("UPDATE invoices SET amount = amount * 2 WHERE id = 3"))

    rows = log_rows(engine)
    assert rows[3:] == [
        ("update", "2", "batch", {"customer": "c2"}, {"customer": "bulk"}),
        ("update", "3", "batch", {"customer": "c3"}, {"customer": "bulk"}),
        ("update", "3", "batch", {"amount": "3.00"}, {"amount": "6.00"}),
    ]
    assert [r[:3] for r in rows[:3]] == [("insert", str(i), "batch") for i in (1, 2, 3)]


def test_a_foreign_pymysql_connection_sets_the_user_with_a_user_variable(engine, Base) -> None:
    import pymysql

    invoice_model(Base)
    Base.metadata.create_all(engine)
    url = engine.url
    foreign = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                              password=url.password or "", database=url.database, charset="utf8mb4")
    try:
        with foreign.cursor() as cursor:
            cursor.execute("SET @sqlaudit_user_id = '42', @sqlaudit_reason = 'by hand'")
            cursor.execute("INSERT INTO invoices (id, customer) VALUES (1, 'Acme')")
            cursor.execute("SET @sqlaudit_user_id = NULL, @sqlaudit_reason = NULL")
            cursor.execute("UPDATE invoices SET customer = 'anonymous' WHERE id = 1")
        foreign.commit()
    finally:
        foreign.close()

    assert [r[:3] for r in log_rows(engine)] == [("insert", "1", "42"), ("update", "1", None)]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT reason FROM sqlaudit_log ORDER BY id").scalars().all() == [
            "by hand", None]


def test_the_user_is_cleared_at_commit_and_never_reaches_the_next_transaction(engine, Base) -> None:
    invoice_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    pooled = create_engine(engine.url, pool_size=1, max_overflow=0)
    try:
        with pooled.connect() as conn:
            first_session = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
            with audit_context(user_id="alice", reason="r", context={"request": "1"}):
                conn.execute(text("INSERT INTO invoices (id, customer) VALUES (1, 'a')"))
                stamped = user_variables(conn)
                conn.commit()
            assert user_variables(conn) == (None, None, None, None)  # same session, after COMMIT
            conn.execute(text("INSERT INTO invoices (id, customer) VALUES (2, 'b')"))
            conn.commit()
        with pooled.connect() as conn:  # the same pooled session again
            unregister_hooks()
            second_session = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
            assert user_variables(conn) == (None, None, None, None)
            conn.execute(text("INSERT INTO invoices (id, customer) VALUES (3, 'c')"))
            conn.commit()
    finally:
        pooled.dispose()

    assert stamped[:3] == ("alice", "r", '{"request":"1"}') and isinstance(stamped[3], int)
    assert first_session == second_session
    assert [r[:3] for r in log_rows(engine)] == [("insert", "1", "alice"), ("insert", "2", None),
                                                 ("insert", "3", None)]


def test_the_user_is_cleared_at_rollback(engine, Base) -> None:
    invoice_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()

    with engine.connect() as conn:
        with audit_context(user_id="alice"):
            conn.execute(text("INSERT INTO invoices (id, customer) VALUES (1, 'a')"))
            conn.rollback()
        assert user_variables(conn) == (None, None, None, None)
        conn.execute(text("INSERT INTO invoices (id, customer) VALUES (2, 'b')"))
        conn.commit()

    assert [r[:3] for r in log_rows(engine)] == [("insert", "2", None)]


def test_raw_commit_and_rollback_text_clear_the_user(engine, Base) -> None:
    invoice_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()

    with engine.connect() as conn, audit_context(user_id="alice"):
        conn.execute(text("INSERT INTO invoices (id, customer) VALUES (1, 'a')"))
        conn.exec_driver_sql("COMMIT")
        after_commit = user_variables(conn)
        conn.execute(text("INSERT INTO invoices (id, customer) VALUES (2, 'b')"))
        restamped = user_variables(conn)
        conn.exec_driver_sql("ROLLBACK")
        after_rollback = user_variables(conn)
        conn.commit()

    assert after_commit == after_rollback == (None, None, None, None)
    assert restamped[0] == "alice"  # the next write stamped again
    assert [r[:3] for r in log_rows(engine)] == [("insert", "1", "alice")]


def test_a_connection_returned_to_the_pool_holds_no_user(engine, Base) -> None:
    """A commit made behind SQLAlchemy's back (the DBAPI connection's own) leaves the
    variables set; the pool's checkin clears them before anyone else gets the session."""
    invoice_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    pooled = create_engine(engine.url, pool_size=1, max_overflow=0)
    try:
        with pooled.connect() as conn, audit_context(user_id="alice"):
            conn.execute(text("INSERT INTO invoices (id, customer) VALUES (1, 'a')"))
            conn.connection.dbapi_connection.commit()
            leftover = user_variables(conn)
        unregister_hooks()
        raw_connection = pooled.raw_connection()
        try:
            cursor = raw_connection.cursor()
            cursor.execute("SELECT @sqlaudit_user_id")
            reused = cursor.fetchone()[0]
            cursor.execute("INSERT INTO invoices (id, customer) VALUES (2, 'b')")
            raw_connection.commit()
        finally:
            raw_connection.close()
    finally:
        pooled.dispose()

    assert leftover[0] == "alice" and reused is None
    assert [r[:3] for r in log_rows(engine)] == [("insert", "1", "alice"), ("insert", "2", None)]


def test_fail_closed_tables_refuse_writes_without_a_user(engine, Base) -> None:
    invoice_model(Base, require_user_id=True)
    Base.metadata.create_all(engine)
    register_hooks()

    with pytest.raises(OperationalError, match="needs an acting user"):
        raw(engine, "INSERT INTO invoices (id, customer) VALUES (1, 'a')")
    with audit_context(user_id="alice"):
        raw(engine, "INSERT INTO invoices (id, customer) VALUES (1, 'a')")

    assert [r[:3] for r in log_rows(engine)] == [("insert", "1", "alice")]


# ------------------------------------------------------------------ MariaDB's own write statements


@pytest.fixture
def invoices(engine, Base) -> type:
    Invoice = invoice_model(Base)
    Base.metadata.create_all(engine)
    raw(engine, "INSERT INTO invoices (id, customer, amount) VALUES (1, 'Acme', 1), (2, 'Bolt', 2)")
    return Invoice


def test_insert_on_duplicate_key_update_records_the_insert_or_the_update(engine, invoices) -> None:
    raw(engine,
        "INSERT INTO invoices (id, customer) VALUES (1, 'Acme'), (3, 'Cog') "
        "ON DUPLICATE KEY UPDATE customer = CONCAT(customer, '!')",
        "INSERT INTO invoices (id, customer) VALUES (2, 'Bolt') "
        "ON DUPLICATE KEY UPDATE customer = VALUES(customer)")  # changes nothing: no record

    assert log_rows(engine)[2:] == [
        ("update", "1", None, {"customer": "Acme"}, {"customer": "Acme!"}),
        ("insert", "3", None, None, {"customer": "Cog", "amount": None}),
    ]


def test_replace_into_is_recorded_as_delete_and_insert(engine, invoices) -> None:
    raw(engine, "REPLACE INTO invoices (id, customer, amount) VALUES (1, 'Acme 2', 5), (4, 'Dart', 4)")

    assert log_rows(engine)[2:] == [
        ("delete", "1", None, {"customer": "Acme", "amount": "1.00"}, None),
        ("insert", "1", None, None, {"customer": "Acme 2", "amount": "5.00"}),
        ("insert", "4", None, None, {"customer": "Dart", "amount": "4.00"}),
    ]


def test_insert_ignore_records_only_the_rows_it_inserts(engine, invoices) -> None:
    raw(engine, "INSERT IGNORE INTO invoices (id, customer) VALUES (1, 'dup'), (5, 'Elm')")

    assert log_rows(engine)[2:] == [("insert", "5", None, None, {"customer": "Elm", "amount": None})]


def test_multi_table_update_and_delete_joins_are_recorded_per_row(engine, invoices) -> None:
    raw(engine,
        "CREATE TABLE renames (old_name VARCHAR(50) PRIMARY KEY, new_name VARCHAR(50))",
        "INSERT INTO renames VALUES ('Acme', 'Acme Ltd'), ('Bolt', 'Bolt plc')",
        "UPDATE invoices AS i JOIN renames AS r ON r.old_name = i.customer "
        "SET i.customer = r.new_name, r.new_name = 'done'",
        "DELETE i FROM invoices AS i JOIN renames AS r ON i.customer = 'Bolt plc'")

    assert log_rows(engine)[2:] == [
        ("update", "1", None, {"customer": "Acme"}, {"customer": "Acme Ltd"}),
        ("update", "2", None, {"customer": "Bolt"}, {"customer": "Bolt plc"}),
        ("delete", "2", None, {"customer": "Bolt plc", "amount": "2.00"}, None),
    ]


def test_truncate_records_nothing_is_a_documented_hole(engine, invoices) -> None:
    """MariaDB fires no trigger for TRUNCATE (docs/mariadb.md): the rows vanish unrecorded.
    Deny the application account the DROP privilege it needs to truncate."""
    raw(engine, "TRUNCATE TABLE invoices")

    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM invoices").scalar() == 0
    assert [r[0] for r in log_rows(engine)] == ["insert", "insert"]


def test_foreign_key_cascades_record_nothing_is_a_documented_hole(engine, Base) -> None:
    """InnoDB applies ON DELETE / ON UPDATE CASCADE and SET NULL without firing the
    child table's triggers (docs/mariadb.md): those changes are not recorded."""

    @track_table(tracked_fields=["customer_id", "label"])
    class Order(Base):
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        customer_id: Mapped[Optional[int]] = mapped_column(Integer)
        label: Mapped[Optional[str]] = mapped_column(String(50))

    Base.metadata.create_all(engine)
    raw(engine,
        "CREATE TABLE customers (id INT PRIMARY KEY)",
        "ALTER TABLE orders ADD CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) "
        "REFERENCES customers (id) ON DELETE CASCADE ON UPDATE CASCADE",
        "INSERT INTO customers VALUES (1), (2)",
        "INSERT INTO orders VALUES (10, 1, 'a'), (20, 2, 'b')",
        "UPDATE customers SET id = 3 WHERE id = 2",  # cascades to orders.customer_id: unrecorded
        "DELETE FROM customers WHERE id = 1")  # cascades to order 10: unrecorded

    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id, customer_id FROM orders").all() == [(20, 3)]
    assert [r[:2] for r in log_rows(engine)] == [("insert", "10"), ("insert", "20")]


# ------------------------------------------------------------------ pruning


def test_prune_removes_only_older_records_and_the_guard_stays(engine, Base) -> None:
    import time
    from datetime import timezone

    from sqlaudit import prune_audit_log

    invoice_model(Base)
    Base.metadata.create_all(engine)
    raw(engine, "INSERT INTO invoices (id, customer) VALUES (1, 'old')")
    time.sleep(0.01)
    with engine.connect() as conn:
        between = conn.exec_driver_sql("SELECT UTC_TIMESTAMP(6)").scalar().replace(tzinfo=timezone.utc)
    time.sleep(0.01)
    raw(engine, "INSERT INTO invoices (id, customer) VALUES (2, 'new')")

    with engine.connect() as conn:
        assert prune_audit_log(conn, between) == 1
        variable = conn.exec_driver_sql("SELECT @sqlaudit_prune_before").scalar()
        with pytest.raises(OperationalError, match="DELETE on sqlaudit_log is refused"):
            conn.exec_driver_sql("DELETE FROM sqlaudit_log")  # same session, after the prune
        conn.commit()

    assert variable is None
    assert [r[:2] for r in log_rows(engine)] == [("insert", "2")]


# ------------------------------------------------------------------ privileges


@pytest.fixture
def app_account(engine, Base):
    """The tracked invoices table, and a MariaDB account with the rights of an
    application on it (SELECT, INSERT, UPDATE, DELETE; nothing on the log, no DROP,
    no TEMPORARY tables), and an engine logged in as it; both removed afterwards."""
    invoice_model(Base)
    Base.metadata.create_all(engine)
    name = f"sqlaudit_app_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    raw(engine, f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{engine.info_schema}`.invoices TO '{name}'@'%'")
    app = create_engine(engine.url.set(username=name, password=password))
    yield app
    app.dispose()
    raw(engine, f"DROP USER '{name}'@'%'")


def test_an_application_account_without_rights_on_the_log_is_audited_and_cannot_touch_it(
        engine, Base, app_account) -> None:
    """The triggers write with their definer's rights (the installing account): the
    application account needs none on sqlaudit_log, and has none to alter it."""
    register_hooks()

    with audit_context(user_id="alice"):
        raw(app_account, "INSERT INTO invoices (id, customer) VALUES (1, 'Acme')",
            "UPDATE invoices SET customer = 'Acme Ltd'")
    refused = []
    for sql in ("SELECT * FROM sqlaudit_log",
                "INSERT INTO sqlaudit_log (table_name, operation, changed_at) VALUES ('x', 'x', NOW())",
                "UPDATE sqlaudit_log SET changed_by = 'mallory'",
                "DELETE FROM sqlaudit_log",
                "TRUNCATE TABLE sqlaudit_log",
                "TRUNCATE TABLE invoices",
                "CREATE TEMPORARY TABLE sqlaudit_log (id INT)"):
        with pytest.raises((OperationalError, ProgrammingError), match="denied") as caught:
            raw(app_account, sql)
        refused.append(caught.value.orig.args[0])

    assert [r[:3] for r in log_rows(engine)] == [("insert", "1", "alice"), ("update", "1", "alice")]
    assert set(refused) <= {1142, 1044}  # table / database access denied


def test_a_temporary_table_named_sqlaudit_log_captures_the_triggers_rows_is_a_documented_hole(
        engine, Base) -> None:
    """A session's TEMPORARY table shadows the log, for its triggers too: that session's
    writes are recorded into its own temporary table and vanish with it. The defence
    is privileges: the application account gets no CREATE TEMPORARY TABLES (see the
    test above)."""
    invoice_model(Base)
    Base.metadata.create_all(engine)

    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TEMPORARY TABLE sqlaudit_log (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "table_schema TEXT, table_name TEXT, resource_id TEXT, operation TEXT, "
            "changed_at DATETIME(6), changed_by TEXT, db_role TEXT, transaction_id BIGINT, "
            "reason TEXT, old_data TEXT, new_data TEXT, context TEXT, application_name TEXT, "
            "client_addr TEXT)")
        conn.exec_driver_sql("INSERT INTO invoices (id, customer) VALUES (1, 'hidden')")
        captured = conn.exec_driver_sql("SELECT COUNT(*) FROM sqlaudit_log").scalar()
        conn.exec_driver_sql("DROP TEMPORARY TABLE sqlaudit_log")

    assert captured == 1
    assert log_rows(engine) == []


# ------------------------------------------------------------------ sql_mode


def test_ansi_quotes_and_no_backslash_escapes_change_nothing(make_engine, Base) -> None:
    """Triggers keep the sql_mode they were created under. Created and run under
    ANSI_QUOTES and NO_BACKSLASH_ESCAPES, with names and values full of quotes and
    backslashes, they record the same as under the default mode: the rendered SQL
    quotes names with backticks and writes no backslash inside a string literal."""
    from sqlalchemy import event

    engine = make_engine()

    @event.listens_for(engine, "connect")
    def _modes(dbapi_connection: Any, record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET SESSION sql_mode = "
                           "CONCAT(@@sql_mode, ',ANSI_QUOTES,NO_BACKSLASH_ESCAPES')")

    @track_table(tracked_fields=["back", "quoted"])
    class Odd(Base):
        __tablename__ = "odd \\ 'table'"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        back: Mapped[Optional[str]] = mapped_column("back\\slash", String(50))
        quoted: Mapped[Optional[str]] = mapped_column("it's \"quoted\"", String(50))

    Base.metadata.create_all(engine)
    register_hooks()
    value = "a\\b 'c' \"d\" \\n"
    with Session(engine) as s, audit_context(user_id="u\\'1", reason="r\\n"):
        s.add(Odd(id=1, back=value, quoted="q"))
        s.commit()
        s.get(Odd, 1).quoted = value
        s.commit()

    with engine.connect() as conn:
        modes = conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar()
        trigger_modes = conn.exec_driver_sql(
            "SELECT DISTINCT SQL_MODE FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE <> 'sqlaudit_log'").scalars().all()
        rows = conn.exec_driver_sql(
            "SELECT operation, changed_by, reason, old_data, new_data FROM sqlaudit_log ORDER BY id").all()
    assert "ANSI_QUOTES" in modes and "NO_BACKSLASH_ESCAPES" in modes
    assert len(trigger_modes) == 1 and "NO_BACKSLASH_ESCAPES" in trigger_modes[0]
    assert [(op, user, reason, _json(old), _json(new)) for op, user, reason, old, new in rows] == [
        ("insert", "u\\'1", "r\\n", None, {"back\\slash": value, "it's \"quoted\"": "q"}),
        ("update", "u\\'1", "r\\n", {"it's \"quoted\"": "q"}, {"it's \"quoted\"": value}),
    ]
    with Session(engine) as s:
        assert [(r.operation, r.field_name, r.new_value) for r in
                get_resource_changes(Odd, session=s, sort_direction="asc")] == [
            ("insert", "back", value), ("insert", "quoted", "q"), ("update", "quoted", value)]


# ------------------------------------------------------------------ raw transaction control


def _note_model(Base: Any) -> type:
    @track_table(tracked_fields=["title"])
    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(100))

    return Note


def _inserts(engine) -> list[tuple[Any, ...]]:
    """(title, changed_by, transaction_id) of every recorded insert, in order."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT JSON_VALUE(new_data, '$.title'), changed_by, transaction_id "
            "FROM sqlaudit_log WHERE operation = 'insert' ORDER BY id")).all()]


def _assert_two_inserts_by_a(engine: Any, first: str, second: str, *, same_transaction: bool) -> None:
    """The log holds the inserts of notes ``first`` then ``second``, both by user "A",
    in one transaction or in two."""
    found = _inserts(engine)
    assert [r[:2] for r in found] == [(first, "A"), (second, "A")]
    assert (found[0][2] == found[1][2]) is same_transaction


@pytest.mark.parametrize("statement", ["START TRANSACTION", "BEGIN", "BEGIN WORK"])
def test_a_raw_start_transaction_commits_so_the_next_writes_get_a_new_transaction_id(
        engine, Base, statement) -> None:
    """On MariaDB a raw START TRANSACTION or BEGIN commits the open transaction: the
    writes after it belong to another transaction and get another transaction id."""
    _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="A"):
        s.execute(text("INSERT INTO notes (id, title) VALUES (1, 'first')"))
        s.execute(text(statement))  # commits 'first' on the server
        s.execute(text("INSERT INTO notes (id, title) VALUES (2, 'second')"))
        s.rollback()  # rolls back 'second' only
        s.execute(text("INSERT INTO notes (id, title) VALUES (3, 'third')"))
        s.execute(text(statement))
        s.execute(text("INSERT INTO notes (id, title) VALUES (4, 'fourth')"))
        s.commit()
    found = _inserts(engine)
    assert [r[:2] for r in found] == [("first", "A"), ("third", "A"), ("fourth", "A")]
    assert found[1][2] != found[2][2]  # committed by two server transactions


@pytest.mark.parametrize("ddl", [
    "CREATE TABLE scratch (id INT)", "ALTER TABLE notes COMMENT = 'x'", "TRUNCATE TABLE other_notes",
    "  /* tool */ create index ix_title ON notes (title)", "RENAME TABLE other_notes TO renamed_notes",
    "LOCK TABLES notes WRITE"])
def test_ddl_commits_so_the_writes_after_it_get_a_new_transaction_id(engine, Base, ddl) -> None:
    """DDL (and LOCK TABLES) commits the open transaction on MariaDB: the writes before
    it and after it were committed separately and get two transaction ids, both with
    the acting user."""
    _note_model(Base)
    Base.metadata.create_all(engine)
    raw(engine, "CREATE TABLE other_notes (id INT)")
    register_hooks()
    with Session(engine) as s, audit_context(user_id="A"):
        s.execute(text("INSERT INTO notes (id, title) VALUES (1, 'before')"))
        s.execute(text(ddl))
        s.execute(text("INSERT INTO notes (id, title) VALUES (2, 'after')"))
        s.commit()
    raw(engine, "UNLOCK TABLES")
    _assert_two_inserts_by_a(engine, "before", "after", same_transaction=False)


def test_a_temporary_table_does_not_commit_so_the_transaction_keeps_its_id(engine, Base) -> None:
    _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="A"):
        s.execute(text("INSERT INTO notes (id, title) VALUES (1, 'before')"))
        s.execute(text("CREATE TEMPORARY TABLE scratch (id INT)"))
        s.execute(text("DROP TEMPORARY TABLE scratch"))
        s.execute(text("INSERT INTO notes (id, title) VALUES (2, 'after')"))
        s.commit()
    _assert_two_inserts_by_a(engine, "before", "after", same_transaction=True)


@pytest.mark.parametrize("statement", [
    "SET @sqlaudit_user_id = '42'",
    "SET @SQLAUDIT_USER_ID = '42'",  # user variable names are case-insensitive
    "SET @`sqlaudit_user_id` = '42'",  # quoted name
])
def test_a_raw_user_variable_set_on_an_autocommit_connection_is_cleared_at_checkin(
        make_engine, Base, statement) -> None:
    """Raw `SET @sqlaudit_user_id` (the documented way for raw SQL), in any spelling the
    server takes for the same variable, on an AUTOCOMMIT connection: the next checkout
    of that connection, another request, holds no user."""
    engine = make_engine(pool_size=1, max_overflow=0)
    _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    auto = engine.execution_options(isolation_level="AUTOCOMMIT")
    with auto.connect() as conn:  # request 1: a support tool acting for user 42
        conn.execute(text(statement))
        conn.execute(text("INSERT INTO notes (id, title) VALUES (1, 'by 42')"))
        first = conn.connection.dbapi_connection
    with auto.connect() as conn:  # request 2: no user at all
        conn.execute(text("INSERT INTO notes (id, title) VALUES (2, 'by nobody')"))
        second = conn.connection.dbapi_connection
    assert second is first
    assert [r[:2] for r in _inserts(engine)] == [("by 42", "42"), ("by nobody", None)]


@pytest.mark.parametrize("switch", ["driver", "SET autocommit = 1"])
def test_a_session_that_autocommits_behind_sqlalchemys_back_records_writes_without_a_user(
        make_engine, Base, switch) -> None:
    """Autocommit turned on in the driver (PyMySQL's connect_args) or by a raw SET: each
    statement commits on the server while SQLAlchemy sees one open transaction. The
    hook reads the server's autocommit flag (from the status of its last reply, kept by
    the driver) before each statement: a user stamped in a real transaction is cleared,
    and no later statement is credited to it; writes are recorded without a user, as
    under isolation_level="AUTOCOMMIT"."""
    engine = make_engine(connect_args={"autocommit": True} if switch == "driver" else {})
    _note_model(Base)
    Base.metadata.create_all(engine)
    current: dict[str, Optional[str]] = {"user": "A"}
    set_config(SQLAuditConfig(get_user_id_callback=lambda: current["user"]))
    register_hooks()
    with engine.connect() as conn:  # a worker's connection
        conn.execute(text("INSERT INTO notes (id, title) VALUES (1, 'job 1')"))
        if switch != "driver":
            conn.execute(text(switch))  # commits job 1 (a real transaction, stamped A)
        current["user"] = None  # the next job runs for nobody
        conn.execute(text("INSERT INTO notes (id, title) VALUES (2, 'job 2')"))
        after = user_variables(conn)
    expected_job_1 = None if switch == "driver" else "A"
    assert [r[:2] for r in _inserts(engine)] == [("job 1", expected_job_1), ("job 2", None)]
    assert after == (None, None, None, None)


def test_a_raw_start_transaction_on_an_autocommit_session_gets_no_user(make_engine, Base) -> None:
    """The server's autocommit flag stays on inside an explicit START TRANSACTION: the
    hook stamps no user there either (it cannot see where that transaction ends)."""
    engine = make_engine(connect_args={"autocommit": True})
    _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with engine.connect() as conn, audit_context(user_id="A"):
        conn.execute(text("START TRANSACTION"))
        conn.execute(text("INSERT INTO notes (id, title) VALUES (1, 'explicit')"))
        conn.execute(text("COMMIT"))
        after = user_variables(conn)
    assert [r[:2] for r in _inserts(engine)] == [("explicit", None)]
    assert after == (None, None, None, None)


def test_set_autocommit_0_after_autocommit_stamps_a_new_transaction(make_engine, Base) -> None:
    """Back from autocommit (a raw SET autocommit = 0), the next write is stamped again,
    with the user in force and a transaction id of its own."""
    engine = make_engine(connect_args={"autocommit": True})
    _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with engine.connect() as conn:
        with audit_context(user_id="A"):
            conn.execute(text("INSERT INTO notes (id, title) VALUES (1, 'autocommitted')"))
        conn.execute(text("SET autocommit = 0"))
        with audit_context(user_id="B"):
            conn.execute(text("INSERT INTO notes (id, title) VALUES (2, 'in a transaction')"))
            conn.commit()
            conn.execute(text("INSERT INTO notes (id, title) VALUES (3, 'in the next one')"))
            conn.commit()
    found = _inserts(engine)
    assert [r[:2] for r in found] == [("autocommitted", None), ("in a transaction", "B"),
                                      ("in the next one", "B")]
    assert found[0][2] is None and found[1][2] != found[2][2]


# ------------------------------------------------------------------ hidden assumptions


def _read_everything(engine, model: type) -> dict[str, Any]:
    """Every history read of ``model`` through a fresh Session: what a user sees."""
    from datetime import datetime, timedelta, timezone

    from sqlaudit import get_changes, get_resource_state, get_table_state, get_transactions

    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    with Session(engine) as s:
        return {
            "resource": sorted((r.operation, r.field_name, r.old_value, r.new_value, r.changed_by)
                               for r in get_resource_changes(model, session=s)),
            "changes": sorted((r.operation, r.field_name, r.new_value) for r in get_changes(s)),
            "transactions": [len(t.changes) for t in get_transactions(s)],
            "state": get_resource_state(model, 1, at=later, session=s),
            "table": [rid for rid, _ in get_table_state(model, at=later, session=s)],
        }


def _write_history(engine, model: type, **columns: Any) -> None:
    """Insert row 1 as alice, then change every given column as bob."""
    register_hooks()
    with Session(engine) as s:
        with audit_context(user_id="alice"):
            s.add(model(id=1, **{name: old for name, (old, _) in columns.items()}))
            s.commit()
        with audit_context(user_id="bob"):
            row = s.get(model, 1)
            for name, (_, new) in columns.items():
                setattr(row, name, new)
            s.commit()


def test_mixed_case_table_and_column_names_are_recorded_and_read_back(engine, Base) -> None:
    @track_table(tracked_fields=["TotalAmount", "customerName"])
    class CustomerOrder(Base):
        __tablename__ = "CustomerOrders"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        TotalAmount: Mapped[int] = mapped_column("TotalAmount", Integer)
        customerName: Mapped[str] = mapped_column("CustomerName", String(50))

    Base.metadata.create_all(engine)
    _write_history(engine, CustomerOrder, TotalAmount=(10, 20), customerName=("Ann", "ANN"))
    with engine.connect() as conn:
        tables = conn.exec_driver_sql("SELECT DISTINCT table_name FROM sqlaudit_log").scalars().all()
    assert tables == ["CustomerOrders"]
    assert _read_everything(engine, CustomerOrder) == {
        "resource": [("insert", "TotalAmount", None, 10, "alice"),
                     ("insert", "customerName", None, "Ann", "alice"),
                     ("update", "TotalAmount", 10, 20, "bob"),
                     ("update", "customerName", "Ann", "ANN", "bob")],
        "changes": [("insert", "TotalAmount", 10), ("insert", "customerName", "Ann"),
                    ("update", "TotalAmount", 20), ("update", "customerName", "ANN")],
        "transactions": [2, 2],
        "state": {"TotalAmount": 20, "customerName": "ANN"},
        "table": ["1"],
    }
    assert audit_status(engine, CustomerOrder) == {"CustomerOrders": AuditState.CURRENT}


def test_backticks_and_unicode_in_table_and_column_names(engine, Base) -> None:
    @track_table(tracked_fields=["price", "label"])
    class Odd(Base):
        __tablename__ = "we`ird t\u00e4bl\u00e9 \u8868"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        price: Mapped[int] = mapped_column("pr`ice \u20ac", Integer)
        label: Mapped[str] = mapped_column("\u540d\u524d `x`", String(50))

    Base.metadata.create_all(engine)
    _write_history(engine, Odd, price=(1, 2), label=("\U0001F600", "`tick`"))
    with engine.connect() as conn:
        tables = conn.exec_driver_sql("SELECT DISTINCT table_name FROM sqlaudit_log").scalars().all()
        data = conn.exec_driver_sql("SELECT new_data FROM sqlaudit_log ORDER BY id").scalars().first()
    assert tables == ["we`ird t\u00e4bl\u00e9 \u8868"]
    assert _json(data) == {"pr`ice \u20ac": 1, "\u540d\u524d `x`": "\U0001F600"}
    assert _read_everything(engine, Odd) == {
        "resource": [("insert", "label", None, "\U0001F600", "alice"),
                     ("insert", "price", None, 1, "alice"),
                     ("update", "label", "\U0001F600", "`tick`", "bob"),
                     ("update", "price", 1, 2, "bob")],
        "changes": [("insert", "label", "\U0001F600"), ("insert", "price", 1),
                    ("update", "label", "`tick`"), ("update", "price", 2)],
        "transactions": [2, 2],
        "state": {"price": 2, "label": "`tick`"},
        "table": ["1"],
    }
    assert audit_status(engine, Odd) == {"we`ird t\u00e4bl\u00e9 \u8868": AuditState.CURRENT}


@pytest.fixture
def other_database(engine) -> Any:
    """A second database on the server, ``<this test's database>_other``, dropped after."""
    name = f"{engine.info_schema}_other"
    raw(engine, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield name
    raw(engine, f"DROP DATABASE IF EXISTS `{name}`")


def test_a_table_in_another_database_writes_to_the_log_of_the_connections_database(
        engine, Base, other_database) -> None:
    """One shared log: a tracked table in another database (``__table_args__ schema``) of
    a MetaData without a schema is recorded in the ``sqlaudit_log`` of the database the
    installing connection uses, the one the history reads, as on PostgreSQL (the log
    in the connection's schema); the other database gets no log of its own."""
    @track_table(tracked_fields=["title"])
    class Remote(Base):
        __tablename__ = "remote_notes"
        __table_args__ = {"schema": other_database}
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        title: Mapped[str] = mapped_column(String(50))

    Base.metadata.create_all(engine)
    _write_history(engine, Remote, title=("a", "b"))
    raw(engine, f"UPDATE `{other_database}`.remote_notes SET title = 'raw' WHERE id = 1")
    with engine.connect() as conn:
        logged = conn.execute(text(
            "SELECT table_schema, table_name, operation, changed_by FROM sqlaudit_log "
            "ORDER BY id")).all()
        other_tables = conn.execute(text(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db"),
            {"db": other_database}).scalars().all()
    assert [tuple(r) for r in logged] == [(other_database, "remote_notes", "insert", "alice"),
                                          (other_database, "remote_notes", "update", "bob"),
                                          (other_database, "remote_notes", "update", None)]
    assert other_tables == ["remote_notes"]
    assert _read_everything(engine, Remote) == {
        "resource": [("insert", "title", None, "a", "alice"), ("update", "title", "a", "b", "bob"),
                     ("update", "title", "b", "raw", None)],
        "changes": [("insert", "title", "a"), ("update", "title", "b"), ("update", "title", "raw")],
        "transactions": [1, 1, 1],
        "state": {"title": "raw"},
        "table": ["1"],
    }
    assert audit_status(engine, Remote) == {f"{other_database}.remote_notes": AuditState.CURRENT}
    drop_audit_triggers(engine, Remote)
    assert audit_status(engine, Remote) == {f"{other_database}.remote_notes": AuditState.MISSING}


def test_rendering_a_table_in_another_database_needs_the_logs_database(dialect, Base) -> None:
    """Offline there is no connection to say which database the log is in: a table in
    another database needs ``audit_schema`` (or a MetaData schema), else a clear error."""
    from sqlaudit.exceptions import SQLAuditArgumentError

    @track_table(tracked_fields=["title"])
    class Remote(Base):
        __tablename__ = "remote_notes"
        __table_args__ = {"schema": "archive"}
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        title: Mapped[str] = mapped_column(String(50))

    with pytest.raises(SQLAuditArgumentError, match=r"'archive\.remote_notes' is in database "
                       r"'archive': name the database of sqlaudit_log .* audit_schema="):
        render_audit_ddl(Remote, "mysql")
    create = render_audit_ddl(Remote, "mysql", audit_schema="appdb")[1]
    assert "INSERT INTO appdb.sqlaudit_log (" in create
    assert "AFTER INSERT ON archive.remote_notes FOR EACH ROW" in create


def test_a_key_unique_only_in_the_database_is_found_with_a_backtick_in_its_name(
        engine, Base) -> None:
    """SQLAlchemy's MySQL inspector returns a backtick in a reflected name doubled; the
    key check and audit_status read the real names."""
    raw(engine, "CREATE TABLE `tick``s` (id INT PRIMARY KEY, `co``de` VARCHAR(20) NOT NULL UNIQUE, "
                "title VARCHAR(50))")

    @track_table(tracked_fields=["title"], resource_id_field="code")
    class Tick(Base):
        __tablename__ = "tick`s"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        code: Mapped[str] = mapped_column("co`de", String(20))  # unique in the database only
        title: Mapped[str] = mapped_column(String(50))

    install_audit_triggers(engine, Tick)
    raw(engine, "INSERT INTO `tick``s` VALUES (1, 'A-1', 'first')")
    assert [r[:2] for r in log_rows(engine)] == [("insert", "A-1")]
    assert audit_status(engine, Tick) == {"tick`s": AuditState.CURRENT}


@pytest.mark.parametrize("sql_mode", [
    "STRICT_ALL_TABLES", "TRADITIONAL", "ONLY_FULL_GROUP_BY",
    "TRADITIONAL,ONLY_FULL_GROUP_BY,ANSI_QUOTES", ""])
def test_strict_modes_and_only_full_group_by_change_nothing(make_engine, Base, sql_mode) -> None:
    """Triggers created and run, and every history read, under a strict ``sql_mode``
    (STRICT_ALL_TABLES; TRADITIONAL, which adds NO_ZERO_DATE and errors for division by
    zero) and under ONLY_FULL_GROUP_BY, which refuses a GROUP BY that leaves a selected
    column out; and under the empty, lax mode."""
    engine = make_engine()

    @event.listens_for(engine, "connect")
    def _mode(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET SESSION sql_mode = '{sql_mode}'")
        cursor.close()

    @track_table(tracked_fields=["customer", "amount", "due"])
    class Bill(Base):
        __tablename__ = "bills"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        customer: Mapped[Optional[str]] = mapped_column(String(50))
        amount: Mapped[Optional[Decimal]] = mapped_column(Numeric(10, 2))
        due: Mapped[Optional[datetime]]

    Base.metadata.create_all(engine)
    _write_history(engine, Bill, customer=("Ann", None), amount=(Decimal("1.50"), Decimal("2.00")),
                   due=(datetime(2024, 1, 2, 3, 4, 5), datetime(2025, 1, 1)))
    raw(engine, "UPDATE bills SET customer = customer WHERE id = 1",  # changes nothing
        "UPDATE bills SET id = 2 WHERE id = 1")  # the key: delete + insert
    with engine.connect() as conn:
        mode = conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar()
        trigger_modes = set(conn.exec_driver_sql(
            "SELECT SQL_MODE FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'bills'").scalars())
    assert set(mode.split(",")) >= set(filter(None, sql_mode.split(",")))
    assert trigger_modes == {mode}
    found = _read_everything(engine, Bill)
    assert found["resource"] == sorted([
        ("insert", "customer", None, "Ann", "alice"),
        ("insert", "amount", None, Decimal("1.50"), "alice"),
        ("insert", "due", None, datetime(2024, 1, 2, 3, 4, 5), "alice"),
        ("update", "customer", "Ann", None, "bob"),
        ("update", "amount", Decimal("1.50"), Decimal("2.00"), "bob"),
        ("update", "due", datetime(2024, 1, 2, 3, 4, 5), datetime(2025, 1, 1), "bob"),
        ("delete", "amount", Decimal("2.00"), None, None),
        ("delete", "due", datetime(2025, 1, 1), None, None),
        ("insert", "amount", None, Decimal("2.00"), None),
        ("insert", "due", None, datetime(2025, 1, 1), None),
    ])
    assert found["transactions"] == [4, 3, 3]  # newest first: the key change, bob, alice
    assert found["state"] is None  # row 1 became row 2
    assert found["table"] == ["2"]


_SKIPPED_DUPLICATE = [("insert", "3", None, {"title": "three"})]
_REPLACED = [("delete", "1", {"title": "old"}, None), ("insert", "1", None, {"title": "one"}),
             ("insert", "3", None, {"title": "three"})]


@pytest.mark.parametrize("statement, expected", [
    # LOCAL implies IGNORE: the duplicate key 1 is skipped, with a warning
    ("LOAD DATA LOCAL INFILE :path INTO TABLE notes FIELDS TERMINATED BY ','", _SKIPPED_DUPLICATE),
    ("LOAD DATA LOCAL INFILE :path REPLACE INTO TABLE notes FIELDS TERMINATED BY ','", _REPLACED),
    ("LOAD DATA INFILE :path IGNORE INTO TABLE notes FIELDS TERMINATED BY ','", _SKIPPED_DUPLICATE),
    ("LOAD DATA INFILE :path REPLACE INTO TABLE notes FIELDS TERMINATED BY ','", _REPLACED),
])
def test_load_data_infile_is_recorded_per_row(make_engine, Base, statement, expected) -> None:
    """LOAD DATA fires the row triggers, read by the client (LOCAL) or by the server:
    each loaded row is recorded with the acting user, a skipped duplicate is not;
    REPLACE records the replaced row's delete before its insert. (LOCAL needs the
    client's consent, PyMySQL's ``local_infile=True``, and the server's ``local_infile``
    on; the server-side form needs the FILE privilege, a ``secure_file_priv`` that
    allows the file's directory and a file the server can read.)"""
    import os
    import shutil
    import tempfile

    engine = make_engine(connect_args={"local_infile": True})
    _note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    raw(engine, "INSERT INTO notes (id, title) VALUES (1, 'old')")
    folder = tempfile.mkdtemp(prefix="sqlaudit_load_")
    try:
        os.chmod(folder, 0o755)  # the server-side form is read by the server's own account
        data = os.path.join(folder, "notes.csv")
        with open(data, "w", encoding="utf-8") as out:
            out.write("1,one\n3,three\n")
        os.chmod(data, 0o644)
        with engine.begin() as conn, audit_context(user_id="loader"):
            loaded = conn.execute(text(statement), {"path": data}).rowcount
    finally:
        shutil.rmtree(folder)
    rows = log_rows(engine)[1:]
    with engine.connect() as conn:
        users = conn.exec_driver_sql("SELECT changed_by FROM sqlaudit_log WHERE id > 1").scalars().all()
    assert loaded == (3 if "REPLACE" in statement else 1)
    assert [(op, rid, old, new) for op, rid, _, old, new in rows] == expected
    assert set(users) == {"loader"}


# ------------------------------------------------------------------ lower_case_table_names = 1


@pytest.fixture(scope="module")
def lower_case_server(mariadb_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A private, throw-away MariaDB server started with ``--lower-case-table-names=1``
    (a setting fixed when a server's data directory is made, so the shared server
    cannot have it): a fresh data directory, a free port on 127.0.0.1, stopped and
    removed after the module. It needs the server's programs (mariadb-install-db,
    mariadbd) where the MariaDB tests run; without them the tests fail when
    SQLAUDIT_REQUIRE_MARIADB=1, else they are skipped."""
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import time

    install, server = shutil.which("mariadb-install-db"), (
        shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin"))
    if not install or not server:
        message = ("lower_case_table_names tests need mariadb-install-db and mariadbd "
                   "(Debian: apt-get install mariadb-server)")
        if os.environ.get("SQLAUDIT_REQUIRE_MARIADB") == "1":
            pytest.fail(message + " (SQLAUDIT_REQUIRE_MARIADB=1)", pytrace=False)
        pytest.skip(message)
    home = tmp_path_factory.mktemp("lower_case_server")
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run([install, "--no-defaults", f"--datadir={home / 'data'}", *as_root,
                    "--auth-root-authentication-method=normal", "--skip-test-db",
                    "--lower-case-table-names=1"],
                   check=True, capture_output=True, timeout=120)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(home / "server.log", "wb")
    process = subprocess.Popen(
        [server, "--no-defaults", f"--datadir={home / 'data'}", f"--socket={home / 'sock'}",
         f"--port={port}", "--bind-address=127.0.0.1", *as_root, "--lower-case-table-names=1",
         "--skip-log-bin", "--innodb-buffer-pool-size=32M", f"--pid-file={home / 'pid'}"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"mysql+pymysql://root@127.0.0.1:{port}/?charset=utf8mb4"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                probe_engine = create_engine(url)
                with probe_engine.connect() as conn:
                    assert conn.exec_driver_sql("SELECT @@lower_case_table_names").scalar() == 1
                probe_engine.dispose()
                break
            except OperationalError:
                probe_engine.dispose()
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("the lower_case_table_names=1 server did not start: "
                                + (home / "server.log").read_text(errors="replace")[-2000:],
                                pytrace=False)
                time.sleep(0.3)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def lower_case_engine(lower_case_server: str) -> Any:
    """An engine on a fresh database of the lower_case_table_names=1 server."""
    from sqlalchemy.engine import make_url

    admin = create_engine(lower_case_server)
    database = f"sqlaudit_t_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    engine = create_engine(make_url(lower_case_server).set(database=database))
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE `{database}`")
    admin.dispose()


def test_lower_case_table_names_1_records_and_reads_mixed_case_tables(
        dialect, lower_case_engine, Base) -> None:
    """On a server with lower_case_table_names=1 (Windows' default; the server stores
    table names in lower case), a model named in mixed case is installed, recorded,
    read back by every history read and reported current by audit_status."""
    engine = lower_case_engine

    @track_table(tracked_fields=["Title"])
    class MixedNote(Base):
        __tablename__ = "MixedNotes"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        Title: Mapped[str] = mapped_column(String(50))

    Base.metadata.create_all(engine)
    _write_history(engine, MixedNote, Title=("a", "b"))
    raw(engine, "UPDATE MIXEDNOTES SET Title = 'raw' WHERE id = 1")
    with engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME <> 'sqlaudit_seal' ORDER BY TABLE_NAME").scalars().all()
    assert stored == ["mixednotes", "sqlaudit_log"]
    assert _read_everything(engine, MixedNote) == {
        "resource": [("insert", "Title", None, "a", "alice"), ("update", "Title", "a", "b", "bob"),
                     ("update", "Title", "b", "raw", None)],
        "changes": [("insert", "Title", "a"), ("update", "Title", "b"), ("update", "Title", "raw")],
        "transactions": [1, 1, 1],
        "state": {"Title": "raw"},
        "table": ["1"],
    }
    assert audit_status(engine, MixedNote) == {"MixedNotes": AuditState.CURRENT}
    drop_audit_triggers(engine, MixedNote)
    assert audit_status(engine, MixedNote) == {"MixedNotes": AuditState.MISSING}


def test_a_metadata_schema_puts_the_tables_and_the_log_in_that_database(engine, other_database) -> None:
    """``MetaData(schema="other")``: the tables, the log and its guards are created in
    that database, the triggers write there and every history read reads there, while
    the connection's own database stays empty."""
    from sqlalchemy import MetaData

    class OtherBase(DeclarativeBase):
        metadata = MetaData(schema=other_database)

    @track_table(tracked_fields=["title"])
    class Remote(OtherBase):
        __tablename__ = "remote_notes"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        title: Mapped[str] = mapped_column(String(50))

    OtherBase.metadata.create_all(engine)
    _write_history(engine, Remote, title=("a", "b"))
    with engine.connect() as conn:
        here = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()").scalar()
        logged = conn.execute(text(
            f"SELECT operation, changed_by FROM `{other_database}`.sqlaudit_log ORDER BY id")).all()
        guards = conn.execute(text(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = :db "
            "AND EVENT_OBJECT_TABLE = 'sqlaudit_log' ORDER BY TRIGGER_NAME"),
            {"db": other_database}).scalars().all()
    assert here == 0
    assert [tuple(r) for r in logged] == [("insert", "alice"), ("update", "bob")]
    assert guards == ["sqlaudit_log_no_delete", "sqlaudit_log_no_update"]
    with Session(engine) as s:
        assert [(r.operation, r.new_value, r.changed_by) for r in
                get_resource_changes(Remote, session=s, sort_direction="asc")] == [
            ("insert", "a", "alice"), ("update", "b", "bob")]
    assert audit_status(engine, Remote) == {f"{other_database}.remote_notes": AuditState.CURRENT}
