"""AsyncSession works through the same register_hooks(), on every async driver."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from sqlalchemy.orm import Session

from sqlaudit import audit_context, register_hooks
from sqlaudit.retrieval import get_resource_changes

from sample_models import readme_models


def _async_url(engine, driver: str) -> str:
    if engine.dialect.name == "sqlite":
        return f"sqlite+aiosqlite:///{engine.url.database}"
    if engine.dialect.name in ("mysql", "mariadb"):
        return engine.url.set(drivername=f"mysql+{driver}").render_as_string(hide_password=False)
    return engine.url.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)


@pytest.mark.parametrize(
    "dialect, driver",
    [("sqlite", "aiosqlite"), ("postgresql", "asyncpg"), ("postgresql", "psycopg"),
     ("mariadb", "aiomysql"), ("mariadb", "asyncmy")],
    indirect=["dialect"],
)
def test_async_sessions_record_each_tasks_user(engine, Base, driver) -> None:
    User, Customer = readme_models(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    connect_args = {}
    if engine.dialect.name == "postgresql":
        key = "server_settings" if driver == "asyncpg" else "options"
        value = {"search_path": engine.info_schema} if driver == "asyncpg" else f"-csearch_path={engine.info_schema}"
        connect_args = {key: value}
    elif engine.dialect.name in ("mysql", "mariadb"):
        connect_args = {}
    else:
        connect_args = {"timeout": 30}
    aengine = create_async_engine(_async_url(engine, driver), connect_args=connect_args)

    async def write(user: int) -> None:
        with audit_context(user_id=user):
            async with AsyncSession(aengine) as session:
                session.add(Customer(name=f"by {user}", user_id=1))
                await session.commit()
                await session.execute(text(f"UPDATE customers SET email = 'u{user}' WHERE name = 'by {user}'"))
                await session.commit()

    async def main() -> None:
        async with AsyncSession(aengine) as session:
            session.add(User(user_id=1))
            await session.commit()
        await asyncio.gather(*(write(u) for u in range(1, 7)))
        await aengine.dispose()

    asyncio.run(main())
    with Session(engine) as s:
        records = get_resource_changes(Customer, session=s, sort_direction="asc")
    by_name = {}
    for r in records:
        if r.field_name == "name":
            by_name[r.new_value] = r.changed_by
    assert by_name == {f"by {u}": str(u) for u in range(1, 7)}
    updates = [r for r in records if r.operation == "update"]
    assert sorted((r.new_value, r.changed_by) for r in updates) == sorted(
        (f"u{u}", str(u)) for u in range(1, 7)
    )
