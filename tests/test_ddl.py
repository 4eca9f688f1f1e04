"""Installing, replacing, removing and rendering the audit triggers.

``create_all``/``drop_all`` install and remove the triggers of ``@track_table``
models; ``install_audit_triggers``/``drop_audit_triggers`` do it for tables
that already exist; ``render_audit_ddl`` returns the SQL as strings.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, insert, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit import (
    audit_context,
    drop_audit_triggers,
    install_audit_triggers,
    register_hooks,
    render_audit_ddl,
    track_table,
)
from sqlaudit.config import SQLAuditConfig, set_config
from sqlaudit.exceptions import SQLAuditTableNotTrackedError, SQLAuditUnsupportedDialectError

from conftest import changes, summary

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True


def invoice_model(Base: Any, tablename: str = "invoices") -> type:
    @track_table(tracked_fields=["customer", "amount"])
    class Invoice(Base):
        __tablename__ = tablename
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        customer: Mapped[str] = mapped_column(String(50))
        amount: Mapped[int] = mapped_column(Integer)

    return Invoice


def create_plain_invoices(engine, rows: list[dict[str, Any]]) -> None:
    """The invoices table as an application created it before it used sqlaudit."""
    metadata = MetaData()
    table = Table(
        "invoices", metadata,
        Column("id", Integer, primary_key=True),
        Column("customer", String(50)),
        Column("amount", Integer),
    )
    metadata.create_all(engine)
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(table), rows)


def raw(engine, *statements: str) -> None:
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql))


def history(Invoice: type, engine) -> list[tuple[Any, ...]]:
    with Session(engine) as s:
        return summary(changes(Invoice, s))


def log_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM sqlaudit_log")).scalar_one()


def has_table(engine, name: str) -> bool:
    return inspect(engine).has_table(name)


def sqlaudit_functions(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT p.proname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace "
            "WHERE n.nspname = :schema AND p.proname LIKE 'sqlaudit%' ORDER BY p.proname"
        ), {"schema": engine.info_schema}).scalars())


# ------------------------------------------------------------------ install on existing tables


def test_install_on_an_existing_table_audits_later_raw_sql_writes(engine, Base) -> None:
    create_plain_invoices(engine, [{"id": 1, "customer": "Acme", "amount": 10}])
    Invoice = invoice_model(Base)
    raw(engine, "UPDATE invoices SET amount = 11 WHERE id = 1")  # before: not audited
    assert not has_table(engine, "sqlaudit_log")

    install_audit_triggers(engine, Invoice)

    assert has_table(engine, "sqlaudit_log")
    raw(engine,
        "UPDATE invoices SET amount = 12 WHERE id = 1",
        "INSERT INTO invoices (id, customer, amount) VALUES (2, 'Globex', 5)",
        "DELETE FROM invoices WHERE id = 1")
    assert history(Invoice, engine) == [
        ("update", "1", "amount", 11, 12, None),
        ("insert", "2", "amount", None, 5, None),
        ("insert", "2", "customer", None, "Globex", None),
        ("delete", "1", "amount", 12, None, None),
        ("delete", "1", "customer", "Acme", None, None),
    ]


def test_install_on_an_existing_table_stamps_the_acting_user(engine, Base) -> None:
    create_plain_invoices(engine, [{"id": 1, "customer": "Acme", "amount": 10}])
    Invoice = invoice_model(Base)
    register_hooks()
    with audit_context(user_id="early"):
        raw(engine, "UPDATE invoices SET amount = 11 WHERE id = 1")  # no sqlaudit_log yet

    install_audit_triggers(engine, Invoice)

    with audit_context(user_id="ops"):
        raw(engine, "UPDATE invoices SET amount = 12 WHERE id = 1")
    assert history(Invoice, engine) == [("update", "1", "amount", 11, 12, "ops")]


def test_installing_twice_never_doubles_records(engine, Base) -> None:
    Invoice = invoice_model(Base)
    Base.metadata.create_all(engine)  # installs once

    install_audit_triggers(engine, Invoice)
    install_audit_triggers(engine, Invoice)

    raw(engine,
        "INSERT INTO invoices (id, customer, amount) VALUES (1, 'Acme', 10)",
        "UPDATE invoices SET amount = 20",
        "DELETE FROM invoices")
    assert log_count(engine) == 3
    assert history(Invoice, engine) == [
        ("insert", "1", "amount", None, 10, None),
        ("insert", "1", "customer", None, "Acme", None),
        ("update", "1", "amount", 10, 20, None),
        ("delete", "1", "amount", 20, None, None),
        ("delete", "1", "customer", "Acme", None, None),
    ]


def test_install_inside_the_callers_connection_transaction(engine, Base) -> None:
    create_plain_invoices(engine, [])
    Invoice = invoice_model(Base)
    with engine.begin() as conn:
        install_audit_triggers(conn, Invoice)
        conn.execute(text("INSERT INTO invoices (id, customer, amount) VALUES (1, 'Acme', 10)"))
    assert history(Invoice, engine) == [
        ("insert", "1", "amount", None, 10, None),
        ("insert", "1", "customer", None, "Acme", None),
    ]


def test_write_after_install_in_the_same_transaction_carries_the_callback_user(
    engine, Base
) -> None:
    create_plain_invoices(engine, [])
    Invoice = invoice_model(Base)
    set_config(SQLAuditConfig(get_user_id_callback=lambda: 7))
    register_hooks()
    with engine.begin() as conn:
        install_audit_triggers(conn, Invoice)
        conn.execute(text("INSERT INTO invoices (id, customer, amount) VALUES (1, 'Acme', 10)"))
    assert history(Invoice, engine) == [
        ("insert", "1", "amount", None, 10, "7"),
        ("insert", "1", "customer", None, "Acme", "7"),
    ]


# ------------------------------------------------------------------ dropping


def test_drop_audit_triggers_stops_auditing_and_keeps_the_history(engine, Base) -> None:
    Invoice = invoice_model(Base)
    Base.metadata.create_all(engine)
    raw(engine, "INSERT INTO invoices (id, customer, amount) VALUES (1, 'Acme', 10)")

    drop_audit_triggers(engine, Invoice)

    raw(engine,
        "UPDATE invoices SET amount = 20",
        "INSERT INTO invoices (id, customer, amount) VALUES (2, 'Globex', 5)",
        "DELETE FROM invoices WHERE id = 1")
    assert history(Invoice, engine) == [
        ("insert", "1", "amount", None, 10, None),
        ("insert", "1", "customer", None, "Acme", None),
    ]


def test_drop_all_then_create_all_audits_again(engine, Base) -> None:
    Invoice = invoice_model(Base)
    Base.metadata.create_all(engine)
    raw(engine, "INSERT INTO invoices (id, customer, amount) VALUES (1, 'Acme', 10)")

    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)

    raw(engine, "INSERT INTO invoices (id, customer, amount) VALUES (1, 'Initech', 3)",
        "UPDATE invoices SET amount = 4")
    assert history(Invoice, engine) == [  # the history from before drop_all() is kept
        ("insert", "1", "amount", None, 10, None),
        ("insert", "1", "customer", None, "Acme", None),
        ("insert", "1", "amount", None, 3, None),
        ("insert", "1", "customer", None, "Initech", None),
        ("update", "1", "amount", 3, 4, None),
    ]


def test_user_stamping_survives_drop_all_and_create_all_on_pooled_connections(
    make_engine, Base
) -> None:
    engine = make_engine(pool_size=2, max_overflow=0)
    Invoice = invoice_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()

    def write_on_both_pooled_connections(user: str, first_id: int) -> list[Any]:
        seen = []
        with engine.connect() as one, engine.connect() as two, audit_context(user_id=user):
            for offset, conn in enumerate((one, two)):
                conn.execute(text(
                    f"INSERT INTO invoices (id, customer, amount) VALUES ({first_id + offset}, '{user}', 1)"
                ))
                conn.commit()
                seen.append(conn.connection.dbapi_connection)
        return seen

    before = write_on_both_pooled_connections("A", 1)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    after = write_on_both_pooled_connections("B", 1)

    assert {id(c) for c in after} == {id(c) for c in before}  # the same two connections
    assert [(r[1], r[2], r[4], r[5]) for r in history(Invoice, engine)][4:] == [
        ("1", "amount", 1, "B"), ("1", "customer", "B", "B"),
        ("2", "amount", 1, "B"), ("2", "customer", "B", "B"),
    ]


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_drop_all_leaves_no_trigger_function_on_postgresql(engine, Base) -> None:
    """drop_all() removes the dropped tables' functions; the log keeps its guard function."""
    invoice_model(Base)
    Base.metadata.create_all(engine)
    assert "sqlaudit_fn_invoices" in sqlaudit_functions(engine)

    Base.metadata.drop_all(engine)

    assert sqlaudit_functions(engine) == ["sqlaudit_log_protect"]


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_drop_audit_triggers_removes_the_function_on_postgresql(engine, Base) -> None:
    Invoice = invoice_model(Base)
    Base.metadata.create_all(engine)
    installed = sqlaudit_functions(engine)
    assert "sqlaudit_fn_invoices" in installed

    drop_audit_triggers(engine, Invoice)

    assert sqlaudit_functions(engine) == [f for f in installed if f != "sqlaudit_fn_invoices"]


