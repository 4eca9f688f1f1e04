"""The acting user and the history through every MariaDB driver SQLAlchemy supports.

Each test runs once per driver: PyMySQL (``mysql+pymysql://``), mysqlclient
(``mysql+mysqldb://``), MariaDB Connector/Python (``mariadb+mariadbconnector://``)
and, through ``create_async_engine``, asyncmy (``mysql+asyncmy://``) and aiomysql
(``mysql+aiomysql://``). The async drivers run the test's body the way
``AsyncSession`` and ``AsyncConnection`` run their sync core: in a greenlet
(``greenlet_spawn``), where SQLAlchemy's sync API awaits the driver; the same
``register_hooks()`` listeners stamp the user there. ``test_async.py`` and
``test_history_async.py`` cover the async API itself (``AsyncSession``,
``sqlaudit.asyncio``) on asyncmy and aiomysql.
"""

from __future__ import annotations

import importlib.util
import os

import asyncio
from typing import Any, Callable, Optional

import pytest
from sqlalchemy import String, create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.util import await_only, greenlet_spawn

from sqlaudit import audit_context, register_hooks, track_table, unregister_hooks
from sqlaudit.config import SQLAuditConfig, set_config
from sqlaudit.retrieval import get_resource_changes

pytestmark = pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)

SYNC_DRIVERS = ["pymysql", "mysqldb", "mariadbconnector"]
ASYNC_DRIVERS = ["asyncmy", "aiomysql"]


#: Drivers that build against MariaDB Connector/C: the ``test-c-drivers`` extra, not
#: ``test`` (a fresh machine has no libmariadb-dev); CI installs them and sets
#: SQLAUDIT_REQUIRE_C_DRIVERS=1, which turns their skip into a failure.
C_DRIVERS = {"mysqldb": "MySQLdb", "mariadbconnector": "mariadb"}


