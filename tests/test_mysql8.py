"""MySQL 8: what differs from MariaDB, on a real MySQL 8 server.

The rest of the suite runs on MariaDB; this module checks the statements and
types sqlaudit chooses differently on MySQL (no ``CREATE OR REPLACE TRIGGER``,
the ``utf8mb4_0900_bin`` collation, MySQL's binary JSON) and the basic
guarantees there. It needs ``SQLAUDIT_TEST_MYSQL_URL`` or Docker (see
tests/conftest.py); without either it is skipped with the reason shown.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Optional

import pytest
from sqlalchemy import JSON, Integer, Numeric, String, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit import (audit_context, get_changes, get_resource_changes, install_audit_triggers,
                      register_hooks, track_table)

pytestmark = pytest.mark.parametrize("dialect", ["mysql"], indirect=True)


@pytest.fixture
def Invoice(engine: Any, Base: Any) -> type:
    @track_table(tracked_fields=["customer", "amount", "doc"])
    class Invoice(Base):
        __tablename__ = "invoices"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        customer: Mapped[Optional[str]] = mapped_column(String(50))
        amount: Mapped[Optional[Decimal]] = mapped_column(Numeric(10, 2))
        doc: Mapped[Optional[Any]] = mapped_column(JSON)

    Base.metadata.create_all(engine)
    register_hooks()
    return Invoice


def test_the_server_is_mysql_not_mariadb(engine) -> None:
    with engine.connect() as conn:
        assert not conn.dialect.is_mariadb
        assert conn.dialect.server_version_info >= (8, 0, 29)  # CREATE TRIGGER IF NOT EXISTS


def test_the_logs_indexed_text_columns_use_the_exact_collation(engine, Invoice) -> None:
    with engine.connect() as conn:
        collations = dict(conn.execute(text(
            "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'sqlaudit_log' "
            "AND COLUMN_NAME IN ('table_name', 'resource_id', 'changed_by')")).all())
    assert collations == dict.fromkeys(("table_name", "resource_id", "changed_by"), "utf8mb4_0900_bin")


def test_inserts_updates_and_deletes_are_recorded_with_the_user_and_read_back_typed(
        engine, Invoice) -> None:
    with audit_context(user_id="alice"), Session(engine) as s:
        s.add(Invoice(id=1, customer="Acme", amount=Decimal("1.50"), doc={"b": 1, "a": [1, None]}))
        s.commit()
        s.get(Invoice, 1).amount = Decimal("2.25")
        s.commit()
        s.delete(s.get(Invoice, 1))
        s.commit()
    with Session(engine) as s:
        records = get_resource_changes(Invoice, session=s, sort_direction="asc")
    assert {r.changed_by for r in records} == {"alice"}
    assert {(r.operation, r.field_name): (r.old_value, r.new_value) for r in records} == {
        ("insert", "customer"): (None, "Acme"),
        ("insert", "amount"): (None, Decimal("1.50")),
        ("insert", "doc"): (None, {"a": [1, None], "b": 1}),  # MySQL reorders JSON keys
        ("update", "amount"): (Decimal("1.50"), Decimal("2.25")),
        ("delete", "customer"): ("Acme", None),
        ("delete", "amount"): (Decimal("2.25"), None),
        ("delete", "doc"): ({"a": [1, None], "b": 1}, None),
    }


def test_reinstalling_drops_and_creates_and_never_doubles_records(engine, Invoice) -> None:
    """MySQL has no CREATE OR REPLACE TRIGGER: a re-install drops and creates."""
    install_audit_triggers(engine, Invoice)
    install_audit_triggers(engine, Invoice)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO invoices (id, customer) VALUES (1, 'once')"))
    with Session(engine) as s:
        assert [r.new_value for r in get_resource_changes(Invoice, session=s)] == ["once"]


def test_the_log_refuses_update_and_delete(engine, Invoice) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO invoices (id, customer) VALUES (1, 'x')"))
    for sql in ("UPDATE sqlaudit_log SET changed_by = 'mallory'", "DELETE FROM sqlaudit_log"):
        with pytest.raises(DatabaseError, match="sqlaudit"), engine.begin() as conn:
            conn.execute(text(sql))


def test_a_user_filter_tells_trailing_spaces_apart(engine, Invoice) -> None:
    for i, user in enumerate(("bob", "bob "), start=1):
        with audit_context(user_id=user), Session(engine) as s:
            s.add(Invoice(id=i, customer=user))
            s.commit()
    with Session(engine) as s:
        assert [r.resource_id for r in get_changes(s, user_ids="bob")] == ["1"]


def test_the_user_never_reaches_the_next_transaction_on_a_reused_connection(engine, Invoice) -> None:
    with audit_context(user_id="alice"), Session(engine) as s:
        s.add(Invoice(id=1, customer="a"))
        s.commit()
    with engine.begin() as conn:  # the same pooled connection, no user set
        conn.execute(text("INSERT INTO invoices (id, customer) VALUES (2, 'b')"))
    with Session(engine) as s:
        by_id = {r.resource_id: r.changed_by for r in get_resource_changes(Invoice, session=s)}
    assert by_id == {"1": "alice", "2": None}
