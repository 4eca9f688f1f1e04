"""Values: which fields a change records, and that they come back as the ORM reads them.

The triggers store values as JSON; ``get_resource_changes`` must turn them back
into exactly the Python value (and type) that a fresh ORM session reads for the
same column. Every comparison below is against that ORM reading, never against
what the test wrote, so driver and dialect conversions are taken into account.
"""

from __future__ import annotations

import enum
import math
import sqlite3
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Optional

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    String,
    Text,
    Uuid,
    delete,
    insert,
    inspect,
    text,
    update,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from sqlaudit import track_table

from conftest import changes, summary

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True

# ---------------------------------------------------------------- helpers


def contact_model(Base: Any) -> type:
    """Four tracked fields (three of them nullable) and one untracked column."""

    @track_table(tracked_fields=["name", "email", "phone", "age"])
    class Contact(Base):
        __tablename__ = "contacts"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[Optional[str]] = mapped_column(String(100))
        phone: Mapped[Optional[str]] = mapped_column(String(100))
        age: Mapped[Optional[int]] = mapped_column(Integer)
        notes: Mapped[Optional[str]] = mapped_column(String(100))  # not tracked

    return Contact


def value_model(Base: Any, *types: tuple[str, Any]) -> type:
    """Table ``vals``: an untracked integer ``id`` and one tracked nullable column per (name, type)."""
    namespace: dict[str, Any] = {
        "__tablename__": "vals",
        "id": mapped_column(Integer, primary_key=True, autoincrement=False),
    }
    for name, type_ in types:
        namespace[name] = mapped_column(type_, nullable=True)
    tracked = [name for name, _ in types]
    return track_table(tracked_fields=tracked)(type("Val", (Base,), namespace))


def orm_read(engine: Any, model: type, pk: Any) -> dict[str, Any]:
    """Every column attribute of row ``pk`` as a fresh ORM session reads it."""
    with Session(engine) as s:
        s.expire_all()
        obj = s.get(model, pk)
        assert obj is not None
        return {attr: getattr(obj, attr) for attr in inspect(model).columns.keys()}


def typed(values: dict[str, Any]) -> dict[str, tuple[Any, type]]:
    """{field: (value, type(value))}: equality then also demands the same Python type."""
    return {name: (value, type(value)) for name, value in values.items()}


def recorded(records: list[Any], operation: str, side: str) -> dict[str, Any]:
    """{field_name: old_value or new_value} of the records of one operation."""
    return {r.field_name: getattr(r, f"{side}_value") for r in records if r.operation == operation}


def new_values_by_row(records: list[Any]) -> dict[str, Any]:
    """{resource_id: new_value} of single-field insert records."""
    return {r.resource_id: r.new_value for r in records if r.operation == "insert"}


# ---------------------------------------------------------------- which fields are recorded


def test_insert_records_every_tracked_field_that_is_not_null(engine, Base) -> None:
    Contact = contact_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Contact(id=1, name="Ann", email=None, phone="", age=0, notes="not tracked"))
        s.commit()
        assert summary(changes(Contact, s)) == [
            ("insert", "1", "age", None, 0, None),
            ("insert", "1", "name", None, "Ann", None),
            ("insert", "1", "phone", None, "", None),
        ]


def test_insert_with_every_nullable_field_null_records_only_the_required_one(engine, Base) -> None:
    Contact = contact_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Contact(id=1, name="Ann"))
        s.commit()
        assert summary(changes(Contact, s)) == [("insert", "1", "name", None, "Ann", None)]


def test_delete_records_every_tracked_field_that_was_not_null(engine, Base) -> None:
    Contact = contact_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        c = Contact(id=1, name="Ann", email="ann@example.com", phone=None, age=0, notes="x")
        s.add(c)
        s.commit()
        s.delete(c)
        s.commit()
        assert [t for t in summary(changes(Contact, s)) if t[0] == "delete"] == [
            ("delete", "1", "age", 0, None, None),
            ("delete", "1", "email", "ann@example.com", None, None),
            ("delete", "1", "name", "Ann", None, None),
        ]


