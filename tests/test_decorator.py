"""@track_table: argument validation, what it tracks, and what it adds to the database."""

from __future__ import annotations

from typing import Optional

import pytest
from sqlalchemy import String, inspect
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit import audit_context, has_config, register_hooks
from sqlaudit.decorators import track_table

from conftest import changes, summary

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True


# ---------------------------------------------------------------- validation


def test_unknown_field_names_the_field_and_the_model(Base) -> None:
    with pytest.raises(ValueError) as err:

        @track_table(tracked_fields=["name", "nickname"])
        class Customer(Base):
            __tablename__ = "customers"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str]

    assert "'nickname'" in str(err.value)
    assert "Customer" in str(err.value)


def test_tracked_fields_as_a_str_is_a_type_error(Base) -> None:
    with pytest.raises(TypeError, match="tracked_fields must be a list"):

        @track_table(tracked_fields="name")
        class Customer(Base):
            __tablename__ = "customers"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str]


def test_tracked_fields_as_a_dict_is_a_type_error(Base) -> None:
    with pytest.raises(TypeError, match="tracked_fields must be a list"):

        @track_table(tracked_fields={"name": True})
        class Customer(Base):
            __tablename__ = "customers"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str]


def test_non_str_item_in_tracked_fields_is_a_type_error(Base) -> None:
    with pytest.raises(TypeError, match="item 3 of Customer is int"):

        @track_table(tracked_fields=["name", 3])
        class Customer(Base):
            __tablename__ = "customers"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str]


def test_empty_tracked_fields_is_a_value_error(Base) -> None:
    with pytest.raises(ValueError, match="tracked_fields for Customer is empty"):

        @track_table(tracked_fields=[])
        class Customer(Base):
            __tablename__ = "customers"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str]


def test_decorating_a_non_mapped_class_is_a_type_error() -> None:
    class Plain:
        name = "x"

    with pytest.raises(TypeError, match="must decorate a mapped SQLAlchemy class"):
        track_table(tracked_fields=["name"])(Plain)


# ---------------------------------------------------------------- what gets tracked


def test_decorator_works_before_any_set_config(engine, Base) -> None:
    assert has_config() is False

    @track_table(tracked_fields=["name"])
    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Customer(id=1, name="Ann"))
        s.commit()
        assert summary(changes(Customer, s)) == [("insert", "1", "name", None, "Ann", None)]
    assert has_config() is False


def test_column_with_another_name_is_reported_under_its_attribute_name(engine, Base) -> None:
    @track_table(tracked_fields=["display_name"])
    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        display_name: Mapped[str] = mapped_column("Mixed Case", String)

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        c = Customer(id=1, display_name="Ann")
        s.add(c)
        s.commit()
        c.display_name = "Anna"
        s.commit()
        assert summary(changes(Customer, s)) == [
            ("insert", "1", "display_name", None, "Ann", None),
            ("update", "1", "display_name", "Ann", "Anna", None),
        ]


def test_tracked_fields_none_tracks_every_column(engine, Base) -> None:
    @track_table(tracked_fields=None)
    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]
        email: Mapped[str]
        city: Mapped[Optional[str]]

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Customer(id=1, name="Ann", email="ann@example.com", city="Kyiv"))
        s.commit()
        assert summary(changes(Customer, s)) == [
            ("insert", "1", "city", None, "Kyiv", None),
            ("insert", "1", "email", None, "ann@example.com", None),
            ("insert", "1", "id", None, 1, None),
            ("insert", "1", "name", None, "Ann", None),
        ]


def test_table_label_is_reported_with_every_change(engine, Base) -> None:
    @track_table(tracked_fields=["name", "email"], table_label="Client")
    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]
        email: Mapped[str]

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Customer(id=1, name="Ann", email="ann@example.com"))
        s.commit()
        records = changes(Customer, s)
    assert [(r.table_name, r.table_label, r.field_name) for r in records] == [
        ("customers", "Client", "email"),
        ("customers", "Client", "name"),
    ]


def test_resource_id_field_uses_that_column_as_resource_id(engine, Base) -> None:
    @track_table(tracked_fields=["name"], resource_id_field="sku")
    class Product(Base):
        __tablename__ = "products"
        id: Mapped[int] = mapped_column(primary_key=True)
        sku: Mapped[str] = mapped_column(String, unique=True)
        name: Mapped[str]

    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id=3):
        p = Product(id=1, sku="ABC-001", name="Lamp")
        s.add(p)
        s.commit()
        p.name = "Desk lamp"
        s.commit()
        s.delete(p)
        s.commit()
    with Session(engine) as s:
        assert summary(changes(Product, s)) == [
            ("insert", "ABC-001", "name", None, "Lamp", "3"),
            ("update", "ABC-001", "name", "Lamp", "Desk lamp", "3"),
            ("delete", "ABC-001", "name", "Desk lamp", None, "3"),
        ]
        assert [r.resource_id for r in changes(Product, s, filter_resource_ids="ABC-001")] == [
            "ABC-001", "ABC-001", "ABC-001",
        ]


# ---------------------------------------------------------------- schema objects


def test_decorating_adds_sqlaudit_log_to_the_models_metadata(Base) -> None:
    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)

    assert sorted(Base.metadata.tables) == ["notes"]

    @track_table(tracked_fields=["name"])
    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    assert sorted(Base.metadata.tables) == ["customers", "notes", "sqlaudit_log"]


def test_every_table_sqlaudit_creates_is_named_sqlaudit_star(engine, Base) -> None:
    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)

    @track_table(tracked_fields=["name"])
    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    model_tables = {"notes", "customers"}
    before = set(inspect(engine).get_table_names())
    Base.metadata.create_all(engine)
    after = set(inspect(engine).get_table_names())
    assert before == set()
    added_by_sqlaudit = after - before - model_tables
    assert added_by_sqlaudit == {"sqlaudit_log"}

    # a stamped write creates per-connection objects too (TEMP on SQLite): same prefix
    register_hooks()
    with Session(engine) as s, audit_context(user_id=1):
        s.add(Customer(id=1, name="Ann"))
        s.flush()
        insp = inspect(s.connection())
        names = set(insp.get_table_names())
        if engine.dialect.name == "sqlite":
            names |= set(insp.get_temp_table_names())
        s.commit()
    expected = {"sqlite": {"sqlaudit_log", "sqlaudit_context"}, "postgresql": {"sqlaudit_log"},
                "mysql": {"sqlaudit_log"}, "mariadb": {"sqlaudit_log"}}
    assert names - model_tables == expected[engine.dialect.name]
    assert all(name.startswith("sqlaudit_") for name in names - model_tables)


def test_bare_track_table_tracks_every_column(engine, Base) -> None:
    from sqlalchemy.orm import Mapped, Session, mapped_column

    from sqlaudit import track_table as bare
    from sqlaudit.retrieval import get_resource_changes

    @bare
    class Plain(Base):
        __tablename__ = "plain_bare"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Plain(id=1, name="x"))
        s.commit()
        fields = sorted(r.field_name for r in get_resource_changes(Plain, session=s))
    assert fields == ["id", "name"]


def test_track_table_refuses_a_positional_argument_that_is_not_a_model() -> None:
    import pytest

    from sqlaudit import track_table as bare

    with pytest.raises(TypeError, match="keyword arguments only"):
        bare(["name"])