# ------------------------------------------------------------------ rendering


@pytest.mark.parametrize("dialect_name", ["postgresql", "sqlite"])
def test_render_audit_ddl_returns_the_statements_as_strings(Base, dialect_name: str) -> None:
    Order = invoice_model(Base, tablename="Order Lines")  # a name that needs quoting

    ddl = render_audit_ddl(Order, dialect_name)

    assert ddl and all(isinstance(sql, str) and sql.strip() for sql in ddl)
    create_trigger = [sql for sql in ddl if sql.startswith("CREATE TRIGGER")]
    assert all(' ON "Order Lines"' in sql for sql in create_trigger)
    covered = {
        op for op in ("INSERT", "UPDATE", "DELETE")
        if any(f'AFTER {op} ON "Order Lines"' in sql for sql in create_trigger)
    }
    assert covered == {"INSERT", "UPDATE", "DELETE"}


def test_render_audit_ddl_for_an_unknown_dialect_raises(Base) -> None:
    Invoice = invoice_model(Base)
    with pytest.raises(SQLAuditUnsupportedDialectError, match="oracle"):
        render_audit_ddl(Invoice, "oracle")


def test_rendered_ddl_run_verbatim_audits_the_table(engine, Base) -> None:
    create_plain_invoices(engine, [])
    Invoice = invoice_model(Base)
    Base.metadata.create_all(engine, tables=[Invoice.metadata.tables["sqlaudit_log"]])
    with engine.begin() as conn:
        for sql in render_audit_ddl(Invoice, engine.dialect.name,
                                    audit_schema=getattr(engine, "info_schema", None)):
            conn.exec_driver_sql(sql)
    raw(engine, "INSERT INTO invoices (id, customer, amount) VALUES (1, 'Acme', 10)")
    assert history(Invoice, engine) == [
        ("insert", "1", "amount", None, 10, None),
        ("insert", "1", "customer", None, "Acme", None),
    ]