def test_update_from_null_to_a_value_is_recorded(engine, Base) -> None:
    Contact = contact_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        c = Contact(id=1, name="Ann")
        s.add(c)
        s.commit()
        c.email = "ann@example.com"
        s.commit()
        assert [t for t in summary(changes(Contact, s)) if t[0] == "update"] == [
            ("update", "1", "email", None, "ann@example.com", None),
        ]


def test_update_from_a_value_to_null_is_recorded(engine, Base) -> None:
    Contact = contact_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        c = Contact(id=1, name="Ann", email="ann@example.com", age=30)
        s.add(c)
        s.commit()
        c.email = None
        c.age = None
        s.commit()
        assert [t for t in summary(changes(Contact, s)) if t[0] == "update"] == [
            ("update", "1", "age", 30, None, None),
            ("update", "1", "email", "ann@example.com", None, None),
        ]


def test_update_records_only_the_fields_whose_value_changed(engine, Base) -> None:
    Contact = contact_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Contact(id=1, name="Ann", email="ann@example.com", phone="1"))
        s.commit()
        s.execute(text("UPDATE contacts SET name = 'Ann', email = 'ann@example.com', phone = '2'"))
        s.commit()
        assert [t for t in summary(changes(Contact, s)) if t[0] == "update"] == [
            ("update", "1", "phone", "1", "2", None),
        ]


def test_update_setting_a_column_to_itself_records_nothing(engine, Base) -> None:
    Contact = contact_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Contact(id=1, name="Ann", email=None, age=3))
        s.commit()
        s.execute(text("UPDATE contacts SET name = name, email = email, age = age, phone = phone"))
        s.commit()
        assert [r.operation for r in changes(Contact, s)] == ["insert", "insert"]


def test_update_of_untracked_columns_only_records_nothing(engine, Base) -> None:
    Contact = contact_model(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        c = Contact(id=1, name="Ann")
        s.add(c)
        s.commit()
        c.notes = "changed"
        s.commit()
        s.execute(update(Contact).values(notes="changed again"))
        s.commit()
        assert [r.operation for r in changes(Contact, s)] == ["insert"]


# ---------------------------------------------------------------- typed round trip


class Color(enum.Enum):
    RED = "r"
    GREEN = "g"


class Shouted(TypeDecorator):
    """Text stored as given and read upper-cased: a result processor over a string type."""

    impl = String(50)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else value.upper()


class Doubled(TypeDecorator):
    """An integer read doubled: a result processor over an integer type."""

    impl = Integer
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else value * 2


def typed_model(Base: Any, dialect: str) -> type:
    """One column of every common type (a time-zone-aware DateTime on PostgreSQL only)."""

    @track_table()
    class Sample(Base):
        __tablename__ = "samples"
        id = mapped_column(Integer, primary_key=True, autoincrement=False)
        integer = mapped_column(Integer)
        big = mapped_column(BigInteger)
        amount = mapped_column(Numeric(10, 2))
        ratio = mapped_column(Float)
        label = mapped_column(String(50))
        body = mapped_column(Text)
        flag = mapped_column(Boolean)
        day = mapped_column(Date)
        moment = mapped_column(DateTime)
        if dialect == "postgresql":
            moment_tz = mapped_column(DateTime(timezone=True))
        token = mapped_column(Uuid)
        doc = mapped_column(JSON)
        items = mapped_column(JSON)
        blob = mapped_column(LargeBinary)
        color = mapped_column(Enum(Color))
        shouted = mapped_column(Shouted)
        doubled = mapped_column(Doubled)

    return Sample


def first_values(dialect: str) -> dict[str, Any]:
    values = dict(
        integer=-7,
        big=2**62 + 1,
        amount=Decimal("12345678.91"),
        ratio=0.1 + 0.2,
        label="héllo wörld",
        body="line one\nline two",
        flag=True,
        day=date(2024, 2, 29),
        moment=datetime(2024, 2, 29, 23, 59, 58, 123456),
        token=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        doc={"a": 1, "nested": {"b": [1, 2.5, None, "x"]}, "t": True},
        items=[1, "two", None, 3.5, {"k": "v"}],
        blob=b"\x00\x01binary\xff",
        color=Color.GREEN,
        shouted="quiet",
        doubled=21,
    )
    if dialect == "postgresql":
        values["moment_tz"] = datetime(2024, 2, 29, 23, 59, 58, 123456,
                                       tzinfo=timezone(timedelta(hours=5, minutes=30)))
    return values


def second_values(dialect: str) -> dict[str, Any]:
    values = dict(
        integer=0,
        big=-(2**63),
        amount=Decimal("-0.01"),
        ratio=float("inf") if dialect != "mariadb" else -2.5,  # MariaDB has no infinity
        label="",
        body="",
        flag=False,
        day=date(1970, 1, 1),
        moment=datetime(1999, 12, 31, 0, 0, 0),
        token=uuid.UUID("ffffffff-0000-4000-8000-000000000001"),
        doc={},
        items=[],
        blob=b"",
        color=Color.RED,
        shouted="still quiet",
        doubled=-4,
    )
    if dialect == "postgresql":
        values["moment_tz"] = datetime(1999, 12, 31, 0, 0, tzinfo=timezone.utc)
    return values


def test_inserted_values_come_back_as_the_orm_reads_them(engine, Base, dialect) -> None:
    Sample = typed_model(Base, dialect)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Sample(id=1, **first_values(dialect)))
        s.commit()
    orm = orm_read(engine, Sample, 1)
    with Session(engine) as s:
        records = changes(Sample, s)
    assert typed(recorded(records, "insert", "new")) == typed(orm)