@pytest.fixture(params=SYNC_DRIVERS + ASYNC_DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    require_c_driver(name)
    return name


def require_c_driver(name: str) -> None:
    """Skip (fail with SQLAUDIT_REQUIRE_C_DRIVERS=1) when C driver ``name`` is missing."""
    module = C_DRIVERS.get(name)
    if module is None or importlib.util.find_spec(module) is not None:
        return
    message = (f"{name} tests skipped, {module} is not installed: apt-get install "
               "libmariadb-dev pkg-config, then pip install '.[test-c-drivers]'")
    if os.environ.get("SQLAUDIT_REQUIRE_C_DRIVERS") == "1":
        pytest.fail(message + " (SQLAUDIT_REQUIRE_C_DRIVERS=1)", pytrace=False)
    pytest.skip(message)


def driver_url(engine: Engine, driver: str) -> Any:
    """This test's database through ``driver`` (Connector/Python is SQLAlchemy's
    ``mariadb+`` dialect only)."""
    if driver == "mariadbconnector":  # always utf8mb4; it takes no charset argument
        return engine.url.set(drivername="mariadb+mariadbconnector").difference_update_query(
            ["charset"])
    return engine.url.set(drivername=f"mysql+{driver}")


def on_driver(engine: Engine, driver: str, body: Callable[[Engine], Any], **kw: Any) -> Any:
    """``body(an Engine on driver)``; an async driver's engine is the sync core of a
    ``create_async_engine``, driven from a greenlet as AsyncSession drives it."""
    url = driver_url(engine, driver)
    if driver in ASYNC_DRIVERS:
        aengine = create_async_engine(url, **kw)

        async def main() -> Any:
            try:
                return await greenlet_spawn(body, aengine.sync_engine)
            finally:
                await aengine.dispose()

        return asyncio.run(main())
    sync = create_engine(url, **kw)
    try:
        return body(sync)
    finally:
        sync.dispose()


def foreign_connection(engine: Engine, driver: str) -> Any:
    """A connection of ``driver`` made outside SQLAlchemy (another program's), in
    autocommit; for an async driver, called from the test's greenlet."""
    url = engine.url
    args = dict(host=url.host, port=url.port or 3306, user=url.username,
                password=url.password or "", database=url.database)
    if driver == "pymysql":
        import pymysql
        return pymysql.connect(**args, charset="utf8mb4", autocommit=True)
    if driver == "mysqldb":
        import MySQLdb
        return MySQLdb.connect(**args, charset="utf8mb4", autocommit=True)
    if driver == "mariadbconnector":
        import mariadb
        return mariadb.connect(**args, autocommit=True)
    if driver == "asyncmy":
        import asyncmy
        return AwaitedConnection(await_only(asyncmy.connect(**args, charset="utf8mb4",
                                                            autocommit=True)))
    import aiomysql
    args["db"] = args.pop("database")
    return AwaitedConnection(await_only(aiomysql.connect(**args, charset="utf8mb4",
                                                         autocommit=True)))


class AwaitedConnection:
    """An async driver's connection used synchronously from a greenlet (execute, close)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def cursor(self) -> "AwaitedConnection":
        return self

    def execute(self, sql: str) -> None:
        async def run() -> None:
            async with self.conn.cursor() as cursor:
                await cursor.execute(sql)
        await_only(run())

    def close(self) -> None:
        self.conn.close()


def note_model(Base: Any) -> type:
    @track_table(tracked_fields=["title"])
    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(100))

    return Note


def session_variables(conn: Any) -> tuple[Any, ...]:
    """What the session holds in @sqlaudit_user_id and @sqlaudit_transaction_id, read on
    the DBAPI connection (no hook runs)."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute("SELECT @sqlaudit_user_id, @sqlaudit_transaction_id")
        return tuple(cursor.fetchone())
    finally:
        cursor.close()


def inserts(engine: Engine) -> list[tuple[Any, ...]]:
    """(title, changed_by) of every recorded insert, in order."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT JSON_VALUE(new_data, '$.title'), changed_by FROM sqlaudit_log "
            "WHERE operation = 'insert' ORDER BY id")).all()]


@pytest.fixture
def notes(engine: Engine, Base: Any) -> type:
    Note = note_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    return Note


def test_the_driver_is_the_one_named(engine, notes, driver) -> None:
    def body(e: Engine) -> tuple[str, str]:
        with e.connect() as conn:
            return conn.dialect.driver, type(conn.connection.driver_connection).__module__

    name, module = on_driver(engine, driver, body)
    assert name == driver
    assert module.split(".")[0] == {"mysqldb": "MySQLdb", "mariadbconnector": "mariadb"}.get(
        driver, driver)


def test_a_commit_records_the_user_and_clears_it_before_the_next_transaction(
        engine, notes, driver) -> None:
    def body(e: Engine) -> tuple[Any, ...]:
        with e.connect() as conn:
            with audit_context(user_id="alice"):
                conn.execute(text("INSERT INTO notes (id, title) VALUES (1, 'by alice')"))
                stamped = session_variables(conn)
                conn.commit()
            after_commit = session_variables(conn)
            conn.execute(text("INSERT INTO notes (id, title) VALUES (2, 'by nobody')"))
            conn.commit()
        return stamped, after_commit

    stamped, after_commit = on_driver(engine, driver, body)
    assert stamped[0] == "alice" and isinstance(stamped[1], int)
    assert after_commit == (None, None)
    assert inserts(engine) == [("by alice", "alice"), ("by nobody", None)]


def test_a_rollback_takes_the_user_away(engine, notes, driver) -> None:
    def body(e: Engine) -> tuple[Any, ...]:
        with e.connect() as conn:
            with audit_context(user_id="alice"):
                conn.execute(text("INSERT INTO notes (id, title) VALUES (1, 'rolled back')"))
                conn.rollback()
            after_rollback = session_variables(conn)
            conn.execute(text("INSERT INTO notes (id, title) VALUES (2, 'by nobody')"))
            conn.commit()
        return after_rollback

    assert on_driver(engine, driver, body) == (None, None)
    assert inserts(engine) == [("by nobody", None)]


def test_a_pooled_session_is_reused_without_the_user(engine, notes, driver) -> None:
    """A commit made on the DBAPI connection behind SQLAlchemy's back leaves the
    variables set; checkin clears them before the next checkout of the same session."""
    def body(e: Engine) -> tuple[Any, ...]:
        with e.connect() as conn, audit_context(user_id="alice"):
            first = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
            conn.execute(text("INSERT INTO notes (id, title) VALUES (1, 'by alice')"))
            conn.connection.dbapi_connection.commit()
            leftover = session_variables(conn)
        unregister_hooks()  # the next checkout stamps nothing: it shows what the pool left
        with e.connect() as conn:
            second = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
            reused = session_variables(conn)
            conn.execute(text("INSERT INTO notes (id, title) VALUES (2, 'next checkout')"))
            conn.commit()
        return first, second, leftover, reused

    first, second, leftover, reused = on_driver(engine, driver, body, pool_size=1, max_overflow=0)
    assert first == second
    assert leftover[0] == "alice" and reused == (None, None)
    assert inserts(engine) == [("by alice", "alice"), ("next checkout", None)]


def test_a_foreign_connection_never_sees_the_user(engine, notes, driver) -> None:
    """User variables belong to a session: while one session's transaction is stamped,
    another program's connection (same driver, outside SQLAlchemy) writes without it."""
    def body(e: Engine) -> None:
        with e.connect() as conn, audit_context(user_id="alice"):
            conn.execute(text("INSERT INTO notes (id, title) VALUES (1, 'by alice')"))
            foreign = foreign_connection(engine, driver)
            try:
                cursor = foreign.cursor()
                cursor.execute("INSERT INTO notes (id, title) VALUES (2, 'foreign')")
            finally:
                foreign.close()
            conn.commit()

    on_driver(engine, driver, body)
    assert inserts(engine) == [("by alice", "alice"), ("foreign", None)]


def test_the_history_reads_back_through_the_driver(engine, notes, driver) -> None:
    Note = notes

    def body(e: Engine) -> list[tuple[Any, ...]]:
        with Session(e) as s:
            with audit_context(user_id="alice", reason="import"):
                s.add(Note(id=1, title="caf\u00e9 \U0001F600"))
                s.commit()
            with audit_context(user_id="bob"):
                s.get(Note, 1).title = "renamed"
                s.commit()
            return [(r.operation, r.field_name, r.old_value, r.new_value, r.changed_by, r.reason)
                    for r in get_resource_changes(Note, session=s, filter_resource_ids=1,
                                                  sort_direction="asc")]

    assert on_driver(engine, driver, body) == [
        ("insert", "title", None, "caf\u00e9 \U0001F600", "alice", "import"),
        ("update", "title", "caf\u00e9 \U0001F600", "renamed", "bob", None),
    ]


def test_driver_autocommit_records_writes_without_a_user(engine, notes, driver) -> None:
    """Each driver's own autocommit switch: the hook reads the server's autocommit flag
    through the driver, so no statement is credited to a user stamped for another."""
    current: dict[str, Optional[str]] = {"user": "A"}
    set_config(SQLAuditConfig(get_user_id_callback=lambda: current["user"]))
    register_hooks()

    def body(e: Engine) -> tuple[Any, ...]:
        with e.connect() as conn:
            conn.execute(text("INSERT INTO notes (id, title) VALUES (1, 'job 1')"))
            current["user"] = "B"
            conn.execute(text("INSERT INTO notes (id, title) VALUES (2, 'job 2')"))
            return session_variables(conn)

    assert on_driver(engine, driver, body, connect_args={"autocommit": True}) == (None, None)
    assert inserts(engine) == [("job 1", None), ("job 2", None)]
