"""Undo: revert_transaction and restore_resource (issue section 4)."""

from __future__ import annotations

import time as clock
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from sqlalchemy import ForeignKey, Integer, String, Uuid, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit import audit_context, register_hooks, track_table
from sqlaudit.exceptions import SQLAuditRevertConflict, SQLAuditRevertError
from sqlaudit.retrieval import get_changes, get_resource_changes, get_transactions
from sqlaudit.revert import RevertResult, restore_resource, revert_transaction

from test_state import keyed_models

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True


def library_models(Base: Any) -> tuple[type, type]:
    @track_table()
    class Author(Base):
        __tablename__ = "authors"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        country: Mapped[str | None] = mapped_column(String(50), nullable=True)

    @track_table()
    class Book(Base):
        __tablename__ = "books"
        id: Mapped[int] = mapped_column(primary_key=True)
        author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
        title: Mapped[str] = mapped_column(String(100))

    return Author, Book


@pytest.fixture
def library(engine, Base) -> tuple[type, type]:
    models = library_models(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    return models


def write(engine: Any, work: Callable[[Session], Any], user: str = "editor") -> int:
    """Run ``work`` in its own committed transaction; return its transaction id."""
    clock.sleep(0.003)
    with Session(engine) as s, audit_context(user_id=user):
        work(s)
        s.commit()
    with Session(engine) as s:
        return get_transactions(s, limit=1)[0].transaction_id


def rows(engine: Any, model: type) -> list[tuple[Any, ...]]:
    with Session(engine) as s:
        table = model.__table__
        return [tuple(r) for r in s.execute(select(table).order_by(*table.primary_key)).all()]


def test_reverting_an_update_sets_the_old_values_back(engine, library) -> None:
    Author, _ = library
    write(engine, lambda s: s.add(Author(id=1, name="Ann", country="NO")))
    tx = write(engine, lambda s: s.execute(update(Author).values(name="Anne", country="SE")))
    with Session(engine) as s:
        result = revert_transaction(s, tx)
        s.commit()
    assert rows(engine, Author) == [(1, "Ann", "NO")]
    assert isinstance(result, RevertResult) and result.skipped == []
    assert sorted(r.field_name for r in result.reverted) == ["country", "name"]


def test_a_revert_is_audited_with_its_reason_the_user_and_the_callers_context(engine, library) -> None:
    Author, _ = library
    write(engine, lambda s: s.add(Author(id=1, name="Ann")))
    tx = write(engine, lambda s: s.execute(update(Author).values(name="Anne")))
    with Session(engine) as s, audit_context(user_id="admin", context={"ticket": "T-9"}):
        revert_transaction(s, tx)
        s.commit()
    with Session(engine) as s:
        (last,) = get_transactions(s, limit=1)
    assert last.changed_by == "admin"
    assert last.reason == f"revert of transaction {tx}"
    assert last.context == {"ticket": "T-9", "sqlaudit_revert_of": tx}
    assert [(c.old_value, c.new_value) for c in last.changes] == [("Anne", "Ann")]


def test_reverting_inserts_deletes_them_child_rows_first(engine, library) -> None:
    Author, Book = library

    def add(s: Session) -> None:
        s.add(Author(id=1, name="Ann"))
        s.flush()
        s.add(Book(id=10, author_id=1, title="B"))

    tx = write(engine, add)
    with Session(engine) as s:
        revert_transaction(s, tx)
        s.commit()
    assert rows(engine, Author) == [] and rows(engine, Book) == []


def test_reverting_deletes_reinserts_the_rows_parent_first(engine, library) -> None:
    Author, Book = library

    def add(s: Session) -> None:
        s.add(Author(id=1, name="Ann", country=None))
        s.flush()
        s.add(Book(id=10, author_id=1, title="B"))

    write(engine, add)

    def remove(s: Session) -> None:
        s.delete(s.get(Book, 10))
        s.flush()
        s.delete(s.get(Author, 1))

    tx = write(engine, remove)
    with Session(engine) as s:
        revert_transaction(s, tx)
        s.commit()
    assert rows(engine, Author) == [(1, "Ann", None)]
    assert rows(engine, Book) == [(10, 1, "B")]


def test_changes_inside_the_reverted_transaction_never_conflict(engine, library) -> None:
    Author, _ = library

    def work(s: Session) -> None:
        s.add(Author(id=1, name="a"))
        s.flush()
        s.execute(update(Author).values(name="b"))
        s.flush()
        s.execute(update(Author).values(name="c"))

    tx = write(engine, work)
    with Session(engine) as s:
        revert_transaction(s, tx)
        s.commit()
    assert rows(engine, Author) == []


def test_a_later_change_to_the_same_field_is_a_conflict_and_nothing_changes(engine, library) -> None:
    Author, _ = library
    write(engine, lambda s: s.add_all([Author(id=1, name="a"), Author(id=2, name="x")]))
    tx = write(engine, lambda s: s.execute(update(Author).values(name="b")))
    write(engine, lambda s: s.execute(update(Author).where(Author.id == 1).values(name="c")))
    with Session(engine) as s:
        with pytest.raises(SQLAuditRevertConflict) as exc:
            revert_transaction(s, tx)
        assert [(r.resource_id, r.field_name) for r in exc.value.conflicts] == [("1", "name")]
        assert "authors 1" in str(exc.value)
        s.add(Author(id=3, name="still usable"))  # the session carries on
        s.commit()
    assert rows(engine, Author) == [(1, "c", None), (2, "b", None), (3, "still usable", None)]


def test_a_later_change_to_another_field_is_no_conflict(engine, library) -> None:
    Author, _ = library
    write(engine, lambda s: s.add(Author(id=1, name="a", country="NO")))
    tx = write(engine, lambda s: s.execute(update(Author).values(name="b")))
    write(engine, lambda s: s.execute(update(Author).values(country="SE")))
    with Session(engine) as s:
        revert_transaction(s, tx)
        s.commit()
    assert rows(engine, Author) == [(1, "a", "SE")]


def test_skip_reverts_the_rest_and_reports_the_conflicts(engine, library) -> None:
    Author, _ = library
    write(engine, lambda s: s.add_all([Author(id=1, name="a"), Author(id=2, name="x")]))
    tx = write(engine, lambda s: s.execute(update(Author).values(name="b")))
    write(engine, lambda s: s.execute(update(Author).where(Author.id == 1).values(name="c")))
    with Session(engine) as s:
        result = revert_transaction(s, tx, on_conflict="skip")
        s.commit()
    assert [(r.resource_id, r.new_value) for r in result.skipped] == [("1", "b")]
    assert [(r.resource_id, r.old_value) for r in result.reverted] == [("2", "x")]
    assert rows(engine, Author) == [(1, "c", None), (2, "x", None)]


def test_a_deleted_row_changed_again_later_conflicts(engine, library) -> None:
    Author, _ = library
    write(engine, lambda s: s.add(Author(id=1, name="a")))
    tx = write(engine, lambda s: s.delete(s.get(Author, 1)))
    write(engine, lambda s: s.add(Author(id=1, name="new")))
    with Session(engine) as s, pytest.raises(SQLAuditRevertConflict):
        revert_transaction(s, tx)


def test_reverting_a_revert_redoes_the_change(engine, library) -> None:
    Author, _ = library
    write(engine, lambda s: s.add(Author(id=1, name="a")))
    tx = write(engine, lambda s: s.execute(update(Author).values(name="b")))
    undo = write(engine, lambda s: revert_transaction(s, tx))
    assert rows(engine, Author) == [(1, "a", None)]
    write(engine, lambda s: revert_transaction(s, undo))
    assert rows(engine, Author) == [(1, "b", None)]


def test_a_delete_is_not_revertible_when_a_not_null_column_was_not_tracked(engine, Base) -> None:
    @track_table(tracked_fields=["note"])
    class Partial(Base):
        __tablename__ = "partials"
        id: Mapped[int] = mapped_column(primary_key=True)
        required: Mapped[str] = mapped_column(String(10))
        note: Mapped[str | None] = mapped_column(String(10), nullable=True)

    Base.metadata.create_all(engine)
    register_hooks()
    write(engine, lambda s: s.add(Partial(id=1, required="r", note="n")))
    tx = write(engine, lambda s: s.delete(s.get(Partial, 1)))
    with Session(engine) as s, pytest.raises(SQLAuditRevertError, match=r"\['required'\]"):
        revert_transaction(s, tx)


def test_keys_of_every_shape_revert(engine, Base) -> None:
    Pair, Thing = keyed_models(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    thing = uuid.uuid4()
    write(engine, lambda s: (s.add(Pair(tenant="t", number=1, value="a")),
                             s.add(Thing(id=thing, value="a"))))
    tx = write(engine, lambda s: (s.execute(update(Pair).values(value="b")),
                                  s.execute(update(Thing).values(value="b"))))
    write(engine, lambda s: revert_transaction(s, tx))
    assert rows(engine, Pair) == [("t", 1, "a")]
    tx_delete = write(engine, lambda s: s.delete(s.get(Thing, thing)))
    write(engine, lambda s: revert_transaction(s, tx_delete))
    assert rows(engine, Thing) == [(thing, "a")]


def test_argument_errors(engine, library) -> None:
    with Session(engine) as s:
        with pytest.raises(ValueError, match="on_conflict"):
            revert_transaction(s, 1, on_conflict="ignore")
        with pytest.raises(TypeError, match="transaction_id"):
            revert_transaction(s, "1")
        with pytest.raises(SQLAuditRevertError, match="no recorded change"):
            revert_transaction(s, 123456789)


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_truncate_cannot_be_reverted(engine, library) -> None:
    Author, Book = library
    write(engine, lambda s: s.add(Author(id=1, name="a")))
    with Session(engine) as s, audit_context(user_id="x"):
        s.execute(text("TRUNCATE authors, books"))
        s.commit()
    with Session(engine) as s:
        tx = get_transactions(s, limit=1)[0].transaction_id
        with pytest.raises(SQLAuditRevertError, match="TRUNCATE"):
            revert_transaction(s, tx)


# ---------------------------------------------------------------- restore_resource

def test_restore_sets_a_row_back_to_a_past_state(engine, library) -> None:
    Author, _ = library
    write(engine, lambda s: s.add(Author(id=1, name="a", country="NO")))
    with Session(engine) as s:
        good = get_transactions(s, limit=1)[0].timestamp
    write(engine, lambda s: s.execute(update(Author).values(name="b")))
    write(engine, lambda s: s.execute(update(Author).values(country="SE")))
    with Session(engine) as s, audit_context(user_id="admin"):
        assert restore_resource(s, Author, 1, at=good) == {"id": 1, "name": "a", "country": "NO"}
        s.commit()
    assert rows(engine, Author) == [(1, "a", "NO")]
    with Session(engine) as s:
        last = get_transactions(s, limit=1)[0]
    assert last.reason.startswith("restore of authors 1 to ") and last.changed_by == "admin"


def test_restore_reinserts_a_deleted_row(engine, library) -> None:
    Author, _ = library
    write(engine, lambda s: s.add(Author(id=1, name="a")))
    with Session(engine) as s:
        alive = get_transactions(s, limit=1)[0].timestamp
    write(engine, lambda s: s.delete(s.get(Author, 1)))
    with Session(engine) as s:
        restore_resource(s, Author, 1, at=alive)
        s.commit()
    assert rows(engine, Author) == [(1, "a", None)]


def test_restore_to_before_the_row_existed_deletes_it(engine, library) -> None:
    Author, _ = library
    write(engine, lambda s: s.add(Author(id=1, name="a")))
    with Session(engine) as s:
        created = get_transactions(s, limit=1)[0].timestamp
        assert restore_resource(s, Author, 1, at=created - timedelta(milliseconds=1)) is None
        s.commit()
    assert rows(engine, Author) == []
    with Session(engine) as s:
        assert [r.operation for r in get_resource_changes(Author, session=s)][0] == "delete"
