"""Joined-table inheritance: a subclass tracks fields it inherits (issue section 5)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from sqlaudit import audit_context, register_hooks
from sqlaudit.ddl import (AuditState, audit_status, drop_audit_triggers, install_audit_triggers,
                          render_audit_ddl)
from sqlaudit.retrieval import get_resource_changes

from sample_models import polymorphic_models

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True


@pytest.fixture
def parties(engine, Base) -> tuple[type, type, type]:
    models = polymorphic_models(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    return models


def _history(engine: Any, Customer: type, **kw: Any) -> list[tuple[Any, ...]]:
    with Session(engine) as s:
        records = get_resource_changes(Customer, session=s, sort_direction="asc", **kw)
    return [(r.operation, r.resource_id, r.field_name, r.old_value, r.new_value, r.changed_by,
             r.table_name, r.table_label) for r in records]


def test_inherited_and_own_fields_are_returned_for_the_subclass(engine, parties) -> None:
    Party, Customer, Employee = parties
    with Session(engine) as s, audit_context(user_id=1):
        customer = Customer(name="Ann", email="ann@x", phone="555")
        s.add(customer)
        s.commit()
        customer.name, customer.email = "Anne", "anne@x"
        s.commit()
        cid = customer.party_id
    rows = _history(engine, Customer)
    assert sorted(r[1:6] for r in rows if r[0] == "insert") == [
        (str(cid), "email", None, "ann@x", "1"), (str(cid), "name", None, "Ann", "1")]
    assert sorted(r[2:5] for r in rows if r[0] == "update") == [
        ("email", "ann@x", "anne@x"), ("name", "Ann", "Anne")]
    assert {r[6] for r in rows} == {"customers"} and {r[7] for r in rows} == {"Customer"}
    assert all(r[2] != "phone" for r in rows)  # not tracked by Customer


def test_other_subclasses_changes_are_not_the_customers(engine, parties) -> None:
    Party, Customer, Employee = parties
    with Session(engine) as s, audit_context(user_id=2):
        s.add_all([Customer(name="C"), Employee(name="E")])
        s.commit()
        for obj in s.query(Party).all():
            obj.name = obj.name + "2"
        s.commit()
    rows = _history(engine, Customer)
    assert {r[4] for r in rows if r[2] == "name"} == {"C", "C2"}


def test_a_customer_older_than_auditing_gets_its_inherited_changes(engine, parties) -> None:
    Party, Customer, Employee = parties
    drop_audit_triggers(engine, Customer, Party)
    with engine.begin() as conn:  # written before auditing: nothing recorded
        conn.execute(text("INSERT INTO parties (party_id, name, kind) VALUES (7, 'Old', 'customer')"))
        conn.execute(text("INSERT INTO customers (party_id, email) VALUES (7, NULL)"))
    install_audit_triggers(engine, Customer, Party)
    with Session(engine) as s, audit_context(user_id=3):
        c = s.get(Customer, 7)
        c.name = "New"
        s.commit()
    rows = _history(engine, Customer, filter_resource_ids=7)
    assert ("update", "7", "name", "Old", "New", "3", "customers", "Customer") in rows


def test_the_parent_table_gets_triggers_for_the_inherited_fields(engine, parties, dialect) -> None:
    Party, Customer, Employee = parties
    status = audit_status(engine, Customer, Party)
    assert set(status.values()) == {AuditState.CURRENT}
    assert "parties" in "\n".join(render_audit_ddl(Party, dialect))
