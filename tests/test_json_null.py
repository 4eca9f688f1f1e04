"""JSON columns: SQL NULL and JSON ``null`` are two different stored values that the
ORM reads as the same Python ``None``. The history follows the ORM's reading
(docs/reference.md, "JSON columns: SQL NULL and JSON null"):

* neither appears among an insert's or a delete's fields (like NULL in any column);
* a change between them is a change in the database, so it is recorded, and it
  reads as ``None -> None``;
* a JSON *string* ``"null"`` is a value like any other.

Every read path is checked: a whole history (one row per audit row), a page
(one row per field, in SQL) and the cross-table ``get_changes``.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import JSON, Integer, insert, null, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, mapped_column

from sqlaudit import get_changes, track_table

from conftest import changes

MARIADB_PORTED = True  # the parametrisation below names MariaDB itself

# JSON on every database, and PostgreSQL's JSONB
pytestmark = pytest.mark.parametrize(("dialect", "json_type"), [
    pytest.param("sqlite", JSON, id="sqlite-json"),
    pytest.param("postgresql", JSON, id="postgresql-json"),
    pytest.param("postgresql", postgresql.JSONB, id="postgresql-jsonb"),
    pytest.param("mariadb", JSON, id="mariadb-json"),
], indirect=["dialect"])


@pytest.fixture
def Doc(Base: Any, engine: Any, json_type: Any) -> type:
    @track_table(tracked_fields=["doc", "n"])
    class Doc(Base):
        __tablename__ = "docs"
        id = mapped_column(Integer, primary_key=True, autoincrement=False)
        doc = mapped_column(json_type, nullable=True)
        n = mapped_column(Integer, nullable=True)

    Base.metadata.create_all(engine)
    return Doc


READS = {
    "whole history": lambda model, s: changes(model, s),
    "a page": lambda model, s: changes(model, s, limit=1000),
    "get_changes": lambda model, s: get_changes(s, models=model, sort_direction="asc"),
}


@pytest.fixture(params=sorted(READS))
def read(request: pytest.FixtureRequest) -> Any:
    return READS[request.param]


def fields(records: list[Any]) -> list[tuple[str, str, Any, Any]]:
    return [(r.operation, r.field_name, r.old_value, r.new_value) for r in records]


def test_neither_sql_null_nor_json_null_is_an_inserted_field(engine, Doc, read) -> None:
    with Session(engine) as s:
        s.execute(insert(Doc), [{"id": 1, "doc": null(), "n": 1},
                                {"id": 2, "doc": JSON.NULL, "n": 2}])
        s.commit()
        assert [s.get(Doc, i).doc for i in (1, 2)] == [None, None]  # the ORM's reading
        assert fields(read(Doc, s)) == [("insert", "n", None, 1), ("insert", "n", None, 2)]


def test_python_none_on_a_default_json_column_is_not_an_inserted_field(engine, Doc, read) -> None:
    """SQLAlchemy stores Python None in a JSON column as JSON null by default."""
    with Session(engine) as s:
        s.add(Doc(id=1, doc=None, n=1))
        s.commit()
        assert fields(read(Doc, s)) == [("insert", "n", None, 1)]


def test_neither_is_a_deleted_field(engine, Doc, read) -> None:
    with Session(engine) as s:
        s.execute(insert(Doc), [{"id": 1, "doc": null(), "n": 1},
                                {"id": 2, "doc": JSON.NULL, "n": 2}])
        s.commit()
        s.query(Doc).delete()
        s.commit()
        deletes = [f for f in fields(read(Doc, s)) if f[0] == "delete"]
        assert sorted(deletes, key=lambda f: f[2]) == [("delete", "n", 1, None),
                                                      ("delete", "n", 2, None)]


def test_a_change_between_sql_null_and_json_null_is_recorded_as_none_to_none(engine, Doc, read) -> None:
    with Session(engine) as s:
        s.execute(insert(Doc), [{"id": 1, "doc": null(), "n": 1}])
        s.commit()
        s.execute(update(Doc).where(Doc.id == 1).values(doc=JSON.NULL))
        s.commit()
        s.execute(update(Doc).where(Doc.id == 1).values(doc=null()))
        s.commit()
        assert fields(read(Doc, s))[1:] == [("update", "doc", None, None),
                                            ("update", "doc", None, None)]


def test_a_json_string_null_is_a_value(engine, Doc, read) -> None:
    with Session(engine) as s:
        s.add(Doc(id=1, doc="null", n=1))
        s.commit()
        s.execute(update(Doc).where(Doc.id == 1).values(doc=JSON.NULL))
        s.commit()
        assert s.get(Doc, 1).doc is None
        assert fields(read(Doc, s)) == [("insert", "doc", None, "null"), ("insert", "n", None, 1),
                                        ("update", "doc", "null", None)]


def test_values_round_trip_around_json_null(engine, Doc, read) -> None:
    with Session(engine) as s:
        s.add(Doc(id=1, doc={"a": [1, None]}, n=1))
        s.commit()
        s.execute(update(Doc).where(Doc.id == 1).values(doc=JSON.NULL))
        s.commit()
        s.execute(update(Doc).where(Doc.id == 1).values(doc=[None]))
        s.commit()
        assert fields(read(Doc, s)) == [("insert", "doc", None, {"a": [1, None]}),
                                        ("insert", "n", None, 1),
                                        ("update", "doc", {"a": [1, None]}, None),
                                        ("update", "doc", None, [None])]