def test_updated_values_come_back_as_the_orm_reads_them(engine, Base, dialect) -> None:
    Sample = typed_model(Base, dialect)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Sample(id=1, **first_values(dialect)))
        s.commit()
    before = orm_read(engine, Sample, 1)
    with Session(engine) as s:
        s.execute(update(Sample).where(Sample.id == 1).values(**second_values(dialect)))
        s.commit()
    after = orm_read(engine, Sample, 1)
    del before["id"], after["id"]
    with Session(engine) as s:
        records = changes(Sample, s)
    assert typed(recorded(records, "update", "old")) == typed(before)
    assert typed(recorded(records, "update", "new")) == typed(after)


def test_paged_reads_return_the_same_typed_values(engine, Base, dialect) -> None:
    """A paged call reads field records in SQL, a whole-history call expands audit
    rows in Python: the values must come back identical either way."""
    Sample = typed_model(Base, dialect)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Sample(id=1, **first_values(dialect)))
        s.commit()
        s.execute(update(Sample).where(Sample.id == 1).values(**second_values(dialect)))
        s.commit()
        s.execute(delete(Sample))
        s.commit()
        whole = changes(Sample, s)
        paged = changes(Sample, s, limit=1000)
    def typed_records(records: list[Any]) -> list[tuple[Any, ...]]:
        return [(r.operation, r.field_name, r.old_value, type(r.old_value), r.new_value,
                 type(r.new_value)) for r in records]

    assert len(whole) == 3 * (len(first_values(dialect)) + 1) - 1  # the id is not updated
    assert typed_records(paged) == typed_records(whole)


def test_deleted_values_come_back_as_the_orm_reads_them(engine, Base, dialect) -> None:
    Sample = typed_model(Base, dialect)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Sample(id=1, **second_values(dialect)))
        s.commit()
    orm = orm_read(engine, Sample, 1)
    with Session(engine) as s:
        s.execute(delete(Sample))
        s.commit()
        records = changes(Sample, s)
    assert typed(recorded(records, "delete", "old")) == typed(orm)


FLOATS = [0.1 + 0.2, 1 / 3, 5e-324, 2.2250738585072014e-308, -2.5e-310, 2.0**53 + 2,
          123456789.12345679, 1.7976931348623157e308, -1.1545580616824966e232, -0.5]


