"""Context, and investigating across tables: get_changes, get_transactions, to_dict.

Issue sections 1 (context: who, why, from where) and 2 (investigate across tables).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Integer, LargeBinary, Numeric, String, Uuid, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit import audit_context, register_hooks, track_table
from sqlaudit.config import SQLAuditConfig, set_config
from sqlaudit.context import clear_audit_context, set_audit_context
from sqlaudit.exceptions import SQLAuditContextError, SQLAuditUserIdValueError
from sqlaudit.retrieval import (
    AuditTransaction,
    SQLAuditRecord,
    get_changes,
    get_resource_changes,
    get_transactions,
)

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True


def shop_models(Base: Any) -> tuple[type, type]:
    @track_table(tracked_fields=["name", "price", "blob"])
    class Product(Base):
        __tablename__ = "products"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))
        price: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal("0"))
        blob: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    @track_table(tracked_fields=["product_id", "quantity"])
    class Order(Base):
        __tablename__ = "orders"
        id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
        product_id: Mapped[int] = mapped_column(Integer)
        quantity: Mapped[int] = mapped_column(Integer)

    return Product, Order


@pytest.fixture
def shop(engine, Base) -> tuple[type, type]:
    models = shop_models(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    return models


# ---------------------------------------------------------------- 1. context

def test_context_is_stored_per_transaction_and_returned_on_every_record(engine, shop) -> None:
    Product, Order = shop
    with Session(engine) as s, audit_context(user_id="u1", context={"request_id": "r1"}):
        s.add(Product(id=1, name="pen", price=Decimal("1.50")))
        s.add(Order(product_id=1, quantity=3))
        s.commit()
    with Session(engine) as s:
        records = get_changes(s)
    assert records and all(r.context == {"request_id": "r1"} for r in records)
    assert {r.table_name for r in records} == {"products", "orders"}


def test_context_is_none_when_none_was_set(engine, shop) -> None:
    Product, _ = shop
    with Session(engine) as s, audit_context(user_id="u1"):
        s.add(Product(id=1, name="pen"))
        s.commit()
    with Session(engine) as s:
        assert {r.context for r in get_changes(s)} == {None}


def test_nested_contexts_merge_inner_keys_win_and_keep_the_user(engine, shop) -> None:
    Product, _ = shop
    with audit_context(user_id="alice", reason="outer", context={"a": 1, "b": 1}):
        with audit_context(reason="inner", context={"b": 2, "c": 3}) as actor:
            assert actor.user_id == "alice" and actor.reason == "inner"
            with Session(engine) as s:
                s.add(Product(id=1, name="pen"))
                s.commit()
    with Session(engine) as s:
        (record, *_) = get_changes(s)
    assert record.changed_by == "alice"
    assert record.reason == "inner"
    assert record.context == {"a": 1, "b": 2, "c": 3}


def test_audit_context_without_user_falls_back_to_the_callback(engine, shop) -> None:
    Product, _ = shop
    set_config(SQLAuditConfig(get_user_id_callback=lambda: "from-callback"))
    with audit_context(context={"job": "nightly"}), Session(engine) as s:
        s.add(Product(id=1, name="pen"))
        s.commit()
    with Session(engine) as s:
        (record, *_) = get_changes(s)
    assert (record.changed_by, record.context) == ("from-callback", {"job": "nightly"})


def test_explicit_none_user_is_no_user_not_the_callback(engine, shop) -> None:
    Product, _ = shop
    set_config(SQLAuditConfig(get_user_id_callback=lambda: "from-callback"))
    with audit_context(user_id=None, context={"job": "x"}), Session(engine) as s:
        s.add(Product(id=1, name="pen"))
        s.commit()
    with Session(engine) as s:
        assert get_changes(s)[0].changed_by is None


def test_set_audit_context_applies_until_cleared(engine, shop) -> None:
    Product, _ = shop

    def request() -> None:  # a thread: its own contextvars, like a request handler
        set_audit_context(user_id="bob", context={"route": "/pens"})
        try:
            with Session(engine) as s:
                s.add(Product(id=1, name="pen"))
                s.commit()
        finally:
            clear_audit_context()
        with Session(engine) as s:
            s.add(Product(id=2, name="ink"))
            s.commit()

    worker = threading.Thread(target=request)
    worker.start()
    worker.join()
    with Session(engine) as s:
        by_id = {r.resource_id: r for r in get_changes(s, fields="name")}
    assert (by_id["1"].changed_by, by_id["1"].context) == ("bob", {"route": "/pens"})
    assert (by_id["2"].changed_by, by_id["2"].context) == (None, None)


def test_a_changed_context_restamps_the_same_transaction(engine, shop) -> None:
    Product, _ = shop
    with Session(engine) as s:
        with audit_context(user_id="u", context={"step": 1}):
            s.add(Product(id=1, name="a"))
            s.flush()
        with audit_context(user_id="u", context={"step": 2}):
            s.add(Product(id=2, name="b"))
            s.flush()
        s.commit()
    with Session(engine) as s:
        by_id = {r.resource_id: r.context for r in get_changes(s, fields="name")}
    assert by_id == {"1": {"step": 1}, "2": {"step": 2}}


@pytest.mark.parametrize("bad", [["not", "a", "dict"], "text", {1: "int key"},
                                 {"when": datetime.now()}, {"x": object()}])
def test_context_that_is_not_a_json_dict_is_refused_with_type_error(bad: Any) -> None:
    with pytest.raises(SQLAuditContextError) as exc, audit_context(user_id=1, context=bad):
        pass
    assert isinstance(exc.value, TypeError) and "context" in str(exc.value)


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": "nul\0byte"}, {"x": "a" * (1024 * 1024 + 1)}])
def test_context_that_cannot_be_stored_is_refused_with_value_error(bad: Any) -> None:
    with pytest.raises(SQLAuditUserIdValueError), audit_context(user_id=1, context=bad):
        pass


def test_hostile_context_values_round_trip(engine, shop) -> None:
    Product, _ = shop
    hostile = {"quote": "it's \"x\"", "sql": "'); DROP TABLE products; --", "emoji": "😀",
               "nested": {"list": [1, 2.5, None, True]}, "backslash": "\\u0000 literally"}
    with audit_context(user_id=1, context=hostile), Session(engine) as s:
        s.add(Product(id=1, name="pen"))
        s.commit()
    with Session(engine) as s:
        assert get_changes(s)[0].context == hostile


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_raw_sql_sets_the_context_with_set_local(engine, shop) -> None:
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL sqlaudit.context = '{\"k\": \"v\"}'"))
        conn.execute(text("INSERT INTO products (id, name, price) VALUES (1, 'pen', 1)"))
    with Session(engine) as s:
        assert get_changes(s)[0].context == {"k": "v"}


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
@pytest.mark.parametrize("raw", ["not json", "[1, 2]", "null"])
def test_raw_sql_context_that_is_not_an_object_never_breaks_the_write(engine, shop,
                                                                      raw: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("SELECT set_config('sqlaudit.context', :raw, true)"), {"raw": raw})
        conn.execute(text("INSERT INTO products (id, name, price) VALUES (1, 'pen', 1)"))
    with Session(engine) as s:
        assert get_changes(s)[0].context == {"invalid": raw}


def test_application_name_and_client_address_are_recorded(make_engine, Base, dialect) -> None:
    """PostgreSQL: the writer's application_name and TCP client address (the tests
    connect to 127.0.0.1); MariaDB: the client host of the session's USER(), no
    application_name; SQLite has neither."""
    pg = dialect == "postgresql"
    engine = make_engine(connect_args={"application_name": "billing-worker"}) if pg else make_engine()
    shop_models(Base)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO products (id, name, price) VALUES (1, 'pen', 1)"))
    with Session(engine) as s:
        record = get_changes(s)[0]
    expected = {"postgresql": ("billing-worker", "127.0.0.1"),
                "mariadb": (None, "127.0.0.1")}.get(dialect, (None, None))
    assert (record.application_name, record.client_addr) == expected


# ---------------------------------------------------------------- 2. get_changes

def _fill(engine: Any, Product: type, Order: type) -> dict[str, Any]:
    """Three transactions by two users over both tables."""
    order_id = uuid.uuid4()
    with Session(engine) as s, audit_context(user_id="alice", context={"request_id": "r1"}):
        s.add(Product(id=1, name="pen", price=Decimal("1.50"), blob=b"\x00\xff"))
        s.add(Order(id=order_id, product_id=1, quantity=2))
        s.commit()
    with Session(engine) as s, audit_context(user_id="bob", reason="price fix",
                                             context={"request_id": "r2", "tenant": "t1"}):
        s.execute(update(Product).where(Product.id == 1).values(price=Decimal("2.25")))
        s.commit()
    with Session(engine) as s, audit_context(user_id="alice", context={"request_id": "r3"}):
        s.delete(s.get(Order, order_id))
        s.commit()
    return {"order_id": order_id}


def test_get_changes_reads_every_tracked_table_newest_first(engine, shop) -> None:
    Product, Order = shop
    _fill(engine, Product, Order)
    with Session(engine) as s:
        records = get_changes(s)
    assert all(isinstance(r, SQLAuditRecord) for r in records)
    assert [r.operation for r in records][:2] == ["delete", "delete"]
    assert records[-1].operation == "insert"
    stamps = [(r.timestamp) for r in records]
    assert stamps == sorted(stamps, reverse=True)
    assert {r.table_name for r in records} == {"products", "orders"}


def test_get_changes_values_are_typed_for_imported_models(engine, shop) -> None:
    Product, Order = shop
    _fill(engine, Product, Order)
    with Session(engine) as s:
        price = get_changes(s, models=Product, operations="update")
        blob = get_changes(s, models=Product, fields="blob")
    assert [(r.old_value, r.new_value) for r in price] == [(Decimal("1.50"), Decimal("2.25"))]
    assert blob[0].new_value == b"\x00\xff"


@pytest.mark.parametrize("kw, expected", [
    ({"user_ids": "bob"}, {("products", "update")}),
    ({"user_ids": ["bob", "alice"], "operations": "delete"}, {("orders", "delete")}),
    ({"models": "Order"}, {("orders", "insert"), ("orders", "delete")}),
    ({"context": {"request_id": "r2"}}, {("products", "update")}),
    ({"context": {"tenant": "t1", "request_id": "r2"}}, {("products", "update")}),
    ({"context": {"request_id": "nope"}}, set()),
    ({"fields": "quantity"}, {("orders", "insert"), ("orders", "delete")}),
    ({"operations": ["insert"], "fields": ["price"]}, {("products", "insert")}),
])
def test_get_changes_filters_combine(engine, shop, kw: dict[str, Any], expected: set[Any]) -> None:
    Product, Order = shop
    _fill(engine, Product, Order)
    if kw.get("models") == "Order":
        kw["models"] = Order
    with Session(engine) as s:
        got = {(r.table_name, r.operation) for r in get_changes(s, **kw)}
    assert got == expected


def test_get_changes_by_resource_and_transaction(engine, shop) -> None:
    Product, Order = shop
    ids = _fill(engine, Product, Order)
    with Session(engine) as s:
        order = get_changes(s, models=Order, resource_ids=ids["order_id"])
        assert {r.operation for r in order} == {"insert", "delete"}
        txid = order[0].transaction_id
        same_tx = get_changes(s, transaction_ids=txid)
    assert {r.transaction_id for r in same_tx} == {txid}
    assert {(r.table_name, r.operation) for r in same_tx} == {("orders", "delete")}


def test_get_changes_date_range_accepts_dates_and_datetimes(engine, shop) -> None:
    Product, Order = shop
    _fill(engine, Product, Order)
    today = datetime.now(timezone.utc).date()
    with Session(engine) as s:
        everything = get_changes(s)
        assert get_changes(s, date_range=(today - timedelta(days=1), today + timedelta(days=1))) == everything
        assert get_changes(s, date_range=(None, datetime.now(timezone.utc) - timedelta(days=1))) == []
        with pytest.raises(ValueError, match="date_range must be a"):
            get_changes(s, date_range="2026-01-01")
        with pytest.raises(ValueError, match="date_range must be a"):
            get_changes(s, date_range=(None, None, None))


def test_get_changes_limit_and_offset_page_over_records_without_gaps(engine, shop) -> None:
    Product, Order = shop
    with Session(engine) as s, audit_context(user_id="u"):
        for i in range(1, 31):  # not 0: MariaDB would auto-number it
            s.add(Product(id=i, name=f"p{i}", price=Decimal(i)))
            s.commit()
    with Session(engine) as s:
        everything = get_changes(s)
        pages = [get_changes(s, limit=7, offset=o) for o in range(0, len(everything), 7)]
    assert [r for page in pages for r in page] == everything


def test_get_changes_argument_errors_name_the_argument(engine, shop) -> None:
    Product, _ = shop
    with Session(engine) as s:
        with pytest.raises(ValueError, match="operations"):
            get_changes(s, operations="upsert")
        with pytest.raises(ValueError, match="not tracked fields"):
            get_changes(s, models=Product, fields="nope")
        with pytest.raises(TypeError, match="transaction ids"):
            get_changes(s, transaction_ids="12")
        with pytest.raises(ValueError, match="sort_direction"):
            get_changes(s, sort_direction="up")


def test_tables_whose_model_is_not_imported_come_back_with_json_values(engine, Base, shop) -> None:
    Product, Order = shop
    with Session(engine) as s, audit_context(user_id="u"):
        s.add(Product(id=1, name="pen", price=Decimal("1.5")))
        s.commit()
    # read through a MetaData that knows no models, as another service would
    from sqlaudit import spec as spec_module

    spec_module._MODELS.clear()
    with Session(engine) as s:
        records = {r.field_name: r.new_value for r in get_changes(s)}
    assert records["name"] == "pen"
    assert Decimal(str(records["price"])) == Decimal("1.5")


def test_get_resource_changes_filters_transaction_ids(engine, shop) -> None:
    Product, Order = shop
    _fill(engine, Product, Order)
    with Session(engine) as s:
        txid = get_changes(s, operations="update")[0].transaction_id
        got = get_resource_changes(Product, session=s, filter_transaction_ids=[txid])
    assert [(r.operation, r.field_name) for r in got] == [("update", "price")]


# ---------------------------------------------------------------- get_transactions

def test_get_transactions_groups_changes_newest_first_in_order(engine, shop) -> None:
    Product, Order = shop
    _fill(engine, Product, Order)
    with Session(engine) as s:
        transactions = get_transactions(s)
    assert all(isinstance(t, AuditTransaction) for t in transactions)
    assert [t.context["request_id"] for t in transactions] == ["r3", "r2", "r1"]
    first = transactions[-1]
    assert first.changed_by == "alice"
    assert sorted(c.table_name for c in first.changes) == ["orders"] * 2 + ["products"] * 3
    # in the order they happened: each statement's records together, in time order
    stamps = [c.timestamp for c in first.changes]
    assert stamps == sorted(stamps)
    assert {c.transaction_id for c in first.changes} == {first.transaction_id}
    assert transactions[1].reason == "price fix"


def test_get_transactions_filters_and_pages(engine, shop) -> None:
    Product, Order = shop
    _fill(engine, Product, Order)
    with Session(engine) as s:
        assert [t.context["request_id"] for t in get_transactions(s, user_ids="alice")] == ["r3", "r1"]
        assert [t.context["request_id"] for t in get_transactions(s, limit=1, offset=1)] == ["r2"]
        assert [t.context["request_id"] for t in get_transactions(s, context={"tenant": "t1"})] == ["r2"]
        only_orders = get_transactions(s, models=Order)
    assert [t.context["request_id"] for t in only_orders] == ["r3", "r1"]
    assert {c.table_name for t in only_orders for c in t.changes} == {"orders"}


# ---------------------------------------------------------------- to_dict

def test_records_and_transactions_serialise_to_json(engine, shop) -> None:
    Product, Order = shop
    _fill(engine, Product, Order)
    with Session(engine) as s:
        transactions = get_transactions(s)
    payload = json.dumps([t.to_dict() for t in transactions])  # no default= needed
    first = json.loads(payload)[-1]
    by_field = {c["field_name"]: c for c in first["changes"] if c["table_name"] == "products"}
    assert by_field["price"]["new_value"] == "1.50"
    assert by_field["blob"]["new_value"] == base64.b64encode(b"\x00\xff").decode()
    assert datetime.fromisoformat(first["timestamp"]).tzinfo is not None
    order = next(c for c in first["changes"] if c["table_name"] == "orders")
    assert uuid.UUID(order["resource_id"])
    assert first["context"] == {"request_id": "r1"}


def test_context_filter_matches_nested_values(engine, shop, dialect) -> None:
    """PostgreSQL and MariaDB match by JSON containment (a nested object matches when it
    holds the pairs asked for); SQLite compares each asked key's value as a whole."""
    Product, _ = shop
    with Session(engine) as s, audit_context(user_id=1, context={
            "actor": {"id": 7, "via": "sso"}, "tags": ["a", "b"], "n": 3, "flag": True}):
        s.add(Product(id=1, name="pen"))
        s.commit()
    with Session(engine) as s:
        def found(**wanted: Any) -> bool:
            return bool(get_changes(s, context=wanted))

        assert found(actor={"id": 7, "via": "sso"}) and found(tags=["a", "b"])
        assert found(n=3) and found(flag=True) and not found(flag=False) and not found(n="3")
        assert not found(actor={"id": 8, "via": "sso"})
        assert found(actor={"id": 7}) is (dialect in ("postgresql", "mariadb"))
