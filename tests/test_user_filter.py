"""Filtering by user: the index holds a 200-character prefix of ``changed_by``.

An id shorter than 200 characters is matched on the prefix alone (exact: a
longer stored id has a 200-character prefix, never equal to a shorter one); an
id of 200 characters or more is matched on its prefix, then exactly. Both reads, ``get_resource_changes`` and
``get_changes``, on both databases.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Integer, String, insert, text
from sqlalchemy.orm import Session, mapped_column

from sqlaudit import audit_context, get_changes, register_hooks, track_table

from conftest import changes

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True

LONG = "u" * 250


@pytest.fixture
def Note(Base: Any, engine: Any) -> type:
    @track_table(tracked_fields=["body"])
    class Note(Base):
        __tablename__ = "notes"
        id = mapped_column(Integer, primary_key=True, autoincrement=False)
        body = mapped_column(String(50))

    Base.metadata.create_all(engine)
    register_hooks()
    return Note


def write_as(engine: Any, Note: type, user: str, body: str, id_: int) -> None:
    with audit_context(user_id=user), Session(engine) as s:
        s.execute(insert(Note), [{"id": id_, "body": body}])
        s.commit()


USERS = {"alice": "alice", "alice-admin": "alice-admin", "long": LONG,
         "long-twin": LONG[:-1] + "v", "long-prefix": LONG[:200]}


@pytest.fixture
def written(engine: Any, Note: type) -> type:
    for i, (body, user) in enumerate(USERS.items(), start=1):
        write_as(engine, Note, user, body, i)
    return Note


READS = {
    "get_resource_changes": lambda s, Note, users: [r.new_value for r in changes(Note, s, filter_user_ids=users)],
    "get_changes": lambda s, Note, users: [r.new_value for r in get_changes(s, user_ids=users, sort_direction="asc")],
    "a page": lambda s, Note, users: [r.new_value for r in changes(Note, s, filter_user_ids=users, limit=10)],
}


@pytest.mark.parametrize("read", sorted(READS))
@pytest.mark.parametrize("users, found", [
    ("alice", ["alice"]),                      # not alice-admin, which starts with it
    (LONG[:200], ["long-prefix"]),             # an id of exactly the prefix's length
    (LONG, ["long"]),                          # not the other 250-character id with its prefix
    ([LONG, "alice-admin"], ["alice-admin", "long"]),
    (["alice", LONG[:-1] + "v"], ["alice", "long-twin"]),
], ids=["short", "prefix-length", "long", "long-and-short", "short-and-long"])
def test_a_user_filter_matches_exactly_those_users(engine, written, read, users, found) -> None:
    with Session(engine) as s:
        assert sorted(READS[read](s, written, users)) == sorted(found)


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_users_latest_changes_are_read_newest_first_from_the_index(engine, Note) -> None:
    """The read stops after the newest records instead of sorting all of the user's."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO sqlaudit_log (table_name, resource_id, operation, changed_at, changed_by, new_data) "
            "SELECT 'notes', g::text, 'insert', now() - g * interval '1 second', 'user-' || (g % 20), "
            "'{\"body\": \"x\"}' FROM generate_series(1, 20000) AS g"))
        conn.execute(text("ANALYZE sqlaudit_log"))
    captured: list[tuple[str, Any]] = []
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "sqlaudit_log" in statement and not statement.lstrip().upper().startswith("EXPLAIN"):
            captured.append((statement, parameters))

    with Session(engine) as s:
        assert len(get_changes(s, user_ids="user-7", limit=100)) == 100
    statement, parameters = captured[0]  # the page of audit rows
    with engine.connect() as conn:
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
    assert "Index Scan Backward using ix_sqlaudit_log_user" in plan, plan
    assert "Bitmap" not in plan, plan


@pytest.mark.parametrize("read", sorted(READS))
def test_a_user_filter_tells_trailing_spaces_apart(engine, Note, read) -> None:
    """``"alice"`` and ``"alice "`` are two users on every database (MariaDB's
    PAD SPACE collations would call them equal)."""
    write_as(engine, Note, "alice", "plain", 1)
    write_as(engine, Note, "alice ", "spaced", 2)
    with Session(engine) as s:
        assert READS[read](s, Note, "alice") == ["plain"]
        assert READS[read](s, Note, "alice ") == ["spaced"]


def test_a_user_id_of_spaces_only_is_recorded_as_given(engine, Note) -> None:
    """Only an empty id means "no user"; an id of spaces is stored exactly."""
    write_as(engine, Note, "  ", "spaces", 1)
    with Session(engine) as s:
        assert [r.changed_by for r in changes(Note, s)] == ["  "]


def test_a_user_id_of_spaces_only_passes_a_fail_closed_table(Base, engine) -> None:
    @track_table(tracked_fields=["body"], require_user_id=True)
    class Strict(Base):
        __tablename__ = "strict_notes"
        id = mapped_column(Integer, primary_key=True, autoincrement=False)
        body = mapped_column(String(50))

    Base.metadata.create_all(engine)
    register_hooks()
    with audit_context(user_id=" "), Session(engine) as s:
        s.add(Strict(id=1, body="x"))
        s.commit()
    with Session(engine) as s:
        assert [r.changed_by for r in changes(Strict, s)] == [" "]
