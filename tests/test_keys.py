"""Keys and names: how rows are identified, and that no identifier or user id breaks auditing.

``resource_id`` is the row's key as text: the key value itself for a single
key column (``str(uuid)`` for UUIDs), a JSON array of the key parts as text for
composite keys. ``filter_resource_ids`` takes keys in their Python form.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import pytest
from sqlalchemy import Integer, String, Uuid, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sqlaudit import audit_context, register_hooks, track_table

from conftest import changes, summary

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True

pg_only = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)


def by_operation_and_field(records: list[Any]) -> dict[tuple[str, str], tuple[Any, Any]]:
    """{(operation, field_name): (old_value, new_value)}, independent of field order."""
    return {(r.operation, r.field_name): (r.old_value, r.new_value) for r in records}


# ---------------------------------------------------------------- composite keys


def line_model(Base: Any) -> type:
    @track_table(tracked_fields=["title"])
    class Line(Base):
        __tablename__ = "order_lines"
        order_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        code: Mapped[str] = mapped_column(String(40), primary_key=True)
        title: Mapped[str] = mapped_column(String(50))

    return Line


def add_lines(engine: Any, Line: type, *keys: tuple[int, str]) -> None:
    with Session(engine) as s:
        s.add_all([Line(order_no=n, code=c, title=f"{n}/{c}") for n, c in keys])
        s.commit()


def test_composite_key_resource_id_is_a_json_array_of_the_key_parts_as_text(engine, Base) -> None:
    Line = line_model(Base)
    Base.metadata.create_all(engine)
    add_lines(engine, Line, (1, "a"))
    with Session(engine) as s:
        (record,) = changes(Line, s)
    assert isinstance(record.resource_id, str)
    assert json.loads(record.resource_id) == ["1", "a"]


# Not on MariaDB: the table's key ('a' and 'a ') is one key under its PAD SPACE collations.
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"], indirect=True)
def test_filter_by_a_list_of_composite_key_tuples_returns_only_that_row(engine, Base) -> None:
    Line = line_model(Base)
    Base.metadata.create_all(engine)
    add_lines(engine, Line, (1, "a"), (1, "b"), (2, "a"), (11, "a"), (1, "a "))
    with Session(engine) as s:
        records = changes(Line, s, filter_resource_ids=[(1, "a")])
    assert [(json.loads(r.resource_id), r.field_name, r.new_value) for r in records] == [
        (["1", "a"], "title", "1/a"),
    ]


def test_filter_by_a_bare_composite_key_tuple_returns_only_that_row(engine, Base) -> None:
    Line = line_model(Base)
    Base.metadata.create_all(engine)
    add_lines(engine, Line, (1, "a"), (2, "b"))
    with Session(engine) as s:
        records = changes(Line, s, filter_resource_ids=(2, "b"))
    assert [(json.loads(r.resource_id), r.new_value) for r in records] == [(["2", "b"], "2/b")]


def test_composite_key_parts_with_quotes_backslashes_and_unicode_are_found(engine, Base) -> None:
    Line = line_model(Base)
    Base.metadata.create_all(engine)
    odd = 'say "hi", it\'s a\\b ✓ ["x"]'
    add_lines(engine, Line, (3, odd), (3, "plain"))
    with Session(engine) as s:
        records = changes(Line, s, filter_resource_ids=[(3, odd)])
    assert [(json.loads(r.resource_id), r.new_value) for r in records] == [(["3", odd], f"3/{odd}")]


# ---------------------------------------------------------------- single-column keys


def test_primary_key_with_another_name_than_id(engine, Base) -> None:
    @track_table(tracked_fields=["name"])
    class Product(Base):
        __tablename__ = "products"
        sku_number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(50))

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([Product(sku_number=42, name="bolt"), Product(sku_number=420, name="nut")])
        s.commit()
        assert summary(changes(Product, s, filter_resource_ids=42)) == [
            ("insert", "42", "name", None, "bolt", None),
        ]
        assert summary(changes(Product, s, filter_resource_ids="42")) == [
            ("insert", "42", "name", None, "bolt", None),
        ]


def uuid_model(Base: Any) -> type:
    @track_table(tracked_fields=["name"])
    class Device(Base):
        __tablename__ = "devices"
        token: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
        name: Mapped[str] = mapped_column(String(50))

    return Device


U1 = uuid.UUID("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
U2 = uuid.UUID("12345678-1234-5678-1234-567812345678")  # digits only in its hex form


def test_uuid_primary_key_resource_id_is_the_canonical_uuid_string(engine, Base) -> None:
    Device = uuid_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([Device(token=U1, name="one"), Device(token=U2, name="two")])
        s.commit()
        assert sorted(r.resource_id for r in changes(Device, s)) == sorted([str(U1), str(U2)])


def test_filter_by_uuid_object_returns_only_that_row(engine, Base) -> None:
    Device = uuid_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([Device(token=U1, name="one"), Device(token=U2, name="two")])
        s.commit()
        assert summary(changes(Device, s, filter_resource_ids=U2)) == [
            ("insert", str(U2), "name", None, "two", None),
        ]


def test_filter_by_uuid_string_returns_only_that_row(engine, Base) -> None:
    Device = uuid_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([Device(token=U1, name="one"), Device(token=U2, name="two")])
        s.commit()
        assert summary(changes(Device, s, filter_resource_ids=[str(U1)])) == [
            ("insert", str(U1), "name", None, "one", None),
        ]
        assert summary(changes(Device, s, filter_resource_ids=str(U1).upper())) == [
            ("insert", str(U1), "name", None, "one", None),
        ]


HOSTILE_KEY = "o'brien \"%s\" %(x)s :name $1 ? \\ ✓"


def test_string_primary_key_is_the_resource_id_verbatim(engine, Base) -> None:
    @track_table(tracked_fields=["title"])
    class Page(Base):
        __tablename__ = "pages"
        slug: Mapped[str] = mapped_column(String(100), primary_key=True)
        title: Mapped[str] = mapped_column(String(50))

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([Page(slug=HOSTILE_KEY, title="odd"), Page(slug="home", title="Home"),
                   Page(slug="007", title="bond")])
        s.commit()
        assert summary(changes(Page, s, filter_resource_ids=HOSTILE_KEY)) == [
            ("insert", HOSTILE_KEY, "title", None, "odd", None),
        ]
        assert summary(changes(Page, s, filter_resource_ids="007")) == [
            ("insert", "007", "title", None, "bond", None),
        ]


def test_keys_that_differ_only_in_trailing_spaces_are_two_resources(engine, Base) -> None:
    """``"a"`` and ``"a "`` are two keys where the key column tells them apart
    (on MariaDB a NO PAD collation); their histories and states never mix."""
    from sqlalchemy.dialects.mysql import VARCHAR

    from sqlaudit import get_resource_state, get_table_state

    @track_table(tracked_fields=["title"])
    class Tag(Base):
        __tablename__ = "tags"
        name: Mapped[str] = mapped_column(
            String(20).with_variant(VARCHAR(20, collation="utf8mb4_nopad_bin"), "mysql"),
            primary_key=True)
        title: Mapped[str] = mapped_column(String(50))

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([Tag(name="a", title="plain"), Tag(name="a ", title="spaced")])
        s.commit()
        s.get(Tag, "a ").title = "spaced, edited"
        s.commit()
        assert summary(changes(Tag, s, filter_resource_ids="a")) == [
            ("insert", "a", "title", None, "plain", None),
        ]
        assert [r.new_value for r in changes(Tag, s, filter_resource_ids="a ")] == [
            "spaced", "spaced, edited"]
        now = datetime.now(timezone.utc) + timedelta(seconds=1)
        assert get_resource_state(Tag, "a", at=now, session=s) == {"title": "plain"}
        assert get_resource_state(Tag, "a ", at=now, session=s) == {"title": "spaced, edited"}
        assert list(get_table_state(Tag, at=now, session=s)) == [
            ("a", {"title": "plain"}), ("a ", {"title": "spaced, edited"})]


def test_changing_a_primary_key_is_recorded_as_delete_of_old_key_and_insert_of_new(
    engine, Base
) -> None:
    @track_table()
    class Ticket(Base):
        __tablename__ = "tickets"
        number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        title: Mapped[str] = mapped_column(String(50))

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Ticket(number=1, title="t"))
        s.commit()
        s.execute(text("UPDATE tickets SET number = 2"))
        s.commit()
        rekey = summary(changes(Ticket, s))[2:]
    assert sorted(rekey, key=lambda t: (t[1], t[2])) == [
        ("delete", "1", "number", 1, None, None),
        ("delete", "1", "title", "t", None, None),
        ("insert", "2", "number", None, 2, None),
        ("insert", "2", "title", None, "t", None),
    ]


# ---------------------------------------------------------------- hostile identifiers


def order_items_model(Base: Any) -> type:
    @track_table(table_label='Order "Items"')
    class OrderItem(Base):
        __tablename__ = 'Order "Items"'
        id = mapped_column("Item's ID", Integer, primary_key=True, autoincrement=False)
        select_ = mapped_column("select", String(50))
        mixed = mapped_column("Mixed Case", String(50), nullable=True)
        its = mapped_column("it's", String(50), nullable=True)
        quoted = mapped_column('say "x"', Integer, nullable=True)

    return OrderItem


def test_hostile_table_and_column_names_are_audited_under_their_attribute_names(
    engine, Base
) -> None:
    OrderItem = order_items_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        item = OrderItem(id=7, select_="s1", mixed="m1", its="i1", quoted=1)
        s.add(item)
        s.commit()
        item.select_, item.mixed, item.its, item.quoted = "s2", "m2", None, 2
        s.commit()
        s.delete(item)
        s.commit()
        records = changes(OrderItem, s)
    assert {r.resource_id for r in records} == {"7"}
    assert {(r.table_name, r.table_label) for r in records} == {('Order "Items"', 'Order "Items"')}
    assert by_operation_and_field(records) == {
        ("insert", "id"): (None, 7),
        ("insert", "select_"): (None, "s1"),
        ("insert", "mixed"): (None, "m1"),
        ("insert", "its"): (None, "i1"),
        ("insert", "quoted"): (None, 1),
        ("update", "select_"): ("s1", "s2"),
        ("update", "mixed"): ("m1", "m2"),
        ("update", "its"): ("i1", None),
        ("update", "quoted"): (1, 2),
        ("delete", "id"): (7, None),
        ("delete", "select_"): ("s2", None),
        ("delete", "mixed"): ("m2", None),
        ("delete", "quoted"): (2, None),
    }
    assert len(records) == 13


def test_hostile_column_names_can_be_filtered_by_attribute_name(engine, Base) -> None:
    OrderItem = order_items_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(OrderItem(id=1, select_="s", mixed="m", its="i", quoted=5))
        s.commit()
        records = changes(OrderItem, s, filter_fields=["its", "select_", "quoted"])
    assert sorted((r.field_name, r.new_value) for r in records) == [
        ("its", "i"), ("quoted", 5), ("select_", "s"),
    ]


def test_percent_signs_and_colons_in_table_and_column_names_are_audited(engine, Base) -> None:
    @track_table()
    class Rate(Base):
        __tablename__ = "rates 100% :x"
        id = mapped_column("id %s", Integer, primary_key=True, autoincrement=False)
        off = mapped_column("100% :off", String(50), nullable=True)

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        rate = Rate(id=1, off="10%")
        s.add(rate)
        s.commit()
        rate.off = "20%"
        s.commit()
        records = changes(Rate, s)
    assert {r.table_name for r in records} == {"rates 100% :x"}
    assert by_operation_and_field(records) == {
        ("insert", "id"): (None, 1),
        ("insert", "off"): (None, "10%"),
        ("update", "off"): ("10%", "20%"),
    }


# ---------------------------------------------------------------- user ids and reasons


def contact_model(Base: Any) -> type:
    @track_table(tracked_fields=["name"])
    class Contact(Base):
        __tablename__ = "contacts"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        name: Mapped[Optional[str]] = mapped_column(String(50))

    return Contact


QUOTED_USER = "o'brien\"x"


def test_user_id_with_quotes_round_trips_in_changed_by(engine, Base) -> None:
    Contact = contact_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id=QUOTED_USER):
        s.add(Contact(id=1, name="Ann"))
        s.commit()
    with Session(engine) as s:
        assert summary(changes(Contact, s)) == [("insert", "1", "name", None, "Ann", QUOTED_USER)]


def test_filter_by_a_user_id_with_quotes_returns_only_its_changes(engine, Base) -> None:
    Contact = contact_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    for user, (pk, name) in ((QUOTED_USER, (1, "Ann")), ("o'brien", (2, "Bob")), ("%s", (3, "Cy"))):
        with Session(engine) as s, audit_context(user_id=user):
            s.add(Contact(id=pk, name=name))
            s.commit()
    with Session(engine) as s:
        assert summary(changes(Contact, s, filter_user_ids=QUOTED_USER)) == [
            ("insert", "1", "name", None, "Ann", QUOTED_USER),
        ]
        assert summary(changes(Contact, s, filter_user_ids="%s")) == [
            ("insert", "3", "name", None, "Cy", "%s"),
        ]


def test_reason_with_quotes_and_percent_signs_round_trips(engine, Base) -> None:
    Contact = contact_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    reason = "ticket #7: \"urgent\" -- it's 100% %s"
    with Session(engine) as s, audit_context(user_id=1, reason=reason):
        s.add(Contact(id=1, name="Ann"))
        s.commit()
    with Session(engine) as s:
        (record,) = changes(Contact, s)
    assert (record.changed_by, record.reason) == ("1", reason)


# ---------------------------------------------------------------- PostgreSQL schemas


@pytest.fixture
def extra_schema(request, engine) -> Any:
    """A fresh PostgreSQL schema (name given by parametrization, made unique), dropped afterwards."""
    name = f"{getattr(request, 'param', 'sqlaudit_extra')}_{uuid.uuid4().hex[:8]}"
    quoted = engine.dialect.identifier_preparer.quote_schema(name)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {quoted}"))
    try:
        yield name
    finally:
        engine.dispose()
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {quoted} CASCADE"))
        engine.dispose()


def schema_item_model(Base: Any, schema: Optional[str]) -> type:
    @track_table(tracked_fields=["name"])
    class Item(Base):
        __tablename__ = "items"
        __table_args__ = {"schema": schema}
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        name: Mapped[Optional[str]] = mapped_column(String(50))

    return Item


@pg_only
@pytest.mark.parametrize("extra_schema", ["sqlaudit_extra", 'Extra "Schema" it\'s'],
                         indirect=True, ids=["plain", "hostile-name"])
def test_postgres_schema_qualified_table_is_audited_and_retrievable(
    engine, Base, extra_schema
) -> None:
    Item = schema_item_model(Base, extra_schema)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        item = Item(id=1, name="a")
        s.add(item)
        s.commit()
        item.name = "b"
        s.commit()
        s.delete(item)
        s.commit()
        assert summary(changes(Item, s)) == [
            ("insert", "1", "name", None, "a", None),
            ("update", "1", "name", "a", "b", None),
            ("delete", "1", "name", "b", None, None),
        ]
        stored = s.execute(text("SELECT DISTINCT table_schema, table_name FROM sqlaudit_log")).all()
    assert [tuple(row) for row in stored] == [(extra_schema, "items")]


@pg_only
def test_postgres_same_table_name_in_two_schemas_is_kept_apart(engine, Base, extra_schema) -> None:
    Local = schema_item_model(Base, None)

    class OtherBase(DeclarativeBase):  # a second MetaData for the schema-qualified twin
        pass

    Remote = schema_item_model(OtherBase, extra_schema)
    Base.metadata.create_all(engine)
    OtherBase.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([Local(id=1, name="local"), Remote(id=1, name="remote")])
        s.commit()
        assert summary(changes(Local, s)) == [("insert", "1", "name", None, "local", None)]
        assert summary(changes(Remote, s)) == [("insert", "1", "name", None, "remote", None)]
