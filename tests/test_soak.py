"""Soak: many writers at once through one engine, each under its own audit_context.

Each writer makes a deterministic random mix of inserts, updates and deletes
of its own rows, one commit per change, while sharing one connection pool
(smaller than the number of writers, so every connection serves many users in
turn). The audit trail must then hold exactly one record per change, each
carrying its own writer's user, in the order each writer made them.

Default size (CI): 8 threads x 200 commits on each database (SQLite,
PostgreSQL, MariaDB; SQLite serialises the commits of its file database, which
keeps it a few seconds), and 6 asyncio tasks x 50 commits per async driver
(aiosqlite, asyncpg, psycopg, aiomysql). ``SQLAUDIT_SOAK_SCALE=10``
multiplies every commit count for long local runs.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import pytest
from sqlalchemy import Integer, String, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sqlaudit import audit_context, register_hooks, track_table
from sqlaudit.schema import audit_table

from conftest import _mariadb_engine, _postgres_engine, _sqlite_engine, changes

MARIADB_PORTED = True  # the SOAKS below name their databases, MariaDB among them

SCALE = int(os.environ.get("SQLAUDIT_SOAK_SCALE", "1"))
WRITERS = 8
COMMITS = 200 * SCALE  # per thread, on every database
POOL_SIZE = 4  # fewer connections than writers
TASKS = 6
TASK_COMMITS = 50 * SCALE  # per asyncio task
TASK_POOL_SIZE = 3
ID_SPAN = 1_000_000  # writer w owns ids w * ID_SPAN + 1, + 2, ...


def doc_model() -> type:
    class SoakBase(DeclarativeBase):
        pass

    @track_table(tracked_fields=["title", "version"])
    class Doc(SoakBase):
        __tablename__ = "docs"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        title: Mapped[str] = mapped_column(String(80))
        version: Mapped[int] = mapped_column(Integer)
        writer: Mapped[int] = mapped_column(Integer)  # not tracked

    return Doc


# ---------------------------------------------------------------- the plan


Step = tuple[str, int, dict[str, Any]]  # (operation, id, new values)
Expected = tuple[str, str, Any, Any]  # (operation, field, old, new) as the audit trail must say


@dataclass
class Plan:
    """The changes one writer makes (decided up front from its own seed) and how far it got."""

    writer: int
    steps: list[tuple[Step, list[Expected]]] = field(default_factory=list)
    done: int = 0  # steps committed
    error: Optional[str] = None  # why the writer stopped early, if it did

    def expected(self) -> dict[str, list[Expected]]:
        """Per resource id, the records of the committed steps, in order."""
        result: dict[str, list[Expected]] = defaultdict(list)
        for (_, pk, _), records in self.steps[: self.done]:
            result[str(pk)] += records
        return dict(result)


def make_plan(writer: int, commits: int) -> Plan:
    rng = random.Random(f"sqlaudit-soak-{writer}")
    plan = Plan(writer)
    live: dict[int, dict[str, Any]] = {}
    next_id = writer * ID_SPAN + 1
    for step in range(commits):
        roll = rng.random()
        if not live or roll < 0.4:
            pk, next_id = next_id, next_id + 1
            new = {"title": f"w{writer}-{pk}-v0", "version": 0}
            live[pk] = new
            plan.steps.append((("insert", pk, dict(new)), [
                ("insert", "title", None, new["title"]),
                ("insert", "version", None, 0),
            ]))
        elif roll < 0.8:
            pk = rng.choice(sorted(live))
            old = live[pk]
            new = {"title": f"w{writer}-{pk}-s{step}", "version": old["version"] + 1}
            live[pk] = new
            plan.steps.append((("update", pk, dict(new)), [
                ("update", "title", old["title"], new["title"]),
                ("update", "version", old["version"], new["version"]),
            ]))
        else:
            pk = rng.choice(sorted(live))
            old = live.pop(pk)
            plan.steps.append((("delete", pk, {}), [
                ("delete", "title", old["title"], None),
                ("delete", "version", old["version"], None),
            ]))
    return plan


def failure(plan: Plan, exc: BaseException) -> str:
    (operation, pk, _), _ = plan.steps[plan.done]
    first_line = (str(exc).splitlines() or [""])[0]
    return f"writer {plan.writer} step {plan.done} ({operation} {pk}): {type(exc).__name__}: {first_line}"


def apply_sync(session: Session, Doc: type, writer: int, step: Step) -> None:
    operation, pk, values = step
    if operation == "insert":
        session.add(Doc(id=pk, writer=writer, **values))
    elif operation == "update":
        doc = session.get(Doc, pk)
        doc.title, doc.version = values["title"], values["version"]
    else:
        session.delete(session.get(Doc, pk))
    session.commit()


async def apply_async(session: AsyncSession, Doc: type, writer: int, step: Step) -> None:
    operation, pk, values = step
    if operation == "insert":
        session.add(Doc(id=pk, writer=writer, **values))
    elif operation == "update":
        doc = await session.get(Doc, pk)
        doc.title, doc.version = values["title"], values["version"]
    else:
        await session.delete(await session.get(Doc, pk))
    await session.commit()


# ---------------------------------------------------------------- the runs


@dataclass
class SoakResult:
    plans: list[Plan]
    log_rows: int  # rows in sqlaudit_log
    records: list[Any]  # get_resource_changes(..., sort_direction="asc")

    @property
    def changes_made(self) -> int:
        return sum(p.done for p in self.plans)


def run_threads(engine: Engine, Doc: type, commits: int) -> list[Plan]:
    plans = [make_plan(w, commits) for w in range(1, WRITERS + 1)]
    start = threading.Barrier(WRITERS)

    def writer(plan: Plan) -> None:
        with audit_context(user_id=f"user-{plan.writer}"):
            start.wait()
            with Session(engine) as session:  # returns its connection at every commit
                for step, _ in plan.steps:
                    try:
                        apply_sync(session, Doc, plan.writer, step)
                    except Exception as exc:  # reported by test_soak_every_change_commits
                        plan.error = failure(plan, exc)
                        return
                    plan.done += 1

    threads = [threading.Thread(target=writer, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return plans


def run_tasks(url: str, connect_args: dict[str, Any], Doc: type) -> list[Plan]:
    plans = [make_plan(w, TASK_COMMITS) for w in range(1, TASKS + 1)]

    async def task(aengine: Any, plan: Plan) -> None:
        with audit_context(user_id=f"user-{plan.writer}"):
            await asyncio.sleep(0)  # every task enters its context before any writes
            async with AsyncSession(aengine) as session:
                for step, _ in plan.steps:
                    try:
                        await apply_async(session, Doc, plan.writer, step)
                    except Exception as exc:  # reported by test_soak_every_change_commits
                        plan.error = failure(plan, exc)
                        return
                    plan.done += 1

    async def main() -> None:
        aengine = create_async_engine(url, connect_args=connect_args,
                                      pool_size=TASK_POOL_SIZE, max_overflow=0, pool_timeout=120)
        try:
            await asyncio.gather(*(task(aengine, p) for p in plans))
        finally:
            await aengine.dispose()

    asyncio.run(main())
    return plans


SOAKS = [
    ("threads", "sqlite", None),
    ("threads", "postgresql", None),
    ("asyncio", "sqlite", "aiosqlite"),
    ("asyncio", "postgresql", "asyncpg"),
    ("asyncio", "postgresql", "psycopg"),
    ("threads", "mariadb", None),
    ("asyncio", "mariadb", "aiomysql"),
]


def _engine(dialect: str, request: pytest.FixtureRequest, tmp: Any, **kw: Any) -> Iterator[Engine]:
    if dialect == "sqlite":
        return _sqlite_engine(f"sqlite:///{tmp / 'soak.db'}", connect_args={"timeout": 60}, **kw)
    if dialect == "mariadb":
        return _mariadb_engine(request.getfixturevalue("mariadb_url"), **kw)
    return _postgres_engine(request.getfixturevalue("postgres_url"), **kw)


def _async_target(engine: Engine, driver: str) -> tuple[str, dict[str, Any]]:
    if driver == "aiosqlite":
        return f"sqlite+aiosqlite:///{engine.url.database}", {"timeout": 60}
    if driver == "aiomysql":
        return engine.url.set(drivername="mysql+aiomysql").render_as_string(hide_password=False), {}
    url = engine.url.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)
    if driver == "asyncpg":
        return url, {"server_settings": {"search_path": engine.info_schema}}
    return url, {"options": f"-csearch_path={engine.info_schema}"}


@pytest.fixture(scope="module", params=SOAKS, ids=[f"{m}-{driver or d}" for m, d, driver in SOAKS])
def soak(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoakResult]:
    mode, dialect, driver = request.param
    tmp = tmp_path_factory.mktemp(f"soak-{mode}-{dialect}")
    gen = _engine(dialect, request, tmp, pool_size=POOL_SIZE, max_overflow=0, pool_timeout=120)
    engine = next(gen)
    try:
        Doc = doc_model()
        Doc.metadata.create_all(engine)
        register_hooks()
        if mode == "threads":
            plans = run_threads(engine, Doc, COMMITS)
        else:
            url, connect_args = _async_target(engine, driver)
            plans = run_tasks(url, connect_args, Doc)
        with Session(engine) as s:
            log_rows = s.execute(select(func.count()).select_from(audit_table(Doc.metadata))).scalar_one()
            records = changes(Doc, s)
        yield SoakResult(plans, log_rows, records)
    finally:
        for _ in gen:  # the engine's cleanup (drops the schema or database)
            pass


# ---------------------------------------------------------------- the checks
# The writers stop at their first error; the checks after the first one hold
# for whatever was committed.


def test_soak_every_change_commits(soak: SoakResult) -> None:
    assert [p.error for p in soak.plans if p.error] == []
    assert [p.done for p in soak.plans] == [len(p.steps) for p in soak.plans]


def test_soak_records_exactly_one_audit_row_per_change(soak: SoakResult) -> None:
    assert soak.log_rows == soak.changes_made
    assert len(soak.records) == 2 * soak.changes_made  # two tracked fields, never NULL


def test_soak_records_carry_their_own_writers_user(soak: SoakResult) -> None:
    wrong = [(r.resource_id, r.changed_by) for r in soak.records
             if r.changed_by != f"user-{int(r.resource_id) // ID_SPAN}"]
    assert wrong == []
    assert sorted({r.changed_by for r in soak.records}) == sorted(
        f"user-{p.writer}" for p in soak.plans
    )


def test_soak_records_of_each_resource_are_in_the_order_its_writer_made_them(soak: SoakResult) -> None:
    recorded: dict[str, list[tuple[str, str, Any, Any]]] = defaultdict(list)
    for r in soak.records:
        recorded[r.resource_id].append((r.operation, r.field_name, r.old_value, r.new_value))
    expected = {pk: ops for plan in soak.plans for pk, ops in plan.expected().items()}
    assert dict(recorded) == expected
