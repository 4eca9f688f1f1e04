"""sqlaudit.asyncio: every read and undo function on AsyncSession and AsyncConnection."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import sqlaudit.asyncio as aio
from sqlaudit import audit_context, register_hooks
from sqlaudit.retrieval import get_changes, get_resource_changes, get_transactions

from test_async import _async_url
from test_revert import library_models

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True

DRIVERS = pytest.mark.parametrize(
    "dialect, driver",
    [("sqlite", "aiosqlite"), ("postgresql", "asyncpg"), ("postgresql", "psycopg"),
     ("mariadb", "aiomysql"), ("mariadb", "asyncmy")],
    indirect=["dialect"],
)


def _async_engine(engine: Any, driver: str) -> Any:
    if engine.dialect.name == "postgresql":
        key = "server_settings" if driver == "asyncpg" else "options"
        value: Any = ({"search_path": engine.info_schema} if driver == "asyncpg"
                      else f"-csearch_path={engine.info_schema}")
        return create_async_engine(_async_url(engine, driver), connect_args={key: value})
    return create_async_engine(_async_url(engine, driver))


def _seed(engine: Any, Base: Any) -> tuple[type, int]:
    Author, _ = library_models(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="ann", context={"request_id": "r1"}):
        s.add_all([Author(id=i, name=f"a{i}") for i in range(1, 4)])
        s.commit()
    with Session(engine) as s, audit_context(user_id="bob"):
        s.execute(update(Author).where(Author.id == 1).values(name="changed"))
        s.commit()
    with Session(engine) as s:
        return Author, get_transactions(s, limit=1)[0].transaction_id


@DRIVERS
def test_every_read_has_an_awaitable_twin_with_the_same_answer(engine, Base, driver) -> None:
    Author, tx = _seed(engine, Base)
    with Session(engine) as s:
        expected = (get_changes(s), get_transactions(s), get_resource_changes(Author, session=s))
    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    aengine = _async_engine(engine, driver)

    async def main() -> Any:
        async with AsyncSession(aengine) as session:
            got = (await aio.get_changes(session), await aio.get_transactions(session),
                   await aio.get_resource_changes(Author, session))
            state = await aio.get_resource_state(Author, 1, at=later, session=session)
            table = [item async for item in aio.get_table_state(Author, at=later, session=session)]
        async with aengine.connect() as conn:  # an AsyncConnection too
            by_conn = await aio.get_changes(conn, user_ids="bob")
        await aengine.dispose()
        return got, state, table, by_conn

    got, state, table, by_conn = asyncio.run(main())
    assert got == expected
    assert state == {"id": 1, "name": "changed", "country": None}
    assert [rid for rid, _ in table] == ["1", "2", "3"]
    assert [(r.old_value, r.new_value) for r in by_conn] == [("a1", "changed")]


@DRIVERS
def test_revert_and_restore_are_awaitable(engine, Base, driver) -> None:
    Author, tx = _seed(engine, Base)
    aengine = _async_engine(engine, driver)

    async def main() -> Any:
        async with AsyncSession(aengine) as session:
            with audit_context(user_id="admin"):
                result = await aio.revert_transaction(session, tx)
                await session.commit()
            name = (await session.get(Author, 1)).name
        await aengine.dispose()
        return result, name

    result, name = asyncio.run(main())
    assert name == "a1"
    assert [(r.field_name, r.old_value) for r in result.reverted] == [("name", "a1")]
    with Session(engine) as s:
        last = get_transactions(s, limit=1)[0]
    assert (last.changed_by, last.reason) == ("admin", f"revert of transaction {tx}")


@DRIVERS
def test_sync_functions_point_async_callers_to_sqlaudit_asyncio(engine, Base, driver) -> None:
    Author, _ = _seed(engine, Base)
    aengine = _async_engine(engine, driver)

    async def main() -> None:
        async with AsyncSession(aengine) as session:
            with pytest.raises(TypeError, match=r"sqlaudit\.asyncio\.get_changes"):
                get_changes(session)
            with pytest.raises(TypeError, match=r"sqlaudit\.asyncio\.get_resource_changes"):
                get_resource_changes(Author, session=session)
        await aengine.dispose()

    asyncio.run(main())


def test_the_coroutines_refuse_a_sync_session(engine, Base) -> None:
    Author, _ = _seed(engine, Base)
    with Session(engine) as s, pytest.raises(TypeError, match="AsyncSession or AsyncConnection"):
        asyncio.run(aio.get_changes(s))
