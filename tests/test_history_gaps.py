"""Rows removed without a recorded delete are found (SQLite REPLACE conflicts, deletes
made with the triggers switched off on PostgreSQL, foreign-key cascades and TRUNCATE on
MariaDB)."""

from __future__ import annotations

import pytest
from sqlalchemy import String, text
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit.decorators import track_table
from sqlaudit.integrity import HistoryGap, find_history_gaps

from test_write_paths import _foreign_execute

MARIADB_PORTED = True


def _model(Base, replace_column: bool = False):
    @track_table(tracked_fields=["code", "body"])
    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        code: Mapped[str] = mapped_column(String(10), unique=True)
        body: Mapped[str] = mapped_column(String(50))

    return Item


def _foreign(engine, *statements: str) -> None:
    """Another program's connection (plain sqlite3: no sqlaudit hooks, default pragmas)."""
    _foreign_execute(engine, list(statements))


def _gaps(engine) -> list[tuple[str, str]]:
    return [(g.table_name, g.resource_id) for g in find_history_gaps(engine)]


def test_an_ordinary_history_has_no_gaps(engine, Base) -> None:
    Item = _model(Base)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO items (id, code, body) VALUES (1, 'a', 'x')"))
        conn.execute(text("UPDATE items SET body = 'y'"))
        conn.execute(text("DELETE FROM items"))
        conn.execute(text("INSERT INTO items (id, code, body) VALUES (1, 'a', 'again')"))
    assert _gaps(engine) == []
    assert find_history_gaps(engine, Item) == []


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_a_row_replaced_under_the_same_key_is_found(engine, Base) -> None:
    """SQLite fires no delete trigger for a row REPLACE removes unless the writing
    connection set recursive_triggers: the history gap is found afterwards."""
    _model(Base)
    Base.metadata.create_all(engine)
    _foreign(engine, "INSERT INTO items (id, code, body) VALUES (1, 'a', 'x')",
             "INSERT OR REPLACE INTO items (id, code, body) VALUES (1, 'b', 'replacing')")
    assert _gaps(engine) == [("items", "1")]


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_a_row_replaced_through_another_unique_column_is_found_against_the_table(
        engine, Base) -> None:
    """REPLACE on a unique column removes another row: its history says it exists, the
    table says it does not (checked for the models given)."""
    Item = _model(Base)
    Base.metadata.create_all(engine)
    _foreign(engine, "INSERT INTO items (id, code, body) VALUES (1, 'a', 'x')",
             "INSERT OR REPLACE INTO items (id, code, body) VALUES (3, 'a', 'takes the code')")
    assert _gaps(engine) == []  # the log alone cannot see it
    assert [(g.table_name, g.resource_id) for g in find_history_gaps(engine, Item)] == [
        ("items", "1")]


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_update_or_replace_loses_the_other_rows_delete_and_it_is_found(engine, Base) -> None:
    _model(Base)
    Base.metadata.create_all(engine)
    _foreign(engine,
             "INSERT INTO items (id, code, body) VALUES (1, 'a', 'x'), (2, 'b', 'y')",
             "UPDATE OR REPLACE items SET id = 1 WHERE id = 2")  # removes row 1 silently
    Item = Base.metadata.tables["items"]
    gaps = find_history_gaps(engine, Item)
    assert [(g.table_name, g.resource_id) for g in gaps] == [("items", "1")]
    assert isinstance(gaps[0], HistoryGap)


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_with_recursive_triggers_the_replaced_row_is_recorded_and_no_gap_remains(
        engine, Base) -> None:
    _model(Base)
    Base.metadata.create_all(engine)
    _foreign(engine, "PRAGMA recursive_triggers = ON",
             "INSERT INTO items (id, code, body) VALUES (1, 'a', 'x')",
             "INSERT OR REPLACE INTO items (id, code, body) VALUES (1, 'b', 'replacing')")
    assert _gaps(engine) == []


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_delete_made_with_triggers_switched_off_is_found(engine, Base) -> None:
    _model(Base)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO items (id, code, body) VALUES (1, 'a', 'x')"))
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("DELETE FROM items"))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO items (id, code, body) VALUES (1, 'a', 'back')"))
        conn.execute(text("TRUNCATE items"))
        conn.execute(text("INSERT INTO items (id, code, body) VALUES (1, 'a', 'after truncate')"))
    assert _gaps(engine) == [("items", "1")]  # the unaudited delete; the truncate is no gap


@pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)
def test_rows_removed_by_a_foreign_key_cascade_are_found(engine, Base) -> None:
    """InnoDB runs no trigger for a cascaded delete (a documented hole on MariaDB): the
    child rows' history says they exist, the table says they do not."""
    Item = _model(Base)
    Base.metadata.create_all(engine)
    _foreign(engine, "CREATE TABLE boxes (id INT PRIMARY KEY)",
             "ALTER TABLE items ADD COLUMN box_id INT,"
             " ADD FOREIGN KEY (box_id) REFERENCES boxes (id) ON DELETE CASCADE",
             "INSERT INTO boxes (id) VALUES (7)",
             "INSERT INTO items (id, code, body, box_id) VALUES (1, 'a', 'x', 7), (2, 'b', 'y', NULL)",
             "DELETE FROM boxes")
    assert _gaps(engine) == []  # the log alone cannot see it
    assert [(g.table_name, g.resource_id) for g in find_history_gaps(engine, Item)] == [
        ("items", "1")]
    _foreign(engine, "INSERT INTO items (id, code, body) VALUES (1, 'a', 'back')")
    assert _gaps(engine) == [("items", "1")]  # inserted again while its history says it exists


@pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)
def test_rows_removed_by_truncate_are_found(engine, Base) -> None:
    """TRUNCATE runs no trigger on MariaDB and leaves no record (unlike PostgreSQL, whose
    recorded truncate is no gap)."""
    Item = _model(Base)
    Base.metadata.create_all(engine)
    _foreign(engine, "INSERT INTO items (id, code, body) VALUES (1, 'a', 'x'), (2, 'b', 'y')",
             "TRUNCATE items",
             "INSERT INTO items (id, code, body) VALUES (1, 'a', 'again')")
    assert _gaps(engine) == [("items", "1")]
    assert [(g.table_name, g.resource_id) for g in find_history_gaps(engine, Item)] == [
        ("items", "1"), ("items", "2")]


@pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)
def test_replace_into_records_the_rows_it_removes_so_no_gap_remains(engine, Base) -> None:
    """MariaDB runs the delete trigger for each row REPLACE removes, under the same key
    or through another unique column."""
    Item = _model(Base)
    Base.metadata.create_all(engine)
    _foreign(engine, "INSERT INTO items (id, code, body) VALUES (1, 'a', 'x'), (2, 'b', 'y')",
             "REPLACE INTO items (id, code, body) VALUES (1, 'c', 'same key')",
             "REPLACE INTO items (id, code, body) VALUES (3, 'b', 'takes the code of 2')")
    assert _gaps(engine) == []
    assert find_history_gaps(engine, Item) == []


@pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)
def test_mariadb_rows_removed_by_truncate_or_a_foreign_key_cascade_are_found(engine, Base) -> None:
    """MariaDB fires no trigger for TRUNCATE nor for a cascade (docs/mariadb.md, Holes):
    the row inserted again after a TRUNCATE is a gap in its history, and the child rows a
    cascade removed are found against their table."""
    from sqlalchemy import ForeignKey

    _model(Base)

    class Parent(Base):
        __tablename__ = "parents"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)

    @track_table(tracked_fields=["parent_id"])
    class Child(Base):
        __tablename__ = "children"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        parent_id: Mapped[int] = mapped_column(ForeignKey("parents.id", ondelete="CASCADE"))

    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO items (id, code, body) VALUES (1, 'a', 'x')"))
        conn.execute(text("INSERT INTO parents (id) VALUES (7)"))
        conn.execute(text("INSERT INTO children (id, parent_id) VALUES (1, 7), (2, 7)"))
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE items"))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO items (id, code, body) VALUES (1, 'a', 'again')"))
        conn.execute(text("DELETE FROM parents"))
    assert _gaps(engine) == [("items", "1")]
    assert [(g.table_name, g.resource_id) for g in find_history_gaps(engine, Child)] == [
        ("items", "1"), ("children", "1"), ("children", "2")]