#: A double on every dialect (SQLAlchemy's Float is a 4-byte FLOAT on MariaDB).
DOUBLE_TYPE = Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")


def test_floats_keep_full_precision(engine, Base) -> None:
    Val = value_model(Base, ("x", DOUBLE_TYPE))
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.execute(insert(Val), [{"id": i, "x": x} for i, x in enumerate(FLOATS)])
        s.commit()
        records = changes(Val, s)
    assert new_values_by_row(records) == {str(i): x for i, x in enumerate(FLOATS)}
    assert {type(r.new_value) for r in records} == {float}


# Not on MariaDB: its DOUBLE has no infinity and no NaN (PyMySQL refuses to send them).
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"], indirect=True)
def test_float_infinities_round_trip(engine, Base) -> None:
    Val = value_model(Base, ("x", Float))
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([Val(id=1, x=float("inf")), Val(id=2, x=float("-inf"))])
        s.commit()
        assert new_values_by_row(changes(Val, s)) == {"1": float("inf"), "2": float("-inf")}


def test_multi_megabyte_text_round_trips(engine, Base) -> None:
    # MariaDB's TEXT holds 64 KB: LONGTEXT there
    Val = value_model(Base, ("body", Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")))
    Base.metadata.create_all(engine)
    big = ("0123456789 abcdé \"quoted\" \\ \n" * 110_000)[:3_000_000]
    with Session(engine) as s:
        s.add(Val(id=1, body=big))
        s.commit()
        (record,) = changes(Val, s)
    assert len(record.new_value) == 3_000_000
    assert record.new_value == big


HOSTILE = [
    "'; DROP TABLE x; --",
    "%s",
    "%(name)s",
    "%%",
    "$1",
    "$$ $sqlaudit$",
    ":name",
    "?",
    "a\\b\\\\c",
    "\\x00ff",
    "\\u0041",
    'say "hi"',
    "it's",
    "'' \"\" ``",
    "ünïcödé ✓ 🎉 中文 \u200b",
    "line1\nline2\r\n\ttab",
    '{"$r": "1.5"}',
    '{"$b": "00ff"}',
    "null",
    "*/ /*",
    "",
]


def test_values_with_sql_and_driver_metacharacters_round_trip_unchanged(engine, Base) -> None:
    Val = value_model(Base, ("label", String(100)), ("body", Text))
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([Val(id=i, label=v, body=v) for i, v in enumerate(HOSTILE)])
        s.commit()
        records = changes(Val, s)
    inserted = {(r.resource_id, r.field_name): r.new_value for r in records}
    assert inserted == {
        **{(str(i), "label"): v for i, v in enumerate(HOSTILE)},
        **{(str(i), "body"): v for i, v in enumerate(HOSTILE)},
    }


def test_updates_between_metacharacter_values_round_trip_unchanged(engine, Base) -> None:
    Val = value_model(Base, ("label", String(100)))
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        v = Val(id=1, label=HOSTILE[0])
        s.add(v)
        s.commit()
        for value in HOSTILE[1:]:
            v.label = value
            s.commit()
        updates = [(r.old_value, r.new_value) for r in changes(Val, s) if r.operation == "update"]
    assert updates == list(zip(HOSTILE[:-1], HOSTILE[1:]))


@pytest.mark.parametrize("value", [123, 1.5, "text", "42", True, ["a", 1], {"k": None}],
                         ids=["int", "float", "string", "numeric-string", "bool", "list", "dict"])
def test_json_scalar_and_container_values_round_trip(engine, Base, value) -> None:
    Val = value_model(Base, ("doc", JSON))
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Val(id=1, doc=value))
        s.commit()
    orm = orm_read(engine, Val, 1)
    with Session(engine) as s:
        (record,) = changes(Val, s, filter_fields="doc")
    assert typed({"doc": record.new_value}) == typed({"doc": orm["doc"]}) == typed({"doc": value})


# ---------------------------------------------------------------- PostgreSQL-only types

pg_only = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)


