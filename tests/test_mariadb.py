"""MariaDB (and MySQL), the third dialect: what is specific to it.

Modules of the rest of the suite that pass on MariaDB set ``MARIADB_PORTED = True``
and run there as a third dialect; this module holds what only MariaDB has (its
write statements, session user variables, its holes). It runs on MariaDB only,
from ``SQLAUDIT_TEST_MARIADB_URL`` (see tests/conftest.py).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Optional

import pytest
from sqlalchemy import Integer, Numeric, String, inspect, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlaudit import (AuditState, audit_status, drop_audit_triggers, install_audit_triggers,
                      render_audit_ddl, track_table)

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
    assert collations == dict.fromkeys(("table_name", "resource_id", "changed_by"), "utf8mb4_bin")
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
    install_audit_triggers(engine, Invoice)  # idempotent: never doubles records
    raw(engine, "UPDATE invoices SET customer = 'after'")
    drop_audit_triggers(engine, Invoice)
    raw(engine, "UPDATE invoices SET customer = 'unrecorded'")

    assert log_rows(engine) == [("update", "1", None, {"customer": "before"}, {"customer": "after"})]
    assert trigger_names(engine) == ["sqlaudit_log_no_delete", "sqlaudit_log_no_update"]


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
    assert ddl == render_audit_ddl(Order, "mariadb")
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
