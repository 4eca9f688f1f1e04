"""Property-based round trips: whatever value a column holds, the audit trail gives it back.

For each column type, Hypothesis generates an old and a new value; the test
inserts a row with the old value, updates it to the new one, and checks that
``get_resource_changes`` reports exactly what a fresh ORM session reads for
those values (same value, same Python type, at every nesting level), on every
database. Each test function creates its table once and gives every example
its own primary key.
"""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    Uuid,
    update,
)
from sqlalchemy.orm import Session, mapped_column

from sqlaudit import track_table

from conftest import changes

MARIADB_PORTED = True

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,  # the same examples on every run: CI failures reproduce locally
)

# PostgreSQL text cannot hold NUL; surrogates are not text in any encoding.
TEXT_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
ANY_CHARS = st.characters(blacklist_categories=("Cs",))


# ---------------------------------------------------------------- comparing values exactly


def canonical(value: Any) -> Any:
    """A comparable form of ``value`` that keeps its type at every level.

    Floats compare by their exact bits (``float.hex``: -0.0 and 0.0 differ, NaN
    equals NaN), Decimals by their text (so the scale counts), ints never
    equal floats or bools, and dicts/lists are compared member by member.
    """
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    if isinstance(value, dict):
        return ("dict", sorted((k, canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", [canonical(v) for v in value])
    return (type(value).__name__, value)


def db_equal(a: Any, b: Any) -> bool:
    """Whether the database sees no change from ``a`` to ``b`` (then no update is recorded)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True  # PostgreSQL: NaN = NaN
    return bool(a == b)


# ---------------------------------------------------------------- the round trip


class RoundTrip:
    """One table ``vals`` with a tracked column ``x`` of one type, reused by every example."""

    def __init__(self, engine: Any, Base: Any) -> None:
        self.engine = engine
        self.Base = Base
        self.model: Optional[type] = None
        self.ids = itertools.count(1)

    def table(self, type_: Any) -> type:
        if self.model is None:
            namespace = {
                "__tablename__": "vals",
                "id": mapped_column(Integer, primary_key=True, autoincrement=False),
                "x": mapped_column(type_, nullable=True),
            }
            self.model = track_table(tracked_fields=["x"])(type("Val", (self.Base,), namespace))
            self.Base.metadata.create_all(self.engine)
        return self.model

    def read(self, pk: int) -> Any:
        with Session(self.engine) as s:
            return s.get(self.model, pk).x

    def run(self, type_: Any, old: Any, new: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Insert ``old``, update to ``new``; return (what the ORM reads, what was recorded).

        Both are keyed ``insert`` / ``update-old`` / ``update-new``; the update
        keys are missing when the database saw no change (then nothing may be
        recorded for it).
        """
        Val = self.table(type_)
        pk = next(self.ids)
        with Session(self.engine) as s:
            s.add(Val(id=pk, x=old))
            s.commit()
        read_old = self.read(pk)
        with Session(self.engine) as s:
            s.execute(update(Val).where(Val.id == pk).values(x=new))
            s.commit()
        read_new = self.read(pk)
        with Session(self.engine) as s:
            records = changes(Val, s, filter_resource_ids=pk)
        recorded: dict[str, Any] = {}
        for r in records:
            assert (r.resource_id, r.field_name) == (str(pk), "x")
            if r.operation == "insert":
                assert "insert" not in recorded and r.old_value is None
                recorded["insert"] = r.new_value
            else:
                assert r.operation == "update" and "update-old" not in recorded
                recorded["update-old"], recorded["update-new"] = r.old_value, r.new_value
        # a value the ORM reads as None (NULL, a JSON column's JSON null) is not an
        # inserted field, as for any column (docs/reference.md)
        orm = {"insert": read_old} if read_old is not None else {}
        if not db_equal(read_old, read_new):
            orm.update({"update-old": read_old, "update-new": read_new})
        return orm, recorded

    def check(self, type_: Any, old: Any, new: Any) -> None:
        orm, recorded = self.run(type_, old, new)
        assert {k: canonical(v) for k, v in recorded.items()} == {
            k: canonical(v) for k, v in orm.items()
        }


@pytest.fixture
def round_trip(engine, Base) -> RoundTrip:
    return RoundTrip(engine, Base)


def distinct_pair(values: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, Any]]:
    """(old, new) that the application means as a change."""
    return st.tuples(values, values).filter(lambda p: not db_equal(p[0], p[1]))


# ---------------------------------------------------------------- numbers


@PROPERTY
@given(pair=distinct_pair(st.integers(-(2**31), 2**31 - 1)))
def test_integer_round_trips(round_trip, pair) -> None:
    round_trip.check(Integer, *pair)


@PROPERTY
@given(pair=distinct_pair(st.integers(-(2**63), 2**63 - 1)))
def test_big_integer_round_trips(round_trip, pair) -> None:
    round_trip.check(BigInteger, *pair)


EDGE_FLOATS = [0.0, -0.0, math.inf, -math.inf, 5e-324, -2.2250738585072014e-308,
               1.7976931348623157e308, 0.1 + 0.2, 2.0**53 + 2]


def floats(nan: bool, infinity: bool = True) -> st.SearchStrategy[float]:
    """Any float, with the awkward ones (signed zero, infinities, subnormals, NaN) drawn often."""
    edges = [f for f in EDGE_FLOATS if infinity or math.isfinite(f)] + ([math.nan] if nan else [])
    return st.sampled_from(edges) | st.floats(allow_nan=nan, allow_infinity=infinity)


@PROPERTY
@given(data=st.data())
def test_float_round_trips(round_trip, dialect, data) -> None:
    """Finite floats everywhere; infinities on SQLite and PostgreSQL (MariaDB's DOUBLE holds
    none: docs/mariadb.md); NaN on PostgreSQL only (SQLite stores NULL)."""
    values = floats(nan=dialect == "postgresql", infinity=dialect != "mariadb")
    old, new = data.draw(distinct_pair(values), label="old, new")
    round_trip.check(Double if dialect == "mariadb" else Float, old, new)  # all 8-byte floats


@PROPERTY
@given(pair=distinct_pair(st.integers(-(10**12), 10**12).map(lambda n: n / 1000)))
def test_float_read_as_decimal_round_trips(round_trip, pair) -> None:
    """``Double(asdecimal=True)``: the history gives the Decimal the ORM reads (floats of
    three decimals, which stay apart at the ten digits the ORM rounds them to)."""
    round_trip.check(Double(asdecimal=True), *pair)


@PROPERTY
@given(pair=distinct_pair(st.floats(width=32, allow_nan=False, allow_infinity=False)))
@pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)
def test_single_precision_float_round_trips(round_trip, pair) -> None:
    """SQLAlchemy's ``Float`` is a 4-byte FLOAT on MariaDB (an 8-byte one elsewhere): the
    history gives back what the ORM reads from it."""
    round_trip.check(Float, *pair)


@PROPERTY
@given(pair=distinct_pair(st.decimals(
    min_value=Decimal("-999999999999.999999"), max_value=Decimal("999999999999.999999"),
    places=6, allow_nan=False, allow_infinity=False,
)))
def test_numeric_round_trips_as_decimal(round_trip, pair) -> None:
    round_trip.check(Numeric(18, 6), *pair)


# ---------------------------------------------------------------- text


@PROPERTY
@given(pair=distinct_pair(st.text(TEXT_CHARS, max_size=100)))
def test_string_round_trips(round_trip, pair) -> None:
    round_trip.check(String(100), *pair)


@PROPERTY
@given(pair=distinct_pair(st.text(TEXT_CHARS)))
def test_text_round_trips(round_trip, pair) -> None:
    round_trip.check(Text, *pair)


# ---------------------------------------------------------------- other scalars


@PROPERTY
@given(pair=distinct_pair(st.booleans()))
def test_boolean_round_trips(round_trip, pair) -> None:
    round_trip.check(Boolean, *pair)


@PROPERTY
@given(pair=distinct_pair(st.dates()))
def test_date_round_trips(round_trip, pair) -> None:
    round_trip.check(Date, *pair)


@PROPERTY
@given(pair=distinct_pair(st.datetimes()))
def test_datetime_round_trips(round_trip, pair) -> None:
    round_trip.check(DateTime, *pair)


def uuids(dialect: str) -> st.SearchStrategy[Any]:
    """Any UUID; on MariaDB the RFC 4122 UUIDs of versions 1 to 5 (uuid1, uuid4 ...): its
    UUID type refuses some values of version nibble 8-f, e.g.
    c2f59959-4635-85b3-8025-3108b2732d4d (an error of the INSERT, before any trigger)."""
    if dialect != "mariadb":
        return st.uuids()
    return st.sampled_from([1, 2, 3, 4, 5]).flatmap(lambda v: st.uuids(version=v))


@PROPERTY
@given(data=st.data())
def test_uuid_round_trips(round_trip, dialect, data) -> None:
    old, new = data.draw(distinct_pair(uuids(dialect)), label="old, new")
    round_trip.check(Uuid, old, new)


@PROPERTY
@given(pair=distinct_pair(st.binary()))
def test_large_binary_round_trips(round_trip, pair) -> None:
    round_trip.check(LargeBinary, *pair)


# ---------------------------------------------------------------- JSON


def json_documents(strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | strings
    )
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.text(TEXT_CHARS, max_size=8), children, max_size=4),
        max_leaves=12,
    )


@PROPERTY
@given(pair=distinct_pair(json_documents(st.text(TEXT_CHARS, max_size=20))))
def test_json_round_trips(round_trip, pair) -> None:
    """Nested dicts and lists of JSON scalars (ints, finite floats, text without NUL, ...)."""
    round_trip.check(JSON, *pair)


@PROPERTY
@given(pair=distinct_pair(st.builds(
    lambda a, b: f"{a}\x00{b}", st.text(ANY_CHARS, max_size=10), st.text(ANY_CHARS, max_size=10)
)))
def test_json_strings_containing_nul_round_trip(round_trip, pair) -> None:
    """JSON may carry U+0000 in a string (it is written as the escape \\u0000)."""
    round_trip.check(JSON, *pair)