def pg_round_trip(engine: Any, Base: Any, type_: Any, first: Any, second: Any) -> tuple[dict, dict]:
    """Insert ``first``, update to ``second``, delete; return (ORM reads, recorded values).

    Both dicts are keyed by ``insert``/``update-old``/``update-new``/``delete``.
    """
    Val = value_model(Base, ("x", type_))
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Val(id=1, x=first))
        s.commit()
    read_first = orm_read(engine, Val, 1)["x"]
    with Session(engine) as s:
        s.execute(update(Val).values(x=second))
        s.commit()
    read_second = orm_read(engine, Val, 1)["x"]
    with Session(engine) as s:
        s.execute(delete(Val))
        s.commit()
        records = changes(Val, s, filter_fields="x")
    got = {
        "insert": recorded(records, "insert", "new")["x"],
        "update-old": recorded(records, "update", "old")["x"],
        "update-new": recorded(records, "update", "new")["x"],
        "delete": recorded(records, "delete", "old")["x"],
    }
    orm = {"insert": read_first, "update-old": read_first, "update-new": read_second,
           "delete": read_second}
    return orm, got


PG_CASES = {
    "int-array": (postgresql.ARRAY(Integer), [1, None, -3], []),
    "string-array": (postgresql.ARRAY(String), ['a,b', 'q"uote', "NULL", "", "back\\slash", "{x}"],
                     ["it's", "ü"]),
    "interval": (Interval, timedelta(days=3, hours=4, microseconds=5), timedelta(seconds=-1)),
    "inet": (postgresql.INET, "192.168.0.1", "2001:db8::/32"),
    "int4range": (postgresql.INT4RANGE, Range(1, 10), Range(None, 5, bounds="(]")),
    "money": (postgresql.MONEY, "$1,234.56", "-$0.01"),
    "bytea": (LargeBinary, bytes(range(256)), bytes(reversed(range(256)))),
    "jsonb-dict": (postgresql.JSONB, {"a": [1, {"b": None}], "é": "x'y\"z"}, {"n": 1.5}),
    "jsonb-list": (postgresql.JSONB, [1, "two", [3], {"four": 4}], []),
    "jsonb-string": (postgresql.JSONB, "plain text", "42"),
    "json-string": (JSON, "plain text", "true"),
    "numeric-unscaled": (Numeric, Decimal("12345678901234567890.123456789"), Decimal("-0")),
    "float-infinity": (Float, float("inf"), float("-inf")),
    "numeric-infinity": (Numeric, Decimal("Infinity"), Decimal("-Infinity")),
    "json-array-column": (postgresql.ARRAY(JSON), [{"a": 1}, [2]], [{"a": 2}]),
}


@pg_only
@pytest.mark.parametrize("case", list(PG_CASES))
def test_postgres_type_round_trips_as_the_orm_reads_it(engine, Base, case) -> None:
    type_, first, second = PG_CASES[case]
    orm, got = pg_round_trip(engine, Base, type_, first, second)
    assert typed(got) == typed(orm)


@pg_only
def test_postgres_float_nan_is_written_and_read_back_as_nan(engine, Base) -> None:
    orm, got = pg_round_trip(engine, Base, Float, float("nan"), float("inf"))
    assert math.isnan(orm["insert"]) and math.isnan(got["insert"])
    assert math.isnan(got["update-old"]) and got["update-new"] == float("inf")
    assert type(got["insert"]) is type(orm["insert"]) is float


@pg_only
def test_postgres_numeric_nan_is_written_and_read_back_as_nan(engine, Base) -> None:
    orm, got = pg_round_trip(engine, Base, Numeric, Decimal("NaN"), Decimal("1.5"))
    assert orm["insert"].is_nan() and got["insert"].is_nan()
    assert got["update-old"].is_nan() and got["update-new"] == Decimal("1.5")
    assert type(got["insert"]) is type(orm["insert"]) is Decimal