def test_rendered_ddl_pasted_into_an_alembic_migration_runs(engine, Base) -> None:
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    create_plain_invoices(engine, [])
    Invoice = invoice_model(Base)
    Base.metadata.create_all(engine, tables=[Invoice.metadata.tables["sqlaudit_log"]])
    with engine.begin() as conn:
        op = Operations(MigrationContext.configure(conn))
        for sql in render_audit_ddl(Invoice, engine.dialect.name,
                                    audit_schema=getattr(engine, "info_schema", None)):
            op.execute(sql)  # a str, as pasted: Alembic runs it as text()
    raw(engine, "INSERT INTO invoices (id, customer, amount) VALUES (1, 'Acme', 10)")
    assert history(Invoice, engine) == [
        ("insert", "1", "amount", None, 10, None),
        ("insert", "1", "customer", None, "Acme", None),
    ]


def test_table_name_that_needs_quoting_is_audited(engine, Base) -> None:
    Order = invoice_model(Base, tablename="Order Lines")
    Base.metadata.create_all(engine)
    table = engine.dialect.identifier_preparer.quote("Order Lines")  # "..." or `...`
    raw(engine, f"INSERT INTO {table} (id, customer, amount) VALUES (1, 'Acme', 10)",
        f"UPDATE {table} SET amount = 11")
    assert history(Order, engine) == [
        ("insert", "1", "amount", None, 10, None),
        ("insert", "1", "customer", None, "Acme", None),
        ("update", "1", "amount", 10, 11, None),
    ]


# ------------------------------------------------------------------ errors


def test_install_with_an_untracked_model_names_it(engine, Base) -> None:
    class Ledger(Base):
        __tablename__ = "general_ledger_rows"
        id: Mapped[int] = mapped_column(primary_key=True)

    with pytest.raises(SQLAuditTableNotTrackedError, match=r"\bLedger\b"):
        install_audit_triggers(engine, Ledger)


def test_install_with_no_models_raises_value_error(engine) -> None:
    with pytest.raises(ValueError, match="no tracked models"):
        install_audit_triggers(engine)


def test_install_with_a_metadata_without_tracked_models_raises_value_error(engine, Base) -> None:
    class Plain(Base):
        __tablename__ = "plain"
        id: Mapped[int] = mapped_column(primary_key=True)

    with pytest.raises(ValueError, match="no tracked models"):
        install_audit_triggers(engine, Base.metadata)