# ---------------------------------------------------------------- MariaDB types

mariadb_only = pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)

MARIADB_CASES = {
    "decimal-65-30": (mysql.DECIMAL(65, 30), Decimal("12345678901234567890123456789012345.123456789012345678901234567891"),
                      Decimal("-0.000000000000000000000000000001")),
    "double": (mysql.DOUBLE(asdecimal=False), 1.7976931348623157e308, 5e-324),
    "double-asdecimal": (mysql.DOUBLE(), 0.1 + 0.2, -2.5e-5),  # the ORM reads a Decimal
    "float-single": (mysql.FLOAT(), 0.5, -1.25),
    "bit": (mysql.BIT(12), 0b101100111101, 0),
    "tinyint": (mysql.TINYINT(), -128, 127),
    "bigint-unsigned": (mysql.BIGINT(unsigned=True), 2**64 - 1, 0),
    "year": (mysql.YEAR(), 1901, 2155),
    "time-6": (mysql.TIME(fsp=6), timedelta(hours=838, minutes=59, seconds=58, microseconds=999999),
               timedelta(hours=-838)),
    "datetime-6": (mysql.DATETIME(fsp=6), datetime(1000, 1, 1, 0, 0, 0, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)),
    "timestamp-6": (mysql.TIMESTAMP(fsp=6), datetime(2038, 1, 19, 3, 14, 7, 999999), datetime(1970, 1, 2, 0, 0, 0, 1)),
    "date": (Date, date(1000, 1, 1), date(9999, 12, 31)),
    "binary-4": (mysql.BINARY(4), b"\x00\x01\x02\xff", b"abcd"),
    "varbinary": (mysql.VARBINARY(64), bytes(range(64)), b""),
    "longblob": (mysql.LONGBLOB(), bytes(range(256)) * 4096, b"\x00"),
    "enum": (mysql.ENUM("small", "medium", "large"), "medium", "large"),
    "set": (mysql.SET("read", "write", "admin"), {"read", "admin"}, set()),
    "json": (mysql.JSON(), {"a": [1, {"b": None}], "\u00e9": "x'y\"z", "emoji": "\U0001f600"}, [1, "two"]),
    "uuid": (Uuid, uuid.UUID("12345678-1234-5678-1234-567812345678"), uuid.UUID(int=0)),
    "utf8mb4-text": (Text, "\U0001f600 \u4e2d\u6587 \U00010348 \u00e9", "\U0001f9d1\u200d\U0001f4bb"),
    "char-padded": (mysql.CHAR(5), "ab", "abcde"),
}


@mariadb_only
@pytest.mark.parametrize("case", list(MARIADB_CASES))
def test_mariadb_type_round_trips_as_the_orm_reads_it(engine, Base, case) -> None:
    """Every MariaDB column type comes back from the log as the ORM reads the
    column: same value, same Python type, on insert, update and delete."""
    type_, first, second = MARIADB_CASES[case]
    orm, got = pg_round_trip(engine, Base, type_, first, second)
    assert typed(got) == typed(orm)


@mariadb_only
def test_mariadb_refuses_nan_and_infinity_so_none_reaches_the_log(engine, Base) -> None:
    """MariaDB's DOUBLE has no NaN or infinity: the write fails in the driver or
    the server, with nothing recorded (there is nothing to round-trip)."""
    Val = value_model(Base, ("x", mysql.DOUBLE()))
    Base.metadata.create_all(engine)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(Exception), Session(engine) as s:
            s.add(Val(id=1, x=bad))
            s.commit()
    with Session(engine) as s:
        assert changes(Val, s) == []


# ---------------------------------------------------------------- SQLite dynamic typing

sqlite_only = pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)


def raw_sqlite_insert(engine: Any, sql: str, params: tuple) -> None:
    """Write through a plain sqlite3 connection, bypassing SQLAlchemy's type handling."""
    conn = sqlite3.connect(engine.url.database)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


@sqlite_only
@pytest.mark.parametrize(
    "column_type, raw",
    [(Text, b"\x00\xffblob"), (Text, 0.1 + 0.2), (String(10), 1e300), (Integer, "not a number"),
     (Integer, 2.5), (Float, "text in a REAL column")],
    ids=["blob-in-text", "real-in-text", "real-in-varchar", "text-in-integer", "real-in-integer",
         "text-in-float"],
)
def test_sqlite_dynamic_typing_never_fails_the_write_and_is_recorded(
    engine, Base, column_type, raw
) -> None:
    Val = value_model(Base, ("x", column_type))
    Base.metadata.create_all(engine)
    raw_sqlite_insert(engine, "INSERT INTO vals (id, x) VALUES (1, ?)", (raw,))
    orm = orm_read(engine, Val, 1)
    with Session(engine) as s:
        (record,) = changes(Val, s, filter_fields="x")
    assert (record.operation, record.resource_id) == ("insert", "1")
    assert typed({"x": record.new_value}) == typed({"x": orm["x"]})


@pytest.mark.parametrize("width", [70, 600])
def test_a_wide_table_is_audited_column_by_column(engine, Base, width: int) -> None:
    """Wider than one json_object()/jsonb_build_object() call can take (70), and
    than SQLite's 500-term compound SELECT (600)."""
    from sqlalchemy import Column, Integer, Table

    from sqlaudit.decorators import track_table
    from sqlaudit.retrieval import get_resource_changes

    names = [f"c{i:03d}" for i in range(width)]
    first, second, middle, last = names[0], names[1], names[width // 2], names[-1]
    table = Table("wide", Base.metadata, Column("id", Integer, primary_key=True),
                  *[Column(n, Integer) for n in names])

    @track_table()
    class Wide(Base):
        __table__ = table

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Wide(id=1, **{n: i for i, n in enumerate(names)}))
        s.commit()
        s.execute(text(f"UPDATE wide SET {first} = NULL, {second} = 1, {middle} = -{width // 2}, "
                       f"{last} = -{width - 1}"))
        s.commit()
        records = get_resource_changes(Wide, session=s, sort_direction="asc")
    inserted = {r.field_name: r.new_value for r in records if r.operation == "insert"}
    assert inserted == {"id": 1, **{n: i for i, n in enumerate(names)}}
    updated = sorted((r.field_name, r.old_value, r.new_value) for r in records if r.operation == "update")
    assert updated == [(first, 0, None), (middle, width // 2, -(width // 2)), (last, width - 1, -(width - 1))]


def test_a_timezone_aware_datetime_comes_back_as_the_orm_reads_it(engine, Base, dialect) -> None:
    """DateTime(timezone=True): PostgreSQL keeps the instant (read back aware); SQLite
    and MariaDB have no time zone type and SQLAlchemy stores the wall-clock time without its offset
    (read back naive). The history returns exactly what the ORM reads on each."""
    Val = value_model(Base, ("at", DateTime(timezone=True)))
    Base.metadata.create_all(engine)
    first = datetime(2024, 3, 31, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    second = datetime(2024, 10, 27, 2, 30, tzinfo=timezone.utc)
    with Session(engine) as s:
        s.add(Val(id=1, at=first))
        s.commit()
        s.execute(update(Val).where(Val.id == 1).values(at=second))
        s.commit()
    orm = orm_read(engine, Val, 1)["at"]
    with Session(engine) as s:
        insert_record, update_record = changes(Val, s, filter_fields="at")
    assert typed({"at": update_record.new_value}) == typed({"at": orm})
    if dialect in ("sqlite", "mariadb"):  # MariaDB's DATETIME has no time zone either
        wall_clock = first.replace(tzinfo=None)
        if dialect == "mariadb":  # and keeps whole seconds (DATETIME without a precision)
            wall_clock = wall_clock.replace(microsecond=0)
        assert orm == second.replace(tzinfo=None) and insert_record.new_value == wall_clock
    else:
        assert orm == second and orm.tzinfo is not None
        assert insert_record.new_value == first and update_record.old_value == first
